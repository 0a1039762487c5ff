"""Every Argo step script, executed against fake kubectl, helm, docker buildx, trivy, git and python.

The fakes (tests/deploy/fakes/) answer like the real tools, including the cases the scripts must tell
apart: helm's "release: not found" versus an unreachable API server or an RBAC refusal, the previous
ReplicaSet's pods still terminating while the new ones are ready, buildx's metadata file, trivy's severity
and exit-code rules. Each test asserts what the script did to the (fake) world: the deployed revision,
the registry's tags, the step's output files, and its exit code.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from pipeline_support import (
    DEPLOYMENT,
    DIGEST,
    FAKES_DIR,
    HELM_FORBIDDEN,
    HELM_UNREACHABLE,
    IMAGE_REPOSITORY,
    KUBECTL_FORBIDDEN,
    KUBECTL_UNREACHABLE,
    NAMESPACE,
    NEW_SHA,
    OLD_SHA,
    RELEASE,
    REPO_ROOT,
    VENV_BIN,
    Pipeline,
    deployment,
    pod,
    replicaset,
)


@pytest.fixture
def pipeline(tmp_path: Path) -> Pipeline:
    return Pipeline(tmp_path)


# --- verify-deployment.sh -----------------------------------------------------------------------------

OLD_HASH, NEW_HASH = "6d9f7c8b5", "7f8c9d6a4"
VERIFY_ENV = {
    "NAMESPACE": NAMESPACE,
    "DEPLOYMENT": DEPLOYMENT,
    "EXPECTED_BUILD_ID": NEW_SHA,
    "ROLLOUT_TIMEOUT": "5m",
    "POLL_INTERVAL": "0",
}


def rolled_out(pipeline: Pipeline, *snapshots: list[dict[str, Any]], tag: str = NEW_SHA) -> None:
    """Deployment at revision 5 (tag) right after `rollout status`: ReplicaSets of revisions 4 and 5."""
    pipeline.state["kubectl"] = {
        "deployments": [deployment(tag, revision=5)],
        "replicasets": [replicaset(4, OLD_HASH, 0), replicaset(5, NEW_HASH, 2)],
        "pod_snapshots": list(snapshots),
        "health_build_id": tag,
    }


def draining_old_pods() -> list[dict[str, Any]]:
    """The previous ReplicaSet's pods after rollout status: terminating, not ready, draining their tasks."""
    return [pod(s, OLD_HASH, OLD_SHA, ready=False, terminating=True) for s in ("aaaaa", "bbbbb")]


def new_pods(tag: str = NEW_SHA, **kwargs: Any) -> list[dict[str, Any]]:
    return [pod(s, NEW_HASH, tag, **kwargs) for s in ("ccccc", "ddddd")]


def execs(pipeline: Pipeline) -> list[tuple[str, str]]:
    """(pod, what) for every kubectl exec the fake served: what is 'readyz' or 'health-check'."""
    served = pipeline.state["kubectl"].get("execs", [])
    return [(e["pod"], "health-check" if e["command"][0] == "alga-worker" else "readyz") for e in served]


def test_verify_passes_while_old_pods_are_still_terminating(pipeline: Pipeline) -> None:
    rolled_out(pipeline, draining_old_pods() + new_pods())
    result = pipeline.run("verify-deployment.sh", VERIFY_ENV)
    assert result.returncode == 0, result.stderr
    new_names = {f"{DEPLOYMENT}-{NEW_HASH}-ccccc", f"{DEPLOYMENT}-{NEW_HASH}-ddddd"}
    served = execs(pipeline)
    assert {p for p, what in served if what == "readyz"} == new_names
    assert next(p for p, what in served if what == "health-check") in new_names


def test_verify_ignores_a_terminating_pod_of_the_new_replicaset(pipeline: Pipeline) -> None:
    """A new pod being replaced (evicted, rescheduled) is not waited for either."""
    evicted = pod("eeeee", NEW_HASH, NEW_SHA, ready=False, terminating=True)
    rolled_out(pipeline, [*draining_old_pods(), evicted, *new_pods()])
    result = pipeline.run("verify-deployment.sh", VERIFY_ENV)
    assert result.returncode == 0, result.stderr
    assert all(not p.endswith("eeeee") for p, _ in execs(pipeline))


def test_verify_waits_for_new_pods_to_become_ready(pipeline: Pipeline) -> None:
    rolled_out(
        pipeline,
        draining_old_pods() + new_pods(ready=False),
        draining_old_pods()[:1] + new_pods(ready=False),
        new_pods(),
    )
    result = pipeline.run("verify-deployment.sh", VERIFY_ENV)
    assert result.returncode == 0, result.stderr
    assert pipeline.state["kubectl"]["pod_snapshot_served"] == 2


def test_verify_fails_at_once_on_a_crash_looping_new_pod(pipeline: Pipeline) -> None:
    crashing = [pod("ccccc", NEW_HASH, NEW_SHA, ready=False, waiting="CrashLoopBackOff")]
    rolled_out(pipeline, draining_old_pods() + crashing)
    result = pipeline.run("verify-deployment.sh", {**VERIFY_ENV, "READY_TIMEOUT": "1h"})
    assert result.returncode == 1
    assert "CrashLoopBackOff" in result.stderr
    assert execs(pipeline) == []


def test_verify_fails_when_new_pods_stay_unready_past_the_bound(pipeline: Pipeline) -> None:
    rolled_out(pipeline, draining_old_pods() + new_pods(ready=False))
    result = pipeline.run("verify-deployment.sh", {**VERIFY_ENV, "READY_TIMEOUT": "2s", "POLL_INTERVAL": "1"})
    assert result.returncode == 1
    assert "not ready within 2s" in result.stderr
    assert execs(pipeline) == []


def test_verify_fails_when_no_new_pod_exists(pipeline: Pipeline) -> None:
    rolled_out(pipeline, draining_old_pods())
    result = pipeline.run("verify-deployment.sh", {**VERIFY_ENV, "READY_TIMEOUT": "1s", "POLL_INTERVAL": "1"})
    assert result.returncode == 1
    assert "no pods found" in result.stderr


def test_verify_fails_when_a_new_pod_runs_another_tag(pipeline: Pipeline) -> None:
    rolled_out(pipeline, [pod("ccccc", NEW_HASH, NEW_SHA), pod("ddddd", NEW_HASH, OLD_SHA)])
    result = pipeline.run("verify-deployment.sh", VERIFY_ENV)
    assert result.returncode == 1
    assert f"expected tag {NEW_SHA}" in result.stderr


def test_verify_fails_when_the_deployment_does_not_run_the_expected_build(pipeline: Pipeline) -> None:
    """helm reported success but the Deployment still has the old template: nothing to verify."""
    rolled_out(pipeline, new_pods(tag=OLD_SHA), tag=OLD_SHA)
    result = pipeline.run("verify-deployment.sh", VERIFY_ENV)
    assert result.returncode == 1
    assert f"expected tag {NEW_SHA}" in result.stderr


def test_verify_after_rollback_takes_the_build_from_the_deployment(pipeline: Pipeline) -> None:
    rolled_out(pipeline, new_pods(tag=OLD_SHA), tag=OLD_SHA)
    result = pipeline.run("verify-deployment.sh", {**VERIFY_ENV, "EXPECTED_BUILD_ID": ""})
    assert result.returncode == 0, result.stderr
    assert f"expected build id taken from the Deployment: {OLD_SHA}" in result.stderr


def test_verify_fails_when_rollout_status_fails(pipeline: Pipeline) -> None:
    rolled_out(pipeline, new_pods())
    pipeline.state["kubectl"]["rollout"] = {
        "exit": 1,
        "stderr": 'error: deployment "temporal-worker-py" exceeded its progress deadline',
    }
    result = pipeline.run("verify-deployment.sh", VERIFY_ENV)
    assert result.returncode == 1
    assert "did not complete its rollout" in result.stderr
    assert execs(pipeline) == []


@pytest.mark.parametrize("error", [KUBECTL_UNREACHABLE, KUBECTL_FORBIDDEN], ids=["unreachable", "forbidden"])
def test_verify_fails_when_kubectl_fails(pipeline: Pipeline, error: str) -> None:
    rolled_out(pipeline, new_pods())
    pipeline.state["kubectl"]["error"] = error
    result = pipeline.run("verify-deployment.sh", VERIFY_ENV)
    assert result.returncode == 1
    assert error in result.stderr


def test_verify_fails_when_listing_pods_fails_midway(pipeline: Pipeline) -> None:
    rolled_out(pipeline, new_pods())
    pipeline.state["rules"] = [{"tool": "kubectl", "args": ["get", "pods"], "exit": 1, "stderr": KUBECTL_UNREACHABLE}]
    result = pipeline.run("verify-deployment.sh", VERIFY_ENV)
    assert result.returncode == 1
    assert "cannot list the pods" in result.stderr


def test_verify_fails_when_a_new_pod_is_not_ready_on_readyz(pipeline: Pipeline) -> None:
    rolled_out(pipeline, new_pods())
    pipeline.state["kubectl"]["readyz"] = {f"{DEPLOYMENT}-{NEW_HASH}-ddddd": 1}
    result = pipeline.run("verify-deployment.sh", VERIFY_ENV)
    assert result.returncode == 1
    assert "readyz" in result.stderr
    assert "health-check" not in {what for _, what in execs(pipeline)}


def test_verify_fails_when_another_build_answers_the_health_check(pipeline: Pipeline) -> None:
    rolled_out(pipeline, new_pods())
    pipeline.state["kubectl"]["health_build_id"] = OLD_SHA
    result = pipeline.run("verify-deployment.sh", {**VERIFY_ENV, "HEALTH_ATTEMPTS": "2"})
    assert result.returncode == 1
    assert f"healthCheckWorkflow did not succeed for build {NEW_SHA}" in result.stderr
    assert [what for _, what in execs(pipeline)].count("health-check") == 2


def test_verify_retries_a_failed_health_check(pipeline: Pipeline) -> None:
    rolled_out(pipeline, new_pods())
    pipeline.state["rules"] = [
        {"tool": "kubectl", "args": ["health-check"], "times": 1, "exit": 1, "stderr": "context deadline exceeded\n"}
    ]
    result = pipeline.run("verify-deployment.sh", VERIFY_ENV)
    assert result.returncode == 0, result.stderr


def test_verify_refuses_a_malformed_bound(pipeline: Pipeline) -> None:
    rolled_out(pipeline, new_pods())
    result = pipeline.run("verify-deployment.sh", {**VERIFY_ENV, "READY_TIMEOUT": "soon"})
    assert result.returncode == 1
    assert "READY_TIMEOUT" in result.stderr


# --- helm-current-revision.sh -------------------------------------------------------------------------

REVISION_ENV = {"RELEASE": RELEASE, "NAMESPACE": NAMESPACE}


def test_current_revision_is_the_deployed_one(pipeline: Pipeline) -> None:
    pipeline.release("superseded", "superseded", "deployed", "failed")
    result = pipeline.run("helm-current-revision.sh", REVISION_ENV)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "3\n"
    assert pipeline.output("revision") == "3"


def test_current_revision_of_an_absent_release_is_zero(pipeline: Pipeline) -> None:
    pipeline.release("deployed", name="some-other-release")
    result = pipeline.run("helm-current-revision.sh", REVISION_ENV)
    assert result.returncode == 0, result.stderr
    assert pipeline.output("revision") == "0"
    assert "first install" in result.stderr


def test_current_revision_of_a_release_that_never_deployed_is_zero(pipeline: Pipeline) -> None:
    pipeline.release("failed")
    result = pipeline.run("helm-current-revision.sh", REVISION_ENV)
    assert result.returncode == 0, result.stderr
    assert pipeline.output("revision") == "0"


@pytest.mark.parametrize("error", [HELM_UNREACHABLE, HELM_FORBIDDEN], ids=["unreachable", "forbidden"])
def test_current_revision_fails_loudly_when_helm_fails(pipeline: Pipeline, error: str) -> None:
    pipeline.release("superseded", "deployed")
    pipeline.state["helm"]["error"] = error
    result = pipeline.run("helm-current-revision.sh", REVISION_ENV)
    assert result.returncode != 0
    assert pipeline.output("revision") is None, "a helm failure must not produce a revision (0 = no rollback)"
    assert error in result.stderr
    assert "cannot tell the deployed revision" in result.stderr


@pytest.mark.parametrize("pending", ["pending-upgrade", "pending-install", "pending-rollback"])
def test_current_revision_refuses_a_stuck_release(pipeline: Pipeline, pending: str) -> None:
    pipeline.release("deployed", pending)
    result = pipeline.run("helm-current-revision.sh", REVISION_ENV)
    assert result.returncode == 1
    assert "pending state" in result.stderr
    assert pipeline.output("revision") is None


# --- helm-rollback.sh ---------------------------------------------------------------------------------


def rollback_env(revision: str) -> dict[str, str]:
    return {"RELEASE": RELEASE, "NAMESPACE": NAMESPACE, "REVISION": revision, "HELM_TIMEOUT": "10m"}


def test_rollback_returns_to_the_recorded_revision(pipeline: Pipeline) -> None:
    """Revision 4 failed after 3 had itself replaced a bad 2: back to 3, not to 'the one before'."""
    pipeline.release("superseded", "superseded", "deployed", "failed")
    result = pipeline.run("helm-rollback.sh", rollback_env("3"))
    assert result.returncode == 0, result.stderr
    deployed = pipeline.deployed()
    assert deployed is not None
    assert (deployed["revision"], deployed["app_version"]) == (5, "sha-3")
    assert deployed["description"] == "Rollback to 3"


def test_rollback_to_the_previous_revision(pipeline: Pipeline) -> None:
    pipeline.release("superseded", "superseded", "deployed")
    result = pipeline.run("helm-rollback.sh", rollback_env("previous"))
    assert result.returncode == 0, result.stderr
    deployed = pipeline.deployed()
    assert deployed is not None and deployed["app_version"] == "sha-2"


def test_rollback_with_no_recorded_revision_does_not_roll_back(pipeline: Pipeline) -> None:
    pipeline.release("failed")
    before = pipeline.history()
    result = pipeline.run("helm-rollback.sh", rollback_env("0"))
    assert result.returncode == 1
    assert "nothing to roll back to" in result.stderr
    assert pipeline.history() == before


def test_rollback_failing_fails_the_step(pipeline: Pipeline) -> None:
    pipeline.release("superseded", "deployed", "failed")
    pipeline.state["helm"]["fail"] = {"rollback": "timed out waiting for the condition"}
    result = pipeline.run("helm-rollback.sh", rollback_env("2"))
    assert result.returncode == 1
    assert "helm rollback" in result.stderr and "failed" in result.stderr
    assert pipeline.history()[-1]["status"] == "failed"


def test_rollback_of_an_absent_release_fails(pipeline: Pipeline) -> None:
    result = pipeline.run("helm-rollback.sh", rollback_env("3"))
    assert result.returncode == 1
    assert "not found" in result.stderr


def test_rollback_to_a_revision_that_does_not_exist_fails(pipeline: Pipeline) -> None:
    pipeline.release("superseded", "deployed")
    result = pipeline.run("helm-rollback.sh", rollback_env("9"))
    assert result.returncode == 1
    assert pipeline.deployed() == pipeline.history()[1]


@pytest.mark.parametrize("error", [HELM_UNREACHABLE, HELM_FORBIDDEN], ids=["unreachable", "forbidden"])
def test_rollback_reports_helm_failures_as_such(pipeline: Pipeline, error: str) -> None:
    pipeline.release("superseded", "deployed", "failed")
    pipeline.state["helm"]["error"] = error
    result = pipeline.run("helm-rollback.sh", rollback_env("2"))
    assert result.returncode == 1
    assert error in result.stderr
    assert "not found" not in result.stderr


def test_rollback_refuses_a_malformed_revision(pipeline: Pipeline) -> None:
    pipeline.release("superseded", "deployed")
    result = pipeline.run("helm-rollback.sh", rollback_env("latest"))
    assert result.returncode == 1
    assert pipeline.history()[-1]["revision"] == 2


def test_rollback_survives_a_failing_history_listing(pipeline: Pipeline) -> None:
    pipeline.release("superseded", "deployed", "failed")
    pipeline.state["rules"] = [{"tool": "helm", "args": ["history"], "exit": 1, "stderr": f"Error: {HELM_UNREACHABLE}"}]
    result = pipeline.run("helm-rollback.sh", rollback_env("2"))
    assert result.returncode == 0, result.stderr
    deployed = pipeline.deployed()
    assert deployed is not None and deployed["app_version"] == "sha-2"


# --- helm-upgrade.sh ----------------------------------------------------------------------------------

CHART_DIR = REPO_ROOT / "deploy" / "helm" / "temporal-worker"


def upgrade_env(pipeline: Pipeline, **extra: str) -> dict[str, str]:
    config = pipeline.root / "config"
    config.mkdir(exist_ok=True)
    return {
        "RELEASE": RELEASE,
        "NAMESPACE": NAMESPACE,
        "CHART_DIR": str(CHART_DIR),
        "CONFIG_DIR": str(config),
        "VALUES_FILE": "",
        "ENVIRONMENT": "hosted",
        "IMAGE_REPOSITORY": IMAGE_REPOSITORY,
        "IMAGE_TAG": NEW_SHA,
        "IMAGE_DIGEST": DIGEST,
        "HELM_TIMEOUT": "10m",
        **extra,
    }


def test_upgrade_installs_with_this_charts_environment_values(pipeline: Pipeline) -> None:
    result = pipeline.run("helm-upgrade.sh", upgrade_env(pipeline))
    assert result.returncode == 0, result.stderr
    deployed = pipeline.deployed()
    assert deployed is not None and deployed["revision"] == 1
    assert deployed["values"] == [str(CHART_DIR / ".." / "values-hosted.yaml")]
    assert Path(deployed["values"][0]).resolve() == REPO_ROOT / "deploy" / "helm" / "values-hosted.yaml"
    assert {"image.repository=" + IMAGE_REPOSITORY, "image.tag=" + NEW_SHA, "image.digest=" + DIGEST} <= set(
        deployed["set"]
    )


def test_upgrade_default_values_are_this_charts_not_the_main_alga_charts(pipeline: Pipeline) -> None:
    """The old default, alga-psa/<env>.values.yaml in the config repository, is the main chart's file."""
    config = pipeline.root / "config" / "alga-psa"
    config.mkdir(parents=True)
    (config / "hosted.values.yaml").write_text("temporalWorker:\n  enabled: true\n")
    result = pipeline.run("helm-upgrade.sh", upgrade_env(pipeline))
    assert result.returncode == 0, result.stderr
    deployed = pipeline.deployed()
    assert deployed is not None
    assert all("alga-psa/" not in path for path in deployed["values"])


def test_upgrade_applies_a_config_repository_overlay_last(pipeline: Pipeline) -> None:
    overlay = pipeline.root / "config" / "temporal-worker" / "hosted.yaml"
    overlay.parent.mkdir(parents=True)
    overlay.write_text("replicaCount: 4\n")
    pipeline.release("superseded", "deployed")
    result = pipeline.run("helm-upgrade.sh", upgrade_env(pipeline, VALUES_FILE="temporal-worker/hosted.yaml"))
    assert result.returncode == 0, result.stderr
    deployed = pipeline.deployed()
    assert deployed is not None and deployed["revision"] == 3
    assert [Path(p).name for p in deployed["values"]] == ["values-hosted.yaml", "hosted.yaml"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"ENVIRONMENT": "nowhere"}, "no values for environment 'nowhere'"),
        ({"ENVIRONMENT": "../hosted"}, "plain name"),
        ({"VALUES_FILE": "missing.yaml"}, "not found in the config repository"),
        ({"IMAGE_DIGEST": "sha256:abc"}, "64 hex digits"),
        ({"IMAGE_TAG": ""}, "IMAGE_TAG"),
    ],
    ids=["unknown-environment", "path-as-environment", "missing-overlay", "bad-digest", "no-tag"],
)
def test_upgrade_refuses_bad_input_without_touching_the_release(
    pipeline: Pipeline, extra: dict[str, str], message: str
) -> None:
    pipeline.release("superseded", "deployed")
    result = pipeline.run("helm-upgrade.sh", upgrade_env(pipeline, **extra))
    assert result.returncode == 1
    assert message in result.stderr
    assert len(pipeline.history()) == 2


def test_upgrade_failing_fails_the_step(pipeline: Pipeline) -> None:
    pipeline.release("superseded", "deployed")
    pipeline.state["helm"]["fail"] = {"upgrade": "context deadline exceeded"}
    result = pipeline.run("helm-upgrade.sh", upgrade_env(pipeline))
    assert result.returncode == 1
    assert "context deadline exceeded" in result.stderr
    assert pipeline.history()[-1]["status"] == "failed"


def test_upgrade_fails_when_helm_cannot_reach_the_cluster(pipeline: Pipeline) -> None:
    pipeline.state["helm"] = {"error": HELM_UNREACHABLE}
    result = pipeline.run("helm-upgrade.sh", upgrade_env(pipeline))
    assert result.returncode == 1
    assert HELM_UNREACHABLE in result.stderr


def test_upgrade_is_not_failed_by_the_informational_history(pipeline: Pipeline) -> None:
    """A good upgrade followed by a failing `helm history` must not trigger a rollback."""
    pipeline.release("deployed")
    pipeline.state["rules"] = [{"tool": "helm", "args": ["history"], "exit": 1, "stderr": f"Error: {HELM_UNREACHABLE}"}]
    result = pipeline.run("helm-upgrade.sh", upgrade_env(pipeline))
    assert result.returncode == 0, result.stderr
    deployed = pipeline.deployed()
    assert deployed is not None and deployed["app_version"] == NEW_SHA


# --- build-image.sh -----------------------------------------------------------------------------------


@pytest.fixture
def build_env(pipeline: Pipeline) -> dict[str, str]:
    src = pipeline.root / "src"
    (src / "deploy" / "docker").mkdir(parents=True)
    (src / "deploy" / "docker" / "Dockerfile").write_text("FROM python:3.11-slim\n")
    auth = pipeline.root / "dockerconfig.json"
    auth.write_text('{"auths": {"harbor.nineminds.com": {"auth": "Y2k6c2VjcmV0"}}}')
    return {
        "SRC_DIR": str(src),
        "IMAGE": IMAGE_REPOSITORY,
        "TAG": NEW_SHA,
        "REGISTRY_AUTH_FILE": str(auth),
        "CACHE_DIR": str(pipeline.root / "cache"),
        "DOCKER_CONFIG": str(pipeline.root / "docker-config"),
        "REPO_URL": "https://github.com/Nine-Minds/alga-temporal-worker.git",
    }


def test_build_writes_the_pushed_digest_where_the_template_reads_it(
    pipeline: Pipeline, build_env: dict[str, str]
) -> None:
    pipeline.state["docker"] = {"build": {"digest": DIGEST}}
    result = pipeline.run("build-image.sh", build_env)
    assert result.returncode == 0, result.stderr
    assert pipeline.output("digest") == DIGEST
    assert pipeline.output("image") == f"{IMAGE_REPOSITORY}@{DIGEST}"
    assert pipeline.state["docker"]["registry"] == {f"{IMAGE_REPOSITORY}:{NEW_SHA}": DIGEST}
    assert f"BUILD_ID={NEW_SHA}" in pipeline.state["docker"]["builds"][0]["build_args"]
    assert (Path(build_env["CACHE_DIR"]) / "current" / "index.json").is_file()
    template = yaml.safe_load((REPO_ROOT / "deploy/argo/templates/temporal-worker-build.yaml").read_text())
    build_push = next(t for t in template["spec"]["templates"] if t["name"] == "build-push")
    paths = {p["name"]: p["valueFrom"]["path"] for p in build_push["outputs"]["parameters"]}
    env = {e["name"]: e.get("value") for e in build_push["container"]["env"]}
    assert paths == {"digest": f"{env['OUTPUT_DIR']}/digest", "image": f"{env['OUTPUT_DIR']}/image"}


def test_build_uses_the_cache_of_the_previous_build(pipeline: Pipeline, build_env: dict[str, str]) -> None:
    assert pipeline.run("build-image.sh", build_env).returncode == 0
    result = pipeline.run("build-image.sh", build_env)
    assert result.returncode == 0, result.stderr
    first, second = pipeline.state["docker"]["builds"]
    assert first["cache_from"] == []
    assert second["cache_from"] == [f"type=local,src={build_env['CACHE_DIR']}/current"]


def test_build_waits_for_the_dind_daemon(pipeline: Pipeline, build_env: dict[str, str]) -> None:
    pipeline.state["docker"] = {"info_failures": 3}
    result = pipeline.run("build-image.sh", build_env)
    assert result.returncode == 0, result.stderr
    assert pipeline.output("digest") is not None


def test_build_fails_when_the_daemon_never_starts(pipeline: Pipeline, build_env: dict[str, str]) -> None:
    pipeline.state["docker"] = {"info_failures": 100}
    result = pipeline.run("build-image.sh", build_env)
    assert result.returncode == 1
    assert "did not start" in result.stderr
    assert pipeline.state["docker"].get("builds") is None


def test_build_fails_when_buildx_fails(pipeline: Pipeline, build_env: dict[str, str]) -> None:
    assert pipeline.run("build-image.sh", build_env).returncode == 0
    cache_before = (Path(build_env["CACHE_DIR"]) / "current" / "index.json").read_text()
    (pipeline.out / "digest").unlink()
    pipeline.state["docker"]["build"] = {"fail": 'process "/bin/sh -c pip install ." did not complete successfully'}
    result = pipeline.run("build-image.sh", {**build_env, "TAG": OLD_SHA})
    assert result.returncode == 1
    assert "buildx build" in result.stderr
    assert pipeline.output("digest") is None
    assert f"{IMAGE_REPOSITORY}:{OLD_SHA}" not in pipeline.state["docker"]["registry"]
    assert (Path(build_env["CACHE_DIR"]) / "current" / "index.json").read_text() == cache_before


def test_build_fails_without_buildx_metadata(pipeline: Pipeline, build_env: dict[str, str]) -> None:
    pipeline.state["docker"] = {"build": {"metadata": False}}
    result = pipeline.run("build-image.sh", build_env)
    assert result.returncode == 1
    assert "metadata" in result.stderr
    assert pipeline.output("digest") is None and pipeline.output("image") is None


def test_build_fails_on_a_metadata_file_without_a_digest(pipeline: Pipeline, build_env: dict[str, str]) -> None:
    pipeline.state["docker"] = {"build": {"digest": "sha256:"}}
    result = pipeline.run("build-image.sh", build_env)
    assert result.returncode == 1
    assert pipeline.output("digest") is None


def test_build_fails_without_a_dockerfile(pipeline: Pipeline, build_env: dict[str, str]) -> None:
    result = pipeline.run("build-image.sh", {**build_env, "DOCKERFILE": "Dockerfile.missing"})
    assert result.returncode == 1
    assert "Dockerfile not found" in result.stderr


# --- promote-image.sh ---------------------------------------------------------------------------------

GHCR_IMAGE = "ghcr.io/nine-minds/temporal-worker"


def promote_env(pipeline: Pipeline, **extra: str) -> dict[str, str]:
    auth = pipeline.root / "dockerconfig.json"
    auth.write_text("{}")
    pipeline.state.setdefault("docker", {}).setdefault("registry", {f"{IMAGE_REPOSITORY}:{NEW_SHA}": DIGEST})
    return {
        "IMAGE": IMAGE_REPOSITORY,
        "TAG": NEW_SHA,
        "DIGEST": DIGEST,
        "REGISTRY_AUTH_FILE": str(auth),
        "DOCKER_CONFIG": str(pipeline.root / "docker-config"),
        "SET_LATEST": "false",
        "PUSH_GHCR": "false",
        "GHCR_IMAGE": GHCR_IMAGE,
        **extra,
    }


def test_promote_tags_the_scanned_digest_as_latest(pipeline: Pipeline) -> None:
    result = pipeline.run("promote-image.sh", promote_env(pipeline, SET_LATEST="true"))
    assert result.returncode == 0, result.stderr
    assert pipeline.state["docker"]["registry"][f"{IMAGE_REPOSITORY}:latest"] == DIGEST


def test_promote_copies_the_digest_to_ghcr(pipeline: Pipeline) -> None:
    pipeline.state["docker"] = {"login_password": "ghp_token"}
    env = promote_env(pipeline, SET_LATEST="true", PUSH_GHCR="true", GHCR_USERNAME="ci", GHCR_TOKEN="ghp_token")
    result = pipeline.run("promote-image.sh", env)
    assert result.returncode == 0, result.stderr
    registry = pipeline.state["docker"]["registry"]
    assert registry[f"{GHCR_IMAGE}:{NEW_SHA}"] == registry[f"{GHCR_IMAGE}:latest"] == DIGEST
    assert pipeline.state["docker"]["logins"] == [{"registry": "ghcr.io", "username": "ci"}]


def test_promote_with_nothing_to_do_changes_nothing(pipeline: Pipeline) -> None:
    env = promote_env(pipeline)
    result = pipeline.run("promote-image.sh", env)
    assert result.returncode == 0, result.stderr
    assert pipeline.state["docker"]["registry"] == {f"{IMAGE_REPOSITORY}:{NEW_SHA}": DIGEST}


@pytest.mark.parametrize("digest", ["", "sha256:", "latest", "sha256:" + "G" * 64], ids=["empty", "bare", "tag", "hex"])
def test_promote_refuses_a_missing_or_malformed_digest(pipeline: Pipeline, digest: str) -> None:
    result = pipeline.run("promote-image.sh", promote_env(pipeline, SET_LATEST="true", DIGEST=digest))
    assert result.returncode == 1
    assert "DIGEST" in result.stderr
    assert f"{IMAGE_REPOSITORY}:latest" not in pipeline.state["docker"]["registry"]


def test_promote_fails_for_a_digest_the_registry_does_not_have(pipeline: Pipeline) -> None:
    other = "sha256:" + "cd" * 32
    result = pipeline.run("promote-image.sh", promote_env(pipeline, SET_LATEST="true", DIGEST=other))
    assert result.returncode == 1
    assert f"{IMAGE_REPOSITORY}:latest" not in pipeline.state["docker"]["registry"]


def test_promote_fails_when_the_ghcr_login_is_refused(pipeline: Pipeline) -> None:
    pipeline.state["docker"] = {"login_password": "right"}
    env = promote_env(pipeline, PUSH_GHCR="true", GHCR_USERNAME="ci", GHCR_TOKEN="wrong")
    result = pipeline.run("promote-image.sh", env)
    assert result.returncode == 1
    assert "login" in result.stderr
    assert not any(ref.startswith(GHCR_IMAGE) for ref in pipeline.state["docker"]["registry"])


# --- scan-image.sh ------------------------------------------------------------------------------------

IMAGE_REF = f"{IMAGE_REPOSITORY}@{DIGEST}"


def scan(pipeline: Pipeline, findings: list[dict[str, str]], **extra: str) -> Any:
    auth = pipeline.root / "dockerconfig.json"
    auth.write_text("{}")
    pipeline.state.setdefault("trivy", {}).setdefault("images", {IMAGE_REF: findings})
    env = {
        "IMAGE_REF": IMAGE_REF,
        "REGISTRY_AUTH_FILE": str(auth),
        "SEVERITY": "CRITICAL",
        "IGNORE_UNFIXED": "true",
        "DOCKER_CONFIG": str(pipeline.root / "docker-config"),
        "TRIVY_CACHE_DIR": str(pipeline.root / "trivy-cache"),
        **extra,
    }
    return pipeline.run("scan-image.sh", env)


CRITICAL_FIXED = {"id": "CVE-2024-0001", "severity": "CRITICAL", "fixed": "1.2.4", "package": "openssl"}
CRITICAL_UNFIXED = {"id": "CVE-2024-0002", "severity": "CRITICAL", "fixed": "", "package": "zlib"}
HIGH_FIXED = {"id": "CVE-2024-0003", "severity": "HIGH", "fixed": "2.0.1", "package": "libxml2"}


def test_scan_without_findings_passes(pipeline: Pipeline) -> None:
    result = scan(pipeline, [])
    assert result.returncode == 0, result.stderr
    assert pipeline.state["trivy"]["scans"] == [IMAGE_REF]


def test_scan_fails_on_a_finding_at_the_severity(pipeline: Pipeline) -> None:
    result = scan(pipeline, [CRITICAL_FIXED])
    assert result.returncode == 1
    assert "CVE-2024-0001" in result.stdout
    assert "has CRITICAL findings" in result.stderr


@pytest.mark.parametrize(
    ("findings", "severity", "ignore_unfixed", "passes"),
    [
        ([HIGH_FIXED], "CRITICAL", "true", True),
        ([HIGH_FIXED], "HIGH,CRITICAL", "true", False),
        ([CRITICAL_UNFIXED], "CRITICAL", "true", True),
        ([CRITICAL_UNFIXED], "CRITICAL", "false", False),
    ],
    ids=["high-below-policy", "high-in-policy", "unfixed-ignored", "unfixed-counted"],
)
def test_scan_policy(
    pipeline: Pipeline, findings: list[dict[str, str]], severity: str, ignore_unfixed: str, passes: bool
) -> None:
    result = scan(pipeline, findings, SEVERITY=severity, IGNORE_UNFIXED=ignore_unfixed)
    assert (result.returncode == 0) is passes, result.stderr


def test_scan_error_is_not_clean(pipeline: Pipeline) -> None:
    """trivy cannot pull the image: exit 1, the same code plain `--exit-code 1` used for findings."""
    pipeline.state["trivy"] = {"images": {}}
    result = scan(pipeline, [])
    assert result.returncode == 1
    assert "was NOT scanned" in result.stderr
    assert "no CRITICAL findings" not in result.stderr


def test_scan_retries_the_database_download(pipeline: Pipeline) -> None:
    pipeline.state["trivy"] = {"db_failures": 2}
    result = scan(pipeline, [])
    assert result.returncode == 0, result.stderr


def test_scan_fails_when_the_database_never_downloads(pipeline: Pipeline) -> None:
    pipeline.state["trivy"] = {"db_failures": 3}
    result = scan(pipeline, [])
    assert result.returncode == 1
    assert "not scanned" in result.stderr
    assert "scans" not in pipeline.state["trivy"]


def test_scan_refuses_a_tag(pipeline: Pipeline) -> None:
    result = scan(pipeline, [], IMAGE_REF=f"{IMAGE_REPOSITORY}:{NEW_SHA}")
    assert result.returncode == 1
    assert "digest" in result.stderr


# --- run-tests.sh -------------------------------------------------------------------------------------


def run_tests(pipeline: Pipeline, **extra: str) -> Any:
    env = {"SRC_DIR": str(REPO_ROOT), "VENV": str(pipeline.root / "venv"), **extra}
    return pipeline.run("run-tests.sh", env)


def test_run_tests_default_arguments_name_existing_tests(pipeline: Pipeline) -> None:
    result = run_tests(pipeline)
    assert result.returncode == 0, result.stdout + result.stderr
    (run,) = pipeline.state["python"]["pytest_runs"]
    assert run["cwd"] == str(REPO_ROOT)
    assert any(arg.startswith("tests/") for arg in run["args"])


def test_run_tests_build_template_default_arguments_name_existing_tests(pipeline: Pipeline) -> None:
    template = yaml.safe_load((REPO_ROOT / "deploy/argo/templates/temporal-worker-build.yaml").read_text())
    default = next(p["value"] for p in template["spec"]["arguments"]["parameters"] if p["name"] == "test-args")
    result = run_tests(pipeline, TEST_ARGS=default)
    assert result.returncode == 0, result.stdout + result.stderr
    assert pipeline.state["python"]["pytest_runs"][0]["args"] == default.split()


def test_run_tests_refuses_a_missing_test_folder_before_installing(pipeline: Pipeline) -> None:
    result = run_tests(pipeline, TEST_ARGS="-q tests/unit tests/workflows")
    assert result.returncode == 1
    assert "tests/workflows" in result.stderr
    assert "installs" not in pipeline.state.get("python", {})


def test_run_tests_red_tests_fail_the_step(pipeline: Pipeline) -> None:
    pipeline.state["python"] = {"pytest_exit": 1}
    result = run_tests(pipeline)
    assert result.returncode == 1
    assert "1 failed" in result.stdout


def test_run_tests_fails_when_the_install_fails(pipeline: Pipeline) -> None:
    pipeline.state["python"] = {"pip_failures": 3}
    result = run_tests(pipeline)
    assert result.returncode == 1
    assert "pip install" in result.stderr
    assert "pytest_runs" not in pipeline.state["python"]


def test_run_tests_retries_a_flaky_install(pipeline: Pipeline) -> None:
    pipeline.state["python"] = {"pip_failures": 1}
    result = run_tests(pipeline)
    assert result.returncode == 0, result.stderr
    assert len(pipeline.state["python"]["pytest_runs"]) == 1


# --- decide-worker-build.sh / detect-worker-changes.sh (real git repository, fake kubectl, git faults) ------


@pytest.fixture
def worker_repo(pipeline: Pipeline) -> tuple[Path, str, str]:
    """A repository with a deployed commit and a docs-only commit after it: (path, deployed, new)."""
    path = pipeline.root / "repo"
    path.mkdir()
    home = str(pipeline.root)
    env = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": f"{home}/gitconfig", "HOME": home}
    env["PATH"] = os.environ["PATH"]
    ident = ["-c", "user.name=CI", "-c", "user.email=ci@example.invalid"]

    def git(*args: str) -> str:
        done = subprocess.run(["git", *ident, *args], cwd=path, env=env, capture_output=True, text=True, check=True)
        return done.stdout.strip()

    git("init", "--quiet", "--initial-branch=main")
    (path / "src").mkdir()
    (path / "src" / "worker.py").write_text("x = 1\n")
    git("add", "--all")
    git("commit", "--quiet", "-m", "code")
    deployed = git("rev-parse", "HEAD")
    (path / "README.md").write_text("docs\n")
    git("add", "--all")
    git("commit", "--quiet", "-m", "docs")
    return path, deployed, git("rev-parse", "HEAD")


def decide(pipeline: Pipeline, repo: Path, new: str) -> Any:
    env = {
        "MODE": "auto",
        "COMMIT_SHA": new,
        "SRC_DIR": str(repo),
        "NAMESPACE": NAMESPACE,
        "DEPLOYMENT": DEPLOYMENT,
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    return pipeline.run("decide-worker-build.sh", env)


def test_decide_reads_the_deployed_commit_from_the_deployment(
    pipeline: Pipeline, worker_repo: tuple[Path, str, str]
) -> None:
    repo, deployed, new = worker_repo
    pipeline.state["kubectl"] = {"deployments": [deployment(deployed, revision=3)]}
    result = decide(pipeline, repo, new)
    assert (result.returncode, result.stdout) == (0, "false\n"), result.stderr
    assert pipeline.output("build") == "false"


def test_decide_builds_on_a_first_deploy(pipeline: Pipeline, worker_repo: tuple[Path, str, str]) -> None:
    repo, _, new = worker_repo
    pipeline.state["kubectl"] = {"deployments": []}
    result = decide(pipeline, repo, new)
    assert (result.returncode, result.stdout) == (0, "true\n"), result.stderr


@pytest.mark.parametrize("error", [KUBECTL_UNREACHABLE, KUBECTL_FORBIDDEN], ids=["unreachable", "forbidden"])
def test_decide_fails_when_kubectl_fails(pipeline: Pipeline, worker_repo: tuple[Path, str, str], error: str) -> None:
    """An unreadable Deployment is not an absent one (which would read as a first deploy)."""
    repo, _, new = worker_repo
    pipeline.state["kubectl"] = {"error": error}
    result = decide(pipeline, repo, new)
    assert result.returncode == 1
    assert result.stdout == ""
    assert pipeline.output("build") is None
    assert error in result.stderr


def test_decide_fails_when_git_diff_fails(pipeline: Pipeline, worker_repo: tuple[Path, str, str]) -> None:
    """A failing diff prints nothing; that must not read as "nothing changed"."""
    repo, deployed, new = worker_repo
    pipeline.state["kubectl"] = {"deployments": [deployment(deployed, revision=3)]}
    pipeline.state["git"] = {"fail": {"diff": {"exit": 128, "stderr": "fatal: unable to read tree 4b825dc6"}}}
    result = decide(pipeline, repo, new)
    assert result.returncode == 1
    assert result.stdout == ""
    assert pipeline.output("build") is None
    assert "git diff" in result.stderr


# --- the fakes themselves -------------------------------------------------------------------------------


def test_fake_shims_pass_shellcheck() -> None:
    shims = sorted(p for p in FAKES_DIR.iterdir() if p.suffix != ".py" and p.is_file())
    assert {p.name for p in shims} >= {"kubectl", "helm", "docker", "trivy", "git", "temporal", "python3"}
    result = subprocess.run(
        [str(VENV_BIN / "shellcheck"), *map(str, shims)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_fakes_refuse_what_they_do_not_model(pipeline: Pipeline) -> None:
    """A script that starts calling something new must fail its tests, not pass by accident."""
    pipeline.state["kubectl"] = {"deployments": [deployment(NEW_SHA, revision=1)]}
    pipeline.state_path.write_text(json.dumps(pipeline.state))
    env = {"FAKE_PYTHON": sys.executable, "FAKE_STATE": str(pipeline.state_path), "FAKE_LOG": str(pipeline.log_path)}
    result = subprocess.run(
        [str(FAKES_DIR / "kubectl"), "get", "deployment", DEPLOYMENT, "-o", "jsonpath={.spec}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "fake kubectl: unsupported" in result.stderr

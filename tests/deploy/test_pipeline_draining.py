"""Draining builds in the pipeline, executed against the fakes: helm-upgrade.sh keeps the build being replaced
running (versioning.draining) and prune-drained-versions.sh stops the builds Temporal reports drained.

The fake helm keeps each release's values (`helm get values --all`: the values files' result, the last
revision's image tag and its --set-json values; --reuse-values carries them over); the fake kubectl answers
`alga-worker deployment status --json` in a worker pod with the JSON of src/alga_worker/cli/deployment.py.
Tests assert what the release holds afterwards (its draining builds, its revisions), not command strings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pipeline_support import (
    DEPLOYMENT,
    DIGEST,
    HELM_UNREACHABLE,
    IMAGE_REPOSITORY,
    NAMESPACE,
    NEW_SHA,
    OLD_SHA,
    RELEASE,
    REPO_ROOT,
    Pipeline,
    deployment,
    pod,
)

CHART_DIR = REPO_ROOT / "deploy" / "helm" / "temporal-worker"
WORKER_DEPLOYMENT = "alga-temporal-worker"
OLDER = "0000000000000000000000000000000000000000"
OLDEST = "9999999999999999999999999999999999999999"


@pytest.fixture
def pipeline(tmp_path: Path) -> Pipeline:
    return Pipeline(tmp_path)


def installed(p: Pipeline, tag: str, draining: list[str] | None = None, *, versioned: bool = True) -> None:
    """The release as the pipeline left it: one deployed revision running ``tag``, draining ``draining``."""
    entry: dict[str, Any] = {
        "revision": 1,
        "updated": "2025-01-01",
        "status": "deployed",
        "chart": "temporal-worker-0.2.0",
        "app_version": tag,
        "values": [str(CHART_DIR / ".." / "values-hosted.yaml")],
        "set": [f"image.repository={IMAGE_REPOSITORY}", f"image.tag={tag}", f"image.digest={DIGEST}"],
        "set_json": [f"versioning.draining={json.dumps(draining)}"] if draining is not None else [],
        "description": "Install complete",
    }
    computed = {
        "config": {"TEMPORAL_WORKER_DEPLOYMENT_NAME": WORKER_DEPLOYMENT if versioned else ""},
        "image": {"repository": IMAGE_REPOSITORY, "tag": ""},
        "versioning": {"draining": [], "drainingReplicas": 1},
    }
    p.state.setdefault("helm", {}).setdefault("releases", {})[RELEASE] = {
        "namespace": NAMESPACE,
        "computed": computed,
        "history": [entry],
    }


def deployed(p: Pipeline) -> dict[str, Any]:
    revision = p.deployed()
    assert revision is not None, "no deployed revision"
    return revision


def draining(p: Pipeline) -> list[str]:
    """The release's draining builds now (as `helm get values --all` would answer)."""
    last = p.history()[-1]
    values: list[str] = []
    for assignment in last.get("set_json", []):
        key, _, raw = assignment.partition("=")
        if key == "versioning.draining":
            values = json.loads(raw)
    return values


# --- helm-upgrade.sh ----------------------------------------------------------------------------------


def upgrade(p: Pipeline, tag: str = NEW_SHA) -> Any:
    config = p.root / "config"
    config.mkdir(exist_ok=True)
    return p.run(
        "helm-upgrade.sh",
        {
            "RELEASE": RELEASE,
            "NAMESPACE": NAMESPACE,
            "CHART_DIR": str(CHART_DIR),
            "CONFIG_DIR": str(config),
            "ENVIRONMENT": "hosted",
            "IMAGE_REPOSITORY": IMAGE_REPOSITORY,
            "IMAGE_TAG": tag,
            "IMAGE_DIGEST": DIGEST,
        },
    )


def test_first_install_drains_nothing(pipeline: Pipeline) -> None:
    result = upgrade(pipeline)
    assert result.returncode == 0, result.stderr
    assert deployed(pipeline)["app_version"] == NEW_SHA
    assert draining(pipeline) == []


def test_upgrade_keeps_the_replaced_build_draining(pipeline: Pipeline) -> None:
    installed(pipeline, OLD_SHA)
    result = upgrade(pipeline)
    assert result.returncode == 0, result.stderr
    assert deployed(pipeline)["app_version"] == NEW_SHA
    assert draining(pipeline) == [OLD_SHA]


def test_upgrade_keeps_earlier_draining_builds_too(pipeline: Pipeline) -> None:
    installed(pipeline, OLD_SHA, [OLDER])
    result = upgrade(pipeline)
    assert result.returncode == 0, result.stderr
    assert draining(pipeline) == [OLDER, OLD_SHA]


def test_redeploying_the_same_tag_adds_nothing(pipeline: Pipeline) -> None:
    installed(pipeline, NEW_SHA, [OLD_SHA])
    result = upgrade(pipeline)
    assert result.returncode == 0, result.stderr
    assert deployed(pipeline)["revision"] == 2
    assert draining(pipeline) == [OLD_SHA]


def test_deploying_a_draining_build_again_takes_it_off_the_list(pipeline: Pipeline) -> None:
    installed(pipeline, OLD_SHA, [NEW_SHA, OLDER])
    result = upgrade(pipeline)
    assert result.returncode == 0, result.stderr
    assert draining(pipeline) == [OLDER, OLD_SHA]


def test_versioning_off_drains_nothing(pipeline: Pipeline) -> None:
    installed(pipeline, OLD_SHA, versioned=False)
    result = upgrade(pipeline)
    assert result.returncode == 0, result.stderr
    assert deployed(pipeline)["app_version"] == NEW_SHA
    assert draining(pipeline) == []


def test_more_draining_builds_than_the_chart_allows_fails_before_helm_upgrade(pipeline: Pipeline) -> None:
    installed(pipeline, OLD_SHA, [f"{n}" * 40 for n in range(3, 8)])
    result = upgrade(pipeline)
    assert result.returncode == 1
    assert "the chart allows 5" in result.stderr
    assert len(pipeline.history()) == 1


def test_unreadable_release_values_fail_without_upgrading(pipeline: Pipeline) -> None:
    installed(pipeline, OLD_SHA)
    pipeline.state["rules"] = [{"tool": "helm", "args": ["get", "values"], "exit": 1,
                                "stderr": f"Error: {HELM_UNREACHABLE}\n"}]
    result = upgrade(pipeline)
    assert result.returncode == 1
    assert "cannot read the values" in result.stderr
    assert len(pipeline.history()) == 1


# --- prune-drained-versions.sh ------------------------------------------------------------------------


def cluster(p: Pipeline, drainage: dict[str, str], polled: tuple[str, ...]) -> None:
    """NEW_SHA running and current; Temporal knows ``polled`` with ``drainage`` (draining / drained)."""
    p.state["kubectl"] = {
        "deployments": [deployment(NEW_SHA, 2)],
        "pod_snapshots": [[
            pod("new1", "newhash", NEW_SHA, ready=False),
            pod("new2", "newhash", NEW_SHA),
        ]],
    }
    p.state["temporal"] = {
        "worker_deployment": WORKER_DEPLOYMENT,
        "deployments": {WORKER_DEPLOYMENT: {"current": NEW_SHA, "versions": [*polled, NEW_SHA],
                                            "drainage": drainage}},
    }


def prune(p: Pipeline) -> Any:
    return p.run(
        "prune-drained-versions.sh",
        {"RELEASE": RELEASE, "NAMESPACE": NAMESPACE, "DEPLOYMENT": DEPLOYMENT, "CHART_DIR": str(CHART_DIR)},
    )


def test_prune_removes_drained_and_unknown_builds_only(pipeline: Pipeline) -> None:
    installed(pipeline, NEW_SHA, [OLDEST, OLDER, OLD_SHA])
    # OLDEST is unknown to Temporal, OLDER drained, OLD_SHA still has pinned runs.
    cluster(pipeline, {OLDER: "drained", OLD_SHA: "draining"}, polled=(OLDER, OLD_SHA))
    result = prune(pipeline)
    assert result.returncode == 0, result.stderr
    assert draining(pipeline) == [OLD_SHA]
    after = pipeline.deployed()
    assert after is not None and after["revision"] == 2
    # Everything else about the release is as it was (image, digest, values files).
    before = pipeline.history()[0]
    assert after["app_version"] == NEW_SHA and after["values"] == before["values"]
    assert set(after["set"]) == set(before["set"])


def test_prune_keeps_every_build_still_draining(pipeline: Pipeline) -> None:
    installed(pipeline, NEW_SHA, [OLDER, OLD_SHA])
    cluster(pipeline, {OLDER: "draining", OLD_SHA: "draining"}, polled=(OLDER, OLD_SHA))
    result = prune(pipeline)
    assert result.returncode == 0, result.stderr
    assert len(pipeline.history()) == 1
    assert draining(pipeline) == [OLDER, OLD_SHA]


def test_prune_with_nothing_draining_asks_nobody(pipeline: Pipeline) -> None:
    installed(pipeline, NEW_SHA)
    result = prune(pipeline)
    assert result.returncode == 0, result.stderr
    assert len(pipeline.history()) == 1
    assert pipeline.calls("kubectl") == []


def test_all_drained_leaves_an_empty_list(pipeline: Pipeline) -> None:
    installed(pipeline, NEW_SHA, [OLD_SHA])
    cluster(pipeline, {OLD_SHA: "drained"}, polled=(OLD_SHA,))
    result = prune(pipeline)
    assert result.returncode == 0, result.stderr
    assert len(pipeline.history()) == 2 and draining(pipeline) == []


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"exit": 4, "stderr": "✗ Temporal unreachable\ncommand terminated with exit code 4\n"}, "status failed"),
        ({"exit": 0, "stdout": "Traceback (most recent call last):\n"}, "unexpected output"),
        ({"exit": 0, "stdout": '{"deployment": "alga-temporal-worker"}\n'}, "unexpected output"),
    ],
    ids=["temporal-unreachable", "not-json", "no-versions"],
)
def test_a_failed_status_prunes_nothing_and_fails(pipeline: Pipeline, rule: dict[str, Any], message: str) -> None:
    installed(pipeline, NEW_SHA, [OLD_SHA])
    cluster(pipeline, {OLD_SHA: "drained"}, polled=(OLD_SHA,))
    pipeline.state["rules"] = [{"tool": "kubectl", "args": ["status", "--json"], **rule}]
    result = prune(pipeline)
    assert result.returncode != 0
    assert message in result.stderr
    assert len(pipeline.history()) == 1 and draining(pipeline) == [OLD_SHA]


def test_no_ready_pod_prunes_nothing_and_fails(pipeline: Pipeline) -> None:
    installed(pipeline, NEW_SHA, [OLD_SHA])
    cluster(pipeline, {OLD_SHA: "drained"}, polled=(OLD_SHA,))
    pipeline.state["kubectl"]["pod_snapshots"] = [[pod("new1", "newhash", NEW_SHA, ready=False)]]
    result = prune(pipeline)
    assert result.returncode == 1
    assert "no ready pod" in result.stderr
    assert len(pipeline.history()) == 1


def test_a_failed_prune_upgrade_fails_the_step(pipeline: Pipeline) -> None:
    installed(pipeline, NEW_SHA, [OLD_SHA])
    cluster(pipeline, {OLD_SHA: "drained"}, polled=(OLD_SHA,))
    pipeline.state["helm"]["fail"] = {"upgrade": "context deadline exceeded"}
    result = prune(pipeline)
    assert result.returncode == 1
    assert "context deadline exceeded" in result.stderr

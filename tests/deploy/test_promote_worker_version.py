"""promote-worker-version.sh, executed: the pipeline step that makes a verified build the current version of
the worker's Temporal Worker Deployment (and, after a helm rollback, points current back).

The script runs for real (POSIX sh, lib.sh, jq) with the fakes of tests/deploy/fakes first on PATH: the fake
kubectl holds the Deployment and its pods (new ones next to terminating old ones) and answers `kubectl exec
<pod> -- alga-worker deployment set-current ...` and `... health-check --routed` the way the worker's CLI does
(src/alga_worker/cli/deployment.py; its real behaviour against a Temporal dev server is
tests/integration/test_worker_versioning.py). Tests assert the outcome (exit code, which version is current
afterwards, that the promoted build answered), never command strings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pipeline_support import (
    DEPLOYMENT,
    KUBECTL_FORBIDDEN,
    NAMESPACE,
    NEW_SHA,
    OLD_SHA,
    Pipeline,
    deployment,
    pod,
)

SCRIPT = "promote-worker-version.sh"
WORKER_DEPLOYMENT = "alga-temporal-worker"


@pytest.fixture
def pipeline(tmp_path: Path) -> Pipeline:
    return Pipeline(tmp_path)


def cluster(p: Pipeline, *, tag: str = NEW_SHA, new_ready: bool = True, versioned: bool = True,
            polled: tuple[str, ...] = (OLD_SHA, NEW_SHA), current: str | None = OLD_SHA) -> None:
    """Right after a rollout to ``tag``: its pods up (or not ready), the previous build's pods terminating;
    the Worker Deployment knows the versions that have polled, with ``current`` current."""
    other = OLD_SHA if tag == NEW_SHA else NEW_SHA
    p.state["kubectl"] = {
        "deployments": [deployment(tag, 2)],
        "pod_snapshots": [[
            pod("old1", "oldhash", other, ready=False, terminating=True),
            pod("new1", "newhash", tag, ready=new_ready),
            pod("new2", "newhash", tag, ready=new_ready),
        ]],
        "health_build_id": tag,  # what a health check pinned to a version is answered by
    }
    temporal: dict[str, Any] = {"deployments": {WORKER_DEPLOYMENT: {"current": current, "versions": list(polled)}}}
    if versioned:
        temporal["worker_deployment"] = WORKER_DEPLOYMENT
    p.state["temporal"] = temporal


def current(p: Pipeline) -> str | None:
    result: str | None = p.state["temporal"]["deployments"][WORKER_DEPLOYMENT]["current"]
    return result


def promote(p: Pipeline, build_id: str = NEW_SHA) -> Any:
    return p.run(SCRIPT, {"NAMESPACE": NAMESPACE, "DEPLOYMENT": DEPLOYMENT, "BUILD_ID": build_id})


def test_the_verified_build_becomes_current_and_answers_new_starts(pipeline: Pipeline) -> None:
    cluster(pipeline)
    result = promote(pipeline)
    assert result.returncode == 0, result.stderr
    assert current(pipeline) == NEW_SHA
    assert pipeline.state["temporal"]["deployments"][WORKER_DEPLOYMENT]["previous"] == OLD_SHA
    # Both commands ran in a new pod, never in the terminating one of the previous build.
    execs = pipeline.state["kubectl"]["execs"]
    assert execs and all("-newhash-" in e["pod"] for e in execs)


def test_rollback_points_current_back_at_the_rolled_back_build(pipeline: Pipeline) -> None:
    """After `helm rollback` the Deployment runs the old tag again; BUILD_ID empty takes it from there."""
    cluster(pipeline, tag=OLD_SHA, current=NEW_SHA)
    result = promote(pipeline, build_id="")
    assert result.returncode == 0, result.stderr
    assert current(pipeline) == OLD_SHA


def test_promoting_the_current_build_again_is_a_no_op(pipeline: Pipeline) -> None:
    cluster(pipeline, current=NEW_SHA)
    result = promote(pipeline)
    assert result.returncode == 0, result.stderr
    assert current(pipeline) == NEW_SHA


def test_versioning_off_is_nothing_to_promote(pipeline: Pipeline) -> None:
    cluster(pipeline, versioned=False)
    result = promote(pipeline)
    assert result.returncode == 0, result.stderr
    assert current(pipeline) == OLD_SHA
    assert "nothing to promote" in result.stderr


def test_a_build_that_never_polled_is_not_promoted(pipeline: Pipeline) -> None:
    """E.g. the pods run with another TEMPORAL_WORKER_DEPLOYMENT_NAME or BUILD_ID than the image tag."""
    cluster(pipeline, polled=(OLD_SHA,))
    result = promote(pipeline)
    assert result.returncode == 1
    assert current(pipeline) == OLD_SHA
    assert "could not make build" in result.stderr


def test_temporal_unreachable_fails_the_step(pipeline: Pipeline) -> None:
    cluster(pipeline)
    pipeline.state["rules"] = [{"tool": "kubectl", "args": ["exec", "set-current"], "exit": 4,
                                "stderr": "error: cannot reach Temporal at temporal-frontend:7233: "
                                          "RuntimeError\ncommand terminated with exit code 4\n"}]
    result = promote(pipeline)
    assert result.returncode == 1
    assert current(pipeline) == OLD_SHA


def test_new_starts_not_answered_by_the_promoted_build_fail_the_step(pipeline: Pipeline) -> None:
    """set-current succeeded, yet routed starts keep reaching another build: fail (the pipeline rolls back)."""
    cluster(pipeline)
    pipeline.state["rules"] = [{"tool": "kubectl", "args": ["health-check", "--routed"], "exit": 1, "times": 10,
                                "stderr": f"✗ answered by build {OLD_SHA}, expected {NEW_SHA}\n"
                                          "command terminated with exit code 1\n"}]
    result = promote(pipeline)
    assert result.returncode == 1
    assert "new starts are not answered" in result.stderr
    routed = [c for c in pipeline.calls("kubectl") if "--routed" in c]
    assert len(routed) == 3  # HEALTH_ATTEMPTS


def test_no_ready_pod_of_the_build_promotes_nothing(pipeline: Pipeline) -> None:
    cluster(pipeline, new_ready=False)
    result = promote(pipeline)
    assert result.returncode == 1
    assert current(pipeline) == OLD_SHA
    assert "no ready pod" in result.stderr


def test_kubectl_refused_fails_loudly(pipeline: Pipeline) -> None:
    cluster(pipeline)
    pipeline.state["kubectl"]["error"] = KUBECTL_FORBIDDEN
    result = promote(pipeline)
    assert result.returncode == 1
    assert current(pipeline) == OLD_SHA
    assert "cannot read deployment" in result.stderr


def test_missing_settings_are_refused(pipeline: Pipeline) -> None:
    cluster(pipeline)
    result = pipeline.run(SCRIPT, {"NAMESPACE": NAMESPACE})
    assert result.returncode == 1 and "DEPLOYMENT" in result.stderr
    result = pipeline.run(SCRIPT, {"NAMESPACE": NAMESPACE, "DEPLOYMENT": DEPLOYMENT, "PROMOTE_WAIT": "2m"})
    assert result.returncode == 1 and "PROMOTE_WAIT" in result.stderr
    assert current(pipeline) == OLD_SHA

"""Worker Versioning end to end on the dev server: pinned runs, promotion, rollback.

Two real workers (``build_worker``, real activities) join one Worker Deployment on one task queue
as versions A and B, as two image builds would during a rollout. A ``healthCheckWorkflow`` started
while A is current is held open at its activity (a gate around the real ``health_probe``); B is
made current with the operator CLI (`alga-worker deployment set-current`, what the pipeline's
promote step runs); the open run still completes on A, while a new start lands on B; `deployment
rollback` makes A current again and new starts land on A. Every workflow task of the pinned run is
checked in its history: completed by version A, with behaviour PINNED (the worker default, so this
holds for every workflow of the worker).

Also pinned down here, because the cutover depends on it: a run started on an *unversioned* worker
(as the TypeScript worker's runs are) moves to the current version at its next workflow task once a
current version is set on its task queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import VersioningBehavior
from temporalio.client import Client, WorkflowHandle
from tests.support.processes import cli
from tests.support.workers import Gate, activity_name

from alga_worker.activities.heartbeat import heartbeating
from alga_worker.config import Settings, load_settings
from alga_worker.models import WORKFLOW_TYPE_HEALTH_CHECK, HealthCheckResult
from alga_worker.runtime.worker import build_resources, build_worker

WAIT = 60.0  # seconds: bound on every wait below (each one ends on an event, never on a timer)
HELD = "held-"  # workflow id prefix of runs whose health_probe waits for the test's gate



@pytest.fixture
def deployment_env(worker_env: dict[str, str]) -> dict[str, str]:
    """The test's environment with versioning on: a Worker Deployment of its own."""
    return {**worker_env, "TEMPORAL_WORKER_DEPLOYMENT_NAME": f"alga-test-{uuid.uuid4().hex[:10]}"}


@contextlib.asynccontextmanager
async def running_worker(client: Client, settings: Settings, gate: Gate | None = None) -> AsyncIterator[None]:
    """The real worker (build_worker, real activities); with ``gate``, the real ``health_probe`` of runs
    whose id starts with ``HELD`` waits for ``gate.release`` first, so such a healthCheckWorkflow run stays
    open until the test lets it go (other runs, e.g. the CLI's health checks, pass straight through)."""
    resources = await build_resources(settings)
    activities = {activity_name(fn): fn for fn in resources.activities}
    if gate is not None:
        real = activities["health_probe"]

        @activity.defn(name="health_probe")
        async def gated_probe() -> HealthCheckResult:
            if activity.info().workflow_id.startswith(HELD):
                gate.calls += 1
                gate.entered.set()
                async with heartbeating(interval=0.2):
                    await gate.release.wait()
            result: HealthCheckResult = await real()
            return result

        activities["health_probe"] = gated_probe
    try:
        async with build_worker(client, settings, list(activities.values())):
            yield
    finally:
        await resources.aclose()


def version_settings(env: dict[str, str], build_id: str) -> Settings:
    return load_settings({**env, "BUILD_ID": build_id})


async def start_health_check(client: Client, task_queue: str, *,
                             held: bool = False) -> WorkflowHandle[Any, HealthCheckResult]:
    prefix = HELD if held else "versioning-"
    return await client.start_workflow(WORKFLOW_TYPE_HEALTH_CHECK, id=f"{prefix}{uuid.uuid4().hex[:10]}",
                                       task_queue=task_queue, result_type=HealthCheckResult)


async def completed_task_versions(handle: WorkflowHandle[Any, Any]) -> list[tuple[str, int]]:
    """(build id, versioning behaviour) of every completed workflow task, from the run's history."""
    found = []
    async for event in handle.fetch_history_events():
        if event.HasField("workflow_task_completed_event_attributes"):
            attrs = event.workflow_task_completed_event_attributes
            found.append((attrs.deployment_version.build_id, attrs.versioning_behavior))
    return found


async def current_version(env: dict[str, str]) -> tuple[str | None, dict[str, str]]:
    code, out, err = await cli(env, "deployment", "status", "--json")
    assert code == 0, err
    status = json.loads(out)
    return status["current"], {v["build_id"]: v["status"] for v in status["versions"]}


async def test_pinned_run_stays_on_its_version_while_new_starts_follow_current_and_rollback(
        client: Client, deployment_env: dict[str, str], task_queue: str) -> None:
    env = deployment_env
    gate_a = Gate()
    async with (running_worker(client, version_settings(env, "A"), gate_a),
                running_worker(client, version_settings(env, "B"))):
        # Version A is current: the state before a rollout.
        code, out, err = await cli(env, "deployment", "set-current", "A", "--wait", str(WAIT))
        assert code == 0, err
        assert "-> A" in out

        # Pre-promotion verification: a health check pinned to B is answered by B although A is
        # current; the same check routed as callers start it is answered by A, so it fails for B.
        code, out, err = await cli(env, "health-check", "--expect-build-id", "B")
        assert code == 0, err
        assert json.loads(out)["buildId"] == "B"
        code, _, err = await cli(env, "health-check", "--expect-build-id", "B", "--routed")
        assert code == 1 and "answered by build A, expected B" in err

        # A run starts on A and stays open inside its activity while B is made current.
        open_run = await start_health_check(client, task_queue, held=True)
        await asyncio.wait_for(gate_a.entered.wait(), WAIT)
        code, out, err = await cli(env, "deployment", "set-current", "B", "--wait", str(WAIT))
        assert code == 0, err
        assert "A -> B" in out
        # The open run goes on, and finishes, on A: its next workflow task goes to A, not to current B.
        gate_a.release.set()
        assert (await asyncio.wait_for(open_run.result(), WAIT)).build_id == "A"
        tasks = await completed_task_versions(open_run)
        assert len(tasks) >= 2, "a workflow task after B became current"
        assert tasks == [("A", VersioningBehavior.VERSIONING_BEHAVIOR_PINNED)] * len(tasks)
        info = (await open_run.describe()).raw_description.workflow_execution_info.versioning_info
        assert info.deployment_version.build_id == "A"
        assert info.behavior == VersioningBehavior.VERSIONING_BEHAVIOR_PINNED

        # New starts land on B: the pipeline's post-promotion check, and a plain start.
        assert (await current_version(env))[0] == "B"
        code, out, err = await cli(env, "health-check", "--expect-build-id", "B", "--routed")
        assert code == 0, err
        new_run = await start_health_check(client, task_queue)
        assert (await asyncio.wait_for(new_run.result(), WAIT)).build_id == "B"
        assert await completed_task_versions(new_run) == [("B", VersioningBehavior.VERSIONING_BEHAVIOR_PINNED)] * 2

        # Rollback: current goes back to the version that was current before, A.
        code, out, err = await cli(env, "deployment", "rollback", "--wait", str(WAIT))
        assert code == 0, err
        assert "B -> A" in out
        current, statuses = await current_version(env)
        assert current == "A"
        assert statuses["A"] == "current"
        assert statuses["B"] in {"draining", "drained"}
        after_rollback = await start_health_check(client, task_queue)
        assert (await asyncio.wait_for(after_rollback.result(), WAIT)).build_id == "A"

        # Idempotent: promoting the current version again changes nothing.
        code, out, err = await cli(env, "deployment", "set-current", "A")
        assert code == 0 and "already current" in out, err

        # The operator's view: both versions, A current.
        code, out, err = await cli(env, "deployment", "status")
        assert code == 0, err
        assert "current A" in out
        assert {line.split()[1] for line in out.splitlines() if line.startswith("│")} >= {"A", "B"}


async def test_a_current_version_takes_over_unversioned_open_runs(
        client: Client, deployment_env: dict[str, str], worker_env: dict[str, str], task_queue: str) -> None:
    """What the cutover must respect: an open run of an unversioned worker on the same task queue (the
    TypeScript worker's runs) is moved to the current version at its next workflow task, and so
    replays on that version's code. The first set-current on a shared queue must wait for them."""
    gate = Gate()
    unversioned = load_settings({**worker_env, "BUILD_ID": "unversioned"})
    assert unversioned.worker_deployment_version is None
    async with running_worker(client, unversioned, gate):
        run = await start_health_check(client, task_queue, held=True)
        await asyncio.wait_for(gate.entered.wait(), WAIT)
        async with running_worker(client, version_settings(deployment_env, "B")):
            code, _, err = await cli(deployment_env, "deployment", "set-current", "B", "--wait", str(WAIT))
            assert code == 0, err
            gate.release.set()
            result = await asyncio.wait_for(run.result(), WAIT)
    assert result.build_id == "unversioned"  # the activity ran where it had been dispatched...
    tasks = await completed_task_versions(run)
    assert tasks[0][0] == "" and tasks[-1][0] == "B"  # ...but the run's last workflow task ran on B


async def test_deployment_commands_exit_codes(deployment_env: dict[str, str], worker_env: dict[str, str]) -> None:
    # Versioning off: 8, which the promote step reads as "nothing to promote".
    for args in (("set-current", "abc"), ("rollback",), ("status",)):
        code, _, err = await cli(worker_env, "deployment", *args)
        assert code == 8, (args, err)
        assert "TEMPORAL_WORKER_DEPLOYMENT_NAME" in err
    # A deployment no worker has polled: 6 (not found), after the bounded wait.
    code, _, err = await cli(deployment_env, "deployment", "status")
    assert code == 6 and "not found" in err
    code, _, err = await cli(deployment_env, "deployment", "set-current", "never-polled", "--wait", "1")
    assert code == 6 and "never-polled" in err

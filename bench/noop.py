"""The ceiling's workload: a workflow that runs one activity that does nothing.

Kept in a module of its own with nothing but temporalio imports, because the workflow sandbox
re-imports a workflow's module for each run: whatever this module costs to import, every no-op run
would pay, and the ceiling is meant to be the stack's cost of one workflow with one activity.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow

NOOP_WORKFLOW = "benchNoopWorkflow"
NOOP_ACTIVITY = "bench_noop"


@activity.defn(name=NOOP_ACTIVITY)
async def noop_activity() -> None:
    """Nothing: what remains is the SDK's and the server's cost of one activity."""


@workflow.defn(name=NOOP_WORKFLOW, sandboxed=True)
class NoopWorkflow:
    """One activity, then done: the same shape of Temporal work as the smallest provisioning."""

    @workflow.run
    async def run(self) -> None:
        await workflow.execute_activity(noop_activity, start_to_close_timeout=timedelta(seconds=60))

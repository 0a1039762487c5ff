"""Committed histories replay against today's workflow code: a nondeterministic edit fails CI.

Recorded with `python -m tests.support.record_histories`. If this fails after a workflow change, the
change would break executions in flight during a rollout: gate it with ``workflow.patched()``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.common import RawValue
from temporalio.worker import Replayer
from temporalio.workflow import NondeterminismError

from alga_worker.converter import DATA_CONVERTER
from alga_worker.runtime.worker import SANDBOX
from alga_worker.workflows import WORKFLOWS
from alga_worker.workflows.strict_start import StrictStartInterceptor
from alga_worker.workflows.tenant_creation import TenantCreationWorkflow

HISTORIES = Path(__file__).parent / "histories"


def _load(name: str) -> WorkflowHistory:
    return WorkflowHistory.from_json(name, (HISTORIES / f"{name}.json").read_text())


# Every committed history: the pre-checkout set, the checkout run, and one run of each later workflow.
@pytest.mark.parametrize("name", sorted(p.stem for p in HISTORIES.glob("*.json")))
async def test_committed_history_replays(name: str) -> None:
    replayer = Replayer(workflows=list(WORKFLOWS), data_converter=DATA_CONVERTER, workflow_runner=SANDBOX,
                        interceptors=[StrictStartInterceptor()])
    await replayer.replay_workflow(_load(name))


@workflow.defn(name="tenantCreationWorkflow")
class _EditedWithATimer(TenantCreationWorkflow):
    """The same workflow with one extra timer before it starts: not replay-compatible."""

    @workflow.run
    async def run(self, request: RawValue) -> Any:
        await asyncio.sleep(1)
        return await super().run(request)


async def test_a_nondeterministic_edit_is_caught() -> None:
    replayer = Replayer(workflows=[_EditedWithATimer], data_converter=DATA_CONVERTER, workflow_runner=SANDBOX,
                        interceptors=[StrictStartInterceptor()])
    with pytest.raises(NondeterminismError):
        await replayer.replay_workflow(_load("tenant_creation_completed"))

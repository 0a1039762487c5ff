"""Tenant creation's outcome as metrics: provisioned, failed by reason, and how long it took.

A worker interceptor rather than code in the workflow: it sees every way a run can end, including the
ones the workflow never reaches (a start with the wrong number of arguments is refused by
:mod:`strict_start`, inside this interceptor), and the workflow keeps telling only its own story.

Recorded through ``workflow.metric_meter()``, which records nothing while a run is replayed: a run
counted once is never counted again when a worker picks it up from history. Durations use the run's
own clock (start time and ``workflow.now()`` come from history), so they are deterministic too.
"""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio import workflow
from temporalio.worker import (
    ExecuteWorkflowInput,
    Interceptor,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
)

from alga_worker.models import WORKFLOW_TYPE_TENANT_CREATION
from alga_worker.runtime import metrics

# Workflow types whose end is a tenant provisioned (or not).
PROVISIONING_WORKFLOW_TYPES = frozenset({WORKFLOW_TYPE_TENANT_CREATION})


class _ProvisioningOutcomeInbound(WorkflowInboundInterceptor):
    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        if workflow.info().workflow_type not in PROVISIONING_WORKFLOW_TYPES:
            return await super().execute_workflow(input)
        try:
            result = await super().execute_workflow(input)
        except asyncio.CancelledError:
            self._record("failed", "cancelled")
            raise
        except Exception as err:
            self._record("failed", metrics.failure_reason(err))
            raise
        self._record("succeeded", None)
        return result

    @staticmethod
    def _record(outcome: str, reason: str | None) -> None:
        meter = workflow.metric_meter()
        if reason is None:
            metrics.record(metrics.TENANTS_PROVISIONED, meter=meter)
        else:
            metrics.record(metrics.TENANTS_FAILED, meter=meter, reason=reason)
        elapsed = (workflow.now() - workflow.info().start_time).total_seconds()
        metrics.record(metrics.PROVISIONING_DURATION, max(elapsed, 0.0), meter=meter, outcome=outcome)


class ProvisioningMetricsInterceptor(Interceptor):
    """Registered on the worker, outermost: counts every tenant creation run's end exactly once."""

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor] | None:
        # The input names no workflow type: the class checks its run's own type.
        return _ProvisioningOutcomeInbound

"""``suspendTenantWorkflow`` and ``resumeTenantWorkflow``: Alga's tenant-wide suspension, on and off.

A suspended tenant (``tenants.suspended_at`` set) keeps its data and its users, but Alga stops all
background work for it: scheduled jobs, RMM and calendar ingestion, event-triggered workflows, API-key
authentication, public forms and tenant-scoped outbound email (``docs/lifecycle.md``). The original
worker set the flag only inside its deletion workflow; here the pair is its own, for operators
(``alga-worker tenant suspend|resume``) and the web app, and the deletion workflow reuses the same
activities.

Each run: the start argument is decoded strictly (:func:`alga_worker.workflows.wire.decode_start`;
anything malformed ends the run with ``ValidationError`` after its first workflow task), the run
carries the ``TenantId`` search attribute (when the namespace has it), then one activity
(``activities/tenant_suspension.py``) makes the change and its audit record in one transaction,
retried on database outages only. Idempotent: a second suspension or a resumption of an active tenant
succeeds with ``changed`` false and writes nothing. Refusals fail the run in the first attempt:
``TenantNotFoundError``, ``ValidationError`` (the management or master billing tenant),
``SchemaMismatchError`` (a database without Alga's suspension columns). The audit row's id is minted
here (``workflow.uuid4()``), so a retried activity recognises the change it already committed.
Deterministic code only; no side effects at import.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.common import RawValue

with workflow.unsafe.imports_passed_through():
    from alga_worker.activities.tenant_suspension import TenantSuspensionActivities
    from alga_worker.models import (
        WORKFLOW_TYPE_RESUME_TENANT,
        WORKFLOW_TYPE_SUSPEND_TENANT,
        ResumeTenantRequest,
        SuspendTenantRequest,
        TenantSuspensionChange,
        TenantSuspensionResult,
    )
    from alga_worker.workflows.policies import ACTIVITY_TIMEOUT, DB_RETRY, HEARTBEAT_TIMEOUT
    from alga_worker.workflows.run_marks import mark_run, worker_capabilities
    from alga_worker.workflows.wire import decode_start


def _change(req: SuspendTenantRequest | ResumeTenantRequest) -> TenantSuspensionChange:
    return TenantSuspensionChange(
        tenant_id=req.tenant_id, reason_code=req.reason_code, reason=req.reason, triggered_by=req.triggered_by,
        triggered_by_email=req.triggered_by_email, log_id=workflow.uuid4(), workflow_id=workflow.info().workflow_id,
    )


@workflow.defn(name=WORKFLOW_TYPE_SUSPEND_TENANT)
class SuspendTenantWorkflow:
    """Suspend a tenant (``suspended_at = now()``, ``suspended_reason = reasonCode``), recorded with
    who and why; an already suspended tenant keeps its suspension (``changed`` false)."""

    @workflow.run
    async def run(self, request: RawValue) -> TenantSuspensionResult:
        req = decode_start(request, SuspendTenantRequest, "suspend tenant")
        mark_run(await worker_capabilities(), tenant_id=req.tenant_id)
        result: TenantSuspensionResult = await workflow.execute_activity_method(
            TenantSuspensionActivities.suspend_tenant, _change(req),
            start_to_close_timeout=ACTIVITY_TIMEOUT, heartbeat_timeout=HEARTBEAT_TIMEOUT, retry_policy=DB_RETRY,
        )
        workflow.logger.info("tenant suspended" if result.changed else "tenant already suspended",
                             extra={"tenant_id": str(req.tenant_id), "changed": result.changed})
        return result


@workflow.defn(name=WORKFLOW_TYPE_RESUME_TENANT)
class ResumeTenantWorkflow:
    """Lift a tenant's suspension of ``reasonCode`` (both columns cleared), recorded with who and why;
    a tenant that is not suspended, or is suspended with another code, is left as it is
    (``changed`` false, ``suspended`` says which)."""

    @workflow.run
    async def run(self, request: RawValue) -> TenantSuspensionResult:
        req = decode_start(request, ResumeTenantRequest, "resume tenant")
        mark_run(await worker_capabilities(), tenant_id=req.tenant_id)
        result: TenantSuspensionResult = await workflow.execute_activity_method(
            TenantSuspensionActivities.resume_tenant, _change(req),
            start_to_close_timeout=ACTIVITY_TIMEOUT, heartbeat_timeout=HEARTBEAT_TIMEOUT, retry_policy=DB_RETRY,
        )
        workflow.logger.info("tenant resumed" if result.changed else "tenant not resumed: no such suspension",
                             extra={"tenant_id": str(req.tenant_id), "changed": result.changed,
                                    "suspended": result.suspended})
        return result

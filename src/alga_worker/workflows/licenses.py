"""``updateTenantLicenseCountWorkflow``: set one tenant's licence limit (reference 3.10).

The TypeScript worker registered the licence activities but no workflow ran them; this workflow is the
durable way to apply a licence change (from a Stripe event, or ``alga-worker tenant licenses --set``):
the start argument is decoded strictly (``licenseCount`` ``"5"`` or ``0`` ends the run with a
``ValidationError``), then ``update_license_count`` does the work in one transaction, retried on
database outages only. An unknown tenant (``TenantNotFoundError``) or the management tenant
(``ValidationError``) fails the run in the first attempt. A repeated ``eventId`` is a success with
``changed`` false. The run carries the ``TenantId`` search attribute (when the namespace has it).
Deterministic code only; no side effects at import.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.common import RawValue

with workflow.unsafe.imports_passed_through():
    from alga_worker.activities.licenses import LicenseActivities
    from alga_worker.models import WORKFLOW_TYPE_UPDATE_LICENSE_COUNT, LicenseCountResult, UpdateLicenseCountRequest
    from alga_worker.workflows.policies import ACTIVITY_TIMEOUT, DB_RETRY, HEARTBEAT_TIMEOUT
    from alga_worker.workflows.run_marks import mark_run, worker_capabilities
    from alga_worker.workflows.wire import decode_start

# Runs started before search attributes were set on licence changes replay without the lookup.
MARK_PATCH = "search-attributes-v1"


@workflow.defn(name=WORKFLOW_TYPE_UPDATE_LICENSE_COUNT)
class UpdateTenantLicenseCountWorkflow:
    @workflow.run
    async def run(self, request: RawValue) -> LicenseCountResult:
        req = decode_start(request, UpdateLicenseCountRequest, "licence count")
        if workflow.patched(MARK_PATCH):
            mark_run(await worker_capabilities(), tenant_id=req.tenant_id)
        result: LicenseCountResult = await workflow.execute_activity_method(
            LicenseActivities.update_license_count, req,
            start_to_close_timeout=ACTIVITY_TIMEOUT, heartbeat_timeout=HEARTBEAT_TIMEOUT, retry_policy=DB_RETRY,
        )
        workflow.logger.info("licence count applied", extra={"tenant_id": str(req.tenant_id),
                                                             "changed": result.changed})
        return result

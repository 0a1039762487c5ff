"""``tenantExportWorkflow``: every row of one tenant as gzip JSON Lines plus a manifest (issue 13).

The original's input (``tenantId``, ``requestedBy``, ``reason``, ``urlExpiresIn``) and result names
(``success``, ``exportId``, ``tenantId``, ``tenantName``, ``status``, ``s3Key``, ``fileSizeBytes``,
``tableCount``, ``recordCount``), on this worker's mechanisms: the start argument is decoded strictly
(``workflows/wire.py``: a malformed start ends the run with ``ValidationError``, nothing written); the
export id is ``exportId`` when given, else minted with ``workflow.uuid4()`` (so a retried activity
rewrites the same keys); the run carries ``TenantId``; one activity, ``export_tenant_data``
(``activities/tenant_export.py``), does the work in one database snapshot and is what
``tenantDeletionWorkflow`` runs as its first step. Unlike the original, a failure fails the run with the
activity's typed error (``TenantNotFoundError``, ``ConfigurationError``) instead of ``success: false``.

Queries ``getState`` and the original's ``getExportState`` return the same state. Deterministic code
only; no side effects at import.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RawValue, RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from alga_worker import errors
    from alga_worker.activities.tenant_export import TenantExportActivities
    from alga_worker.models import (
        WORKFLOW_TYPE_TENANT_EXPORT,
        TenantExportInput,
        TenantExportOutcome,
        TenantExportRequest,
        TenantExportResult,
        TenantExportState,
        TenantExportStatus,
        TenantExportStep,
    )
    from alga_worker.workflows.policies import HEARTBEAT_TIMEOUT
    from alga_worker.workflows.run_marks import mark_run, worker_capabilities
    from alga_worker.workflows.wire import decode_start

# A big tenant takes a while; the heartbeat (every 2 s) is what notices a dead worker.
EXPORT_TIMEOUT = timedelta(hours=4)
EXPORT_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5), backoff_coefficient=2.0, maximum_interval=timedelta(minutes=2),
    maximum_attempts=5, non_retryable_error_types=list(errors.NON_RETRYABLE_TYPES),
)

# A workflow that runs ``export_tenant_data`` (tenantDeletionWorkflow) uses these three too:
# start_to_close_timeout=EXPORT_TIMEOUT, heartbeat_timeout=HEARTBEAT_TIMEOUT, retry_policy=EXPORT_RETRY.


@workflow.defn(name=WORKFLOW_TYPE_TENANT_EXPORT)
class TenantExportWorkflow:
    def __init__(self) -> None:
        self._state: TenantExportState | None = None

    @workflow.query(name="getState")
    def get_state(self) -> TenantExportState | None:
        """None only while the start argument has not been decoded (or was refused)."""
        return self._state

    @workflow.query(name="getExportState")
    def get_export_state(self) -> TenantExportState | None:
        """The original's query name, same answer."""
        return self._state

    def _update(self, **changes: object) -> None:
        assert self._state is not None
        self._state = self._state.model_copy(update=changes)

    @workflow.run
    async def run(self, request: RawValue) -> TenantExportResult:
        req = decode_start(request, TenantExportRequest, "tenant export")
        export_id = req.export_id or workflow.uuid4()
        self._state = TenantExportState(step=TenantExportStep.INITIALIZING, status=TenantExportStatus.PENDING,
                                        export_id=export_id, tenant_id=req.tenant_id, started_at=workflow.now())
        mark_run(await worker_capabilities(), tenant_id=req.tenant_id)
        self._update(step=TenantExportStep.COLLECTING_DATA, status=TenantExportStatus.IN_PROGRESS)
        try:
            outcome: TenantExportOutcome = await workflow.execute_activity_method(
                TenantExportActivities.export_tenant_data,
                TenantExportInput(tenant_id=req.tenant_id, export_id=export_id, requested_by=req.requested_by,
                                  reason=req.reason, requested_at=self._state.started_at),
                start_to_close_timeout=EXPORT_TIMEOUT, heartbeat_timeout=HEARTBEAT_TIMEOUT, retry_policy=EXPORT_RETRY,
            )
        except ActivityError as err:
            cause = err.cause
            self._update(step=TenantExportStep.FAILED, status=TenantExportStatus.FAILED, completed_at=workflow.now(),
                         error=str(cause or err),
                         error_type=cause.type if isinstance(cause, ApplicationError) else type(cause).__name__)
            raise
        self._update(step=TenantExportStep.COMPLETED, status=TenantExportStatus.COMPLETED,
                     completed_at=workflow.now(), tenant_name=outcome.tenant_name, bucket=outcome.bucket,
                     s3_key=outcome.manifest_key, location=outcome.location,
                     file_size_bytes=outcome.file_size_bytes, table_count=outcome.table_count,
                     record_count=outcome.record_count, tables=outcome.tables)
        workflow.logger.info("tenant export written", extra={"tenant_id": str(req.tenant_id),
                                                             "export_id": str(export_id),
                                                             "tables": outcome.table_count,
                                                             "rows": outcome.record_count})
        return TenantExportResult(**dict(outcome), s3_key=outcome.manifest_key)

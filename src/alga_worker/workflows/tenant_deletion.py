"""``tenantDeletionWorkflow``: a tenant's staged, reversible end, then every row removed (issue 13).

The original's type name, input (``tenantId``, ``triggerSource``, ``triggeredBy``,
``subscriptionExternalId``, ``reason``), result (``success``, ``deletionId``, ``tenantId``, ``status``,
``deletedAt``, ``error``), signals ``confirmDeletion`` / ``rollbackDeletion`` and state (``step``,
``status`` with the original's values; query ``getState``, also under the original's name
``getDeletionState``). The sequence (docs/lifecycle.md "Deletion"):

1. validate (strict input; unknown tenant: ``TenantNotFoundError``; the management or master billing
   tenant, or a tenant another deletion is working on: ``ValidationError``; nothing written);
2. export the tenant's data (the export activity, same timeouts as ``tenantExportWorkflow``); a failed
   export fails the run before anything of the tenant changed: never a deletion without an export;
3. record the pending deletion (Alga's ``pending_tenant_deletions``, status ``pending``);
4. deactivate every active user (their ids stored in that row, so a rollback restores exactly them);
5. suspend the tenant (the suspension activity, reason code ``tenant_cancelled``);
   then three non-fatal side steps, each with its outcome in state ``outcomes`` (done, skipped, failed):
   ``client_tag`` (the customer's client in the management tenant tagged ``Canceled``; skipped without
   ``MANAGEMENT_TENANT_ID``), ``stripe_subscription`` (``subscriptionExternalId`` set to cancel at
   period end, marked with the deletion; skipped without one, without ``STRIPE_SECRET_KEY``, or when
   Stripe triggered the deletion), ``cancellation_email`` (``tenant_cancelled`` to ``tenants.email``, as
   the original only for ``nineminds_extension`` deletions);
6. collect statistics (rows per table), status ``awaiting_confirmation``;
7. wait, on durable timers, for a ``confirmDeletion`` signal AND the grace period
   (``gracePeriodSeconds``, default 30 days from step 3; ``30_days``/``90_days`` confirmations put the
   deletion that long after the confirmation). No confirmation: the run waits, deleting nothing. A
   ``rollbackDeletion`` signal before the deletion reactivates the users, resumes the tenant, removes
   this run's ``Canceled`` tag, restores the subscription (prior ``cancel_at_period_end``, the
   deletion's metadata removed), marks the
   record ``rolled_back`` and ends the run with status ``rolled_back``;
8. the batched deletion (``delete_tenant_data``: children first, bounded transactions, survives a
   worker kill), then ``deleted``.

Unlike the original, no timeout deletes an unconfirmed tenant, and a failure fails the run with the
activity's typed error (the record's status ``failed``, ``error`` set). Search attributes ``TenantId``
and ``DeletionId``. Deterministic code only; no side effects at import.
"""

from __future__ import annotations

import contextlib
import json
from datetime import datetime, timedelta
from typing import Any, TypeVar

from pydantic import ValidationError as PydanticValidationError
from temporalio import workflow
from temporalio.common import RawValue, RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from alga_worker import errors, search_attributes
    from alga_worker.activities.stripe import StripeActivities
    from alga_worker.activities.tenant_cancellation import TenantCancellationActivities
    from alga_worker.activities.tenant_deletion import TenantDeletionActivities
    from alga_worker.activities.tenant_export import TenantExportActivities
    from alga_worker.activities.tenant_suspension import TenantSuspensionActivities
    from alga_worker.models import (
        DEFAULT_DELETION_GRACE_SECONDS,
        DELETION_SIDE_STEPS,
        WORKFLOW_TYPE_TENANT_DELETION,
        CancelledTagInput,
        CancelledTagResult,
        ConfirmationType,
        ConfirmDeletionSignal,
        DeletionStatusUpdate,
        DeletionTarget,
        DeletionTriggerSource,
        EmailTemplate,
        OutcomeStatus,
        PendingDeletionRecord,
        RollbackDeletionSignal,
        SendEmailRequest,
        StepOutcome,
        SubscriptionCancellationInput,
        SubscriptionCancellationResult,
        TenantDataDeletion,
        TenantDeletionCheck,
        TenantDeletionRequest,
        TenantDeletionResult,
        TenantDeletionState,
        TenantDeletionStatus,
        TenantDeletionStep,
        TenantExportInput,
        TenantExportOutcome,
        TenantRowStats,
        TenantSuspensionChange,
        TenantSuspensionResult,
        UsersDeactivation,
        WorkerCapabilities,
        parse_wire,
    )
    from alga_worker.workflows.emailing import email_key, send_email
    from alga_worker.workflows.failures import describe_failure as _describe
    from alga_worker.workflows.policies import ACTIVITY_TIMEOUT, DB_RETRY, HEARTBEAT_TIMEOUT, SIDE_STEP_RETRY
    from alga_worker.workflows.run_marks import mark_run, worker_capabilities
    from alga_worker.workflows.tenant_export import EXPORT_RETRY, EXPORT_TIMEOUT
    from alga_worker.workflows.wire import decode_start

# The deletion is long (a big tenant) and must finish: retried until it does, unless refused.
DELETE_TIMEOUT = timedelta(hours=12)
DELETE_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                           maximum_interval=timedelta(minutes=1), maximum_attempts=0,
                           non_retryable_error_types=list(errors.NON_RETRYABLE_TYPES))
CONFIRMATION_DELAYS = {ConfirmationType.IMMEDIATE: timedelta(0), ConfirmationType.DAYS_30: timedelta(days=30),
                       ConfirmationType.DAYS_90: timedelta(days=90)}
SUSPENSION_REASON = "tenant deletion"
M = TypeVar("M", ConfirmDeletionSignal, RollbackDeletionSignal)


def _decode(model: type[M], args: tuple[Any, ...]) -> M:
    """A signal's one argument, as strictly as a start argument (the wire's JSON, camelCase only)."""
    if len(args) != 1:
        raise ValueError("a signal takes one argument")
    return parse_wire(model, json.dumps(args[0]).encode())


@workflow.defn(name=WORKFLOW_TYPE_TENANT_DELETION)
class TenantDeletionWorkflow:
    def __init__(self) -> None:
        self._state: TenantDeletionState | None = None
        self._confirm: ConfirmDeletionSignal | None = None
        self._rollback: RollbackDeletionSignal | None = None
        self._ignored = 0
        self._suspended_here = False
        self._caps = WorkerCapabilities()
        self._tag: CancelledTagInput | None = None  # set when this run added the Canceled mapping
        self._subscription: SubscriptionCancellationInput | None = None  # set when this run changed it

    # ---- handlers

    @workflow.query(name="getState")
    def get_state(self) -> TenantDeletionState | None:
        """None only while the start argument has not been decoded (or was refused)."""
        if self._state is None:
            return None
        return self._state.model_copy(update={"ignored_signals": self._ignored})

    @workflow.query(name="getDeletionState")
    def get_deletion_state(self) -> TenantDeletionState | None:
        """The original's query name, same answer."""
        return self.get_state()

    @workflow.signal(name="confirmDeletion")
    def confirm_deletion(self, *args: Any) -> None:
        """``{type, confirmedBy}``. A malformed confirmation is ignored (counted in ``ignoredSignals``):
        only a valid one may lead to a deletion. The first valid one counts."""
        try:
            signal = _decode(ConfirmDeletionSignal, args)
        except (PydanticValidationError, TypeError, ValueError):
            self._ignored += 1
            workflow.logger.warning("malformed confirmDeletion signal ignored")
            return
        if self._confirm is None:
            self._confirm = signal

    @workflow.signal(name="rollbackDeletion")
    def rollback_deletion(self, *args: Any) -> None:
        """``{reason, rolledBackBy}``. Any shape is a rollback (a malformed one with default values): a
        rollback must never be lost. Too late once the deletion has started (state keeps saying so)."""
        if self._rollback is not None:
            return
        try:
            self._rollback = _decode(RollbackDeletionSignal, args if args and args[0] else ({},))
        except (PydanticValidationError, TypeError, ValueError):
            self._rollback = RollbackDeletionSignal()

    @workflow.signal(name="rollback")
    def rollback(self, *args: Any) -> None:
        """``rollbackDeletion`` under the short name callers may know it by; the same handler."""
        self.rollback_deletion(*args)

    def _update(self, **changes: object) -> None:
        assert self._state is not None
        self._state = self._state.model_copy(update=changes)

    # ---- run

    @workflow.run
    async def run(self, request: RawValue) -> TenantDeletionResult:
        req = decode_start(request, TenantDeletionRequest, "tenant deletion")
        deletion_id = workflow.uuid4()
        info = workflow.info()
        self._state = TenantDeletionState(step=TenantDeletionStep.INITIALIZING, status=TenantDeletionStatus.PENDING,
                                          deletion_id=deletion_id, tenant_id=req.tenant_id,
                                          trigger_source=req.trigger_source,
                                          outcomes={name: StepOutcome() for name in DELETION_SIDE_STEPS})
        caps = await worker_capabilities()
        self._caps = caps
        mark_run(caps, tenant_id=req.tenant_id)
        if search_attributes.DELETION_ID.name in caps.search_attributes:
            workflow.upsert_search_attributes([search_attributes.DELETION_ID.value_set(str(deletion_id))])
        target = DeletionTarget(tenant_id=req.tenant_id, deletion_id=deletion_id, workflow_id=info.workflow_id)
        recorded = False
        try:
            self._update(step=TenantDeletionStep.VALIDATING_TENANT)
            check: TenantDeletionCheck = await self._db(TenantDeletionActivities.validate_tenant_deletion, target)
            self._update(tenant_name=check.tenant_name, step=TenantDeletionStep.EXPORTING_DATA)
            export = await self._export(req, deletion_id)

            self._update(step=TenantDeletionStep.RECORDING_PENDING_DELETION)
            grace = timedelta(seconds=DEFAULT_DELETION_GRACE_SECONDS if req.grace_period_seconds is None
                              else req.grace_period_seconds)
            grace_ends = workflow.now() + grace
            await self._db(TenantDeletionActivities.record_pending_deletion, PendingDeletionRecord(
                deletion_id=deletion_id, tenant_id=req.tenant_id, trigger_source=req.trigger_source,
                triggered_by=req.triggered_by, subscription_external_id=req.subscription_external_id,
                workflow_id=info.workflow_id, workflow_run_id=info.first_execution_run_id,
                scheduled_deletion_date=grace_ends,
                export={"exportId": str(export.export_id), "bucket": export.bucket, "s3Key": export.manifest_key,
                        "location": export.location, "fileSizeBytes": export.file_size_bytes}))
            recorded = True
            self._update(grace_period_ends_at=grace_ends, deletion_scheduled_for=grace_ends)

            self._update(step=TenantDeletionStep.DEACTIVATING_USERS)
            users: UsersDeactivation = await self._db(TenantDeletionActivities.deactivate_tenant_users, target)
            self._update(deactivated_user_count=len(users.user_ids), step=TenantDeletionStep.SUSPENDING_TENANT_ACTIVITY)
            suspended: TenantSuspensionResult = await self._db(TenantSuspensionActivities.suspend_tenant,
                                                               self._suspension(req))
            # A suspension that was there before (an operator's) is not this run's to lift on rollback.
            self._suspended_here = suspended.changed

            await self._tag_client(target)
            await self._cancel_subscription(req, target)
            await self._send_cancellation_email(req, check, grace_ends)

            self._update(step=TenantDeletionStep.COLLECTING_STATS)
            stats: TenantRowStats = await self._db(TenantDeletionActivities.collect_tenant_stats, target)
            self._update(stats=stats)
            await self._status(deletion_id, TenantDeletionStatus.AWAITING_CONFIRMATION,
                               stats=stats.model_dump(mode="json", by_alias=True))
            self._update(step=TenantDeletionStep.AWAITING_CONFIRMATION,
                         status=TenantDeletionStatus.AWAITING_CONFIRMATION, waiting_for=self._waiting_for(grace_ends))

            def signalled() -> bool:
                return self._confirm is not None or self._rollback is not None
            if grace_ends > workflow.now():
                with contextlib.suppress(TimeoutError):  # the grace period ended first: say so, keep waiting
                    await workflow.wait_condition(signalled, timeout=grace_ends - workflow.now())
                self._update(waiting_for=self._waiting_for(grace_ends))
            await workflow.wait_condition(signalled)
            if self._rollback is not None:
                return await self._roll_back(req, target)
            confirm = self._confirm
            assert confirm is not None
            confirmed_at = workflow.now()
            scheduled = max(grace_ends, confirmed_at + CONFIRMATION_DELAYS[confirm.type])
            self._update(confirmation_type=confirm.type, confirmed_by=confirm.confirmed_by, confirmed_at=confirmed_at,
                         deletion_scheduled_for=scheduled, status=TenantDeletionStatus.CONFIRMED,
                         waiting_for=["grace_period"] if scheduled > confirmed_at else [])
            await self._status(deletion_id, TenantDeletionStatus.CONFIRMED, confirmation_type=confirm.type.value,
                               confirmed_by=confirm.confirmed_by, deletion_scheduled_for=scheduled)
            if scheduled > workflow.now():
                self._update(step=TenantDeletionStep.WAITING_FOR_DELETION_DATE, waiting_for=["grace_period"])
                with contextlib.suppress(TimeoutError):  # the deletion date came
                    await workflow.wait_condition(lambda: self._rollback is not None,
                                                  timeout=scheduled - workflow.now())
            if self._rollback is not None:
                return await self._roll_back(req, target)

            self._update(step=TenantDeletionStep.DELETING_TENANT_DATA, status=TenantDeletionStatus.DELETING,
                         waiting_for=[])
            await self._status(deletion_id, TenantDeletionStatus.DELETING)
            done: TenantDataDeletion = await workflow.execute_activity_method(
                TenantDeletionActivities.delete_tenant_data, target, start_to_close_timeout=DELETE_TIMEOUT,
                heartbeat_timeout=HEARTBEAT_TIMEOUT, retry_policy=DELETE_RETRY)
        except ActivityError as err:
            cause = err.cause
            message = str(cause or err)
            self._update(step=TenantDeletionStep.FAILED, status=TenantDeletionStatus.FAILED, error=message,
                         error_type=cause.type if isinstance(cause, ApplicationError) else type(cause).__name__,
                         waiting_for=[])
            if recorded:
                await self._status(deletion_id, TenantDeletionStatus.FAILED, error=message)
            raise
        deleted_at = workflow.now()
        self._update(step=TenantDeletionStep.COMPLETED, status=TenantDeletionStatus.DELETED,
                     deleted_tables=done.tables)
        workflow.logger.info("tenant deleted", extra={"tenant_id": str(req.tenant_id), "deletion_id": str(deletion_id),
                                                      "tables": len(done.tables)})
        return TenantDeletionResult(success=True, deletion_id=deletion_id, tenant_id=req.tenant_id,
                                    status=TenantDeletionStatus.DELETED, deleted_at=deleted_at)

    # ---- steps

    async def _db(self, method: Any, arg: Any) -> Any:
        return await workflow.execute_activity_method(
            method, arg, start_to_close_timeout=ACTIVITY_TIMEOUT, heartbeat_timeout=HEARTBEAT_TIMEOUT,
            retry_policy=DB_RETRY)

    async def _status(self, deletion_id: Any, status: TenantDeletionStatus, **fields: Any) -> None:
        await self._db(TenantDeletionActivities.update_deletion_status,
                       DeletionStatusUpdate(deletion_id=deletion_id, status=status, **fields))

    async def _export(self, req: TenantDeletionRequest, deletion_id: Any) -> TenantExportOutcome:
        export_id = workflow.uuid4()
        self._update(export_id=export_id)
        outcome: TenantExportOutcome = await workflow.execute_activity_method(
            TenantExportActivities.export_tenant_data,
            TenantExportInput(tenant_id=req.tenant_id, export_id=export_id,
                              requested_by=req.triggered_by or "tenant-deletion-workflow",
                              reason=f"pre-deletion export for deletion {deletion_id}", requested_at=workflow.now()),
            start_to_close_timeout=EXPORT_TIMEOUT, heartbeat_timeout=HEARTBEAT_TIMEOUT, retry_policy=EXPORT_RETRY)
        self._update(export_bucket=outcome.bucket, export_s3_key=outcome.manifest_key,
                     export_location=outcome.location, export_file_size_bytes=outcome.file_size_bytes)
        return outcome

    def _suspension(self, req: TenantDeletionRequest) -> TenantSuspensionChange:
        return TenantSuspensionChange(
            tenant_id=req.tenant_id, reason=req.reason or SUSPENSION_REASON, triggered_by=req.triggered_by,
            log_id=workflow.uuid4(), workflow_id=workflow.info().workflow_id)

    # ---- the non-fatal side steps (state ``outcomes``)

    def _set_outcome(self, name: str, outcome: StepOutcome) -> None:
        assert self._state is not None
        self._update(outcomes={**self._state.outcomes, name: outcome})

    async def _tag_client(self, target: DeletionTarget) -> None:
        if not self._caps.customer_tracking_enabled:
            self._set_outcome("client_tag", StepOutcome(status=OutcomeStatus.SKIPPED,
                                                        detail="MANAGEMENT_TENANT_ID is not set on this worker"))
            return
        self._update(step=TenantDeletionStep.TAGGING_CLIENT)
        tag = CancelledTagInput(tenant_id=target.tenant_id, deletion_id=target.deletion_id,
                                mapping_id=workflow.uuid4())
        try:
            tagged: CancelledTagResult = await workflow.execute_activity_method(
                TenantCancellationActivities.tag_client_cancelled, tag, start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=SIDE_STEP_RETRY)
        except ActivityError as err:
            self._set_outcome("client_tag", StepOutcome(status=OutcomeStatus.FAILED, detail=_describe(err)))
            workflow.logger.warning("client not tagged Canceled; the deletion goes on")
            return
        if tagged.added:
            self._tag = tag
        self._set_outcome("client_tag", tagged.outcome)

    async def _cancel_subscription(self, req: TenantDeletionRequest, target: DeletionTarget) -> None:
        skipped = None
        if req.subscription_external_id is None:
            skipped = "no subscriptionExternalId given"
        elif req.trigger_source in (DeletionTriggerSource.STRIPE_WEBHOOK, DeletionTriggerSource.APPLE_IAP_WEBHOOK):
            skipped = f"triggered by {req.trigger_source.value}: the subscription ended there already"
        elif not self._caps.stripe_enabled:
            skipped = "STRIPE_SECRET_KEY is not set on this worker"
        if skipped is not None or req.subscription_external_id is None:
            self._set_outcome("stripe_subscription", StepOutcome(status=OutcomeStatus.SKIPPED, detail=skipped))
            return
        self._update(step=TenantDeletionStep.CANCELING_STRIPE_SUBSCRIPTION)
        sub = SubscriptionCancellationInput(tenant_id=target.tenant_id, deletion_id=target.deletion_id,
                                            stripe_subscription_id=req.subscription_external_id)
        try:
            done: SubscriptionCancellationResult = await workflow.execute_activity_method(
                StripeActivities.cancel_subscription_for_deletion, sub, start_to_close_timeout=timedelta(seconds=30),
                retry_policy=SIDE_STEP_RETRY)
        except ActivityError as err:
            self._set_outcome("stripe_subscription", StepOutcome(status=OutcomeStatus.FAILED, detail=_describe(err)))
            workflow.logger.warning("stripe subscription not cancelled; the deletion goes on")
            return
        if done.changed:
            self._subscription = sub
        self._set_outcome("stripe_subscription", done.outcome)

    async def _send_cancellation_email(self, req: TenantDeletionRequest, check: TenantDeletionCheck,
                                       grace_ends: datetime) -> None:
        if req.trigger_source is not DeletionTriggerSource.NINEMINDS_EXTENSION:
            self._set_outcome("cancellation_email", StepOutcome(
                status=OutcomeStatus.SKIPPED, detail=f"not sent for {req.trigger_source.value} deletions (the "
                "customer was told when cancelling, or an operator acts)"))
            return
        if not check.tenant_email:
            self._set_outcome("cancellation_email", StepOutcome(status=OutcomeStatus.SKIPPED,
                                                                detail="the tenant has no email address"))
            return
        self._update(step=TenantDeletionStep.SENDING_CANCELLATION_EMAIL)
        try:
            email = SendEmailRequest(
                template=EmailTemplate.TENANT_CANCELLED, to=[check.tenant_email],
                variables={"tenant_name": check.tenant_name or str(req.tenant_id),
                           "data_retained_until": grace_ends.date().isoformat()},
                idempotency_key=email_key("cancellation"), tags={"tenant_id": str(req.tenant_id)})
        except PydanticValidationError:
            self._set_outcome("cancellation_email", StepOutcome(
                status=OutcomeStatus.FAILED, detail="ValidationError: the tenant's email address is not valid"))
            return
        try:
            sent = await send_email(email)
        except ActivityError as err:
            self._set_outcome("cancellation_email", StepOutcome(status=OutcomeStatus.FAILED, detail=_describe(err)))
            workflow.logger.warning("cancellation email not sent; the deletion goes on")
            return
        self._set_outcome("cancellation_email", StepOutcome(status=OutcomeStatus.DONE,
                                                            detail=f"{sent.provider}: {sent.destination}"))

    def _waiting_for(self, grace_ends: datetime) -> list[str]:
        return ["confirmation", "grace_period"] if grace_ends > workflow.now() else ["confirmation"]

    async def _roll_back(self, req: TenantDeletionRequest, target: DeletionTarget) -> TenantDeletionResult:
        rollback = self._rollback
        assert rollback is not None
        self._update(step=TenantDeletionStep.ROLLING_BACK, rollback_reason=rollback.reason,
                     rolled_back_by=rollback.rolled_back_by, waiting_for=[])
        await self._db(TenantDeletionActivities.reactivate_tenant_users, target)
        if self._tag is not None:
            await self._db(TenantCancellationActivities.untag_client_cancelled, self._tag)
            self._set_outcome("client_tag", StepOutcome(status=OutcomeStatus.REMOVED))
        if self._subscription is not None:
            try:
                restored: SubscriptionCancellationResult = await workflow.execute_activity_method(
                    StripeActivities.restore_subscription_after_rollback, self._subscription,
                    start_to_close_timeout=timedelta(seconds=30), retry_policy=SIDE_STEP_RETRY)
            except ActivityError as err:  # the rollback goes on; state says what to restore by hand
                self._set_outcome("stripe_subscription", StepOutcome(
                    status=OutcomeStatus.FAILED, detail=f"not restored: {_describe(err)}"))
            else:
                self._set_outcome("stripe_subscription", restored.outcome)
        resumed = False
        if self._suspended_here:
            result: TenantSuspensionResult = await self._db(TenantSuspensionActivities.resume_tenant,
                                                            self._suspension(req))
            resumed = result.changed
        await self._status(target.deletion_id, TenantDeletionStatus.ROLLED_BACK, rollback_reason=rollback.reason,
                           rolled_back_by=rollback.rolled_back_by)
        self._update(step=TenantDeletionStep.COMPLETED, status=TenantDeletionStatus.ROLLED_BACK)
        workflow.logger.info("tenant deletion rolled back", extra={"tenant_id": str(req.tenant_id),
                                                                   "resumed": resumed})
        return TenantDeletionResult(success=True, deletion_id=target.deletion_id, tenant_id=req.tenant_id,
                                    status=TenantDeletionStatus.ROLLED_BACK)

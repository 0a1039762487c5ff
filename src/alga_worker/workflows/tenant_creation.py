"""``tenantCreationWorkflow``: provision one Alga PSA tenant, then welcome its admin.

Deterministic code only: no I/O, clocks or randomness except through ``workflow.*``. The module is
re-imported inside the sandbox for every run, so it has no side effects at import and brings its
own packages in through ``imports_passed_through``.

Shape (two activities, on purpose: each activity costs Temporal about six state transitions, and the
server's CPU is what limits throughput):

1. validate the input here, before anything is written (non-retryable ``ValidationError``);
2. ``provision_tenant``: tenant, default client and location, settings, onboarding seeds and the admin
   user in one database transaction, with ids minted by this workflow so a retry finds its own rows;
3. ``send_welcome_email``: the sealed temporary password, deduplicated by an idempotency key.

Cancellation (signal ``cancel`` or a Temporal cancel request) is all or nothing for the customer:

- during provisioning it waits for the transaction to settle (a DELETE must never precede a late
  COMMIT), then removes what this run created;
- during the welcome email it cancels the email activity, in flight or waiting in retry backoff. If
  the activity stops before the provider has the message, nothing was sent and the tenant is removed;
  if the provider had already accepted it, the credentials are out: the tenant stays, the run
  completes, and state and result say ``cancelTooLate``. No run that ends cancelled has sent
  credentials.

Removal only ever touches a tenant this run created, proven in the deleting transaction by the
default client whose id this run minted; an adopted ``tenantId`` of someone else's tenant (or of the
management tenant) is refused with ``TenantConflictError`` before anything is written, and a cancel
then removes nothing. A failure after the tenant exists does *not* delete it: the 2026 lesson of the
original ("deleting a paying customer's tenant on a transient blip is worse").

The start argument is a ``RawValue`` decoded here (:mod:`alga_worker.workflows.wire`), so that any
malformed start ends the run with a typed ``ValidationError`` instead of a workflow-task retry loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RawValue, RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from alga_worker import errors
    from alga_worker.activities.notifications import NotificationActivities
    from alga_worker.activities.tenants import TenantActivities
    from alga_worker.models import (
        WORKFLOW_TYPE_TENANT_CREATION,
        CancelRequest,
        OutcomeStatus,
        ProvisionTenantInput,
        ProvisionTenantOutput,
        RemoveTenantInput,
        Step,
        StepOutcome,
        TenantCreationInput,
        TenantCreationResult,
        TenantCreationState,
        WelcomeEmailInput,
        WelcomeEmailOutput,
    )
    from alga_worker.workflows.wire import InputRefused, decode_input

PROVISION_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), backoff_coefficient=2.0, maximum_interval=timedelta(seconds=30),
    maximum_attempts=10, non_retryable_error_types=list(errors.NON_RETRYABLE_TYPES),
)
EMAIL_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2), backoff_coefficient=2.0, maximum_interval=timedelta(seconds=60),
    maximum_attempts=8, non_retryable_error_types=list(errors.NON_RETRYABLE_TYPES),
)
# Activities heartbeat every 2 s: a dead worker's attempt is retried elsewhere within this.
HEARTBEAT_TIMEOUT = timedelta(seconds=10)
CLEANUP_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30))

# Logical parts reported in getState; the provisioning activity fills the first four at once.
TENANT_PARTS = ("tenant", "onboarding_seeds", "admin_user", "tenant_settings")
_PART_TABLES = {
    "tenant": ("tenants", "clients", "client_locations", "tenant_companies"),
    "onboarding_seeds": ("roles", "permissions", "role_permissions", "tax_regions", "tax_rates"),
    "admin_user": ("users", "user_roles"),
    "tenant_settings": ("tenant_settings", "tenant_email_settings"),
}


class _Cancelled(Exception):
    """Internal: the cancel signal was seen between steps."""


@workflow.defn(name=WORKFLOW_TYPE_TENANT_CREATION)
class TenantCreationWorkflow:
    def __init__(self) -> None:
        self._state = TenantCreationState(
            outcomes={name: StepOutcome() for name in ("validation", *TENANT_PARTS, "welcome_email")}
        )
        self._cancel: CancelRequest | None = None
        # Set when provisioning starts: the ids this run minted are its proof of ownership.
        self._provisioning: ProvisionTenantInput | None = None

    # ---- handlers ----

    @workflow.query(name="getState")
    def get_state(self) -> TenantCreationState:
        return self._state

    @workflow.signal(name="cancel")
    def cancel(self, *args: Any) -> None:
        """Stop and remove what this run created (see the module docstring). Repeats are ignored.

        Any argument shape is a cancel: the optional ``{reason, cancelledBy}`` is used when it is
        valid and replaced by defaults otherwise, so a malformed signal can neither be lost nor fail
        the workflow task.
        """
        if self._cancel is not None:
            return
        try:
            self._cancel = CancelRequest.model_validate(args[0] if len(args) == 1 and args[0] else {})
        except ValidationError:
            self._cancel = CancelRequest()
        self._state.cancel_requested = True

    # ---- run ----

    @workflow.run
    async def run(self, request: RawValue) -> TenantCreationResult:
        try:
            return await self._create(request)
        except _Cancelled:
            assert self._cancel is not None
            await self._compensate()
            raise ApplicationError(
                f"tenant creation cancelled by {self._cancel.cancelled_by}: {self._cancel.reason}",
                {"reason": self._cancel.reason, "cancelledBy": self._cancel.cancelled_by,
                 "tenantId": self._state.tenant_id},
                type=errors.CANCELLED, non_retryable=True,
            ) from None
        except asyncio.CancelledError:
            # A Temporal cancel request: clean up, then let the execution end as Cancelled.
            self._state.cancel_requested = True
            await self._compensate()
            raise
        except Exception as err:
            self._state.step = Step.FAILED
            self._state.error = _describe(err)
            raise

    async def _create(self, request: RawValue) -> TenantCreationResult:
        info = workflow.info()
        self._advance(Step.VALIDATING, 5)
        req = self._validate(request)
        self._check_cancel()

        tenant_id = req.tenant_id or workflow.uuid4()
        self._state.tenant_id = str(tenant_id)
        binding = f"{info.workflow_id}/{info.run_id}/{tenant_id}"
        provision_input = ProvisionTenantInput(
            tenant_id=tenant_id, client_id=workflow.uuid4(), location_id=workflow.uuid4(),
            admin_user_id=workflow.uuid4(), tenant_name=req.tenant_name,
            client_name=req.effective_client_name, admin=req.admin_user,
            license_count=req.license_count, seal_binding=binding,
        )
        self._advance(Step.CREATING_TENANT, 10)
        self._provisioning = provision_input
        provisioned: ProvisionTenantOutput = await self._settled(workflow.start_activity_method(
            TenantActivities.provision_tenant, provision_input,
            start_to_close_timeout=timedelta(seconds=60), heartbeat_timeout=HEARTBEAT_TIMEOUT,
            retry_policy=PROVISION_RETRY,
        ), record=self._record_provisioned)
        self._advance(Step.CREATING_TENANT, 70)
        self._check_cancel()

        self._advance(Step.SENDING_WELCOME_EMAIL, 80)
        email = await self._send_welcome(req, provisioned, binding)
        if email is None:
            self._check_cancel()  # nothing was sent: a cancel still removes the tenant
        elif self._cancel is not None:
            self._cancel_too_late()

        self._advance(Step.COMPLETED, 100)
        return TenantCreationResult(
            success=True, tenant_id=str(tenant_id), client_id=str(provisioned.client_id),
            company_id=str(provisioned.client_id), admin_user_id=str(provisioned.admin_user_id),
            admin_email=req.admin_user.email, email_sent=email is not None,
            email_provider=email.provider if email else None,
            email_destination=email.destination if email else None,
            created_at=workflow.now(), outcomes=self._state.outcomes, cancel_too_late=self._state.cancel_too_late,
        )

    # ---- steps ----

    def _validate(self, request: RawValue) -> TenantCreationInput:
        try:
            req = decode_input(request, TenantCreationInput, "tenant creation")
        except InputRefused as refused:
            self._state.outcomes["validation"] = StepOutcome(
                status=OutcomeStatus.FAILED, detail=str(refused.error) + ": " + _problems_text(refused.problems)
            )
            raise refused.error from None
        self._state.outcomes["validation"] = StepOutcome(status=OutcomeStatus.DONE)
        return req

    def _record_provisioned(self, out: ProvisionTenantOutput) -> None:
        self._state.client_id = self._state.company_id = str(out.client_id)
        self._state.admin_user_id = str(out.admin_user_id)
        for part, tables in _PART_TABLES.items():
            self._state.outcomes[part] = StepOutcome(
                status=OutcomeStatus.DONE, detail=None if out.created else "already present (resumed)",
                rows={t: out.rows.get(t, 0) for t in tables},
            )

    async def _send_welcome(self, req: TenantCreationInput, provisioned: ProvisionTenantOutput,
                            binding: str) -> WelcomeEmailOutput | None:
        """Non-fatal: the tenant exists and works; a failed email is reported, not rolled back.

        A cancel (signal or request) while the email is pending cancels the activity and waits for it
        to settle: cancelled means nothing was sent and the cancel goes ahead; a result means the
        provider accepted the message first, and the caller turns the cancel into ``cancelTooLate``.
        """
        handle = workflow.start_activity_method(
            NotificationActivities.send_welcome_email,
            WelcomeEmailInput(
                tenant_id=provisioned.tenant_id, admin_user_id=provisioned.admin_user_id,
                tenant_name=req.tenant_name, client_name=req.effective_client_name, admin=req.admin_user,
                sealed_password=provisioned.sealed_password, seal_binding=binding,
            ),
            start_to_close_timeout=timedelta(seconds=60), heartbeat_timeout=HEARTBEAT_TIMEOUT,
            retry_policy=EMAIL_RETRY, cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        )
        cancel_signalled = asyncio.ensure_future(workflow.wait_condition(lambda: self._cancel is not None))
        cancel_requested = False
        try:
            await workflow.wait([handle, cancel_signalled], return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:  # a Temporal cancel request
            cancel_requested = self._state.cancel_requested = True
        cancel_signalled.cancel()
        if not _resolved(handle):
            handle.cancel()  # WAIT_CANCELLATION_COMPLETED: the await below sees how the activity ended
        try:
            sent: WelcomeEmailOutput = await handle
        except (ActivityError, asyncio.CancelledError) as err:
            if cancel_requested:
                raise asyncio.CancelledError from None
            self._check_cancel()  # nothing was sent: the signalled cancel goes ahead
            self._state.email_sent = False
            self._state.outcomes["welcome_email"] = StepOutcome(status=OutcomeStatus.FAILED, detail=_describe(err))
            workflow.logger.warning("welcome email failed", extra={"tenant_id": str(provisioned.tenant_id)})
            return None
        if cancel_requested:
            self._cancel_too_late()
        self._state.email_sent = True
        self._state.outcomes["welcome_email"] = StepOutcome(
            status=OutcomeStatus.DONE, detail=f"{sent.provider}: {sent.destination}"
        )
        return sent

    def _cancel_too_late(self) -> None:
        """The provider accepted the credentials before the cancel took effect: the tenant stays."""
        self._state.cancel_too_late = True
        self._state.cancel_requested = True
        who = self._cancel.cancelled_by if self._cancel is not None else "a cancel request"
        self._state.error = (f"cancel by {who} came too late: the welcome email with the admin's "
                             "credentials had been accepted by the provider, so the tenant was kept")
        workflow.logger.warning("cancel came too late; tenant kept", extra={"tenant_id": self._state.tenant_id})

    async def _compensate(self) -> None:
        """Remove what this run wrote. Runs after a cancel, once the step in flight has settled."""
        self._advance(Step.REMOVING_TENANT, self._state.progress)
        if self._provisioning is not None:
            removed = await workflow.execute_activity_method(
                TenantActivities.remove_tenant,
                RemoveTenantInput(tenant_id=self._provisioning.tenant_id, client_id=self._provisioning.client_id),
                start_to_close_timeout=timedelta(seconds=60), schedule_to_close_timeout=timedelta(minutes=15),
                heartbeat_timeout=HEARTBEAT_TIMEOUT, retry_policy=CLEANUP_RETRY,
            )
            if removed.not_owned:
                workflow.logger.warning("cancel removed nothing: the tenant was not created by this run",
                                        extra={"tenant_id": self._state.tenant_id})
            else:
                for part in TENANT_PARTS:
                    if self._state.outcomes[part].status is OutcomeStatus.DONE:
                        self._state.outcomes[part] = StepOutcome(
                            status=OutcomeStatus.REMOVED, rows=self._state.outcomes[part].rows
                        )
                workflow.logger.info("tenant removed after cancel",
                                     extra={"rows": sum(removed.rows_deleted.values())})
        for name, outcome in self._state.outcomes.items():
            if outcome.status is OutcomeStatus.PENDING:
                self._state.outcomes[name] = StepOutcome(status=OutcomeStatus.SKIPPED, detail="cancelled")
        self._advance(Step.CANCELLED, self._state.progress)
        assert self._cancel is not None or self._state.cancel_requested
        self._state.error = "cancelled" if self._cancel is None else f"Cancelled: {self._cancel.reason}"

    # ---- helpers ----

    async def _settled(self, handle: Any, record: Any = None) -> Any:
        """Await an activity so that a Temporal cancel cannot race it.

        The handle is shielded: on a cancel request the activity still finishes (its transaction
        commits or not) before compensation runs, so a DELETE can never precede a late COMMIT.
        ``record`` is called with the result either way, so getState reflects what was written.
        """
        try:
            result = await asyncio.shield(handle)
        except asyncio.CancelledError:
            with contextlib.suppress(ActivityError, asyncio.CancelledError):
                late = await handle
                if record is not None:
                    record(late)
            raise
        if record is not None:
            record(result)
        return result

    def _check_cancel(self) -> None:
        if self._cancel is not None:
            raise _Cancelled

    def _advance(self, step: Step, progress: int) -> None:
        self._state.step = step
        self._state.progress = max(self._state.progress, progress)


def _resolved(handle: Any) -> bool:
    """True once Temporal has told this worker how the activity ended, even if the handle has not yet
    run to pick the outcome up.

    Why not ``handle.done()``: when the activity's completion and the cancel arrive in the same
    workflow activation, the handle task has not run yet, and cancelling it then makes it raise a bare
    ``CancelledError`` *instead of the result* (the SDK's documented choice). A welcome email that the
    provider accepted would read as cancelled and its tenant would be removed. The SDK has no public
    accessor for this; the attribute is read defensively and the SDK version is pinned.
    """
    result = getattr(handle, "_result_fut", None)
    return bool(handle.done() or (result is not None and result.done()))


def _problems_text(problems: list[dict[str, str]]) -> str:
    return "; ".join(f"{p['field']}: {p['problem']}" for p in problems)


def _describe(err: BaseException) -> str:
    """The innermost message of an activity/application failure chain, for state and logs."""
    while isinstance(err, ActivityError) and err.cause is not None:
        err = err.cause
    kind = err.type if isinstance(err, ApplicationError) and err.type else type(err).__name__
    return f"{kind}: {err}"

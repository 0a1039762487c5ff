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

Cancellation (signal ``cancel`` or a Temporal cancel request) waits for the step in flight, then
removes every row this run created. A failure after the tenant exists does *not* delete it: the
2026 lesson of the original ("deleting a paying customer's tenant on a transient blip is worse").
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

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
        self._provision_started = False

    # ---- handlers ----

    @workflow.query(name="getState")
    def get_state(self) -> TenantCreationState:
        return self._state

    @workflow.signal(name="cancel")
    def cancel(self, request: Any = None) -> None:
        """Stop before the next step and remove what this run created. Repeated signals are ignored."""
        if self._cancel is not None:
            return
        try:
            self._cancel = CancelRequest.model_validate(request or {})
        except ValidationError:
            self._cancel = CancelRequest()
        self._state.cancel_requested = True

    # ---- run ----

    @workflow.run
    async def run(self, request: Any) -> TenantCreationResult:
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

    async def _create(self, request: Any) -> TenantCreationResult:
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
        self._provision_started = True
        provisioned: ProvisionTenantOutput = await self._settled(workflow.start_activity_method(
            TenantActivities.provision_tenant, provision_input,
            start_to_close_timeout=timedelta(seconds=60), heartbeat_timeout=HEARTBEAT_TIMEOUT,
            retry_policy=PROVISION_RETRY,
        ), record=self._record_provisioned)
        self._advance(Step.CREATING_TENANT, 70)
        self._check_cancel()

        self._advance(Step.SENDING_WELCOME_EMAIL, 80)
        email = await self._send_welcome(req, provisioned, binding)
        self._check_cancel()

        self._advance(Step.COMPLETED, 100)
        return TenantCreationResult(
            success=True, tenant_id=str(tenant_id), client_id=str(provisioned.client_id),
            company_id=str(provisioned.client_id), admin_user_id=str(provisioned.admin_user_id),
            admin_email=req.admin_user.email, email_sent=email is not None,
            email_provider=email.provider if email else None,
            email_destination=email.destination if email else None,
            created_at=workflow.now(), outcomes=self._state.outcomes,
        )

    # ---- steps ----

    def _validate(self, request: Any) -> TenantCreationInput:
        try:
            req = TenantCreationInput.model_validate(request)
        except ValidationError as err:
            problems = [
                {"field": ".".join(str(p) for p in e["loc"]) or "(input)", "problem": e["msg"]}
                for e in err.errors(include_input=False, include_url=False)
            ]
            self._state.outcomes["validation"] = StepOutcome(
                status=OutcomeStatus.FAILED, detail="; ".join(f"{p['field']}: {p['problem']}" for p in problems)
            )
            raise errors.validation_error("invalid tenant creation input", problems) from None
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
        """Non-fatal: the tenant exists and works; a failed email is reported, not rolled back."""
        try:
            sent: WelcomeEmailOutput = await self._settled(workflow.start_activity_method(
                NotificationActivities.send_welcome_email,
                WelcomeEmailInput(
                    tenant_id=provisioned.tenant_id, admin_user_id=provisioned.admin_user_id,
                    tenant_name=req.tenant_name, client_name=req.effective_client_name, admin=req.admin_user,
                    sealed_password=provisioned.sealed_password, seal_binding=binding,
                ),
                start_to_close_timeout=timedelta(seconds=60), heartbeat_timeout=HEARTBEAT_TIMEOUT,
                retry_policy=EMAIL_RETRY,
            ))
        except ActivityError as err:
            self._state.email_sent = False
            self._state.outcomes["welcome_email"] = StepOutcome(status=OutcomeStatus.FAILED,
                                                                detail=_describe(err))
            workflow.logger.warning("welcome email failed", extra={"tenant_id": str(provisioned.tenant_id)})
            return None
        self._state.email_sent = True
        self._state.outcomes["welcome_email"] = StepOutcome(
            status=OutcomeStatus.DONE, detail=f"{sent.provider}: {sent.destination}"
        )
        return sent

    async def _compensate(self) -> None:
        """Remove what this run wrote. Runs after a cancel, once the step in flight has settled."""
        self._advance(Step.REMOVING_TENANT, self._state.progress)
        if self._provision_started and self._state.tenant_id is not None:
            removed = await workflow.execute_activity_method(
                TenantActivities.remove_tenant, RemoveTenantInput(tenant_id=self._state.tenant_id),
                start_to_close_timeout=timedelta(seconds=60), schedule_to_close_timeout=timedelta(minutes=15),
                retry_policy=CLEANUP_RETRY,
            )
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


def _describe(err: BaseException) -> str:
    """The innermost message of an activity/application failure chain, for state and logs."""
    while isinstance(err, ActivityError) and err.cause is not None:
        err = err.cause
    kind = err.type if isinstance(err, ApplicationError) and err.type else type(err).__name__
    return f"{kind}: {err}"

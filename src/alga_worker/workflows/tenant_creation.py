"""``tenantCreationWorkflow``: provision one Alga PSA tenant, then welcome its admin.

Deterministic code only: no I/O, clocks or randomness except through ``workflow.*``. The module is
re-imported inside the sandbox for every run, so it has no side effects at import and brings its
own packages in through ``imports_passed_through``.

Shape (two activities, on purpose: each activity costs Temporal about six state transitions, and the
server's CPU is what limits throughput):

1. validate the input here, before anything is written (non-retryable ``ValidationError``);
2. ``provision_tenant``: tenant, default client and location, settings, onboarding seeds and the admin
   user in one database transaction, with ids minted by this workflow so a retry finds its own rows;
3. ``send_email`` (template ``tenant_welcome``), the one mailer every workflow uses: the sealed
   temporary password, deduplicated by an idempotency key per run and purpose. Runs that started
   before the one mailer existed keep ``send_welcome_email`` (``workflow.patched``), which renders
   the same template through the same code.

A run that fails after its input was accepted (a duplicate admin email, the database gone for longer
than the retries) notifies operators (``provisioning_failed`` to ``OPERATIONS_EMAIL``) when the
worker has that address: a paying customer without a tenant is something a person must see. Input
refused by validation is the caller's error and notifies nobody (a hostile caller cannot spam
operators). The notice is best effort: it never changes how the run ends.

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

    from alga_worker import errors, search_attributes
    from alga_worker.activities.notifications import NotificationActivities
    from alga_worker.activities.tenants import TenantActivities
    from alga_worker.models import (
        WORKFLOW_TYPE_TENANT_CREATION,
        CancelRequest,
        CheckoutStatus,
        CustomerTrackingInput,
        CustomerTrackingOutput,
        EmailTemplate,
        OutcomeStatus,
        ProvisionTenantInput,
        ProvisionTenantOutput,
        RemoveTenantInput,
        SendEmailRequest,
        SendEmailResult,
        Step,
        StepOutcome,
        StripeDetails,
        StripeDetailsInput,
        TagStripeSubscriptionInput,
        TenantCreationInput,
        TenantCreationResult,
        TenantCreationState,
        WelcomeEmailInput,
        WelcomeEmailOutput,
        WorkerCapabilities,
    )
    from alga_worker.workflows.checkout_reporting import CheckoutReporter
    from alga_worker.workflows.emailing import email_key
    from alga_worker.workflows.failures import describe_failure as _describe
    from alga_worker.workflows.handles import activity_resolved
    from alga_worker.workflows.policies import (
        CLEANUP_RETRY,
        DB_RETRY,
        EMAIL_RETRY,
        HEARTBEAT_TIMEOUT,
        SIDE_STEP_RETRY,
    )
    from alga_worker.workflows.run_marks import worker_capabilities
    from alga_worker.workflows.wire import InputRefused, decode_input

PROVISION_RETRY = DB_RETRY
# Runs started before checkout processing existed replay without its steps (workflow.patched).
CHECKOUT_PATCH = "checkout-processing-v1"
# Runs started before the one mailer send the welcome email with send_welcome_email (same template).
ONE_MAILER_PATCH = "one-mailer-v1"
# Runs started before operator notices fail without one.
OPERATIONS_NOTICE_PATCH = "operations-notice-v1"
# The operators' notice: a few tries, then the failure stands on its own (it is in Temporal anyway).
NOTICE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2), backoff_coefficient=2.0, maximum_interval=timedelta(seconds=30),
    maximum_attempts=5, non_retryable_error_types=list(errors.NON_RETRYABLE_TYPES),
)

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
        self._caps = WorkerCapabilities()
        self._reporter: CheckoutReporter | None = None
        # Set when customer tracking starts: the ids it minted are what a cancel may remove.
        self._tracking: CustomerTrackingInput | None = None
        # Set once the input is valid: only then does a failure concern operators.
        self._request: TenantCreationInput | None = None

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
            result = await self._create(request)
        except _Cancelled:
            assert self._cancel is not None
            await self._compensate()
            await self._finish_checkout(CheckoutStatus.FAILED, f"cancelled: {self._cancel.reason}")
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
            await self._finish_checkout(CheckoutStatus.FAILED, "cancelled")
            raise
        except Exception as err:
            failed_at = self._state.step
            self._state.step = Step.FAILED
            self._state.error = _describe(err)
            await self._finish_checkout(CheckoutStatus.FAILED, self._state.error)
            await self._notify_operations(failed_at, err)
            raise
        await self._finish_checkout(CheckoutStatus.COMPLETED, None)
        return result

    async def _create(self, request: RawValue) -> TenantCreationResult:
        info = workflow.info()
        self._advance(Step.VALIDATING, 5)
        req = self._validate(request)
        checkout_steps = workflow.patched(CHECKOUT_PATCH)
        if checkout_steps:
            await self._prepare(req)
        self._check_cancel()

        tenant_id = req.tenant_id or workflow.uuid4()
        self._state.tenant_id = str(tenant_id)
        if checkout_steps:
            self._mark_run(req, str(tenant_id))
        binding = f"{info.workflow_id}/{info.run_id}/{tenant_id}"
        stripe = await self._stripe_details(req) if checkout_steps else None
        self._check_cancel()
        provision_input = ProvisionTenantInput(
            tenant_id=tenant_id, client_id=workflow.uuid4(), location_id=workflow.uuid4(),
            admin_user_id=workflow.uuid4(), tenant_name=req.tenant_name,
            client_name=req.effective_client_name, admin=req.admin_user,
            license_count=req.license_count or (stripe.license_count if stripe else None),
            seal_binding=binding, stripe=stripe,
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

        tracking = await self._track_customer(req, provisioned, binding) if checkout_steps else None
        self._check_cancel()
        if stripe is not None and stripe.stripe_subscription_id is not None:
            await self._tag_subscription(stripe.stripe_subscription_id, tenant_id)
            self._check_cancel()

        self._advance(Step.SENDING_WELCOME_EMAIL, 80)
        email = await self._send_welcome(req, provisioned, binding,
                                         tracking.sealed_portal_password if tracking else None)
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
        self._request = req
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
                            binding: str, sealed_portal_password: str | None,
                            ) -> WelcomeEmailOutput | SendEmailResult | None:
        """Non-fatal: the tenant exists and works; a failed email is reported, not rolled back.

        A cancel (signal or request) while the email is pending cancels the activity and waits for it
        to settle: cancelled means nothing was sent and the cancel goes ahead; a result means the
        provider accepted the message first, and the caller turns the cancel into ``cancelTooLate``.
        """
        handle = self._start_welcome(req, provisioned, binding, sealed_portal_password)
        cancel_signalled = asyncio.ensure_future(workflow.wait_condition(lambda: self._cancel is not None))
        cancel_requested = False
        try:
            await workflow.wait([handle, cancel_signalled], return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:  # a Temporal cancel request
            cancel_requested = self._state.cancel_requested = True
        cancel_signalled.cancel()
        if not activity_resolved(handle):
            handle.cancel()  # WAIT_CANCELLATION_COMPLETED: the await below sees how the activity ended
        try:
            sent: WelcomeEmailOutput | SendEmailResult = await handle
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

    def _start_welcome(self, req: TenantCreationInput, provisioned: ProvisionTenantOutput, binding: str,
                       sealed_portal_password: str | None) -> Any:
        """Schedule the welcome email: through ``send_email`` (new runs) or ``send_welcome_email``."""
        options: dict[str, Any] = {
            "start_to_close_timeout": timedelta(seconds=60), "heartbeat_timeout": HEARTBEAT_TIMEOUT,
            "retry_policy": EMAIL_RETRY, "cancellation_type": ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        }
        if not workflow.patched(ONE_MAILER_PATCH):
            return workflow.start_activity_method(
                NotificationActivities.send_welcome_email,
                WelcomeEmailInput(
                    tenant_id=provisioned.tenant_id, admin_user_id=provisioned.admin_user_id,
                    tenant_name=req.tenant_name, client_name=req.effective_client_name, admin=req.admin_user,
                    sealed_password=provisioned.sealed_password, seal_binding=binding,
                    sealed_portal_password=sealed_portal_password,
                ), **options)
        sealed = {"temporary_password": provisioned.sealed_password}
        if sealed_portal_password is not None:
            sealed["portal_temporary_password"] = sealed_portal_password
        admin = req.admin_user
        return workflow.start_activity_method(
            NotificationActivities.send_email,
            SendEmailRequest(
                template=EmailTemplate.TENANT_WELCOME, to=[admin.email],
                variables={"tenant_name": req.tenant_name, "client_name": req.effective_client_name,
                           "first_name": admin.first_name, "last_name": admin.last_name, "email": admin.email},
                sealed=sealed, seal_binding=binding, idempotency_key=email_key("welcome"),
                tags={"tenant_id": str(provisioned.tenant_id)},
            ), **options)

    async def _notify_operations(self, failed_at: Step, err: BaseException) -> None:
        """Tell operators a valid request did not become a tenant (module docstring). Best effort."""
        req = self._request
        if req is None or not self._caps.operations_notices or not workflow.patched(OPERATIONS_NOTICE_PATCH):
            return
        info = workflow.info()
        cause: BaseException = err
        while isinstance(cause, ActivityError) and cause.cause is not None:
            cause = cause.cause
        error_type = cause.type if isinstance(cause, ApplicationError) and cause.type else type(cause).__name__
        notice = SendEmailRequest(
            template=EmailTemplate.PROVISIONING_FAILED, to_operations=True,
            variables={
                "tenant_name": req.tenant_name, "admin_email": req.admin_user.email,
                "workflow_id": info.workflow_id, "run_id": info.run_id, "failed_step": failed_at.value,
                "error_type": error_type, "error_message": str(cause)[:1000],
                "checkout_session_id": req.checkout_session_id, "tenant_id": self._state.tenant_id,
            },
            idempotency_key=email_key("operations-notice"), tags={"workflow": "tenant_creation"},
        )
        try:
            await workflow.execute_activity_method(
                NotificationActivities.send_email, notice, start_to_close_timeout=timedelta(seconds=60),
                heartbeat_timeout=HEARTBEAT_TIMEOUT, retry_policy=NOTICE_RETRY)
        except ActivityError as notice_err:
            workflow.logger.warning("operations notice not sent", extra={"error": _describe(notice_err)})

    async def _prepare(self, req: TenantCreationInput) -> None:
        """What this worker's configuration and cluster enable; a checkout run without its settings is
        refused here, before anything is written or sent (nothing ever goes to a default host)."""
        self._caps = await worker_capabilities()
        if req.checkout_session_id is None:
            return
        missing = self._caps.missing_checkout_settings
        if missing:
            problem = "checkout processing is not configured on this worker: set " + ", ".join(missing)
            self._state.outcomes["validation"] = StepOutcome(status=OutcomeStatus.FAILED, detail=problem)
            raise errors.configuration_error(problem, {"missing": missing})
        self._reporter = CheckoutReporter(req.checkout_session_id, workflow.info().workflow_id)
        self._state.checkout = self._reporter.state
        self._reporter.start()

    def _mark_run(self, req: TenantCreationInput, tenant_id: str) -> None:
        """Search attributes (ids only), when the namespace has them registered."""
        updates = []
        if search_attributes.TENANT_ID.name in self._caps.search_attributes:
            updates.append(search_attributes.TENANT_ID.value_set(tenant_id))
        if req.checkout_session_id and search_attributes.CHECKOUT_SESSION_ID.name in self._caps.search_attributes:
            updates.append(search_attributes.CHECKOUT_SESSION_ID.value_set(req.checkout_session_id))
        if updates:
            workflow.upsert_search_attributes(updates)

    async def _stripe_details(self, req: TenantCreationInput) -> StripeDetails | None:
        """The caller's Stripe ids (S-DEC), or the checkout session's, fetched when Stripe is set up.

        Non-fatal: without them the tenant is still created (with the caller's licence count); the
        outcome says why they are missing."""
        if req.stripe_customer_id is not None:
            return StripeDetails(
                stripe_customer_id=req.stripe_customer_id, stripe_subscription_id=req.stripe_subscription_id,
                stripe_subscription_item_id=req.stripe_subscription_item_id, stripe_price_id=req.stripe_price_id,
            )
        if req.checkout_session_id is None:
            return None
        if not self._caps.stripe_enabled:
            self._state.outcomes["stripe_details"] = StepOutcome(
                status=OutcomeStatus.SKIPPED, detail="STRIPE_SECRET_KEY is not set on this worker")
            return None
        self._advance(Step.FETCHING_STRIPE_DETAILS, 7)
        try:
            details: StripeDetails = await workflow.execute_activity(
                "fetch_stripe_details", StripeDetailsInput(checkout_session_id=req.checkout_session_id),
                result_type=StripeDetails, start_to_close_timeout=timedelta(seconds=30),
                retry_policy=SIDE_STEP_RETRY,
            )
        except ActivityError as err:
            self._state.outcomes["stripe_details"] = StepOutcome(status=OutcomeStatus.FAILED, detail=_describe(err))
            workflow.logger.warning("stripe details not fetched; continuing without them")
            return None
        self._state.stripe_customer_id = details.stripe_customer_id
        self._state.outcomes["stripe_details"] = StepOutcome(
            status=OutcomeStatus.DONE,
            detail=f"seats {details.license_count}" if details.license_count is not None else "no subscription")
        return details

    async def _track_customer(self, req: TenantCreationInput, provisioned: ProvisionTenantOutput,
                              binding: str) -> CustomerTrackingOutput | None:
        """The customer in the management tenant. Non-fatal: a failure is shown per stage in state and
        the welcome email then makes no portal claim; ``alga-worker customer track`` retries it."""
        if not self._caps.customer_tracking_enabled:
            return None
        self._advance(Step.CREATING_CUSTOMER_TRACKING, 75)
        stages = ("customer_client", "customer_contact", "customer_tag", "portal_user")
        self._tracking = CustomerTrackingInput(
            tenant_id=provisioned.tenant_id, tenant_name=req.tenant_name,
            client_name=req.effective_client_name, admin=req.admin_user,
            customer_client_id=workflow.uuid4(), contact_id=workflow.uuid4(),
            portal_user_id=workflow.uuid4(), seal_binding=binding,
        )
        try:
            tracked: CustomerTrackingOutput = await self._settled(workflow.start_activity(
                "track_customer", self._tracking,
                result_type=CustomerTrackingOutput, start_to_close_timeout=timedelta(seconds=60),
                heartbeat_timeout=HEARTBEAT_TIMEOUT, retry_policy=SIDE_STEP_RETRY,
            ))
        except ActivityError as err:
            for stage in stages:
                self._state.outcomes[stage] = StepOutcome(status=OutcomeStatus.FAILED, detail=_describe(err))
            workflow.logger.warning("customer tracking failed; the tenant goes on without it")
            return None
        for stage in stages:
            self._state.outcomes[stage] = tracked.outcomes.get(stage, StepOutcome(status=OutcomeStatus.DONE))
        self._state.customer_client_id = str(tracked.customer_client_id)
        self._state.portal_user_id = str(tracked.portal_user_id) if tracked.portal_user_id else None
        return tracked

    async def _untrack_customer(self) -> None:
        """A cancelled tenant leaves no customer records behind: remove the ones this run minted."""
        if self._tracking is None:
            return
        await workflow.execute_activity(
            "untrack_customer", self._tracking, result_type=dict[str, int],
            start_to_close_timeout=timedelta(seconds=60), schedule_to_close_timeout=timedelta(minutes=15),
            retry_policy=CLEANUP_RETRY,
        )
        for stage in ("customer_client", "customer_contact", "customer_tag", "portal_user"):
            if stage in self._state.outcomes and self._state.outcomes[stage].status is OutcomeStatus.DONE:
                self._state.outcomes[stage] = StepOutcome(status=OutcomeStatus.REMOVED)

    async def _tag_subscription(self, subscription_id: str, tenant_id: Any) -> None:
        """Stripe learns which tenant a subscription belongs to (metadata). Non-fatal."""
        try:
            await workflow.execute_activity(
                "tag_stripe_subscription",
                TagStripeSubscriptionInput(stripe_subscription_id=subscription_id, tenant_id=tenant_id),
                start_to_close_timeout=timedelta(seconds=30), retry_policy=SIDE_STEP_RETRY,
            )
        except ActivityError as err:
            self._state.outcomes["stripe_subscription_tag"] = StepOutcome(
                status=OutcomeStatus.FAILED, detail=_describe(err))
            return
        self._state.outcomes["stripe_subscription_tag"] = StepOutcome(status=OutcomeStatus.DONE)

    async def _finish_checkout(self, status: CheckoutStatus, error: str | None) -> None:
        if self._reporter is None:
            return
        tenant_created = self._state.outcomes["tenant"].status is OutcomeStatus.DONE
        await self._reporter.finish(status, self._state.tenant_id if tenant_created else None, error)

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
                await self._untrack_customer()
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


def _problems_text(problems: list[dict[str, str]]) -> str:
    return "; ".join(f"{p['field']}: {p['problem']}" for p in problems)

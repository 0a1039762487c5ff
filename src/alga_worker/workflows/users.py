"""The user workflows: create, re-invite (resend welcome), reset password, deactivate, reactivate.

Operators (``alga-worker user ...``) and the Alga web app manage the users of an existing tenant
through these five workflows. Each is small and reads top to bottom; what they share is here once:

- the start argument is a ``RawValue`` decoded strictly (:func:`alga_worker.workflows.wire.decode_start`),
  so any malformed start ends the run with ``ValidationError`` after its first workflow task;
- every run carries the search attributes ``TenantId`` and ``UserId`` (ids only, never an address)
  as soon as they are known, when the namespace has them registered (:class:`_RunMarks`);
- the database work is in ``activities/users.py`` (one transaction per activity, typed refusals that
  end the step at once: ``UserNotFoundError``, ``UnknownRoleError``, ``LastAdminError``,
  ``LicenseLimitError`` ...); a refusal fails the run with the activity's own typed error, so a caller
  reads ``err.cause.cause.type``;
- a temporary password exists in clear only inside the activity that makes it and ``send_email``,
  which opens it; in between it travels sealed, bound to this run (``emailing.seal_binding``). Every
  email goes through the one mailer with a key per run and purpose (``emailing.email_key``), so a
  retried send is deduplicated by the provider;
- who asked (``triggeredBy``/``triggeredByEmail``) is recorded by ``record_audit`` in
  ``extension_audit_logs``, as the original did; an audit write that fails is logged, never fatal.

``createUserWorkflow`` is the one that can leave something half done, so it is all or nothing: a user
whose invitation cannot be delivered (``EmailRejected``, or the provider down for longer than the
retries) or whose run is cancelled before the provider accepted the invitation is removed again
(``remove_user``, by the id this run minted), so a corrected retry does not meet ``DuplicateError``.
A cancel during ``create_user`` waits for its transaction to settle first (a DELETE must never precede
a late COMMIT); a cancel that arrives after the provider accepted the invitation comes too late: the
credentials are out, the user stays and the run completes. Deterministic code only; no side effects
at import.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import Any
from uuid import UUID

from temporalio import workflow
from temporalio.common import RawValue, SearchAttributeKey
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from alga_worker import errors, search_attributes
    from alga_worker.activities.notifications import NotificationActivities
    from alga_worker.activities.users import UserActivities
    from alga_worker.models import (
        WORKFLOW_TYPE_CREATE_USER,
        WORKFLOW_TYPE_DEACTIVATE_USER,
        WORKFLOW_TYPE_REACTIVATE_USER,
        WORKFLOW_TYPE_RESEND_WELCOME_EMAIL,
        WORKFLOW_TYPE_RESET_USER_PASSWORD,
        AuditRecord,
        AuditResult,
        CreatedUser,
        CreateUserRequest,
        CreateUserResult,
        EmailTemplate,
        NewPassword,
        NewPasswordRequest,
        NewUser,
        RemoveUserInput,
        RemoveUserOutput,
        ResendWelcomeEmailRequest,
        ResendWelcomeEmailResult,
        SendEmailRequest,
        SendEmailResult,
        SetUserActiveRequest,
        SetUserActiveResult,
        UserActionRequest,
        UserActionResult,
        UserFacts,
        UserLookup,
    )
    from alga_worker.workflows.emailing import email_key, seal_binding, send_email
    from alga_worker.workflows.failures import describe_failure as _describe
    from alga_worker.workflows.handles import activity_resolved
    from alga_worker.workflows.policies import (
        ACTIVITY_TIMEOUT,
        CLEANUP_RETRY,
        DB_RETRY,
        EMAIL_RETRY,
        HEARTBEAT_TIMEOUT,
    )
    from alga_worker.workflows.run_marks import worker_capabilities
    from alga_worker.workflows.wire import decode_start

# Compensation must end: retried until this long after it was scheduled.
CLEANUP_TIMEOUT = timedelta(minutes=15)
# The audit trail is worth a few tries, not a failed run.
AUDIT_RETRY = DB_RETRY
RESOURCE_USER = "user"

# Audit actions (the original's upper-case verbs; the row's event_type is ``tenant.<lower.dotted>``).
USER_CREATED = "USER_CREATED"
WELCOME_EMAIL_RESENT = "WELCOME_EMAIL_RESENT"
WELCOME_EMAIL_RESEND_FAILED = "WELCOME_EMAIL_RESEND_FAILED"
USER_PASSWORD_RESET = "USER_PASSWORD_RESET"  # noqa: S105 (an audit verb)
USER_DEACTIVATED = "USER_DEACTIVATED"
USER_REACTIVATED = "USER_REACTIVATED"


# ---------------------------------------------------------------- shared by the five workflows


class _RunMarks:
    """Sets this run's ``TenantId``/``UserId`` search attributes once each, only if registered.

    A namespace without them would reject the workflow task for ever, so the worker is asked which
    are registered (:func:`alga_worker.workflows.run_marks.worker_capabilities`, one local activity,
    cached per process), as the other workflows do. Unlike ``run_marks.mark_run`` it remembers what it
    set, because ``resendWelcomeEmailWorkflow`` learns its user only after a lookup. Values the caller
    already set at start (the CLI does) cost nothing: no question, no upsert.
    """

    def __init__(self) -> None:
        self._registered: list[str] | None = None
        self._done: set[str] = set()

    async def mark(self, tenant_id: UUID | str, user_id: UUID | str | None = None) -> None:
        wanted: list[tuple[SearchAttributeKey[str], str]] = [(search_attributes.TENANT_ID, str(tenant_id))]
        if user_id is not None:
            wanted.append((search_attributes.USER_ID, str(user_id)))
        present = workflow.info().typed_search_attributes
        todo = [(key, value) for key, value in wanted
                if key.name not in self._done and present.get(key) != value]
        if not todo:
            return
        if self._registered is None:
            self._registered = (await worker_capabilities()).search_attributes
        updates = [key.value_set(value) for key, value in todo if key.name in self._registered]
        self._done.update(key.name for key, _ in todo)
        if updates:
            workflow.upsert_search_attributes(updates)


def _db_options() -> dict[str, Any]:
    return {"start_to_close_timeout": ACTIVITY_TIMEOUT, "heartbeat_timeout": HEARTBEAT_TIMEOUT,
            "retry_policy": DB_RETRY}


async def _uncancellable(handle: Any) -> Any:
    """Await an activity that a cancel request must not interrupt (compensation, the audit trail)."""
    try:
        return await asyncio.shield(handle)
    except asyncio.CancelledError:
        return await handle


async def _audit(action: str, tenant_id: UUID, user_id: UUID | str | None,
                 by: str | None, by_email: str | None, *, status: str = "completed", error: str | None = None,
                 details: dict[str, str] | None = None) -> str | None:
    """One ``extension_audit_logs`` row (id minted here: a retry finds its row); never fatal.

    Returns the log id when recorded, None when the worker has no audit tenant or the write failed."""
    record = AuditRecord(
        log_id=workflow.uuid4(), tenant_id=tenant_id, action=action, resource_type=RESOURCE_USER,
        resource_id=str(user_id) if user_id is not None else "first-msp-admin",
        triggered_by=by, triggered_by_email=by_email, workflow_id=workflow.info().workflow_id,
        status=status, error=None if error is None else error[:2000], details=details or {},
    )
    try:
        result: AuditResult = await _uncancellable(workflow.start_activity_method(
            UserActivities.record_audit, record, start_to_close_timeout=ACTIVITY_TIMEOUT,
            heartbeat_timeout=HEARTBEAT_TIMEOUT, retry_policy=AUDIT_RETRY))
    except ActivityError as err:
        workflow.logger.warning("audit record not written", extra={"action": action, "error": _describe(err)})
        return None
    return None if result.log_id is None or not result.recorded else str(result.log_id)


def _failure_type(err: BaseException) -> str | None:
    while isinstance(err, ActivityError) and err.cause is not None:
        err = err.cause
    return err.type if isinstance(err, ApplicationError) else None


def _domain(address: str) -> str:
    """The part of an address an audit detail may keep (no mailbox, no personal data beyond that)."""
    return address.rpartition("@")[2]


def _person(user: UserFacts) -> dict[str, str | int | bool | None]:
    return {"tenant_name": user.tenant_name, "first_name": user.first_name, "last_name": user.last_name,
            "email": user.email}


def _tags(tenant_id: UUID | str, user_id: UUID | str) -> dict[str, str]:
    return {"tenant_id": str(tenant_id), "user_id": str(user_id), "workflow": workflow.info().workflow_type}


# ---------------------------------------------------------------- createUserWorkflow


@workflow.defn(name=WORKFLOW_TYPE_CREATE_USER)
class CreateUserWorkflow:
    """One internal or client-portal user in an existing tenant, invited by email. All or nothing."""

    def __init__(self) -> None:
        self._marks = _RunMarks()
        # Set once create_user is scheduled: from then on, a failure or cancel must remove this id.
        self._may_exist: NewUser | None = None

    @workflow.run
    async def run(self, request: RawValue) -> CreateUserResult:
        req = decode_start(request, CreateUserRequest, "create user")
        user_id = workflow.uuid4()
        try:
            return await self._create(req, user_id)
        except asyncio.CancelledError:
            # A Temporal cancel request before the provider had the invitation: undo, end Cancelled.
            await self._remove("cancelled")
            raise

    async def _create(self, req: CreateUserRequest, user_id: UUID) -> CreateUserResult:
        await self._marks.mark(req.tenant_id, user_id)
        new_user = NewUser(
            tenant_id=req.tenant_id, user_id=user_id, email=req.email, first_name=req.first_name,
            last_name=req.last_name, user_type=req.user_type, roles=list(req.roles), contact_id=req.contact_id,
            force=req.force, seal_binding=seal_binding(str(user_id)),
        )
        self._may_exist = new_user
        try:
            created: CreatedUser = await self._settled(
                workflow.start_activity_method(UserActivities.create_user, new_user, **_db_options()))
        except ActivityError as err:
            if _failure_type(err) not in errors.NON_RETRYABLE_TYPES:
                # Retries exhausted: an earlier attempt may have committed before its worker died.
                await self._remove(_describe(err))
            raise
        try:
            sent = await self._invite(created, new_user)
        except ActivityError as err:
            # Not delivered: without the email the user cannot sign in, and a retry must not meet it.
            workflow.logger.warning("invitation not delivered; removing the user",
                                    extra={"tenant_id": str(req.tenant_id), "user_id": str(user_id)})
            await self._remove(_describe(err))
            raise
        await _audit(USER_CREATED, req.tenant_id, user_id, req.triggered_by, req.triggered_by_email, details={
            "tenantName": created.tenant_name, "userType": created.user_type.value, "roles": ", ".join(created.roles),
            "emailDomain": _domain(created.email), "forced": "true" if created.forced else "false",
        })
        workflow.logger.info("user created", extra={"tenant_id": str(req.tenant_id), "user_id": str(user_id),
                                                    "forced": created.forced})
        return CreateUserResult(
            tenant_id=str(created.tenant_id), user_id=str(created.user_id), email=created.email,
            user_type=created.user_type, roles=created.roles, invitation_sent=True,
            email_provider=sent.provider, forced=created.forced,
        )

    async def _invite(self, created: CreatedUser, new_user: NewUser) -> SendEmailResult:
        """The invitation, cancellable up to the moment the provider has it (then the cancel is too late).

        On a cancel request the email activity is cancelled and awaited: a cancelled activity sent
        nothing (the run then removes the user and ends Cancelled); a result means the provider had
        accepted the message first, so the user stays and the run completes.
        """
        handle = workflow.start_activity_method(
            NotificationActivities.send_email,
            SendEmailRequest(
                template=EmailTemplate.USER_INVITATION, to=[created.email],
                variables={"tenant_name": created.tenant_name, "first_name": created.first_name,
                           "last_name": created.last_name, "email": created.email,
                           "user_type": created.user_type.value},
                sealed={"temporary_password": created.sealed_password}, seal_binding=new_user.seal_binding,
                idempotency_key=email_key("invitation"), tags=_tags(created.tenant_id, created.user_id),
            ),
            start_to_close_timeout=ACTIVITY_TIMEOUT, heartbeat_timeout=HEARTBEAT_TIMEOUT, retry_policy=EMAIL_RETRY,
            cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        )
        try:
            sent: SendEmailResult = await asyncio.shield(handle)
            return sent
        except asyncio.CancelledError:
            pass
        if not activity_resolved(handle):
            handle.cancel()
        try:
            sent = await handle
        except (ActivityError, asyncio.CancelledError):
            raise asyncio.CancelledError from None  # nothing was sent: the cancel goes ahead
        workflow.logger.warning("cancel came too late: the invitation had been accepted; the user stays",
                                extra={"tenant_id": str(created.tenant_id), "user_id": str(created.user_id)})
        return sent

    async def _remove(self, why: str) -> None:
        """Delete the user this run minted (nothing else can have its id). Survives a cancel request."""
        new_user = self._may_exist
        if new_user is None:
            return
        removed: RemoveUserOutput = await _uncancellable(workflow.start_activity_method(
            UserActivities.remove_user, RemoveUserInput(tenant_id=new_user.tenant_id, user_id=new_user.user_id),
            start_to_close_timeout=ACTIVITY_TIMEOUT, schedule_to_close_timeout=CLEANUP_TIMEOUT,
            heartbeat_timeout=HEARTBEAT_TIMEOUT, retry_policy=CLEANUP_RETRY,
        ))
        self._may_exist = None
        workflow.logger.info("user removed" if removed.removed else "no user to remove",
                             extra={"tenant_id": str(new_user.tenant_id), "user_id": str(new_user.user_id),
                                    "reason": why[:200]})

    async def _settled(self, handle: Any) -> Any:
        """Await ``create_user`` so that a cancel request cannot race its transaction: on a cancel the
        activity still finishes (commits or not) before the removal runs."""
        try:
            return await asyncio.shield(handle)
        except asyncio.CancelledError:
            with contextlib.suppress(ActivityError, asyncio.CancelledError):
                await handle
            raise


# ---------------------------------------------------------------- resendWelcomeEmailWorkflow


@workflow.defn(name=WORKFLOW_TYPE_RESEND_WELCOME_EMAIL)
class ResendWelcomeEmailWorkflow:
    """A new temporary password and the tenant welcome email again (the original's later version).

    Without ``userId`` the tenant's first active MSP admin gets it. The new password replaces the hash
    before the email goes out, so the old one stops working. A failure is audited
    (``WELCOME_EMAIL_RESEND_FAILED``, status failed) and then fails the run with its typed error; the
    original returned ``{success: false}`` instead, which callers could not tell from a bug.
    """

    def __init__(self) -> None:
        self._marks = _RunMarks()

    @workflow.run
    async def run(self, request: RawValue) -> ResendWelcomeEmailResult:
        req = decode_start(request, ResendWelcomeEmailRequest, "resend welcome email")
        user_id: UUID | None = req.user_id
        try:
            await self._marks.mark(req.tenant_id, req.user_id)
            if user_id is None:
                admin: UserFacts = await workflow.execute_activity_method(
                    UserActivities.find_user, UserLookup(tenant_id=req.tenant_id), **_db_options())
                user_id = admin.user_id
                await self._marks.mark(req.tenant_id, user_id)
            fresh: NewPassword = await workflow.execute_activity_method(
                UserActivities.set_temporary_password,
                NewPasswordRequest(tenant_id=req.tenant_id, user_id=user_id, seal_binding=seal_binding(str(user_id))),
                **_db_options())
            user = fresh.user
            sent = await send_email(SendEmailRequest(
                template=EmailTemplate.TENANT_WELCOME, to=[user.email],
                variables={**_person(user), "client_name": user.tenant_name},
                sealed={"temporary_password": fresh.sealed_password}, seal_binding=seal_binding(str(user_id)),
                idempotency_key=email_key("welcome"), tags=_tags(req.tenant_id, user_id),
            ))
        except ActivityError as err:
            await _audit(WELCOME_EMAIL_RESEND_FAILED, req.tenant_id, user_id, req.triggered_by,
                         req.triggered_by_email, status="failed", error=_describe(err))
            raise
        log_id = await _audit(WELCOME_EMAIL_RESENT, req.tenant_id, user_id, req.triggered_by, req.triggered_by_email,
                              details={"tenantName": user.tenant_name, "recipientDomain": _domain(user.email)})
        workflow.logger.info("welcome email resent", extra={"tenant_id": str(req.tenant_id), "user_id": str(user_id)})
        return ResendWelcomeEmailResult(email=user.email, tenant_name=user.tenant_name, user_id=str(user_id),
                                        email_provider=sent.provider, audit_log_id=log_id)


# ---------------------------------------------------------------- resetUserPasswordWorkflow


@workflow.defn(name=WORKFLOW_TYPE_RESET_USER_PASSWORD)
class ResetUserPasswordWorkflow:
    """A new temporary password for an active user, emailed (``password_reset``); the old one stops
    working. ``set_temporary_password`` refuses an unknown (``UserNotFoundError``) or deactivated
    (``UserInactiveError``) user and returns who the user is, so no separate lookup is needed."""

    def __init__(self) -> None:
        self._marks = _RunMarks()

    @workflow.run
    async def run(self, request: RawValue) -> UserActionResult:
        req = decode_start(request, UserActionRequest, "reset user password")
        await self._marks.mark(req.tenant_id, req.user_id)
        binding = seal_binding(str(req.user_id))
        fresh: NewPassword = await workflow.execute_activity_method(
            UserActivities.set_temporary_password,
            NewPasswordRequest(tenant_id=req.tenant_id, user_id=req.user_id, seal_binding=binding), **_db_options())
        user = fresh.user
        sent = await send_email(SendEmailRequest(
            template=EmailTemplate.PASSWORD_RESET, to=[user.email],
            variables={**_person(user), "user_type": user.user_type.value},
            sealed={"temporary_password": fresh.sealed_password}, seal_binding=binding,
            idempotency_key=email_key("password-reset"), tags=_tags(req.tenant_id, req.user_id),
        ))
        log_id = await _audit(USER_PASSWORD_RESET, req.tenant_id, req.user_id, req.triggered_by,
                              req.triggered_by_email, details={"tenantName": user.tenant_name})
        workflow.logger.info("password reset", extra={"tenant_id": str(req.tenant_id), "user_id": str(req.user_id)})
        return UserActionResult(tenant_id=str(req.tenant_id), user_id=str(req.user_id), email=user.email,
                                is_inactive=user.is_inactive, changed=True, email_sent=True,
                                email_provider=sent.provider, audit_log_id=log_id)


# ---------------------------------------------------------------- deactivateUserWorkflow


@workflow.defn(name=WORKFLOW_TYPE_DEACTIVATE_USER)
class DeactivateUserWorkflow:
    """``is_inactive`` on; the last active MSP admin of a tenant is refused (``LastAdminError``, nothing
    changed). The user is told (``account_deactivated``) only when something changed; a notice that
    cannot be delivered does not undo the deactivation (``emailSent`` false, a warning logged)."""

    def __init__(self) -> None:
        self._marks = _RunMarks()

    @workflow.run
    async def run(self, request: RawValue) -> UserActionResult:
        req = decode_start(request, UserActionRequest, "deactivate user")
        await self._marks.mark(req.tenant_id, req.user_id)
        done: SetUserActiveResult = await workflow.execute_activity_method(
            UserActivities.set_user_active,
            SetUserActiveRequest(tenant_id=req.tenant_id, user_id=req.user_id, active=False), **_db_options())
        user = done.user
        sent: SendEmailResult | None = None
        if done.changed:
            try:
                sent = await send_email(SendEmailRequest(
                    template=EmailTemplate.ACCOUNT_DEACTIVATED, to=[user.email], variables=_person(user),
                    idempotency_key=email_key("account-deactivated"), tags=_tags(req.tenant_id, req.user_id),
                ))
            except ActivityError as err:
                workflow.logger.warning("deactivation notice not sent; the user stays deactivated",
                                        extra={"tenant_id": str(req.tenant_id), "user_id": str(req.user_id),
                                               "error": _describe(err)})
        log_id = await _audit(USER_DEACTIVATED, req.tenant_id, req.user_id, req.triggered_by, req.triggered_by_email,
                              details={"tenantName": user.tenant_name, "changed": str(done.changed).lower(),
                                       "noticeSent": str(sent is not None).lower()})
        return UserActionResult(tenant_id=str(req.tenant_id), user_id=str(req.user_id), email=user.email,
                                is_inactive=user.is_inactive, changed=done.changed, email_sent=sent is not None,
                                email_provider=sent.provider if sent else None, audit_log_id=log_id)


# ---------------------------------------------------------------- reactivateUserWorkflow


@workflow.defn(name=WORKFLOW_TYPE_REACTIVATE_USER)
class ReactivateUserWorkflow:
    """``is_inactive`` off. An internal user needs a free licence (``LicenseLimitError`` unless
    ``force``). No email: the user signs in with the password they had."""

    def __init__(self) -> None:
        self._marks = _RunMarks()

    @workflow.run
    async def run(self, request: RawValue) -> UserActionResult:
        req = decode_start(request, UserActionRequest, "reactivate user")
        await self._marks.mark(req.tenant_id, req.user_id)
        done: SetUserActiveResult = await workflow.execute_activity_method(
            UserActivities.set_user_active,
            SetUserActiveRequest(tenant_id=req.tenant_id, user_id=req.user_id, active=True, force=req.force),
            **_db_options())
        user = done.user
        log_id = await _audit(USER_REACTIVATED, req.tenant_id, req.user_id, req.triggered_by, req.triggered_by_email,
                              details={"tenantName": user.tenant_name, "changed": str(done.changed).lower(),
                                       "forced": str(done.forced).lower()})
        return UserActionResult(tenant_id=str(req.tenant_id), user_id=str(req.user_id), email=user.email,
                                is_inactive=user.is_inactive, changed=done.changed, email_sent=False,
                                forced=done.forced, audit_log_id=log_id)

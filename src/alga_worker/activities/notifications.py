"""Email notification activities: every email goes through one render-and-send path.

``send_email`` is the one activity workflows send through (``workflows/emailing.py``): it checks the
request against the template's context model (``email/templates.py``), opens the secrets the workflow
passed sealed (a temporary password exists in clear only inside the activity that made it and here),
renders both parts and sends with the workflow's idempotency key (``<type>/<workflow id>/<run id>/
<purpose>``): a retried attempt (worker killed after the provider accepted the message) is
deduplicated by the provider, so the recipient gets exactly one email. Bad input (unknown, missing or
mistyped variables, a secret in clear) is a non-retryable ``ValidationError`` naming fields, never
values; rejections (bad address, bad API key) are non-retryable ``EmailRejected``; outages are retried
by Temporal, after the provider's ``Retry-After`` when it gives one. Links come from settings
(``APPLICATION_URL``, ``CLIENT_PORTAL_URL``), never from the request.

``send_welcome_email`` and ``send_portal_access_email`` keep their names, inputs, outputs and
idempotency keys (committed histories of tenant creation and customer tracking schedule them) and
render and send through the same path.

Cancellation (the workflow cancels this activity when its run is cancelled) is honoured up to the
moment the message is handed to the provider and not after: a message the provider may already hold
is seen through to the provider's answer and reported as sent, so the workflow learns the cancel came
too late and keeps the tenant whose credentials went out. A run that ends cancelled has sent nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from pydantic import ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from alga_worker import errors
from alga_worker.activities.heartbeat import heartbeating
from alga_worker.email import templates
from alga_worker.email.errors import EmailRejected, EmailTemporarilyUnavailable
from alga_worker.email.message import EmailMessage, SendResult
from alga_worker.email.providers import EmailSender
from alga_worker.email.templates import DEFAULT_CLIENT_PORTAL_PATH, Links
from alga_worker.models import (
    EmailTemplate,
    PortalAccessEmailInput,
    SendEmailRequest,
    SendEmailResult,
    WelcomeEmailInput,
    WelcomeEmailOutput,
)
from alga_worker.runtime import metrics
from alga_worker.runtime.metrics import record
from alga_worker.security import CredentialSealer, SealError, generate_temporary_password

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_CLIENT_PORTAL_PATH", "NotificationActivities"]


class NotificationActivities:
    def __init__(self, sender: EmailSender, sealer: CredentialSealer, login_url: str,
                 client_portal_url: str | None = None, operations_email: str | None = None) -> None:
        self._sender = sender
        self._sealer = sealer
        self._links = Links(application_url=login_url, client_portal_url=client_portal_url)
        self._operations_email = operations_email

    @activity.defn(name="send_email")
    async def send_email(self, req: SendEmailRequest) -> SendEmailResult:
        """Render ``req.template`` with ``req.variables`` and the opened ``req.sealed`` secrets; send it."""
        # Names and variables first, before any secret is opened: a bad request fails in one attempt.
        problems = (templates.name_problems(req.template, req.variables, req.sealed)
                    or templates.variable_problems(req.template, req.variables))
        if req.sealed and req.seal_binding is None:
            problems.append({"field": "sealBinding", "problem": "is required with sealed values"})
        if problems:
            raise _invalid(req.template, problems)
        try:
            recipients = self._recipients(req)
        except ApplicationError as err:
            if err.type == errors.CONFIGURATION_ERROR:  # the worker cannot send it: count it as failed
                record(metrics.EMAILS_FAILED, provider=self._sender.name, template=req.template,
                       reason="configuration")
            raise
        secrets = {name: self._open(token, req.seal_binding or "") for name, token in req.sealed.items()}
        tags = {**req.tags, "email_type": req.template.value, "workflow": activity.info().workflow_type or "unknown"}
        result = await self._deliver(req.template, recipients, {**req.variables, **secrets},
                                     key=req.idempotency_key, tags=tags, what=f"{req.template.value} email")
        return SendEmailResult(template=req.template, email_sent=True, provider=result.provider,
                               message_id=result.message_id, destination=result.destination,
                               duplicate=result.duplicate)

    @activity.defn(name="seal_test_password")
    async def seal_test_password(self, seal_binding: str) -> str:
        """A throwaway temporary password for ``testEmailWorkflow``, sealed to the run.

        It verifies nothing (no user has it) and exists in clear only here and in ``send_email``;
        sealed once, so a retried send renders the same body and the provider deduplicates it."""
        return self._sealer.seal(generate_temporary_password(), binding=seal_binding)

    @activity.defn(name="send_welcome_email")
    async def send_welcome_email(self, req: WelcomeEmailInput) -> WelcomeEmailOutput:
        """Tenant creation's welcome email (committed histories use this activity; new code uses
        ``send_email`` with template ``tenant_welcome``)."""
        values: dict[str, Any] = {
            "tenant_name": req.tenant_name, "client_name": req.client_name,
            "first_name": req.admin.first_name, "last_name": req.admin.last_name, "email": req.admin.email,
            "temporary_password": self._open(req.sealed_password, req.seal_binding),
        }
        if req.sealed_portal_password is not None:
            values["portal_temporary_password"] = self._open(req.sealed_portal_password, req.seal_binding)
        result = await self._deliver(
            EmailTemplate.TENANT_WELCOME, [req.admin.email], values,
            key=f"welcome/{req.tenant_id}/{req.admin_user_id}", what="welcome email",
            tags={"email_type": EmailTemplate.TENANT_WELCOME.value, "tenant_id": str(req.tenant_id),
                  "workflow": "tenant_creation"},
            log_extra={"tenant_id": str(req.tenant_id), "client_portal": req.sealed_portal_password is not None})
        return WelcomeEmailOutput(email_sent=True, provider=result.provider, message_id=result.message_id,
                                  destination=result.destination, duplicate=result.duplicate)

    @activity.defn(name="send_portal_access_email")
    async def send_portal_access_email(self, req: PortalAccessEmailInput) -> WelcomeEmailOutput:
        """The client-portal section alone, for a portal user created after the welcome email (an
        operator's ``customer track --create-portal-user``). Deduplicated per portal user."""
        values = {
            "tenant_name": req.tenant_name, "first_name": req.admin.first_name,
            "last_name": req.admin.last_name, "email": req.admin.email,
            "portal_temporary_password": self._open(req.sealed_portal_password, req.seal_binding),
        }
        result = await self._deliver(
            EmailTemplate.PORTAL_ACCESS, [req.admin.email], values,
            key=f"portal-access/{req.tenant_id}/{req.portal_user_id}", what="client portal access email",
            tags={"email_type": "client_portal_access", "tenant_id": str(req.tenant_id),
                  "workflow": "customer_tracking"},
            log_extra={"tenant_id": str(req.tenant_id)})
        return WelcomeEmailOutput(email_sent=True, provider=result.provider, message_id=result.message_id,
                                  destination=result.destination, duplicate=result.duplicate)

    # ---- the one path ----

    async def _deliver(self, template: EmailTemplate, recipients: list[str], values: Mapping[str, Any], *,
                       key: str, tags: dict[str, str], what: str,
                       log_extra: Mapping[str, object] | None = None) -> SendResult:
        """Validate, render and send; log the outcome with recipient domains only, never a secret."""
        try:
            subject, html, text = templates.render(template, values, links=self._links)
        except ValidationError as err:
            raise _invalid(template, templates.problems_of(err)) from None
        try:
            message = EmailMessage(to=recipients, subject=subject, html=html, text=text, tags=tags)
        except ValidationError as err:
            raise _invalid(template, templates.problems_of(err, prefix="message")) from None
        result = await self._send(message, key, what, template)
        log.info(f"{what} sent", extra={
            "template": template.value, "provider": result.provider, "message_id": result.message_id,
            "duplicate": result.duplicate, "recipient_domains": message.recipient_domains, **(log_extra or {})})
        return result

    def _recipients(self, req: SendEmailRequest) -> list[str]:
        recipients = list(req.to)
        if req.to_operations:
            if self._operations_email is None:
                raise errors.configuration_error(
                    f"the {req.template.value} email goes to operations, but OPERATIONS_EMAIL is not set on "
                    "this worker", {"missing": ["OPERATIONS_EMAIL"]})
            recipients.append(self._operations_email)
        if not recipients:
            raise _invalid(req.template, [{"field": "to", "problem": "no recipient: give to or toOperations"}])
        return list(dict.fromkeys(recipients))

    def _open(self, sealed: str, binding: str) -> str:
        try:
            return self._sealer.open(sealed, binding=binding)
        except SealError as err:
            # Wrong pepper on this worker (mid-rotation) or a tampered history: retrying elsewhere may help.
            raise ApplicationError(str(err), type="SealError") from err

    async def _send(self, message: EmailMessage, key: str, what: str, template: EmailTemplate) -> SendResult:
        """Send with the provider's idempotency key; rejections are final, outages are retried. Every
        attempt is counted (``alga_emails_sent_total`` / ``alga_emails_failed_total``)."""
        provider = self._sender.name
        try:
            async with heartbeating():
                result = await _send_unless_cancelled(self._sender, message, key)
        except EmailRejected as err:
            record(metrics.EMAILS_FAILED, provider=provider, template=template, reason="rejected")
            raise ApplicationError(f"{what} rejected: {err}", type=errors.EMAIL_REJECTED,
                                   non_retryable=True) from err
        except EmailTemporarilyUnavailable as err:
            record(metrics.EMAILS_FAILED, provider=provider, template=template, reason="unavailable")
            delay = err.retry_after
            raise ApplicationError(
                f"email provider unavailable: {err}", type="EmailTemporarilyUnavailable",
                next_retry_delay=None if delay is None else timedelta(seconds=delay),
            ) from err
        except asyncio.CancelledError:
            record(metrics.EMAILS_FAILED, provider=provider, template=template, reason="cancelled")
            raise
        record(metrics.EMAILS_SENT, provider=provider, template=template)
        return result


def _invalid(template: EmailTemplate, problems: list[dict[str, str]]) -> ApplicationError:
    """A non-retryable ValidationError naming the fields (the problems never quote a value)."""
    described = "; ".join(f"{p['field']}: {p['problem']}" for p in problems)
    return errors.validation_error(f"invalid {template.value} email: {described}", problems)


async def _send_unless_cancelled(sender: EmailSender, message: EmailMessage, key: str) -> SendResult:
    """Send, unless a cancel has already arrived; once sending has begun, finish it whatever happens."""
    if activity.is_cancelled():
        raise asyncio.CancelledError("cancelled before the email was handed to the provider")
    sending = asyncio.ensure_future(sender.send(message, idempotency_key=key))
    try:
        return await asyncio.shield(sending)
    except asyncio.CancelledError:
        # The provider may hold the message already: its answer decides, not the cancel.
        return await sending

"""Email notification activities.

The welcome email opens the sealed temporary password, renders it and sends it with an idempotency
key tied to the admin user minted by this workflow run: a retried attempt (worker killed after the
provider accepted the message) is deduplicated by the provider, so the admin gets exactly one email.
Rejections (bad address, bad API key) are non-retryable; outages are retried by Temporal.

The client-portal section appears only when the workflow passes the portal user's own sealed password
(``sealed_portal_password``, opened with the same binding): the email then names the portal login, the
portal user's email and that password, and otherwise says nothing about a portal. The same section is
sent on its own (``send_portal_access_email``) when an operator run creates a portal user later.

Cancellation (the workflow cancels this activity when its run is cancelled) is honoured up to the
moment the message is handed to the provider and not after: a message the provider may already hold
is seen through to the provider's answer and reported as sent, so the workflow learns the cancel came
too late and keeps the tenant whose credentials went out. A run that ends cancelled has sent nothing.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from temporalio import activity
from temporalio.exceptions import ApplicationError

from alga_worker import errors
from alga_worker.activities.heartbeat import heartbeating
from alga_worker.email.errors import EmailRejected, EmailTemporarilyUnavailable
from alga_worker.email.message import EmailMessage, SendResult
from alga_worker.email.providers import EmailSender
from alga_worker.email.welcome import (
    PortalAccessEmailContext,
    WelcomeEmailContext,
    render_portal_access_email,
    render_welcome_email,
)
from alga_worker.models import PortalAccessEmailInput, WelcomeEmailInput, WelcomeEmailOutput
from alga_worker.security import CredentialSealer, SealError

log = logging.getLogger(__name__)

# The original's client-portal link (reference 6), used when CLIENT_PORTAL_URL is unset.
DEFAULT_CLIENT_PORTAL_PATH = "/auth/client-portal/signin"


class NotificationActivities:
    def __init__(self, sender: EmailSender, sealer: CredentialSealer, login_url: str,
                 client_portal_url: str | None = None) -> None:
        self._sender = sender
        self._sealer = sealer
        self._login_url = login_url
        self._client_portal_url = client_portal_url or login_url.rstrip("/") + DEFAULT_CLIENT_PORTAL_PATH

    @activity.defn(name="send_welcome_email")
    async def send_welcome_email(self, req: WelcomeEmailInput) -> WelcomeEmailOutput:
        password = self._open(req.sealed_password, req.seal_binding)
        portal_password = (None if req.sealed_portal_password is None
                           else self._open(req.sealed_portal_password, req.seal_binding))
        ctx = WelcomeEmailContext(
            tenant_name=req.tenant_name, first_name=req.admin.first_name, last_name=req.admin.last_name,
            email=req.admin.email, temporary_password=password, login_url=self._login_url,
            client_portal_url=None if portal_password is None else self._client_portal_url,
            portal_temporary_password=portal_password, client_name=req.client_name,
        )
        subject, html, text = render_welcome_email(ctx)
        message = EmailMessage(
            to=[req.admin.email], subject=subject, html=html, text=text,
            tags={"email_type": "tenant_welcome", "tenant_id": str(req.tenant_id),
                  "workflow": "tenant_creation"},
        )
        result = await self._send(message, f"welcome/{req.tenant_id}/{req.admin_user_id}", "welcome email")
        log.info("welcome email sent", extra={"tenant_id": str(req.tenant_id), "provider": result.provider,
                                              "message_id": result.message_id, "duplicate": result.duplicate,
                                              "client_portal": portal_password is not None})
        return WelcomeEmailOutput(email_sent=True, provider=result.provider, message_id=result.message_id,
                                  destination=result.destination, duplicate=result.duplicate)

    @activity.defn(name="send_portal_access_email")
    async def send_portal_access_email(self, req: PortalAccessEmailInput) -> WelcomeEmailOutput:
        """The client-portal section alone, for a portal user created after the welcome email (an
        operator's ``customer track --create-portal-user``). Deduplicated per portal user."""
        portal_password = self._open(req.sealed_portal_password, req.seal_binding)
        ctx = PortalAccessEmailContext(
            tenant_name=req.tenant_name, first_name=req.admin.first_name, last_name=req.admin.last_name,
            email=req.admin.email, client_portal_url=self._client_portal_url,
            portal_temporary_password=portal_password,
        )
        subject, html, text = render_portal_access_email(ctx)
        message = EmailMessage(
            to=[req.admin.email], subject=subject, html=html, text=text,
            tags={"email_type": "client_portal_access", "tenant_id": str(req.tenant_id),
                  "workflow": "customer_tracking"},
        )
        result = await self._send(message, f"portal-access/{req.tenant_id}/{req.portal_user_id}",
                                  "client portal access email")
        log.info("client portal access email sent", extra={
            "tenant_id": str(req.tenant_id), "provider": result.provider, "message_id": result.message_id,
            "duplicate": result.duplicate})
        return WelcomeEmailOutput(email_sent=True, provider=result.provider, message_id=result.message_id,
                                  destination=result.destination, duplicate=result.duplicate)

    def _open(self, sealed: str, binding: str) -> str:
        try:
            return self._sealer.open(sealed, binding=binding)
        except SealError as err:
            # Wrong pepper on this worker (mid-rotation) or a tampered history: retrying elsewhere may help.
            raise ApplicationError(str(err), type="SealError") from err

    async def _send(self, message: EmailMessage, key: str, what: str) -> SendResult:
        """Send with the provider's idempotency key; rejections are final, outages are retried."""
        try:
            async with heartbeating():
                return await _send_unless_cancelled(self._sender, message, key)
        except EmailRejected as err:
            raise ApplicationError(f"{what} rejected: {err}", type=errors.EMAIL_REJECTED,
                                   non_retryable=True) from err
        except EmailTemporarilyUnavailable as err:
            delay = err.retry_after
            raise ApplicationError(
                f"email provider unavailable: {err}", type="EmailTemporarilyUnavailable",
                next_retry_delay=None if delay is None else timedelta(seconds=delay),
            ) from err



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

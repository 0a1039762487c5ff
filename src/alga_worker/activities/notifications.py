"""Email notification activities.

The welcome email opens the sealed temporary password, renders it and sends it with an idempotency
key tied to the admin user minted by this workflow run: a retried attempt (worker killed after the
provider accepted the message) is deduplicated by the provider, so the admin gets exactly one email.
Rejections (bad address, bad API key) are non-retryable; outages are retried by Temporal.

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
from alga_worker.email.welcome import WelcomeEmailContext, render_welcome_email
from alga_worker.models import WelcomeEmailInput, WelcomeEmailOutput
from alga_worker.security import CredentialSealer, SealError

log = logging.getLogger(__name__)


class NotificationActivities:
    def __init__(self, sender: EmailSender, sealer: CredentialSealer, login_url: str) -> None:
        self._sender = sender
        self._sealer = sealer
        self._login_url = login_url

    @activity.defn(name="send_welcome_email")
    async def send_welcome_email(self, req: WelcomeEmailInput) -> WelcomeEmailOutput:
        try:
            password = self._sealer.open(req.sealed_password, binding=req.seal_binding)
        except SealError as err:
            # Wrong pepper on this worker (mid-rotation) or a tampered history: retrying elsewhere may help.
            raise ApplicationError(str(err), type="SealError") from err
        ctx = WelcomeEmailContext(
            tenant_name=req.tenant_name, first_name=req.admin.first_name, last_name=req.admin.last_name,
            email=req.admin.email, temporary_password=password, login_url=self._login_url,
            client_portal_url=None, client_name=req.client_name,
        )
        subject, html, text = render_welcome_email(ctx)
        message = EmailMessage(
            to=[req.admin.email], subject=subject, html=html, text=text,
            tags={"email_type": "tenant_welcome", "tenant_id": str(req.tenant_id),
                  "workflow": "tenant_creation"},
        )
        key = f"welcome/{req.tenant_id}/{req.admin_user_id}"
        try:
            async with heartbeating():
                result = await _send_unless_cancelled(self._sender, message, key)
        except EmailRejected as err:
            raise ApplicationError(f"welcome email rejected: {err}", type=errors.EMAIL_REJECTED,
                                   non_retryable=True) from err
        except EmailTemporarilyUnavailable as err:
            delay = err.retry_after
            raise ApplicationError(
                f"email provider unavailable: {err}", type="EmailTemporarilyUnavailable",
                next_retry_delay=None if delay is None else timedelta(seconds=delay),
            ) from err
        log.info("welcome email sent", extra={"tenant_id": str(req.tenant_id), "provider": result.provider,
                                              "message_id": result.message_id, "duplicate": result.duplicate})
        return WelcomeEmailOutput(email_sent=True, provider=result.provider, message_id=result.message_id,
                                  destination=result.destination, duplicate=result.duplicate)



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

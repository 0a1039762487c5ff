"""The sender interface and the factory that picks a provider from settings.

Activities depend on :class:`EmailSender` only, so a test or a local run swaps Resend for the outbox by
changing ``EMAIL_PROVIDER``, not code.
"""

from __future__ import annotations

from typing import Protocol

from alga_worker.config import EmailProvider, Settings
from alga_worker.email.message import EmailMessage, SendResult
from alga_worker.email.outbox import OutboxEmailSender
from alga_worker.email.smtp import SmtpEmailSender


class EmailSender(Protocol):
    """Sends one message per idempotency key; raises only :mod:`alga_worker.email.errors` classes."""

    name: str

    async def send(self, message: EmailMessage, *, idempotency_key: str) -> SendResult: ...

    async def aclose(self) -> None: ...


def build_email_sender(settings: Settings) -> EmailSender:
    """The provider ``EMAIL_PROVIDER`` names, configured from the validated settings."""
    provider = settings.email_provider
    if provider is EmailProvider.OUTBOX:
        return OutboxEmailSender(settings.email_outbox_dir, from_address=settings.email_from_address,
                                 from_name=settings.email_from_name)
    if provider is EmailProvider.RESEND:
        if settings.resend_api_key is None:  # load_settings already refuses this; kept for direct use
            raise ValueError("RESEND_API_KEY is required when EMAIL_PROVIDER=resend")
        # Imported here: the Resend SDK and `requests` under it cost a worker on another provider ~7 MiB.
        from alga_worker.email.resend_sender import ResendEmailSender

        return ResendEmailSender(api_key=settings.resend_api_key.get_secret_value(),
                                 api_url=str(settings.resend_api_url),
                                 from_address=settings.email_from_address,
                                 from_name=settings.email_from_name)
    if provider is EmailProvider.SMTP:
        if not settings.smtp_host:
            raise ValueError("SMTP_HOST is required when EMAIL_PROVIDER=smtp")
        return SmtpEmailSender(host=settings.smtp_host, port=settings.smtp_port,
                               from_address=settings.email_from_address,
                               from_name=settings.email_from_name,
                               username=settings.smtp_username, password=settings.smtp_password,
                               starttls=settings.smtp_starttls)
    raise ValueError(f"unknown email provider: {provider}")

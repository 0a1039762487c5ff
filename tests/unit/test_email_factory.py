"""build_email_sender picks and configures the provider that EMAIL_PROVIDER names."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.fakes.resend_server import FakeResendServer
from tests.fakes.smtp_server import FakeSmtpServer

from alga_worker.config import load_settings
from alga_worker.email import EmailMessage, build_email_sender
from alga_worker.email.outbox import OutboxEmailSender
from alga_worker.email.resend_sender import ResendEmailSender
from alga_worker.email.smtp import SmtpEmailSender


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    secrets = tmp_path / "secrets"
    secrets.mkdir(exist_ok=True)
    return {"SECRETS_DIR": str(secrets), "ALGA_AUTH_KEY": "test-pepper", "DB_HOST": "localhost",
            "EMAIL_FROM_ADDRESS": "noreply@alga.test", **extra}


MESSAGE = EmailMessage(to=["admin@acme.test"], subject="Hi", html="<p>hi</p>", text="hi")


async def test_outbox_is_the_default(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    sender = build_email_sender(load_settings(_env(tmp_path, EMAIL_OUTBOX_DIR=str(outbox))))
    assert isinstance(sender, OutboxEmailSender) and sender.name == "outbox"
    result = await sender.send(MESSAGE, idempotency_key="k")
    assert Path(result.destination).parent == outbox
    await sender.aclose()


async def test_resend_from_settings(tmp_path: Path) -> None:
    with FakeResendServer() as server:
        settings = load_settings(_env(tmp_path, EMAIL_PROVIDER="RESEND", RESEND_API_KEY=server.api_key,
                                      RESEND_API_URL=server.url))
        sender = build_email_sender(settings)
        assert isinstance(sender, ResendEmailSender)
        result = await sender.send(MESSAGE, idempotency_key="k")
        assert [e.id for e in server.emails] == [result.message_id]
        await sender.aclose()


async def test_smtp_from_settings(tmp_path: Path) -> None:
    with FakeSmtpServer() as relay:
        settings = load_settings(_env(tmp_path, EMAIL_PROVIDER="smtp", SMTP_HOST=relay.host,
                                      SMTP_PORT=str(relay.port), SMTP_STARTTLS="false"))
        sender = build_email_sender(settings)
        assert isinstance(sender, SmtpEmailSender)
        result = await sender.send(MESSAGE, idempotency_key="k")
        assert relay.messages[0].message["Message-ID"] == result.message_id
        await sender.aclose()


def test_provider_requirements_come_from_settings(tmp_path: Path) -> None:
    from alga_worker.config import ConfigError

    with pytest.raises(ConfigError) as info:
        load_settings(_env(tmp_path, EMAIL_PROVIDER="resend"))
    assert "RESEND_API_KEY" in info.value.variables

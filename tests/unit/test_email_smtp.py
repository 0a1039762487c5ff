"""SMTP provider against a real SMTP relay (aiosmtpd) on loopback."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator

import pytest
from pydantic import SecretStr
from tests.fakes.smtp_server import FakeSmtpServer

from alga_worker.email import EmailMessage, EmailRejected, EmailTemporarilyUnavailable
from alga_worker.email.mime import message_id_for
from alga_worker.email.smtp import SmtpEmailSender

PASSWORD = "smtp-pa55!"


@pytest.fixture
def relay() -> Iterator[FakeSmtpServer]:
    with FakeSmtpServer(username="mailer", password=PASSWORD) as fake:
        yield fake


def _sender(relay: FakeSmtpServer, password: str = PASSWORD) -> SmtpEmailSender:
    return SmtpEmailSender(host=relay.host, port=relay.port, from_address="noreply@alga.test",
                           from_name="Alga PSA", username="mailer", password=SecretStr(password),
                           starttls=False, timeout_seconds=5, local_hostname="worker.test")


def _message(*to: str) -> EmailMessage:
    return EmailMessage(to=list(to or ["admin@acme.test"]), subject="Welcome",
                        html="<p>password Kp3$x</p>", text="password Kp3$x",
                        tags={"email_type": "tenant_welcome"})


async def test_delivers_with_deterministic_message_id(relay: FakeSmtpServer,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="alga_worker.email")
    sender = _sender(relay)
    result = await sender.send(_message("Admin@Acme.test"), idempotency_key="wf-9/welcome")

    [received] = relay.messages
    assert received.login == "mailer"
    assert received.mail_from == "noreply@alga.test"
    assert received.rcpt_tos == ["admin@acme.test"]
    mime = received.message
    expected_id = message_id_for("wf-9/welcome", "noreply@alga.test")
    assert mime["Message-ID"] == expected_id == result.message_id
    assert mime["X-Idempotency-Key"] == "wf-9/welcome"
    assert mime["X-Alga-Tag-email_type"] == "tenant_welcome"
    assert mime.get_content_type() == "multipart/alternative"
    assert result.destination == f"smtp://127.0.0.1:{relay.port}" and not result.duplicate

    # A fresh sender (another worker process) derives the same Message-ID for the same key.
    again = await _sender(relay).send(_message(), idempotency_key="wf-9/welcome")
    assert again.message_id == expected_id
    assert relay.messages[1].message["Message-ID"] == expected_id

    # Only our records: the fake relay (aiosmtpd, logger "mail.log") logs what it receives by design.
    logged = " ".join(str(r.__dict__) for r in caplog.records if r.name.startswith("alga_worker"))
    assert "Kp3$x" not in logged and PASSWORD not in logged and "admin@acme.test" not in logged
    assert "acme.test" in logged


async def test_same_sender_does_not_resend_a_key(relay: FakeSmtpServer) -> None:
    sender = _sender(relay)
    first = await sender.send(_message(), idempotency_key="k")
    second = await sender.send(_message(), idempotency_key="k")
    assert second.duplicate and second.message_id == first.message_id
    assert len(relay.messages) == 1


async def test_refused_recipient_is_rejected_and_deferred_is_transient(relay: FakeSmtpServer) -> None:
    relay.reject_domain("gone.test")
    relay.defer_domain("busy.test")
    sender = _sender(relay)
    with pytest.raises(EmailRejected, match="550") as rejected:
        await sender.send(_message("nobody@gone.test"), idempotency_key="k1")
    assert "Kp3$x" not in str(rejected.value)
    with pytest.raises(EmailTemporarilyUnavailable, match="450"):
        await sender.send(_message("someone@busy.test"), idempotency_key="k2")
    assert relay.messages == []
    # A refused send is not remembered: a retry really tries again.
    with pytest.raises(EmailRejected):
        await sender.send(_message("nobody@gone.test"), idempotency_key="k1")


async def test_partial_refusal_counts_as_sent(relay: FakeSmtpServer) -> None:
    relay.reject_domain("gone.test")
    result = await _sender(relay).send(_message("a@acme.test", "b@gone.test"), idempotency_key="k")
    assert not result.duplicate
    assert relay.messages[0].rcpt_tos == ["a@acme.test"]


async def test_bad_credentials_are_rejected(relay: FakeSmtpServer) -> None:
    with pytest.raises(EmailRejected, match="authentication failed") as info:
        await _sender(relay, password="wrong").send(_message(), idempotency_key="k")
    assert "wrong" not in str(info.value)
    assert relay.messages == []


async def test_starttls_unsupported_is_rejected(relay: FakeSmtpServer) -> None:
    sender = SmtpEmailSender(host=relay.host, port=relay.port, from_address="noreply@alga.test",
                             from_name="Alga PSA", starttls=True, timeout_seconds=5,
                             local_hostname="worker.test")
    with pytest.raises(EmailRejected, match="extension"):
        await sender.send(_message(), idempotency_key="k")


async def test_connection_refused_is_transient() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sender = SmtpEmailSender(host="127.0.0.1", port=port, from_address="noreply@alga.test",
                             from_name="Alga PSA", starttls=False, timeout_seconds=5,
                             local_hostname="worker.test")
    with pytest.raises(EmailTemporarilyUnavailable, match="unreachable"):
        await sender.send(_message(), idempotency_key="k")

"""Resend provider against a real fake Resend server on loopback (both the async and thread paths)."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator

import pytest
from tests.fakes.resend_server import FakeResendServer

from alga_worker.email import EmailMessage, EmailRejected, EmailTemporarilyUnavailable
from alga_worker.email.resend_sender import ResendEmailSender, resend_tag, retry_after_seconds

SECRET_BODY = "temporary password: Zq8!wx"


@pytest.fixture
def server() -> Iterator[FakeResendServer]:
    with FakeResendServer() as fake:
        yield fake


@pytest.fixture(params=[True, False], ids=["send_async", "to_thread"])
def sender(request: pytest.FixtureRequest, server: FakeResendServer) -> ResendEmailSender:
    # The trailing "/" is what pydantic's AnyHttpUrl gives; the sender must not post to "//emails".
    return ResendEmailSender(api_key=server.api_key, api_url=server.url + "/",
                             from_address="noreply@alga.test", from_name="Alga PSA", use_async=request.param)


def _message(to: str = "Admin@Acme.test", subject: str = "Welcome") -> EmailMessage:
    return EmailMessage(to=[to], subject=subject, html=f"<p>{SECRET_BODY}</p>", text=SECRET_BODY,
                        tags={"email_type": "tenant_welcome", "tenant_name": "Acme IT (EU)"})


async def test_sends_json_auth_and_idempotency_key(server: FakeResendServer, sender: ResendEmailSender,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="alga_worker.email")
    result = await sender.send(_message(), idempotency_key="wf-1/welcome-email")

    [email] = server.emails
    assert result.provider == "resend" and result.destination == "resend"
    assert result.message_id == email.id and not result.duplicate
    assert email.headers["authorization"] == f"Bearer {server.api_key}"
    assert email.headers["idempotency-key"] == "wf-1/welcome-email"
    assert email.body == {
        "from": "Alga PSA <noreply@alga.test>",
        "to": ["admin@acme.test"],
        "subject": "Welcome",
        "html": f"<p>{SECRET_BODY}</p>",
        "text": SECRET_BODY,
        "tags": [{"name": "email_type", "value": "tenant_welcome"},
                 {"name": "tenant_name", "value": "Acme_IT__EU_"}],
    }
    logged = " ".join(str(r.__dict__) for r in caplog.records)
    assert result.message_id in logged and "acme.test" in logged
    assert "Zq8!wx" not in logged and "admin@acme.test" not in logged


async def test_retry_with_same_key_returns_first_id(server: FakeResendServer,
                                                    sender: ResendEmailSender) -> None:
    first = await sender.send(_message(), idempotency_key="k-1")
    again = await sender.send(_message(), idempotency_key="k-1")
    assert again.message_id == first.message_id
    assert len(server.emails) == 1


async def test_same_key_different_body_is_rejected(sender: ResendEmailSender) -> None:
    await sender.send(_message(), idempotency_key="k-2")
    with pytest.raises(EmailRejected, match="invalid_idempotent_request"):
        await sender.send(_message(subject="Other"), idempotency_key="k-2")


async def test_wrong_key_is_rejected(server: FakeResendServer) -> None:
    sender = ResendEmailSender(api_key="re_wrong", api_url=server.url, from_address="noreply@alga.test",
                               from_name="Alga PSA")
    with pytest.raises(EmailRejected, match="403 invalid_api_key"):
        await sender.send(_message(), idempotency_key="k")
    assert server.emails == []


async def test_401_and_422_are_rejected(server: FakeResendServer, sender: ResendEmailSender) -> None:
    server.fail_next(1, 401, name="restricted_api_key", message="This API key can only send emails.")
    with pytest.raises(EmailRejected, match="401"):
        await sender.send(_message(), idempotency_key="k")
    with pytest.raises(EmailRejected, match="422 validation_error") as info:
        await sender.send(_message(to="someone@mailbox.invalid"), idempotency_key="k-bad")
    assert "Zq8!wx" not in str(info.value)
    assert server.emails == []


async def test_429_and_500_are_transient_then_retry_succeeds(server: FakeResendServer,
                                                             sender: ResendEmailSender) -> None:
    server.fail_next(1, 429, retry_after="7")
    server.fail_next(1, 500)
    server.fail_next(1, 503, name="service_unavailable")
    with pytest.raises(EmailTemporarilyUnavailable) as rate_limited:
        await sender.send(_message(), idempotency_key="k-3")
    assert rate_limited.value.retry_after == 7.0
    with pytest.raises(EmailTemporarilyUnavailable) as failed:
        await sender.send(_message(), idempotency_key="k-3")
    assert failed.value.retry_after is None
    with pytest.raises(EmailTemporarilyUnavailable, match="503"):
        await sender.send(_message(), idempotency_key="k-3")
    result = await sender.send(_message(), idempotency_key="k-3")
    assert [e.id for e in server.emails] == [result.message_id]


async def test_response_without_id_or_json_is_not_success(server: FakeResendServer,
                                                           sender: ResendEmailSender) -> None:
    """B8: the original logged a send as successful with message id "unknown"."""
    server.reply_next({"object": "email"})
    with pytest.raises(EmailTemporarilyUnavailable, match="without a message id"):
        await sender.send(_message(), idempotency_key="k-4")
    server.reply_next(b"<html>Bad gateway</html>", status=502, content_type="text/html")
    with pytest.raises(EmailTemporarilyUnavailable, match="502"):
        await sender.send(_message(), idempotency_key="k-4")
    result = await sender.send(_message(), idempotency_key="k-4")
    assert [e.id for e in server.emails] == [result.message_id]


async def test_connection_refused_is_transient() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on the port now: the connection is refused at once.
    for use_async in (True, False):
        sender = ResendEmailSender(api_key="re_x", api_url=f"http://127.0.0.1:{port}",
                                   from_address="noreply@alga.test", from_name="Alga PSA",
                                   use_async=use_async)
        with pytest.raises(EmailTemporarilyUnavailable):
            await sender.send(_message(), idempotency_key="k")


def test_tag_sanitising_and_retry_after_parsing() -> None:
    assert resend_tag("tenant-1_ok") == "tenant-1_ok"
    assert resend_tag("Ünïcode & spaces") == "_n_code___spaces"
    assert resend_tag("") == "unknown"
    assert len(resend_tag("x" * 300)) == 256
    assert retry_after_seconds({"Retry-After": "2.5"}) == 2.5
    assert retry_after_seconds({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0
    assert retry_after_seconds({"retry-after": "soon"}) is None
    assert retry_after_seconds({}) is None

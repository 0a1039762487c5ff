"""Outbox provider: a parseable multipart .eml per key, written once, in a private folder."""

from __future__ import annotations

import stat
from email import message_from_bytes, policy
from email.message import EmailMessage as MimeMessage
from pathlib import Path

import pytest
from pydantic import ValidationError

from alga_worker.email import EmailMessage
from alga_worker.email.outbox import OutboxEmailSender


def _message(**overrides: object) -> EmailMessage:
    fields: dict[str, object] = {
        "to": ["Admin@Example.COM"],
        "subject": "Hello",
        "html": "<p>Hi <b>there</b>, password s3cr3t!</p>",
        "text": "Hi there, password s3cr3t!",
        "tags": {"email_type": "tenant_welcome", "tenant_id": "0b9c-42"},
    }
    fields.update(overrides)
    return EmailMessage.model_validate(fields)


def _parse(path: Path) -> MimeMessage:
    return message_from_bytes(path.read_bytes(), policy=policy.default)


async def test_writes_parseable_multipart_eml(tmp_path: Path) -> None:
    outbox_dir = tmp_path / "nested" / "outbox"
    sender = OutboxEmailSender(outbox_dir, from_address="noreply@alga.test", from_name="Alga PSA")

    result = await sender.send(_message(), idempotency_key="wf-1/welcome")

    assert stat.S_IMODE(outbox_dir.stat().st_mode) == 0o700
    path = Path(result.destination)
    assert path.parent == outbox_dir and path.suffix == ".eml"
    assert result.provider == "outbox" and result.message_id == path.stem and not result.duplicate
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert b"\r\n" in path.read_bytes()
    mime = _parse(path)
    assert mime.get_content_type() == "multipart/alternative"
    assert mime["From"] == "Alga PSA <noreply@alga.test>"
    assert mime["To"] == "admin@example.com"
    assert mime["Subject"] == "Hello"
    assert mime["Date"] and mime["Message-ID"].endswith("@alga.test>")
    assert mime["X-Idempotency-Key"] == "wf-1/welcome"
    assert mime["X-Alga-Tag-email_type"] == "tenant_welcome"
    assert mime["X-Alga-Tag-tenant_id"] == "0b9c-42"
    text = mime.get_body(("plain",))
    html = mime.get_body(("html",))
    assert text is not None and html is not None
    assert text.get_content().strip() == "Hi there, password s3cr3t!"
    assert "<b>there</b>" in html.get_content()
    assert [p.name for p in outbox_dir.iterdir()] == [path.name]  # no temp files left


async def test_same_key_is_written_once(tmp_path: Path) -> None:
    sender = OutboxEmailSender(tmp_path, from_address="noreply@alga.test", from_name="Alga PSA")
    first = await sender.send(_message(), idempotency_key="wf-1/welcome")
    before = Path(first.destination).read_bytes()

    second = await sender.send(_message(subject="Changed"), idempotency_key="wf-1/welcome")
    other = await sender.send(_message(), idempotency_key="wf-2/welcome")

    assert second.duplicate and second.message_id == first.message_id
    assert Path(first.destination).read_bytes() == before
    assert not other.duplicate and other.message_id != first.message_id
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [Path(first.destination).name, Path(other.destination).name])


async def test_keeps_existing_directory_mode(tmp_path: Path) -> None:
    tmp_path.chmod(0o750)
    sender = OutboxEmailSender(tmp_path, from_address="noreply@alga.test", from_name="Alga PSA")
    await sender.send(_message(), idempotency_key="k")
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o750


def test_message_validation_keeps_headers_safe() -> None:
    assert _message(to=[" Bob@Example.com "]).to == ["bob@example.com"]
    for bad in (["not-an-address"], ["a@b.com\r\nBcc: x@y.com"], ["Bob <bob@example.com>"], []):
        with pytest.raises(ValidationError):
            _message(to=bad)
    with pytest.raises(ValidationError):
        _message(subject="Hi\r\nBcc: x@y.com")
    with pytest.raises(ValidationError):
        _message(tags={"bad name": "x"})
    assert "s3cr3t" not in repr(_message())

"""Build the RFC 5322 message that the outbox writes and the SMTP provider sends.

One builder for both so that what a developer opens from the outbox is byte-for-byte the kind of
message a relay receives. The Message-ID is derived from the idempotency key, not random: a retried
send of the same logical message carries the same Message-ID, which lets mail servers and mailbox
providers drop the duplicate (SMTP has no idempotency protocol of its own).
"""

from __future__ import annotations

import hashlib
from email.message import EmailMessage as MimeMessage
from email.utils import formataddr, formatdate

from alga_worker.email.message import EmailMessage, recipient_domain

IDEMPOTENCY_HEADER = "X-Idempotency-Key"
TAG_HEADER_PREFIX = "X-Alga-Tag-"


def key_digest(idempotency_key: str) -> str:
    """A stable, file-name-safe and header-safe digest of an idempotency key (32 hex characters)."""
    return hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()[:32]


def message_id_for(idempotency_key: str, from_address: str) -> str:
    """The deterministic ``Message-ID`` for a key: ``<digest@sender-domain>``."""
    return f"<{key_digest(idempotency_key)}@{recipient_domain(from_address)}>"


def build_mime(
    message: EmailMessage,
    *,
    idempotency_key: str,
    from_address: str,
    from_name: str,
) -> MimeMessage:
    """A multipart/alternative message: text first, HTML second (clients show the last they can)."""
    if any(c in idempotency_key for c in "\r\n"):
        raise ValueError("idempotency key must be one line")
    mime = MimeMessage()
    mime["From"] = formataddr((from_name, from_address))
    mime["To"] = ", ".join(message.to)
    mime["Subject"] = message.subject
    mime["Date"] = formatdate(usegmt=True)
    mime["Message-ID"] = message_id_for(idempotency_key, from_address)
    mime[IDEMPOTENCY_HEADER] = idempotency_key
    for name, value in message.tags.items():
        mime[TAG_HEADER_PREFIX + name] = value
    mime.set_content(message.text, subtype="plain", charset="utf-8")
    mime.add_alternative(message.html, subtype="html", charset="utf-8")
    return mime

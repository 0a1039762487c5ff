"""The Resend provider, through the official ``resend`` SDK.

Two things the original got wrong are fixed here (B8): the response is checked for an ``id``, and every
error is classified instead of swallowed. Each send carries an ``Idempotency-Key`` so that a Temporal
retry after a lost response makes Resend answer with the first send's id instead of mailing again.

The SDK keeps its configuration in module globals (``resend.api_key``, ``resend.api_url``), so one
process can talk to one Resend account; the worker only ever needs one, and this class sets them once.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import formataddr, parsedate_to_datetime
from typing import NoReturn

import resend
from resend.exceptions import ResendError

from alga_worker.email.errors import EmailRejected, EmailTemporarilyUnavailable
from alga_worker.email.message import EmailMessage, SendResult

logger = logging.getLogger("alga_worker.email")

# Resend allows tag names and values of ASCII letters, numbers, underscores and dashes, 256 at most.
_TAG_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_TAG_MAX = 256
# Resend's documented limit on Idempotency-Key length.
_IDEMPOTENCY_KEY_MAX = 256
# 409 types: the first means "same key, different body" (a bug: permanent), the second "the first
# request with this key is still being processed" (retry).
_CONCURRENT_IDEMPOTENT = "concurrent_idempotent_requests"


def resend_tag(value: str) -> str:
    """Make ``value`` acceptable as a Resend tag name or value (unsafe characters become ``_``)."""
    cleaned = _TAG_UNSAFE.sub("_", value)[:_TAG_MAX]
    return cleaned or "unknown"


def resend_idempotency_key(key: str) -> str:
    """Keys over Resend's length limit are replaced by their SHA-256, which is just as unique."""
    if len(key) <= _IDEMPOTENCY_KEY_MAX and key.isascii() and key.isprintable():
        return key
    return "sha256-" + hashlib.sha256(key.encode("utf-8")).hexdigest()


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Parse ``Retry-After`` (seconds or an HTTP date); ``None`` when absent or unreadable."""
    lowered = {k.lower(): v for k, v in headers.items()}
    raw = lowered.get("retry-after") or lowered.get("ratelimit-reset")
    if not raw:
        return None
    raw = raw.strip()
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class ResendEmailSender:
    """Sends through the Resend HTTP API; async when the SDK has its httpx client, else in a thread."""

    name: str = "resend"

    def __init__(
        self,
        *,
        api_key: str,
        api_url: str,
        from_address: str,
        from_name: str,
        timeout_seconds: int = 30,
        use_async: bool | None = None,
    ) -> None:
        """``use_async=None`` picks ``send_async`` when the SDK's httpx client is importable; ``False``
        forces the SDK's sync ``requests`` client in a worker thread."""
        if not api_key:
            raise ValueError("a Resend API key is required")
        # Module-global by the SDK's design. Pydantic URLs end in "/", the SDK appends "/emails".
        resend.api_key = api_key
        resend.api_url = api_url.rstrip("/")
        resend.default_http_client = resend.RequestsClient(timeout=timeout_seconds)
        self._async = False
        if use_async is not False:
            try:
                from resend.http_client_httpx import HTTPXClient
            except ImportError:  # httpx missing: the sync client in a worker thread
                if use_async:
                    raise
            else:
                resend.default_async_http_client = HTTPXClient(timeout=timeout_seconds)
                self._async = True
        self._from = formataddr((from_name, from_address))

    @property
    def uses_async_client(self) -> bool:
        """Whether sends go through ``send_async`` (httpx) rather than a thread."""
        return self._async

    def params_for(self, message: EmailMessage) -> resend.Emails.SendParams:
        """The ``POST /emails`` body for ``message``."""
        tags: list[resend.Tag] = [
            {"name": resend_tag(k), "value": resend_tag(v)} for k, v in message.tags.items()
        ]
        return {
            "from": self._from,
            "to": list(message.to),
            "subject": message.subject,
            "html": message.html,
            "text": message.text,
            "tags": tags,
        }

    async def send(self, message: EmailMessage, *, idempotency_key: str) -> SendResult:
        """Send once per key: Resend replays the first response for a repeated key (24 hours)."""
        params = self.params_for(message)
        options: resend.Emails.SendOptions = {"idempotency_key": resend_idempotency_key(idempotency_key)}
        try:
            if self._async:
                response = await resend.Emails.send_async(params, options)
            else:
                response = await asyncio.to_thread(resend.Emails.send, params, options)
        except ResendError as err:
            _raise_classified(err)
        except ValueError as err:  # client-side parameter checks in the SDK
            raise EmailRejected(f"resend refused the parameters: {err}") from err
        message_id = response.get("id") if isinstance(response, Mapping) else None
        if not isinstance(message_id, str) or not message_id:
            # Ambiguous: the request may have been accepted. A retry with the same key is safe.
            raise EmailTemporarilyUnavailable("resend answered without a message id")
        logger.info("email sent", extra={"provider": self.name, "message_id": message_id,
                                         "recipient_domains": message.recipient_domains})
        return SendResult(provider=self.name, message_id=message_id, destination="resend")

    async def aclose(self) -> None:
        """Nothing pooled: the SDK's httpx client opens a connection per request."""


def _raise_classified(err: ResendError) -> NoReturn:
    """Turn an SDK error into EmailRejected or EmailTemporarilyUnavailable by status and type."""
    try:
        code = int(err.code)
    except (TypeError, ValueError):
        code = 500
    error_type = str(getattr(err, "error_type", "") or "")
    detail = f"resend {code} {error_type}: {err.message}".rstrip()
    headers = getattr(err, "headers", None) or {}
    transient = (
        code == 429
        or code >= 500
        or code == 408
        or (code == 409 and error_type == _CONCURRENT_IDEMPOTENT)
    )
    logger.warning("email send failed", extra={"provider": "resend", "status": code,
                                               "error_type": error_type, "transient": transient})
    if transient:
        raise EmailTemporarilyUnavailable(detail, retry_after=retry_after_seconds(headers)) from err
    raise EmailRejected(detail) from err

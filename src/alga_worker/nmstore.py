"""nm-store's two endpoints: the checkout-session status report and the signed completion callback.

nm-store (Nine Minds' web shop) shows its customer where a signup stands and learns the new tenant's
id from these calls (reference sections 3.8, 3.9 and 7; the wire protocol is in docs/checkout.md):

- ``POST {NMSTORE_BASE_URL}/api/internal/checkout-session-status`` with ``X-Internal-Secret``;
- ``POST {NM_STORE_URL or NMSTORE_BASE_URL}/api/webhooks/temporal`` with ``X-Temporal-Signature``, the
  lower-case hex HMAC-SHA256 of the exact body bytes keyed with ``TEMPORAL_WEBHOOK_SECRET``.

What differs from the TypeScript original on purpose, and why:

- **No default host.** The original posted to ``http://localhost:3000`` when a URL was unset and
  skipped the callback "successfully" without a secret. Here a missing URL or secret is a
  non-retryable ``ConfigurationError`` naming the variable, raised before any I/O.
- **Deterministic bodies and idempotency keys.** Each request carries an ``Idempotency-Key`` derived
  from the workflow id and the status only, and its body is a pure function of the activity input
  (plus the configured secrets, which only ever remove text). A retried activity, or an operator's
  ``alga-worker checkout resend``, sends the same bytes under the same key, so nm-store can answer a
  repeat with its first answer instead of acting twice.
- **One classification.** 5xx, 429, connection failures and timeouts retry (honouring
  ``Retry-After``, capped); 401/403 are ``NmStoreAuthError`` naming the secret's *variable*; any other
  4xx is ``NmStoreRejectedError`` with a bounded, redacted summary of nm-store's answer. Never a
  secret in a message: these messages end up in workflow history.

Body encoding (the signature covers these exact bytes): the keys in the documented order, compact
separators, UTF-8, and non-ASCII characters written as themselves (``ensure_ascii=False``). That is
byte for byte what JavaScript's ``JSON.stringify`` produces for the same object, so nm-store can
verify the signature either over the raw request body or over ``JSON.stringify(parsedBody)``, and
the body stays the same as the original worker's. Timestamps are written as
``Date.prototype.toISOString`` does: UTC, milliseconds, ``Z``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
import unicodedata
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import AnyHttpUrl
from temporalio.exceptions import ApplicationError

from alga_worker import errors
from alga_worker.config import Settings
from alga_worker.models import CheckoutStatus, CheckoutStatusReport, NmStoreCallback, NmStoreDelivery
from alga_worker.runtime import metrics
from alga_worker.runtime.metrics import call_outcome, record

log = logging.getLogger(__name__)

STATUS_PATH = "/api/internal/checkout-session-status"
CALLBACK_PATH = "/api/webhooks/temporal"
SECRET_HEADER = "X-Internal-Secret"  # noqa: S105 -- a header name, not a value
SIGNATURE_HEADER = "X-Temporal-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"

KIND_STATUS = "status"
KIND_CALLBACK = "callback"
# The metric label of each kind (``alga_nmstore_requests_total{operation}``).
_OPERATIONS = {KIND_STATUS: "status_report", KIND_CALLBACK: "callback"}

CONNECT_TIMEOUT_SECONDS = 5.0
TOTAL_TIMEOUT_SECONDS = 15.0  # one attempt, connect to last byte; Temporal retries the activity
# A Retry-After beyond this is not honoured as such: a signup waiting an hour on a rate limiter is worse
# than one more early attempt (which nm-store can answer with another 429).
MAX_RETRY_AFTER_SECONDS = 300.0
ERROR_SUMMARY_MAX = 500
RESPONSE_PEEK_BYTES = 4096  # how much of a refusal's body is read for its summary
REDACTED = "[REDACTED]"
MIN_SECRET_LENGTH = 4  # as the log redactor: shorter values would shred ordinary words

_STRIPPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^\s/@]+@")


# ---- keys, bodies, signatures (pure: the workflow, the activities and the CLI derive the same) ----


def _status_value(status: CheckoutStatus | str) -> str:
    return status.value if isinstance(status, CheckoutStatus) else CheckoutStatus(status).value


def status_idempotency_key(workflow_id: str, status: CheckoutStatus | str) -> str:
    """``Idempotency-Key`` of a status report: one per (workflow id, status), whatever the attempt."""
    return hashlib.sha256(f"checkout-status/{workflow_id}/{_status_value(status)}".encode()).hexdigest()


def callback_idempotency_key(workflow_id: str, status: CheckoutStatus | str) -> str:
    """``Idempotency-Key`` of a callback: its own namespace, so it never equals a status report's key."""
    return hashlib.sha256(f"checkout-callback/{workflow_id}/{_status_value(status)}".encode()).hexdigest()


def sign(body: bytes, secret: str) -> str:
    """Lower-case hex HMAC-SHA256 of ``body`` keyed with ``secret`` (UTF-8), as nm-store verifies it."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def iso_utc(moment: datetime) -> str:
    """``2025-08-19T12:34:56.789Z``: what JavaScript's ``toISOString`` writes (naive means UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def encode_body(document: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON in the dict's key order, equal to ``JSON.stringify`` output (see module doc)."""
    text = json.dumps(document, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: no JSON text nm-store could verify
        raise errors.validation_error("nm-store body holds text that is not valid Unicode") from None


def status_document(report: CheckoutStatusReport, secrets: Iterable[str]) -> dict[str, Any]:
    """``{checkoutSessionId, workflowStatus, workflowId, workflowCompletedAt?, error?}``, absent keys
    omitted; ``workflowCompletedAt`` only for ``completed``; the error redacted and bounded."""
    document: dict[str, Any] = {
        "checkoutSessionId": report.checkout_session_id,
        "workflowStatus": report.workflow_status.value,
        "workflowId": report.workflow_id,
    }
    if report.workflow_status is CheckoutStatus.COMPLETED and report.workflow_completed_at is not None:
        document["workflowCompletedAt"] = iso_utc(report.workflow_completed_at)
    if report.error is not None:
        document["error"] = safe_error_summary(report.error, secrets)
    return document


def callback_document(callback: NmStoreCallback, secrets: Iterable[str]) -> dict[str, Any]:
    """``{sessionId, algaTenantId, status, error?}``: ``algaTenantId`` always present (null when no
    tenant exists), ``error`` only when set; ``workflow_id`` is not sent (it only derives the key)."""
    document: dict[str, Any] = {
        "sessionId": callback.session_id,
        "algaTenantId": callback.alga_tenant_id,
        "status": callback.status.value,
    }
    if callback.error is not None:
        document["error"] = safe_error_summary(callback.error, secrets)
    return document


def status_body(report: CheckoutStatusReport, secrets: Iterable[str]) -> bytes:
    return encode_body(status_document(report, secrets))


def callback_body(callback: NmStoreCallback, secrets: Iterable[str]) -> bytes:
    return encode_body(callback_document(callback, secrets))


# ---- secret-free text ----


def _secret_variants(secrets: Iterable[str]) -> list[str]:
    """Each secret as written, JSON-escaped and URL-encoded (how it shows up inside other text)."""
    variants: set[str] = set()
    for secret in secrets:
        if len(secret) >= MIN_SECRET_LENGTH:
            variants |= {secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1],
                         quote(secret, safe="")}
    return sorted(variants, key=len, reverse=True)


def safe_error_summary(text: str, secrets: Iterable[str], limit: int = ERROR_SUMMARY_MAX) -> str:
    """``text`` fit for nm-store, workflow history and logs: every configured secret (and any
    ``scheme://user:password@`` credentials) replaced by ``[REDACTED]``, control, format and separator
    characters turned into spaces, whitespace collapsed, at most ``limit`` characters.

    Redaction comes first, so truncation can never leave a recognisable prefix of a secret behind.
    """
    for variant in _secret_variants(secrets):
        text = text.replace(variant, REDACTED)
    text = _URL_USERINFO.sub(rf"\1{REDACTED}@", text)
    text = "".join(" " if unicodedata.category(c) in _STRIPPED_CATEGORIES else c for c in text)
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: max(limit - 1, 0)] + "…"
    return text


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds (delta-seconds or an HTTP date), capped at MAX_RETRY_AFTER_SECONDS;
    ``None`` when absent or unreadable (the retry policy's backoff applies)."""
    if value is None or not value.strip():
        return None
    raw = value.strip()
    seconds: float | None
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER_SECONDS)


# ---- the client ----


def new_http_client(connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
                    total_timeout: float = TOTAL_TIMEOUT_SECONDS) -> httpx.AsyncClient:
    """The pooled client the activities share.

    Redirects are not followed (a redirect would carry the secret header to another place, and means
    the base URL is wrong anyway). Proxy variables are ignored (``trust_env=False``): nm-store is an
    in-cluster service, and a stray ``HTTP_PROXY`` must not receive ``X-Internal-Secret``.
    """
    return httpx.AsyncClient(timeout=httpx.Timeout(total_timeout, connect=connect_timeout),
                             follow_redirects=False, trust_env=False)


def _url(base: AnyHttpUrl, path: str) -> str:
    return str(base).rstrip("/") + path


def _headers(auth_header: str, auth_value: str, idempotency_key: str) -> list[tuple[bytes, bytes]]:
    """Request headers as bytes: a secret is sent as its UTF-8 bytes, whatever characters it has
    (httpx would refuse a non-ASCII ``str`` value, and retrying would not change that)."""
    return [(b"Content-Type", b"application/json"), (auth_header.encode("ascii"), auth_value.encode("utf-8")),
            (IDEMPOTENCY_HEADER.encode("ascii"), idempotency_key.encode("ascii"))]


class NmStoreClient:
    """Sends one status report or callback per call, classifying every outcome (see module doc).

    ``settings`` supplies the URLs and secrets; ``http`` is shared and closed by its owner.
    """

    def __init__(self, settings: Settings, http: httpx.AsyncClient, *,
                 total_timeout: float = TOTAL_TIMEOUT_SECONDS) -> None:
        self._settings = settings
        self._http = http
        self._total_timeout = total_timeout

    @property
    def secrets(self) -> list[str]:
        """Every configured secret value: removed from anything this client sends or raises."""
        return self._settings.secret_values()

    async def report_status(self, report: CheckoutStatusReport) -> NmStoreDelivery:
        """POST the status report; raises a typed ``ApplicationError`` for anything but a 2xx."""
        base, secret = self._settings.nmstore_base_url, self._settings.internal_api_shared_secret
        if base is None or secret is None:
            missing = [name for name, value in (("NMSTORE_BASE_URL", base), ("INTERNAL_API_SHARED_SECRET", secret))
                       if value is None]
            raise errors.configuration_error(
                f"cannot report the checkout status to nm-store: {', '.join(missing)} not set",
                {"missing": missing})
        body = status_body(report, self.secrets)
        key = status_idempotency_key(report.workflow_id, report.workflow_status)
        headers = _headers(SECRET_HEADER, secret.get_secret_value(), key)
        return await self._post(KIND_STATUS, report.workflow_status, _url(base, STATUS_PATH), STATUS_PATH, body,
                                headers, key, auth_variable="INTERNAL_API_SHARED_SECRET",
                                credential=f"the {SECRET_HEADER} header")

    async def send_callback(self, callback: NmStoreCallback) -> NmStoreDelivery:
        """POST the signed callback; raises a typed ``ApplicationError`` for anything but a 2xx."""
        base, secret = self._settings.callback_base_url, self._settings.temporal_webhook_secret
        if base is None or secret is None:
            missing = [name for name, value in (("NM_STORE_URL (or NMSTORE_BASE_URL)", base),
                                                ("TEMPORAL_WEBHOOK_SECRET", secret)) if value is None]
            raise errors.configuration_error(
                f"cannot send the checkout callback to nm-store: {', '.join(missing)} not set",
                {"missing": missing})
        body = callback_body(callback, self.secrets)
        key = callback_idempotency_key(callback.workflow_id, callback.status)
        headers = _headers(SIGNATURE_HEADER, sign(body, secret.get_secret_value()), key)
        return await self._post(KIND_CALLBACK, callback.status, _url(base, CALLBACK_PATH), CALLBACK_PATH, body,
                                headers, key, auth_variable="TEMPORAL_WEBHOOK_SECRET",
                                credential=f"the {SIGNATURE_HEADER} signature")

    async def _post(self, kind: str, status: CheckoutStatus, url: str, path: str, body: bytes,
                    headers: list[tuple[bytes, bytes]], key: str, *, auth_variable: str,
                    credential: str) -> NmStoreDelivery:
        """:meth:`_exchange`, counted by outcome (``alga_nmstore_requests_total``)."""
        operation = _OPERATIONS.get(kind, metrics.OTHER)
        try:
            delivery = await self._exchange(kind, status, url, path, body, headers, key,
                                            auth_variable=auth_variable, credential=credential)
        except ApplicationError as err:
            record(metrics.NMSTORE_REQUESTS, operation=operation, outcome=call_outcome(err))
            raise
        record(metrics.NMSTORE_REQUESTS, operation=operation, outcome=call_outcome(None))
        return delivery

    async def _exchange(self, kind: str, status: CheckoutStatus, url: str, path: str, body: bytes,
                        headers: list[tuple[bytes, bytes]], key: str, *, auth_variable: str,
                        credential: str) -> NmStoreDelivery:
        what = f"POST {path}"
        try:
            async with asyncio.timeout(self._total_timeout):
                response = await self._http.send(self._http.build_request("POST", url, content=body,
                                                                          headers=headers), stream=True)
                try:
                    peek = await _read_some(response) if not response.is_success else b""
                finally:
                    await response.aclose()
        except (TimeoutError, httpx.TimeoutException) as err:
            raise self._unavailable(f"nm-store did not answer {what} within the time limit "
                                    f"({type(err).__name__})", None, None) from None
        except httpx.RequestError as err:  # transport failures, undecodable answers
            reason = safe_error_summary(str(err), self.secrets, 200)
            raise self._unavailable(f"nm-store unreachable for {what}: {type(err).__name__}"
                                    + (f" ({reason})" if reason else ""), None, None) from None
        code = response.status_code
        if response.is_success:
            log.info("nm-store accepted", extra={"nmstore_kind": kind, "checkout_status": status.value,
                                                 "http_status": code, "idempotency_key": key})
            return NmStoreDelivery(kind=kind, status=status, http_status=code, idempotency_key=key,
                                   delivered_at=datetime.now(UTC))
        summary = safe_error_summary(peek.decode("utf-8", errors="replace"), self.secrets)
        log.warning("nm-store refused", extra={"nmstore_kind": kind, "checkout_status": status.value,
                                               "http_status": code, "idempotency_key": key})
        if code >= 500 or code in (408, 429):
            delay = retry_after_seconds(response.headers.get("Retry-After"))
            raise self._unavailable(f"nm-store answered {what} with HTTP {code}"
                                    + (f": {summary}" if summary else ""), code, delay)
        if code in (401, 403):
            raise ApplicationError(
                f"nm-store refused {credential} on {what} (HTTP {code}): check that {auth_variable} "
                "holds the value nm-store expects", {"httpStatus": code, "variable": auth_variable},
                type=errors.NMSTORE_AUTH, non_retryable=True)
        if 300 <= code < 400:
            summary = "redirect not followed: check the nm-store base URL"
        raise ApplicationError(f"nm-store rejected {what} with HTTP {code}" + (f": {summary}" if summary else ""),
                               {"httpStatus": code}, type=errors.NMSTORE_REJECTED, non_retryable=True)

    @staticmethod
    def _unavailable(message: str, code: int | None, delay: float | None) -> ApplicationError:
        details: dict[str, Any] = {} if code is None else {"httpStatus": code}
        if delay is not None:
            details["retryAfterSeconds"] = delay
        return ApplicationError(message, details, type=errors.NMSTORE_UNAVAILABLE, non_retryable=False,
                                next_retry_delay=None if delay is None else timedelta(seconds=delay))


async def _read_some(response: httpx.Response) -> bytes:
    """At most RESPONSE_PEEK_BYTES of a refusal's body: enough to explain it, bounded in memory."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= RESPONSE_PEEK_BYTES:
            break
    return b"".join(chunks)[:RESPONSE_PEEK_BYTES]

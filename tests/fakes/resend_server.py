"""A fake Resend API: a real HTTP server on 127.0.0.1 that speaks Resend's ``POST /emails`` protocol.

What it reproduces, from Resend's API reference, because the worker depends on each point:

* ``Authorization: Bearer <key>``: no key answers 401 ``missing_api_key``, a wrong key 403
  ``invalid_api_key`` (Resend's documented pair);
* ``Idempotency-Key``: the same key with the same body replays the first ``{"id": ...}`` without a
  second message; the same key with another body answers 409 ``invalid_idempotent_request``;
* validation: a missing field or an invalid ``to`` answers 422 ``validation_error`` (addresses in the
  reserved ``.invalid`` top-level domain count as invalid, so tests can trigger it with an address the
  worker itself accepts);
* scripted outages: :meth:`FakeResendServer.fail_next` makes the next N requests answer 429 or 5xx,
  with an optional ``Retry-After``; :meth:`FakeResendServer.reply_next` queues any raw answer.

Every accepted message is recorded (body and headers) for assertions. Used by unit and integration
tests alike; start it with ``with FakeResendServer() as server:`` and point ``RESEND_API_URL`` at
``server.url``.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import uuid
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

_ADDRESS = re.compile(r"^[^\s@<>]+@[^\s@<>]+\.[^\s@<>]+$")
_NAME_ADDR = re.compile(r"^(?:.*<([^<>]+)>|([^<>\s]+))$")
_TAG_PART = re.compile(r"^[A-Za-z0-9_-]{1,256}$")


@dataclass(frozen=True)
class ReceivedEmail:
    """One accepted ``POST /emails``: the JSON body, the request headers and the id handed out."""

    id: str
    body: dict[str, Any]
    headers: dict[str, str]


@dataclass(frozen=True)
class ScriptedReply:
    """A canned answer for one request: status, raw body, content type and extra headers."""

    status: int
    body: bytes
    content_type: str = "application/json; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()


@dataclass
class _State:
    api_key: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    emails: list[ReceivedEmail] = field(default_factory=list)
    requests: list[dict[str, str]] = field(default_factory=list)
    idempotency: dict[str, tuple[str, str]] = field(default_factory=dict)  # key -> (body hash, id)
    scripted: deque[ScriptedReply] = field(default_factory=deque)


class FakeResendServer:
    """A threaded HTTP server on an ephemeral loopback port; a context manager."""

    def __init__(self, api_key: str = "re_test_fake_key") -> None:
        self._state = _State(api_key=api_key)
        state = self._state

        class Handler(_ResendHandler):
            shared = state

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        # A short poll interval only so that shutdown() returns quickly; requests are served at once.
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                        name="fake-resend", daemon=True)

    @property
    def api_key(self) -> str:
        return self._state.api_key

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def emails(self) -> list[ReceivedEmail]:
        """Accepted messages, in arrival order (replays of an idempotent request not repeated)."""
        with self._state.lock:
            return list(self._state.emails)

    @property
    def requests(self) -> list[dict[str, str]]:
        """Headers (lower-cased names) of every request received, including refused ones."""
        with self._state.lock:
            return list(self._state.requests)

    def fail_next(self, count: int, status: int = 500, *, name: str | None = None,
                  message: str = "scripted failure", retry_after: str | None = None) -> None:
        """Answer the next ``count`` requests with a Resend error (checked after authentication)."""
        default_name = {429: "rate_limit_exceeded"}.get(status, "application_error")
        body = json.dumps({"statusCode": status, "name": name or default_name, "message": message})
        headers = (("Retry-After", retry_after),) if retry_after else ()
        for _ in range(count):
            self.reply_next(body.encode(), status=status, headers=headers)

    def reply_next(self, body: bytes | dict[str, Any], *, status: int = 200,
                   content_type: str = "application/json; charset=utf-8",
                   headers: tuple[tuple[str, str], ...] = ()) -> None:
        """Answer the next request with exactly this (e.g. a 200 without an id, or a proxy's HTML 502)."""
        raw = json.dumps(body).encode() if isinstance(body, dict) else body
        with self._state.lock:
            self._state.scripted.append(ScriptedReply(status, raw, content_type, headers))

    def start(self) -> FakeResendServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def __enter__(self) -> FakeResendServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


class _ResendHandler(BaseHTTPRequestHandler):
    shared: _State
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def _reply(self, status: int, payload: dict[str, Any], extra: dict[str, str] | None = None) -> None:
        self._send_raw(status, json.dumps(payload).encode(), "application/json; charset=utf-8", extra)

    def _send_raw(self, status: int, data: bytes, content_type: str,
                  extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, name: str, message: str, extra: dict[str, str] | None = None) -> None:
        self._reply(status, {"statusCode": status, "name": name, "message": message}, extra)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        headers = {k.lower(): v for k, v in self.headers.items()}
        state = self.shared
        with state.lock:
            state.requests.append(headers)
        if self.path != "/emails":
            self._error(404, "not_found", "The requested endpoint does not exist.")
            return
        auth = headers.get("authorization", "")
        if not auth.startswith("Bearer ") or not auth[len("Bearer "):].strip():
            self._error(401, "missing_api_key", "Missing API key in the authorization header.")
            return
        if auth[len("Bearer "):] != state.api_key:
            self._error(403, "invalid_api_key", "API key is invalid.")
            return
        with state.lock:
            scripted = state.scripted.popleft() if state.scripted else None
        if scripted is not None:
            self._send_raw(scripted.status, scripted.body, scripted.content_type, dict(scripted.headers))
            return
        try:
            body = json.loads(raw or b"null")
        except json.JSONDecodeError:
            self._error(422, "validation_error", "Invalid JSON body.")
            return
        if not isinstance(body, dict):
            self._error(422, "validation_error", "The request body must be a JSON object.")
            return
        problem = _validate(body)
        if problem is not None:
            self._error(422, "validation_error", problem)
            return
        body_hash = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        key = headers.get("idempotency-key")
        with state.lock:
            seen = state.idempotency.get(key) if key is not None else None
            if seen is None:
                conflict, email_id = False, str(uuid.uuid4())
                state.emails.append(ReceivedEmail(email_id, body, headers))
                if key is not None:
                    state.idempotency[key] = (body_hash, email_id)
            else:
                conflict, email_id = seen[0] != body_hash, seen[1]
        if conflict:
            self._error(409, "invalid_idempotent_request",
                        "Same idempotency key used with a different request payload.")
            return
        self._reply(200, {"id": email_id})


def _validate(body: dict[str, Any]) -> str | None:
    """Resend's checks that matter here: required fields, address syntax, tag charset."""
    for name in ("from", "to", "subject"):
        if not body.get(name):
            return f"Missing `{name}` field."
    if not (body.get("html") or body.get("text")):
        return "Missing `html` or `text` field."
    sender = _NAME_ADDR.match(str(body["from"]).strip())
    sender_address = (sender.group(1) or sender.group(2)) if sender else ""
    if not _ADDRESS.match(sender_address or ""):
        return "Invalid `from` field. The email address needs to follow the `email@example.com` or " \
               "`Name <email@example.com>` format."
    recipients = body["to"] if isinstance(body["to"], list) else [body["to"]]
    if len(recipients) > 50:
        return "Invalid `to` field. A maximum of 50 recipients is allowed."
    for address in recipients:
        valid = isinstance(address, str) and _ADDRESS.match(address) is not None
        if not valid or str(address).lower().endswith(".invalid"):
            return "Invalid `to` field. The email address needs to follow the `email@example.com` format."
    for tag in body.get("tags") or []:
        if not isinstance(tag, dict) or not _TAG_PART.match(str(tag.get("name", ""))) \
                or not _TAG_PART.match(str(tag.get("value", ""))):
            return "Invalid `tags` field. Tags may only contain ASCII letters, numbers, underscores, " \
                   "or dashes."
    return None

"""A fake nm-store: a real HTTP server on 127.0.0.1 speaking the two endpoints the worker calls.

What it reproduces (reference sections 3.8, 3.9 and 7; docs/checkout.md "nm-store wire protocol"),
because the worker depends on each point:

* ``POST /api/internal/checkout-session-status``: ``X-Internal-Secret`` compared byte for byte with
  the configured secret (missing: 401, wrong: 403); the body must be a JSON object
  ``{checkoutSessionId, workflowStatus, workflowId, workflowCompletedAt?, error?}`` and nothing else
  (400 otherwise), with ``workflowCompletedAt`` an ISO-8601 UTC time and only for ``completed``;
* ``POST /api/webhooks/temporal``: ``X-Temporal-Signature`` must be the lower-case hex HMAC-SHA256 of
  the raw body bytes, keyed with the webhook secret. The fake computes it with its own RFC 2104
  implementation over ``hashlib.sha256`` (not the ``hmac`` module the worker uses), so a shared bug
  cannot make both sides agree (missing: 401, mismatch: 403). Body ``{sessionId, algaTenantId,
  status, error?}`` with ``status`` ``completed`` or ``failed`` (400 otherwise);
* ``Idempotency-Key``: a repeat with the same key and the same body bytes replays the first answer and
  is recorded as a duplicate (nothing changes); the same key with another body answers 409;
* scripted outages: :meth:`FakeNmStoreServer.fail_next` (N answers with a status and an optional
  ``Retry-After``), :meth:`reply_next` (any raw answer), :meth:`down` / :meth:`up` (503 for
  everything meanwhile), and :meth:`hold_next`
  (the next N requests wait, unanswered, until :meth:`release`, for timeout tests without sleeps).

Every request is recorded in arrival order (headers, raw body, parsed JSON, the answer), refused ones
included. ``stop()`` closes open keep-alive connections and joins every thread it started.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import socket
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

STATUS_PATH = "/api/internal/checkout-session-status"
CALLBACK_PATH = "/api/webhooks/temporal"
WORKFLOW_STATUSES = frozenset({"pending", "started", "in_progress", "completed", "failed"})
CALLBACK_STATUSES = frozenset({"completed", "failed"})
_ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?Z$")
HOLD_LIMIT_SECONDS = 30.0  # a held request is answered at the latest then (or at stop)


def hmac_sha256_hex(key: bytes, message: bytes) -> str:
    """RFC 2104 HMAC over SHA-256, written out: independent of the ``hmac`` module the worker uses."""
    block = 64
    if len(key) > block:
        key = hashlib.sha256(key).digest()
    key = key.ljust(block, b"\0")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key) + message).digest()
    return hashlib.sha256(bytes(b ^ 0x5C for b in key) + inner).hexdigest()


@dataclass(frozen=True)
class RecordedCall:
    """One request as received and how it was answered."""

    seq: int
    path: str
    headers: dict[str, str]  # lower-cased names
    raw_body: bytes
    json: Any
    status: int
    duplicate: bool
    idempotency_key: str | None
    received_at: float  # time.monotonic()


@dataclass(frozen=True)
class _Answer:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


@dataclass
class _State:
    internal_secret: str
    webhook_secret: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    calls: list[RecordedCall] = field(default_factory=list)
    seq: int = 0
    statuses: dict[str, list[str]] = field(default_factory=dict)
    callbacks: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    idempotency: dict[tuple[str, str], tuple[bytes, _Answer]] = field(default_factory=dict)
    scripted: deque[_Answer] = field(default_factory=deque)
    is_down: bool = False
    holds: int = 0
    release: threading.Event = field(default_factory=threading.Event)
    holding: threading.Event = field(default_factory=threading.Event)


class _Server(ThreadingHTTPServer):
    """Joins its handler threads on close and can cut idle keep-alive connections so they end."""

    daemon_threads = False
    block_on_close = True

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up (timeout tests, a pooled connection closed at exit) is not an error."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    def close_connections(self) -> None:
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):  # already closed by the client
                sock.shutdown(socket.SHUT_RDWR)


class FakeNmStoreServer:
    """A threaded HTTP server on an ephemeral loopback port; a context manager."""

    def __init__(self, internal_secret: str = "nm-internal-secret-for-tests-7c1e",
                 webhook_secret: str = "nm-webhook-secret-for-tests-52ab") -> None:
        self._state = _State(internal_secret=internal_secret, webhook_secret=webhook_secret)
        state = self._state

        class Handler(_NmStoreHandler):
            shared = state

        self._httpd = _Server(Handler)
        # A short poll interval only so that shutdown() returns quickly; requests are served at once.
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                        name="fake-nmstore")

    # ---- configuration and scripting ----

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def internal_secret(self) -> str:
        return self._state.internal_secret

    @property
    def webhook_secret(self) -> str:
        return self._state.webhook_secret

    def fail_next(self, count: int, status: int = 503, retry_after: str | None = None) -> None:
        """Answer the next ``count`` requests (before authentication, as a proxy or overloaded app
        would) with ``status`` and, if given, a ``Retry-After`` header."""
        body = json.dumps({"error": f"scripted failure {status}"}).encode()
        headers = (("Retry-After", retry_after),) if retry_after is not None else ()
        with self._state.lock:
            self._state.scripted.extend(_Answer(status, body, headers) for _ in range(count))

    def reply_next(self, status: int, body: bytes | dict[str, Any],
                   headers: tuple[tuple[str, str], ...] = ()) -> None:
        """Answer the next request with exactly this (e.g. a 422 that echoes the request, a redirect)."""
        raw = json.dumps(body).encode() if isinstance(body, dict) else body
        with self._state.lock:
            self._state.scripted.append(_Answer(status, raw, headers))

    def down(self) -> None:
        """Refuse everything with 503 until :meth:`up`."""
        with self._state.lock:
            self._state.is_down = True

    def up(self) -> None:
        with self._state.lock:
            self._state.is_down = False

    def hold_next(self, count: int = 1) -> None:
        """The next ``count`` requests wait unanswered until :meth:`release` (or stop)."""
        with self._state.lock:
            self._state.holds += count
            self._state.release.clear()
            self._state.holding.clear()

    def wait_until_held(self, timeout: float = 10.0) -> bool:
        """Block until a request is waiting in :meth:`hold_next` (True), or ``timeout`` passes."""
        return self._state.holding.wait(timeout)

    def release(self) -> None:
        self._state.release.set()

    # ---- what was received ----

    @property
    def calls(self) -> list[RecordedCall]:
        """Every request in arrival order, refused and duplicate ones included."""
        with self._state.lock:
            return sorted(self._state.calls, key=lambda c: c.seq)

    def calls_to(self, path: str) -> list[RecordedCall]:
        return [c for c in self.calls if c.path == path]

    @property
    def status_calls(self) -> list[RecordedCall]:
        return self.calls_to(STATUS_PATH)

    @property
    def callback_calls(self) -> list[RecordedCall]:
        return self.calls_to(CALLBACK_PATH)

    def status_history(self, session_id: str) -> list[str]:
        """Statuses accepted for a session, in order (duplicates not repeated)."""
        with self._state.lock:
            return list(self._state.statuses.get(session_id, []))

    def last_status(self, session_id: str) -> str | None:
        history = self.status_history(session_id)
        return history[-1] if history else None

    def callbacks_for(self, session_id: str) -> list[dict[str, Any]]:
        """Callback bodies accepted for a session, in order (duplicates not repeated)."""
        with self._state.lock:
            return list(self._state.callbacks.get(session_id, []))

    # ---- lifecycle ----

    def start(self) -> FakeNmStoreServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._state.release.set()
        self._httpd.shutdown()
        self._httpd.close_connections()
        self._httpd.server_close()  # joins the handler threads (block_on_close, not daemons)
        self._thread.join()

    def __enter__(self) -> FakeNmStoreServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


class _NmStoreHandler(BaseHTTPRequestHandler):
    shared: _State
    protocol_version = "HTTP/1.1"
    timeout = 30  # an idle keep-alive connection cannot pin a handler thread forever

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def do_POST(self) -> None:
        state = self.shared
        received_at = time.monotonic()
        with state.lock:
            state.seq += 1
            seq = state.seq
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k.lower(): v for k, v in self.headers.items()}
        parsed, answer, duplicate = self._handle(raw, headers)
        with state.lock:
            state.calls.append(RecordedCall(seq, self.path, headers, raw, parsed, answer.status, duplicate,
                                            headers.get("idempotency-key"), received_at))
        self.send_response(answer.status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(answer.body)))
        for name, value in answer.headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(answer.body)

    def _handle(self, raw: bytes, headers: dict[str, str]) -> tuple[Any, _Answer, bool]:
        state = self.shared
        parsed = _parse(raw)
        if self.path not in (STATUS_PATH, CALLBACK_PATH):
            return parsed, _error(404, "Not Found"), False
        with state.lock:
            hold = state.holds > 0
            if hold:
                state.holds -= 1
        if hold:
            state.holding.set()
            state.release.wait(HOLD_LIMIT_SECONDS)
        with state.lock:
            if state.is_down:
                return parsed, _error(503, "Service Unavailable"), False
            scripted = state.scripted.popleft() if state.scripted else None
        if scripted is not None:
            return parsed, scripted, False
        refused = self._authenticate(raw, headers)
        if refused is not None:
            return parsed, refused, False
        if not headers.get("content-type", "").lower().startswith("application/json"):
            return parsed, _error(415, "Content-Type must be application/json"), False
        if not isinstance(parsed, dict):
            return parsed, _error(400, "body must be a JSON object"), False
        problem = _validate_status(parsed) if self.path == STATUS_PATH else _validate_callback(parsed)
        if problem is not None:
            return parsed, _error(400, problem), False
        key = headers.get("idempotency-key")
        with state.lock:
            seen = state.idempotency.get((self.path, key)) if key is not None else None
            if seen is not None:
                if seen[0] != raw:
                    return parsed, _error(409, "Idempotency-Key reused with a different body"), False
                return parsed, seen[1], True
            answer = self._accept(parsed)
            if key is not None:
                state.idempotency[(self.path, key)] = (raw, answer)
        return parsed, answer, False

    def _authenticate(self, raw: bytes, headers: dict[str, str]) -> _Answer | None:
        state = self.shared
        if self.path == STATUS_PATH:
            sent = headers.get("x-internal-secret")
            if not sent:
                return _error(401, "missing X-Internal-Secret")
            # http.server decodes header bytes as latin-1: encoding back gives the bytes as sent.
            if sent.encode("latin-1") != state.internal_secret.encode("utf-8"):
                return _error(403, "invalid X-Internal-Secret")
            return None
        signature = headers.get("x-temporal-signature")
        if not signature:
            return _error(401, "missing X-Temporal-Signature")
        if signature != hmac_sha256_hex(state.webhook_secret.encode("utf-8"), raw):
            return _error(403, "invalid X-Temporal-Signature")
        return None

    def _accept(self, body: dict[str, Any]) -> _Answer:
        """Apply an accepted request (called with the state lock held)."""
        state = self.shared
        if self.path == STATUS_PATH:
            session = body["checkoutSessionId"]
            state.statuses.setdefault(session, []).append(body["workflowStatus"])
            payload = {"success": True, "checkoutSessionId": session, "workflowStatus": body["workflowStatus"]}
        else:
            state.callbacks.setdefault(body["sessionId"], []).append(body)
            payload = {"received": True}
        return _Answer(200, json.dumps(payload).encode())


def _parse(raw: bytes) -> Any:
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None


def _error(status: int, message: str) -> _Answer:
    return _Answer(status, json.dumps({"error": message}).encode())


def _nonempty_str(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def _validate_status(body: dict[str, Any]) -> str | None:
    allowed = {"checkoutSessionId", "workflowStatus", "workflowId", "workflowCompletedAt", "error"}
    if set(body) - allowed:
        return f"unknown fields: {sorted(set(body) - allowed)}"
    for name in ("checkoutSessionId", "workflowId"):
        if not _nonempty_str(body.get(name)):
            return f"{name} must be a non-empty string"
    if body.get("workflowStatus") not in WORKFLOW_STATUSES:
        return "workflowStatus is invalid"
    if "workflowCompletedAt" in body:
        if body["workflowStatus"] != "completed":
            return "workflowCompletedAt is only for completed"
        if not isinstance(body["workflowCompletedAt"], str) or not _ISO_UTC.match(body["workflowCompletedAt"]):
            return "workflowCompletedAt must be an ISO-8601 UTC time"
    if "error" in body and not isinstance(body["error"], str):
        return "error must be a string"
    return None


def _validate_callback(body: dict[str, Any]) -> str | None:
    allowed = {"sessionId", "algaTenantId", "status", "error"}
    if set(body) - allowed:
        return f"unknown fields: {sorted(set(body) - allowed)}"
    if not _nonempty_str(body.get("sessionId")):
        return "sessionId must be a non-empty string"
    if "algaTenantId" not in body or not (body["algaTenantId"] is None or _nonempty_str(body["algaTenantId"])):
        return "algaTenantId must be a string or null"
    if body.get("status") not in CALLBACK_STATUSES:
        return "status must be completed or failed"
    if body["status"] == "completed" and body["algaTenantId"] is None:
        return "algaTenantId is required for completed"
    if "error" in body and not isinstance(body["error"], str):
        return "error must be a string"
    return None

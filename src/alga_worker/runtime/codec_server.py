"""The codec server: ``POST /encode`` and ``POST /decode`` for the Temporal Web UI and CLI.

Workflow histories hold payloads encrypted by :mod:`alga_worker.payload_codec`; an operator who wants to
read them points the Web UI ("Codec Server" setting) or ``temporal --codec-endpoint`` here. The
protocol is Temporal's: a JSON body ``{"payloads": [{"metadata": {k: base64}, "data": base64}]}`` (the
protobuf JSON form of ``temporal.api.common.v1.Payloads``) in and out, with an ``X-Namespace`` header.

Why the stdlib server, as ``runtime/health.py``: a handful of small JSON requests needs no framework,
and a thread per connection keeps one slow client from stalling the others. The TLS handshake runs in
the connection's own thread (not in the accept loop), under a timeout, for the same reason.

Security, in order of the request's path:

- TLS (``CODEC_SERVER_TLS_CERT``/``_KEY``); with ``CODEC_SERVER_TLS_CLIENT_CA`` a client certificate
  signed by that CA is *required*: a client without one never gets past the handshake.
- A bearer token (``CODEC_SERVER_TOKEN``), compared in constant time. With both configured, both are
  required. With neither, the server refuses to start: payloads hold customer data.
- An unauthenticated request gets ``401`` and an empty body, whatever it asked for.
- CORS only for the configured origins (``CODEC_SERVER_CORS_ORIGINS``); a preflight from any other
  origin gets no ``Access-Control-*`` header, so the browser refuses the call.
- Bodies above ``max_body_bytes`` are refused (413) before they are read; malformed JSON is 400.
- The log has one line per request: method, path, status, namespace, payload count and duration,
  never a payload, a header value or the token.

``GET /healthz`` answers without authentication (kubelet probes); it says nothing but "ok". The chart
probes it on a separate plain-HTTP port (``health_port``), since a kubelet has no client certificate.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.converter import PayloadCodec

log = logging.getLogger("alga_worker.codec_server")

DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024  # Temporal's default blob limit is 2 MiB per payload
HANDSHAKE_TIMEOUT_SECONDS = 10.0
REQUEST_TIMEOUT_SECONDS = 30.0  # idle socket: a client that stops sending mid-body is dropped
ALLOWED_HEADERS = "Authorization, Content-Type, X-Namespace"
ALLOWED_METHODS = "POST, OPTIONS"
PREFLIGHT_MAX_AGE_SECONDS = 600
_ENDPOINTS = ("/encode", "/decode")


class CodecServerConfigError(ValueError):
    """The server cannot start safely (no authentication configured, unreadable TLS files)."""


@dataclass(frozen=True)
class CodecServerOptions:
    """How the server authenticates and whom it lets in. Built by the CLI from the settings."""

    token: str | None = field(default=None, repr=False)
    cors_origins: tuple[str, ...] = ()
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    def check(self) -> None:
        """Refuse configurations that would serve customer data to anyone, or TLS half set up."""
        if (self.tls_cert is None) != (self.tls_key is None):
            raise CodecServerConfigError("CODEC_SERVER_TLS_CERT and CODEC_SERVER_TLS_KEY are set together")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise CodecServerConfigError("CODEC_SERVER_TLS_CLIENT_CA needs CODEC_SERVER_TLS_CERT and _KEY "
                                         "(client certificates are checked in the TLS handshake)")
        if not self.token and self.tls_client_ca is None:
            raise CodecServerConfigError("no authentication: set CODEC_SERVER_TOKEN (bearer token) and/or "
                                         "CODEC_SERVER_TLS_CLIENT_CA (client certificates)")
        if self.max_body_bytes < 1024:
            raise CodecServerConfigError("the body limit must be at least 1024 bytes")

    def ssl_context(self) -> ssl.SSLContext | None:
        if self.tls_cert is None or self.tls_key is None:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(str(self.tls_cert), str(self.tls_key))
            if self.tls_client_ca is not None:
                context.load_verify_locations(cafile=str(self.tls_client_ca))
                context.verify_mode = ssl.CERT_REQUIRED
        except (OSError, ssl.SSLError) as err:
            # The error names the file problem, never key material.
            raise CodecServerConfigError(f"cannot load the TLS files: {type(err).__name__}: "
                                         f"{getattr(err, 'strerror', None) or err}") from None
        return context


def parse_origins(raw: str | None) -> tuple[str, ...]:
    """``CODEC_SERVER_CORS_ORIGINS``: comma-separated origins (``scheme://host[:port]``), or ``*``."""
    if not raw:
        return ()
    origins = []
    for item in raw.split(","):
        origin = item.strip().rstrip("/")
        if not origin:
            continue
        if origin != "*" and ("://" not in origin or "/" in origin.split("://", 1)[1]):
            raise ValueError(f"not an origin (scheme://host[:port]): {origin!r}")
        origins.append(origin)
    return tuple(origins)


class _RequestError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class CodecServer:
    """The HTTP(S) server around one codec. ``start()`` serves from a thread; ``stop()`` shuts down.

    ``health_port`` (optional) adds a plain-HTTP listener that serves only ``/healthz``.
    """

    def __init__(self, codec: PayloadCodec, options: CodecServerOptions, host: str, port: int,
                 *, health_host: str | None = None, health_port: int | None = None) -> None:
        options.check()
        self.codec = codec
        self.options = options
        self._context = options.ssl_context()
        self._server = _make_server(host, port, _make_handler(self), self._context)
        self._threads = [threading.Thread(target=self._server.serve_forever, name="codec-server", daemon=True)]
        self._health: ThreadingHTTPServer | None = None
        if health_port is not None:
            self._health = _make_server(health_host or host, health_port, _make_health_handler(), None)
            self._threads.append(threading.Thread(target=self._health.serve_forever, name="codec-server-health",
                                                  daemon=True))

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def health_port(self) -> int | None:
        return None if self._health is None else int(self._health.server_address[1])

    @property
    def scheme(self) -> str:
        return "https" if self._context is not None else "http"

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        for server in (self._server, self._health):
            if server is not None:
                server.shutdown()
                server.server_close()

    # ------------------------------------------------------------ request logic (handler thread)

    def authorized(self, authorization: str | None) -> bool:
        """Whether the request may use the codec. A request that reached us past a required client
        certificate is authenticated by TLS; a configured token is required on top of that."""
        token = self.options.token
        if not token:
            return self.options.tls_client_ca is not None
        if authorization is None:
            return False
        scheme, _, presented = authorization.strip().partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(presented.strip().encode("utf-8"), token.encode("utf-8"))

    def allowed_origin(self, origin: str | None) -> str | None:
        if not origin:
            return None
        origins = self.options.cors_origins
        if "*" in origins or origin.rstrip("/") in origins:
            return origin
        return None

    def transform(self, endpoint: str, body: bytes) -> tuple[bytes, int]:
        """Decode or encode the payloads of a request body; (response body, payload count)."""
        try:
            doc = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise _RequestError(400, "the body is not JSON") from None
        payloads = parse_payloads(doc)
        coroutine = self.codec.decode(payloads) if endpoint == "/decode" else self.codec.encode(payloads)
        try:
            result = asyncio.run(coroutine)
        except Exception as err:
            # The codec's errors name a key id or say a tag did not verify; never key material or data.
            raise _RequestError(400, f"{type(err).__name__}: {err}") from None
        out = json_format.MessageToDict(Payloads(payloads=result))
        out.setdefault("payloads", [])
        return json.dumps(out, separators=(",", ":")).encode(), len(payloads)


def _b64(value: object) -> bytes:
    """Strict base64 (standard or URL-safe alphabet, padded or not), as protobuf JSON allows."""
    if not isinstance(value, str):
        raise _RequestError(400, "metadata values and data must be base64 strings")
    text = value.replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise _RequestError(400, "metadata values and data must be base64 strings") from None


def parse_payloads(doc: object) -> list[Payload]:
    """``{"payloads": [{"metadata": {k: base64}, "data": base64}]}`` as Temporal payloads; anything
    else is a 400 that names the problem, never the input."""
    if not isinstance(doc, dict) or set(doc) - {"payloads"}:
        raise _RequestError(400, 'expected {"payloads": [...]}')
    items = doc.get("payloads", [])
    if not isinstance(items, list):
        raise _RequestError(400, 'expected {"payloads": [...]}')
    payloads = []
    for item in items:
        if not isinstance(item, dict) or set(item) - {"metadata", "data"}:
            raise _RequestError(400, "each payload is {\"metadata\": {...}, \"data\": ...}")
        metadata = item.get("metadata", {})
        if not isinstance(metadata, dict):
            raise _RequestError(400, "payload metadata must be an object")
        payloads.append(Payload(metadata={str(k): _b64(v) for k, v in metadata.items()},
                                data=_b64(item.get("data", ""))))
    return payloads


def _make_server(host: str, port: int, handler: type[BaseHTTPRequestHandler],
                 context: ssl.SSLContext | None) -> ThreadingHTTPServer:
    host = host.strip("[]")
    server_class = _TLSServerV6 if ":" in host else _TLSServer
    server = server_class((host, port), handler, bind_and_activate=False)
    server.tls_context = context
    try:
        server.server_bind()
        server.server_activate()
    except BaseException:
        server.server_close()
        raise
    server.daemon_threads = True
    return server


class _TLSServer(ThreadingHTTPServer):
    """Threaded HTTP server that wraps each accepted socket in TLS inside the connection's thread."""

    tls_context: ssl.SSLContext | None = None

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.tls_context is not None:
            request.settimeout(HANDSHAKE_TIMEOUT_SECONDS)
            try:
                request = self.tls_context.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError) as err:
                # A client without the required certificate ends here: no HTTP, no body.
                log.info("codec server: TLS handshake refused", extra={"client": str(client_address[0]),
                                                                       "reason": type(err).__name__})
                with contextlib.suppress(OSError):
                    request.close()
                return
        try:
            super().finish_request(request, client_address)
        finally:
            if isinstance(request, ssl.SSLSocket):
                with contextlib.suppress(OSError):
                    request.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The default prints a traceback to stderr; a dropped client is not an error worth one.
        log.info("codec server: connection error", extra={"client": str(client_address[0])})


class _TLSServerV6(_TLSServer):
    address_family = socket.AF_INET6


class _BaseHandler(BaseHTTPRequestHandler):
    timeout = REQUEST_TIMEOUT_SECONDS
    server_version = "alga-codec-server"
    protocol_version = "HTTP/1.1"

    def version_string(self) -> str:
        return self.server_version

    def send_json(self, code: int, doc: dict[str, Any] | None, extra: Iterable[tuple[str, str]] = ()) -> None:
        body = b"" if doc is None else json.dumps(doc).encode()
        self.send_response(code)
        for name, value in extra:
            self.send_header(name, value)
        if doc is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # our own line per request instead
        return


def _make_health_handler() -> type[BaseHTTPRequestHandler]:
    class HealthHandler(_BaseHandler):
        protocol_version = "HTTP/1.0"

        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] == "/healthz":
                self.send_json(200, {"status": "ok"})
            else:
                self.send_json(404, {"error": "not found"})

    return HealthHandler


def _make_handler(server: CodecServer) -> type[BaseHTTPRequestHandler]:
    class Handler(_BaseHandler):
        def _cors(self) -> list[tuple[str, str]]:
            origin = server.allowed_origin(self.headers.get("Origin"))
            if origin is None:
                return [("Vary", "Origin")] if server.options.cors_origins else []
            if origin.rstrip("/") not in server.options.cors_origins:  # only through "*": no credentials
                return [("Access-Control-Allow-Origin", "*")]
            return [("Access-Control-Allow-Origin", origin), ("Access-Control-Allow-Credentials", "true"),
                    ("Vary", "Origin")]

        def do_OPTIONS(self) -> None:
            """CORS preflight: browsers send it without credentials, so it needs none and reveals nothing."""
            path = self.path.split("?", 1)[0]
            headers = self._cors()
            if path in _ENDPOINTS and any(h == "Access-Control-Allow-Origin" for h, _ in headers):
                headers += [("Access-Control-Allow-Methods", ALLOWED_METHODS),
                            ("Access-Control-Allow-Headers", ALLOWED_HEADERS),
                            ("Access-Control-Max-Age", str(PREFLIGHT_MAX_AGE_SECONDS))]
            self.send_json(204, None, headers)

        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] == "/healthz":
                self.send_json(200, {"status": "ok"})
                return
            self._finish(404, {"error": "not found"})

        def do_POST(self) -> None:
            started = time.monotonic()
            path = self.path.split("?", 1)[0].rstrip("/")
            count = 0
            try:
                if not server.authorized(self.headers.get("Authorization")):
                    raise _RequestError(401, "")
                if path not in _ENDPOINTS:
                    raise _RequestError(404, "not found")
                body = self._body()
                response, count = server.transform(path, body)
            except _RequestError as err:
                code = err.status
                if code == 401:
                    self._finish(401, None, [("WWW-Authenticate", 'Bearer realm="codec"')])
                else:
                    self._finish(code, {"error": err.message})
            else:
                code = 200
                self.send_response(200)
                for name, value in self._cors():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(response)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(response)
            log.info("codec server request", extra={
                "method": "POST", "path": path if path in _ENDPOINTS else "other", "status": code,
                "namespace": (self.headers.get("X-Namespace") or "")[:255], "payloads": count,
                "duration_ms": round((time.monotonic() - started) * 1000, 1)})

        def _body(self) -> bytes:
            if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                raise _RequestError(411, "a Content-Length is required")
            raw = self.headers.get("Content-Length")
            if raw is None:
                raise _RequestError(411, "a Content-Length is required")
            try:
                length = int(raw)
            except ValueError:
                raise _RequestError(400, "invalid Content-Length") from None
            if length < 0:
                raise _RequestError(400, "invalid Content-Length")
            if length > server.options.max_body_bytes:
                raise _RequestError(413, f"the body exceeds {server.options.max_body_bytes} bytes")
            self._body_read = True
            return self.rfile.read(length)

        def _finish(self, code: int, doc: dict[str, Any] | None, extra: Sequence[tuple[str, str]] = ()) -> None:
            if code >= 400:
                # Close after an error, and read (a bounded part of) an unread body first: closing a socket
                # with unread data makes the kernel send a reset, which can destroy the response in flight.
                self._discard_body()
                self.close_connection = True
                extra = [*extra, ("Connection", "close")]
            self.send_json(code, doc, [*self._cors(), *extra])

        def _discard_body(self) -> None:
            if getattr(self, "_body_read", False) or self.command != "POST":
                return
            self._body_read = True
            try:
                remaining = min(int(self.headers.get("Content-Length") or 0), server.options.max_body_bytes)
                while remaining > 0:
                    chunk = self.rfile.read(min(remaining, 65536))
                    if not chunk:
                        break
                    remaining -= len(chunk)
            except (ValueError, OSError):
                pass

    return Handler

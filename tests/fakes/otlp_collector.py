"""A fake OpenTelemetry collector: an OTLP/HTTP receiver on a free loopback port.

It speaks the collector's wire protocol (``POST /v1/traces``, an ``ExportTraceServiceRequest``
protobuf, gzip or not, answered with an ``ExportTraceServiceResponse``) and keeps every span it
decoded: ids, name, scope, timing, attributes, resource, and every other string the span carries
(events, links, status) so tests can search them for secrets. Used by the tracing tests and by
``make bench`` (statement counts and the time breakdown of one traced provisioning).
"""

from __future__ import annotations

import asyncio
import gzip
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

WAIT_SECONDS = 30.0


@dataclass(frozen=True)
class ReceivedSpan:
    trace_id: str
    span_id: str
    parent_id: str  # "" for a root
    name: str
    scope: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    texts: tuple[str, ...]  # every other string the span carries: events, links, status
    start_ns: int = 0
    end_ns: int = 0

    @property
    def seconds(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9

    @property
    def is_sql(self) -> bool:
        return "postgresql" in (self.attributes.get("db.system"), self.attributes.get("db.system.name"))


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    return None if kind is None else getattr(value, kind)


def _attributes(pairs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in pairs if isinstance(kv, KeyValue)}


class OtlpReceiver:
    """An OTLP/HTTP receiver on a free loopback port: ``POST /v1/traces`` with a protobuf body."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans: list[ReceivedSpan] = []
        self.requests = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path != "/v1/traces" or self.headers.get("Content-Type") != "application/x-protobuf":
                    self.send_error(404 if self.path != "/v1/traces" else 415)
                    return
                receiver._add(ExportTraceServiceRequest.FromString(body))
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="otlp-receiver", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def _add(self, request: ExportTraceServiceRequest) -> None:
        spans = []
        for resource_spans in request.resource_spans:
            resource = _attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    texts = [span.status.message]
                    for event in span.events:
                        texts += [event.name, *map(str, _attributes(event.attributes).values())]
                    for link in span.links:
                        texts += map(str, _attributes(link.attributes).values())
                    spans.append(ReceivedSpan(
                        trace_id=span.trace_id.hex(), span_id=span.span_id.hex(),
                        parent_id=span.parent_span_id.hex(), name=span.name, scope=scope_spans.scope.name,
                        attributes=_attributes(span.attributes), resource=resource, texts=tuple(texts),
                        start_ns=span.start_time_unix_nano, end_ns=span.end_time_unix_nano))
        with self._lock:
            self.requests += 1
            self._spans.extend(spans)

    @property
    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self._spans)

    async def wait_for(self, done: Callable[[list[ReceivedSpan]], bool], what: str) -> list[ReceivedSpan]:
        """Poll (bounded) until ``done(spans)``."""
        for _ in range(int(WAIT_SECONDS / 0.1)):
            spans = self.spans
            if done(spans):
                return spans
            await asyncio.sleep(0.1)
        raise AssertionError(f"{what}: not received within {WAIT_SECONDS} s; got:\n{render(self.spans)}")

    def __enter__(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()


def render(spans: list[ReceivedSpan]) -> str:
    """The spans as indented trees (failure messages and docs)."""
    by_parent: dict[str, list[ReceivedSpan]] = {}
    ids = {s.span_id for s in spans}
    for span in spans:
        by_parent.setdefault(span.parent_id if span.parent_id in ids else "", []).append(span)
    lines: list[str] = []

    def walk(span: ReceivedSpan, depth: int) -> None:
        detail = span.attributes.get("db.statement") or span.attributes.get("url.full") or ""
        service = span.resource.get("service.name")
        lines.append(f"{'  ' * depth}{span.name}  [{service}]  {str(detail)[:70]}".rstrip())
        for child in by_parent.get(span.span_id, []):
            walk(child, depth + 1)

    for root in by_parent.get("", []):
        walk(root, 0)
    return "\n".join(lines)

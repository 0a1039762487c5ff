"""A small OTLP/HTTP trace receiver on a loopback port: where the traced provisioning's spans land.

The worker exports protobuf ``ExportTraceServiceRequest`` batches to ``POST /v1/traces`` (the same
wire as a collector); this keeps each span's ids, name, timing and attributes for the breakdown and the
statement count. Statement text is kept only as the worker exports it (no bound values: the worker's
psycopg instrumentation runs with ``capture_parameters`` off).
"""

from __future__ import annotations

import gzip
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue


@dataclass(frozen=True)
class Span:
    trace_id: str
    span_id: str
    parent_id: str  # "" for a root
    name: str
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]

    @property
    def seconds(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9

    @property
    def is_sql(self) -> bool:
        return "postgresql" in (self.attributes.get("db.system"), self.attributes.get("db.system.name"))


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return None if kind in (None, "array_value", "kvlist_value") else getattr(value, kind)


class OtlpReceiver:
    """``with OtlpReceiver() as r:`` then point ``OTEL_EXPORTER_OTLP_ENDPOINT`` at ``r.url``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans: list[Span] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path != "/v1/traces":
                    self.send_error(404)
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
                                        name="bench-otlp-receiver", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def _add(self, request: ExportTraceServiceRequest) -> None:
        spans = [
            Span(trace_id=span.trace_id.hex(), span_id=span.span_id.hex(), parent_id=span.parent_span_id.hex(),
                 name=span.name, start_ns=span.start_time_unix_nano, end_ns=span.end_time_unix_nano,
                 attributes={kv.key: _value(kv.value) for kv in span.attributes})
            for resource_spans in request.resource_spans
            for scope_spans in resource_spans.scope_spans
            for span in scope_spans.spans
        ]
        with self._lock:
            self._spans.extend(spans)

    @property
    def spans(self) -> list[Span]:
        with self._lock:
            return list(self._spans)

    def __enter__(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()


def trace_of(spans: list[Span], workflow_id: str) -> list[Span]:
    """Every span in the trace(s) that carry ``workflow_id``: the run's workflow and activity spans and
    the SQL and HTTP spans below them (those carry no workflow id of their own)."""
    traces = {s.trace_id for s in spans if s.attributes.get("temporalWorkflowID") == workflow_id}
    return [s for s in spans if s.trace_id in traces]


def ancestors(span: Span, by_id: dict[str, Span]) -> list[Span]:
    out = []
    while span.parent_id in by_id:
        span = by_id[span.parent_id]
        out.append(span)
    return out

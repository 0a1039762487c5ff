"""Where the traced provisioning's spans land, and how the bench reads them.

The receiver is the project's fake OpenTelemetry collector (``tests/fakes/otlp_collector.py``: the
OTLP/HTTP wire, ``POST /v1/traces``); statement text is kept only as the worker exports it (no bound
values: the worker's psycopg instrumentation runs with ``capture_parameters`` off).
"""

from __future__ import annotations

from tests.fakes.otlp_collector import OtlpReceiver
from tests.fakes.otlp_collector import ReceivedSpan as Span

__all__ = ["OtlpReceiver", "Span", "ancestors", "trace_of"]


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

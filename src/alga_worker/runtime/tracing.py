"""OpenTelemetry tracing: off by default, on when an OTLP endpoint is configured.

``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) turns it on, read with the
worker's other settings (``config.load_tracing_settings``, so a Vault file can carry
``OTEL_EXPORTER_OTLP_HEADERS``). Without one nothing is imported, installed or wrapped and no
interceptor is returned: tracing costs nothing when off.

On, one trace follows a workflow from the client that starts it: ``StartWorkflow`` (the root, in the
process that called ``start_workflow``, e.g. ``alga-worker tenant create``), ``RunWorkflow``,
``StartActivity``/``RunActivity`` for every activity, and under each ``RunActivity`` the activity's
SQL statements (psycopg) and HTTP calls (httpx: Resend, Stripe, nm-store). Why each piece:

- **``temporalio.contrib.opentelemetry.TracingInterceptor`` on the Client**, which the worker inherits,
  carries the context in Temporal headers. Its workflow spans are created outside the sandbox, with no
  duration, and never while the workflow replays history (``workflow.unsafe.is_replaying``), so a
  cache eviction or a restarted worker does not duplicate them. Workflow spans need the starter's
  context (``always_create_workflow_spans`` stays off): a run started by an untraced caller gets only
  its activities' spans, never orphans re-created on replay.
- **Queries are not traced.** ``tenant create`` polls ``getState`` four times a second for its progress
  bar; each query would be a trace of its own (queries never join the workflow's trace).
- **psycopg** is instrumented at the class (``AsyncConnection.connect``), which the pool's
  ``DbConnection`` subclass inherits, so every pool connection opened after start-up gets a traced
  cursor factory. Statement text only: ``capture_parameters`` stays off and the worker binds every value
  as a parameter, so no value (email, password hash, pepper-derived data) reaches a span.
  Statements outside any trace (the readiness probe's ``SELECT 1`` every few seconds) and the pool's
  statement-less connection check are dropped before export.
- **httpx** is instrumented at the transport (``HTTPTransport.handle_request`` and its async twin), so
  the clients created before start-up (nm-store's) and inside the SDKs (Stripe's, Resend's per-request
  one) are all traced. Headers are not recorded.
- **OTLP/HTTP with a BatchSpanProcessor**: export happens off the event loop, in batches; the SDK's own
  variables (``OTEL_BSP_*``, ``OTEL_EXPORTER_OTLP_TIMEOUT``, ``OTEL_TRACES_SAMPLER`` ...) apply.
  :func:`shutdown_tracing` flushes it when the worker has drained, so the last spans are not lost;
  a CLI process flushes at exit (the provider's ``atexit`` hook).

The provider is not made the process-global one: everything gets it explicitly, so
:func:`shutdown_tracing` can undo :func:`configure_tracing` completely.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import temporalio.client

from alga_worker.config import DEFAULT_OTEL_SERVICE_NAME, TracingSettings

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
    from temporalio.contrib.opentelemetry import TracingInterceptor

__all__ = ["CLI_SERVICE_NAME", "client_interceptors", "configure_tracing", "resource_attributes", "shutdown_tracing"]

log = logging.getLogger(__name__)

CLI_SERVICE_NAME = "alga-worker-cli"  # service.name of operator commands when OTEL_SERVICE_NAME is unset
SHUTDOWN_FLUSH_SECONDS = 5.0
# SQL spans of this scope are dropped when outside any trace or without a statement (see below).
_PSYCOPG_SCOPE = "opentelemetry.instrumentation.psycopg"


@dataclass
class _Installed:
    provider: TracerProvider
    interceptor: TracingInterceptor
    # psycopg and httpx instrumentors (their module is untyped: ``# type: ignore`` at its top).
    instrumentors: list[Any] = field(default_factory=list)


_installed: _Installed | None = None


def resource_attributes(settings: TracingSettings, *, environment: str, build_id: str,
                        default_service_name: str = DEFAULT_OTEL_SERVICE_NAME) -> dict[str, str]:
    """The spans' resource: service.name, service.version (BUILD_ID), deployment.environment (NODE_ENV).

    Precedence as the OTel spec has it: OTEL_SERVICE_NAME, then a ``service.name`` in
    OTEL_RESOURCE_ATTRIBUTES, then the default; OTEL_RESOURCE_ATTRIBUTES overrides the derived ones.
    """
    attributes = {
        "service.name": default_service_name,
        "service.version": build_id,
        "deployment.environment": environment,
        "deployment.environment.name": environment,  # the current semantic-conventions name
    }
    attributes.update(settings.resource_attribute_pairs())
    if settings.service_name:
        attributes["service.name"] = settings.service_name
    return attributes


def configure_tracing(settings: TracingSettings | None, *, environment: str, build_id: str,
                      default_service_name: str = DEFAULT_OTEL_SERVICE_NAME) -> TracingInterceptor | None:
    """Install tracing once per process and return the interceptor for ``Client.connect``.

    ``settings`` None (no endpoint): nothing is imported or installed, None is returned. A second call
    returns the first call's interceptor. A failure to set up is logged and leaves tracing off: a
    telemetry problem must not keep the worker from provisioning.
    """
    global _installed
    if settings is None:
        return None
    if _installed is not None:
        return _installed.interceptor
    try:
        _installed = _install(settings, resource_attributes(
            settings, environment=environment, build_id=build_id, default_service_name=default_service_name))
    except Exception as err:
        log.warning("tracing not started", extra={"error": f"{type(err).__name__}: {err}"})
        return None
    log.info("tracing on", extra={"otlp_endpoint": _display_url(settings.traces_url),
                                  "service_name": _installed.provider.resource.attributes.get("service.name")})
    return _installed.interceptor


def client_interceptors() -> list[temporalio.client.Interceptor]:
    """What ``Client.connect`` gets: the tracing interceptor when tracing is on, else nothing."""
    return [] if _installed is None else [_installed.interceptor]


def shutdown_tracing(timeout_seconds: float = SHUTDOWN_FLUSH_SECONDS) -> None:
    """Unwrap psycopg and httpx, export what is still queued (bounded), and forget the provider.

    Called after the worker drained and closed its pool, so the spans of the last activities leave the
    process before it exits. No-op when tracing is off.
    """
    global _installed
    installed, _installed = _installed, None
    if installed is None:
        return
    for instrumentor in installed.instrumentors:
        try:
            instrumentor.uninstrument()
        except Exception as err:  # unwrapping must not keep the rest from flushing
            log.warning("tracing: uninstrument failed", extra={"error": f"{type(err).__name__}: {err}"})
    flushed = installed.provider.force_flush(int(timeout_seconds * 1000))
    installed.provider.shutdown()
    if not flushed:
        log.warning("tracing: not every span was exported before shutdown",
                    extra={"timeout_seconds": timeout_seconds})


def _install(settings: TracingSettings, attributes: dict[str, str]) -> _Installed:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create(attributes))
    # Headers from settings (env or a secret file) go on top of whatever the exporter reads from env.
    exporter = OTLPSpanExporter(endpoint=settings.traces_url, headers=dict(settings.header_pairs()) or None)
    provider.add_span_processor(_drop_unparented_statements(BatchSpanProcessor(exporter)))
    installed = _Installed(provider=provider, interceptor=_tracing_interceptor(provider))
    try:
        for instrumentor, options in (
            # capture_parameters off: statement text only, never the bound values.
            (PsycopgInstrumentor(), {"capture_parameters": False, "enable_commenter": False}),
            (HTTPXClientInstrumentor(), {}),
        ):
            instrumentor.instrument(tracer_provider=provider, **options)
            if not instrumentor.is_instrumented_by_opentelemetry:  # e.g. an unsupported library version
                raise RuntimeError(f"{type(instrumentor).__name__} did not instrument")
            installed.instrumentors.append(instrumentor)
    except BaseException:
        for instrumentor in installed.instrumentors:
            instrumentor.uninstrument()
        provider.shutdown()
        raise
    return installed


def _tracing_interceptor(provider: TracerProvider) -> TracingInterceptor:
    """``TracingInterceptor`` on our provider, minus query spans (module docstring)."""
    from temporalio.contrib.opentelemetry import TracingInterceptor

    class WorkflowTracing(TracingInterceptor):
        def intercept_client(
            self, next: temporalio.client.OutboundInterceptor
        ) -> temporalio.client.OutboundInterceptor:
            return _UntracedQueries(super().intercept_client(next), untraced=next)

    return WorkflowTracing(provider.get_tracer("temporalio.contrib.opentelemetry"))


class _UntracedQueries(temporalio.client.OutboundInterceptor):
    """Everything through the tracing interceptor except queries, which skip it."""

    def __init__(self, traced: temporalio.client.OutboundInterceptor, *,
                 untraced: temporalio.client.OutboundInterceptor) -> None:
        super().__init__(traced)
        self._untraced = untraced

    async def query_workflow(self, input: temporalio.client.QueryWorkflowInput) -> Any:
        return await self._untraced.query_workflow(input)


def _drop_unparented_statements(inner: SpanProcessor) -> SpanProcessor:
    """``inner``, minus SQL spans that belong to no trace (the readiness probe's ``SELECT 1`` every few
    seconds would each be a one-span trace) and statement-less ones (the pool's connection check,
    ``execute("")`` on every checkout, which says nothing about the activity's work)."""
    from opentelemetry.sdk.trace import SpanProcessor

    class DropUnparentedStatements(SpanProcessor):
        def on_start(self, span: Span, parent_context: Context | None = None) -> None:
            inner.on_start(span, parent_context)

        def _on_ending(self, span: Span) -> None:
            inner._on_ending(span)

        def on_end(self, span: ReadableSpan) -> None:
            scope = span.instrumentation_scope
            if scope is not None and scope.name == _PSYCOPG_SCOPE and (
                    span.parent is None or not (span.attributes or {}).get("db.statement", "x")):
                return
            inner.on_end(span)

        def shutdown(self) -> None:
            inner.shutdown()

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return inner.force_flush(timeout_millis)

    return DropUnparentedStatements()


def _display_url(url: str) -> str:
    """scheme://host:port/path: no credentials or query in a log line."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"

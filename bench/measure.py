"""The bench's phases on one embedded stack: (a) the ceiling (and the no-op latency floor), (b) the
drain, (c) one at a time, the optional scale step, and the probe (traced provisionings, plain and
checkout, counted and timed).

Each phase uses a task queue of its own, so no phase's leftovers reach another's worker.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import statistics
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.opentelemetry import TracingInterceptor
from tests.fakes.nmstore_server import FakeNmStoreServer
from tests.fakes.stripe_server import FakeStripeServer

from alga_worker.config import load_settings
from alga_worker.runtime.devstack import DevStack
from alga_worker.security import PasswordHasher
from bench import cputime, history, promtext, workload
from bench.noop import NOOP_WORKFLOW
from bench.otlp import OtlpReceiver, Span, ancestors, trace_of
from bench.processes import Process, start_noop_worker, start_worker
from bench.sqllog import StatementLog

MIB = 1024 * 1024
RESULT_TIMEOUT_SECONDS = 600.0
MANAGEMENT_TENANT = "00000000-0000-4000-8000-000000000001"  # dev migrations: 0002_management_tenant.sql
# The SDK's own histograms (worker side) the breakdown reads.
WFT_EXECUTION = "temporal_workflow_task_execution_latency_seconds"
WFT_SCHEDULE_TO_START = "temporal_workflow_task_schedule_to_start_latency_seconds"
ACTIVITY_EXECUTION = "temporal_activity_execution_latency_seconds"
ACTIVITY_SCHEDULE_TO_START = "temporal_activity_schedule_to_start_latency_seconds"
LOCAL_ACTIVITY_EXECUTION = "temporal_local_activity_execution_latency_seconds"


@dataclass
class Context:
    stack: DevStack
    client: Client
    root: Path

    def env(self, queue: str, **extra: str) -> dict[str, str]:
        """The worker's environment on this stack, as the tests build it (LOG_LEVEL=info: lines counted)."""
        secrets = self.root / "secrets"
        secrets.mkdir(exist_ok=True)
        return self.stack.worker_environment(
            TEMPORAL_TASK_QUEUE=queue, EMAIL_OUTBOX_DIR=str(self.root / f"outbox-{queue}"),
            SECRETS_DIR=str(secrets), LOG_LEVEL="info", LOG_FORMAT="json", BUILD_ID="bench", **extra)

    def log(self, name: str) -> Path:
        return self.root / "logs" / f"{name}.log"

    def processes(self, worker: Process) -> cputime.Processes:
        """The processes whose CPU a phase counts: ``worker``, this stack's servers, this client."""
        postmaster = cputime.postmaster_pid(self.stack.root / "pgdata")
        return cputime.Processes(worker_pid=worker.pid, postmaster_pid=postmaster)


async def _results(handles: Sequence[WorkflowHandle[Any, Any]], proc: Process) -> None:
    """Every run's result, failing early (with the worker's output) if the worker process dies."""
    done = asyncio.ensure_future(asyncio.gather(*(h.result() for h in handles)))
    deadline = time.monotonic() + RESULT_TIMEOUT_SECONDS
    while not done.done():
        if proc.proc.poll() is not None or time.monotonic() > deadline:
            done.cancel()
            raise RuntimeError(f"worker exited {proc.proc.returncode} or timed out:\n{proc.output()[-4000:]}")
        await asyncio.wait({done}, timeout=0.2)
    done.result()


async def ceiling(ctx: Context, n: int, queue: str, sequential: int = 0) -> dict[str, Any]:
    """(a) N no-op one-activity workflows, started first, drained by ``python -m bench.noop_worker``;
    then, when ``sequential``, that many no-op runs one at a time: the stack's latency floor."""
    handles = await workload.start_noops(ctx.client, queue, n)
    proc = start_noop_worker(ctx.env(queue), ctx.log(queue))
    floor: dict[str, Any] = {}
    try:
        await _results(handles, proc)
        rss = proc.peak_rss_bytes()
        tasks = _mean_workflow_task_ms(await proc.scrape())
        if sequential:
            processes = ctx.processes(proc)
            cpu_before = processes.sample()
            latencies, singles = await workload.one_at_a_time(ctx.client, queue, sequential, "bench-noop-seq",
                                                              workflow=NOOP_WORKFLOW, args=None)
            cpu = cputime.delta_per_run(cpu_before, processes.sample(), sequential)
            floor = {"one_at_a_time": {**_latency(latencies), "cpu_ms_per_run": cpu,
                                       "server_timeline": history.median_timeline(await history.run_costs(singles))}}
    finally:
        await proc.terminate()
    costs = await history.run_costs(handles)
    seconds = history.drain_seconds(costs)
    return {"workflows": n, "seconds": seconds, "per_second": n / seconds, "worker_peak_rss_mib": rss / MIB,
            "workflow_task_mean_ms": tasks, **costs[0].as_dict(), **floor}


def _mean_workflow_task_ms(metrics_text: str) -> float | None:
    """The mean workflow task execution since the worker started (its own histogram), or None."""
    tasks = promtext.family(promtext.histograms(metrics_text), WFT_EXECUTION).get("")
    return 1000 * tasks.sum / tasks.count if tasks and tasks.count else None


def combine_ceilings(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The ceiling the drain is compared with: the mean rate of the runs (each kept in ``runs``)."""
    task_means = [r["workflow_task_mean_ms"] for r in runs if r["workflow_task_mean_ms"] is not None]
    return {"per_second": statistics.fmean(r["per_second"] for r in runs),
            "worker_peak_rss_mib": max(r["worker_peak_rss_mib"] for r in runs),
            "workflow_task_mean_ms": statistics.fmean(task_means) if task_means else None, "runs": runs}


async def drain(ctx: Context, n: int) -> tuple[dict[str, Any], Process]:
    """(b) N provisionings started first, then `alga-worker run` drains them. Returns the still running
    worker for (c)."""
    queue = "bench-tenants"
    handles = await workload.start_tenants(ctx.client, queue, n)
    proc = start_worker(ctx.env(queue), ctx.log("worker"))
    try:
        await _results(handles, proc)
        rss = proc.peak_rss_bytes()
        lines = proc.log_lines()
        tasks = _mean_workflow_task_ms(await proc.scrape())
        costs = await history.run_costs(handles)
    except BaseException:
        proc.kill()
        raise
    seconds = history.drain_seconds(costs)
    events = sorted(c.events for c in costs)
    return {"tenants": n, "seconds": seconds, "per_second": n / seconds, "worker_peak_rss_mib": rss / MIB,
            "log_lines": lines, "log_lines_per_tenant": lines / n, "workflow_task_mean_ms": tasks,
            "history_events_min": events[0], "history_events_max": events[-1]}, proc


def _histogram_breakdown(changes: dict[promtext.Key, promtext.Histogram], runs: int) -> dict[str, Any]:
    """The worker's own histograms over ``runs`` provisionings: per tenant (count, seconds) and means."""

    def by(name: str, label: str | None = None) -> dict[str, dict[str, float]]:
        return {key or "all": {"per_tenant": h.count / runs, "mean_ms": 1000 * h.sum / h.count,
                               "ms_per_tenant": 1000 * h.sum / runs}
                for key, h in promtext.family(changes, name, label).items()}

    return {
        "workflow_task_execution": by(WFT_EXECUTION),
        "workflow_task_schedule_to_start": by(WFT_SCHEDULE_TO_START),
        "activity_execution": by(ACTIVITY_EXECUTION, "activity_type"),
        "activity_schedule_to_start": by(ACTIVITY_SCHEDULE_TO_START, "activity_type"),
        "local_activity_execution": by(LOCAL_ACTIVITY_EXECUTION, "activity_type"),
        "all_histograms": {f"{name}{dict(labels) or ''}": {"count_per_tenant": h.count / runs,
                                                            "sum_per_tenant": h.sum / runs}
                           for (name, labels), h in sorted(changes.items())},
    }


def _latency(latencies: list[float]) -> dict[str, Any]:
    return {"runs": len(latencies), "p50_ms": 1000 * workload.percentile(latencies, 50),
            "p95_ms": 1000 * workload.percentile(latencies, 95), "p99_ms": 1000 * workload.percentile(latencies, 99),
            "mean_ms": 1000 * statistics.fmean(latencies), "min_ms": 1000 * min(latencies),
            "max_ms": 1000 * max(latencies)}


async def one_at_a_time(ctx: Context, proc: Process, n: int, prefix: str = "bench-seq") -> dict[str, Any]:
    """(c) ``n`` provisionings one after another on the idle stack, on the drain's (warm) worker."""
    processes = ctx.processes(proc)
    before = promtext.histograms(await proc.scrape())
    cpu_before = processes.sample()
    latencies, handles = await workload.one_at_a_time(ctx.client, "bench-tenants", n, prefix)
    cpu = cputime.delta_per_run(cpu_before, processes.sample(), n)
    after = promtext.histograms(await proc.scrape())
    timeline = history.median_timeline(await history.run_costs(handles))
    return {**_latency(latencies), "cpu_ms_per_run": cpu,
            "worker_metrics": _histogram_breakdown(promtext.delta(before, after), n), "server_timeline": timeline}


def pbkdf2(ctx: Context, repeats: int = 20) -> dict[str, Any]:
    """One ``PasswordHasher.hash`` with the default settings' parameters, timed in this process."""
    settings = load_settings(ctx.env("bench-pbkdf2"))
    hasher = PasswordHasher(pepper="bench-pepper-not-secret", salt_bytes=settings.salt_bytes,
                            iterations=settings.iterations, key_length=settings.key_length,
                            algorithm=settings.algorithm)
    hasher.hash("warm-up")
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        hasher.hash("Bench-password-1!")
        times.append(time.perf_counter() - started)
    return {"ms": 1000 * statistics.median(times), "iterations": settings.iterations, "algorithm": settings.algorithm,
            "key_length": settings.key_length}


def _traced_client_interceptor(receiver: OtlpReceiver) -> tuple[TracingInterceptor, TracerProvider]:
    """A tracing client of the bench's own (not the worker's configuration): the run's root span."""
    provider = TracerProvider(resource=Resource.create({"service.name": "bench"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{receiver.url}/v1/traces")))
    return TracingInterceptor(provider.get_tracer("bench")), provider


@asynccontextmanager
async def _probe_worker(env: dict[str, str], log: Path) -> AsyncIterator[Process]:
    """A real worker process for the probe; SIGTERM at the end drains it and flushes its spans."""
    proc = start_worker(env, log)
    try:
        await proc.wait_ready()
        yield proc
        code = await proc.terminate()
        if code != 0:
            raise RuntimeError(f"probe worker exited {code}:\n{proc.output()[-4000:]}")
    finally:
        proc.kill()


@dataclass
class _TracedRun:
    handle: WorkflowHandle[Any, Any]
    seconds: float
    sql_window: tuple[int, int]
    metrics: dict[promtext.Key, promtext.Histogram]


async def _traced_run(client: Client, proc: Process, sql_log: StatementLog, queue: str,
                      request: dict[str, Any], prefix: str) -> _TracedRun:
    """One provisioning by a traced client: its statement-log window and the worker's histograms around it."""
    before, start = promtext.histograms(await proc.scrape()), sql_log.offset()
    started = time.perf_counter()
    handle = await client.start_workflow(workload.TENANT_WORKFLOW, request, id=f"{prefix}-{time.time_ns()}",
                                         task_queue=queue)
    await handle.result()
    seconds = time.perf_counter() - started
    after, end = promtext.histograms(await proc.scrape()), sql_log.offset()
    return _TracedRun(handle, seconds, (start, end), promtext.delta(before, after))


async def probe(ctx: Context) -> dict[str, Any]:
    """Traced provisionings on worker processes of their own with tracing on: one plain (the drain's
    configuration), then, with the checkout configuration of tests/integration/test_checkout_flow.py
    (nm-store and Stripe fakes, MANAGEMENT_TENANT_ID), one plain (customer tracking on) and one checkout.
    History, statements and round trips per tenant, and where the plain one's time goes."""
    sql_log = StatementLog(ctx.stack.database_url, ctx.stack.root / "pgdata" / "log")
    runs: dict[str, _TracedRun] = {}
    with FakeNmStoreServer() as nmstore, FakeStripeServer() as stripe, OtlpReceiver() as receiver:
        interceptor, provider = _traced_client_interceptor(receiver)
        traced = await Client.connect(ctx.stack.temporal_address, data_converter=ctx.client.data_converter,
                                      interceptors=[interceptor])
        otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url}
        await sql_log.enable()
        try:
            async with _probe_worker(ctx.env("bench-probe", **otel), ctx.log("probe-worker")) as proc:
                # Warm-up (untraced): the sandbox and the pool's connections, as in (c).
                await workload.one_at_a_time(ctx.client, "bench-probe", 1, "bench-warm")
                runs["plain"] = await _traced_run(traced, proc, sql_log, "bench-probe", workload.plain_request(0),
                                                  "bench-traced")
            checkout_env = ctx.env(
                "bench-checkout", NMSTORE_BASE_URL=nmstore.url, INTERNAL_API_SHARED_SECRET=nmstore.internal_secret,
                TEMPORAL_WEBHOOK_SECRET=nmstore.webhook_secret, STRIPE_SECRET_KEY=stripe.api_key,
                STRIPE_API_BASE=stripe.url, MANAGEMENT_TENANT_ID=MANAGEMENT_TENANT,
                CLIENT_PORTAL_URL="https://portal.bench.example/login", **otel)
            async with _probe_worker(checkout_env, ctx.log("checkout-worker")) as proc:
                runs["plain_tracked"] = await _traced_run(traced, proc, sql_log, "bench-checkout",
                                                          workload.plain_request(1), "bench-tracked")
                session = stripe.add_session(quantity=7)["session"]
                runs["checkout"] = await _traced_run(traced, proc, sql_log, "bench-checkout",
                                                     workload.checkout_request(session), "bench-checkout")
            reports = nmstore.status_history(session)
        finally:
            await sql_log.disable()
            provider.shutdown()
        spans = receiver.spans
    out: dict[str, Any] = {}
    for name, run in runs.items():
        trace = trace_of(spans, run.handle.id)
        cost = await history.run_cost(run.handle)
        out[name] = {**cost.as_dict(), "sql_spans": sum(s.is_sql for s in trace),
                     **sql_log.count(*run.sql_window).as_dict(),
                     **_traced_breakdown(trace, run.seconds, _histogram_breakdown(run.metrics, 1))}
    out["checkout"]["nmstore_status_reports"] = reports
    return out


def _traced_breakdown(trace: list[Span], seconds: float, metrics: dict[str, Any]) -> dict[str, Any]:
    """Where one traced provisioning spent its time: each activity span, the SQL under it, the
    workflow tasks (the worker's own histogram around this one run)."""
    by_id = {s.span_id: s for s in trace}
    activities = []
    for span in sorted((s for s in trace if s.name.startswith("RunActivity:")), key=lambda s: s.start_ns):
        sql = [s for s in trace if s.is_sql and span in ancestors(s, by_id)]
        activities.append({"activity": span.name.split(":", 1)[1], "ms": 1000 * span.seconds,
                           "sql_statements": len(sql), "sql_ms": 1000 * sum(s.seconds for s in sql)})
    sql = [s for s in trace if s.is_sql]
    wft = metrics["workflow_task_execution"].get("all", {})
    wft_wait = metrics["workflow_task_schedule_to_start"].get("all", {})
    return {"end_to_end_ms": 1000 * seconds, "activity_spans": activities,
            "sql_span_ms": 1000 * sum(s.seconds for s in sql),
            "workflow_task_count": wft.get("per_tenant", 0), "workflow_task_ms": wft.get("ms_per_tenant", 0.0),
            "workflow_task_schedule_to_start_ms": wft_wait.get("ms_per_tenant", 0.0), "spans": len(trace)}


async def scale_step(ctx: Context, proc: Process, tenants: int, n: int, empty_p50_ms: float) -> dict[str, Any]:
    """``--scale N``: fill the database with N tenants (bench/scale.py, when present), then (c) again."""
    if importlib.util.find_spec("bench.scale") is None:  # written separately; may not be there yet
        return {"tenants": tenants, "skipped": "bench/scale.py is not present"}
    scale = importlib.import_module("bench.scale")
    started = time.perf_counter()
    await scale.fill(ctx.stack.database_url, tenants)
    fill_seconds = time.perf_counter() - started
    again = await one_at_a_time(ctx, proc, n, "bench-scaled")
    again.pop("worker_metrics")
    return {"tenants": tenants, "fill_seconds": fill_seconds, **{f"filled_{k}": v for k, v in again.items()},
            "empty_p50_ms": empty_p50_ms, "ratio": again["p50_ms"] / empty_p50_ms}

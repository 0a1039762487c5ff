"""Worker assembly and lifecycle: connect, poll, report health, drain on SIGTERM.

Lifecycle (each step visible on /readyz, whose ``detail`` names what is awaited):
1. health server up first: /healthz 200 (the process is alive), /readyz 503;
2. one SDK ``Runtime`` with Prometheus; then Temporal (envconfig), the database (on the probe's own
   connection) and the schema contract, each retried with capped exponential backoff and jitter for
   as long as it takes: a dependency outage never crash-loops the pod, and SIGTERM while waiting
   exits 0. An incompatible schema keeps the worker from polling, so it never takes an activity;
3. the pool opens, the worker runs; /readyz turns 200 as soon as it polls, then the monitor checks
   Temporal and the database every ``MONITOR_INTERVAL_SECONDS`` (the schema every few minutes);
4. SIGTERM/SIGINT: /readyz 503 at once, ``worker.shutdown()`` lets in-flight activities finish within
   ``GRACEFUL_SHUTDOWN_TIMEOUT`` (the SDK default of 0 would cancel them), exit 0;
5. if the worker's run task dies (fatal poll error, bad credentials) the process reports it and exits
   1 so Kubernetes restarts it, instead of idling as a green zombie (alga-psa#3408). That, and a
   stalled event loop, are the only things liveness reports: the only failures a restart fixes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import httpx
from temporalio.client import Client
from temporalio.runtime import (
    LogForwardingConfig,
    LoggingConfig,
    PrometheusConfig,
    Runtime,
    TelemetryConfig,
    TelemetryFilter,
)
from temporalio.worker import PollerBehaviorSimpleMaximum, Worker, WorkerDeploymentConfig
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from alga_worker.activities.checkout import CheckoutActivities
from alga_worker.activities.customers import CustomerActivities
from alga_worker.activities.db_errors import DatabaseErrorInterceptor
from alga_worker.activities.health import HealthActivities
from alga_worker.activities.heartbeat import DEFAULT_INTERVAL_SECONDS as HEARTBEAT_INTERVAL_SECONDS
from alga_worker.activities.licenses import LicenseActivities
from alga_worker.activities.notifications import NotificationActivities
from alga_worker.activities.stripe import StripeActivities
from alga_worker.activities.tenant_cancellation import TenantCancellationActivities
from alga_worker.activities.tenant_deletion import TenantDeletionActivities
from alga_worker.activities.tenant_export import TenantExportActivities
from alga_worker.activities.tenant_suspension import TenantSuspensionActivities
from alga_worker.activities.tenants import TenantActivities
from alga_worker.activities.users import UserActivities
from alga_worker.config import Settings
from alga_worker.db.pool import DbPool, open_pool
from alga_worker.email.providers import EmailSender, build_email_sender
from alga_worker.models import WORKFLOW_TYPE_TENANT_CREATION
from alga_worker.nmstore import new_http_client
from alga_worker.payload_codec import data_converter, require_encryption_policy
from alga_worker.runtime import gauges, tracing
from alga_worker.runtime.health import (
    CHECK_TIMEOUT_SECONDS,
    DatabaseProbe,
    HealthServer,
    HealthState,
    describe_db_error,
)
from alga_worker.runtime.log_context import LogContextInterceptor
from alga_worker.runtime.metrics import initialise as initialise_metrics
from alga_worker.runtime.metrics import prometheus_bucket_overrides, set_process_meter
from alga_worker.security import CredentialSealer, PasswordHasher
from alga_worker.workflows import VERSIONING_BEHAVIOR, WORKFLOWS
from alga_worker.workflows.outcome_metrics import ProvisioningMetricsInterceptor
from alga_worker.workflows.strict_start import StrictStartInterceptor

log = logging.getLogger(__name__)

MONITOR_INTERVAL_SECONDS = 5.0  # Temporal and database checks once the worker runs
SCHEMA_INTERVAL_SECONDS = 300.0  # the schema contract, re-checked every few minutes (not every probe)
TICK_SECONDS = 1.0  # event-loop heartbeat read by liveness
CONNECT_TIMEOUT_SECONDS = 10.0  # one start-up connection attempt to Temporal
BACKOFF_INITIAL_SECONDS = 1.0  # start-up retries: 1, 2, 4 ... 30 s (each with jitter)
BACKOFF_MAX_SECONDS = 30.0
EXIT_OK = 0
EXIT_WORKER_DIED = 1

T = TypeVar("T")


def metrics_bind_address(host: str, port: int) -> str:
    """``host:port`` for the Prometheus exporter; an IPv6 literal gets brackets (``[::]:9464``)."""
    host = host.strip("[]")
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def build_runtime(settings: Settings) -> Runtime:
    """One Runtime per process: SDK metrics on METRICS_HOST:METRICS_PORT, core logs forwarded into our
    JSON logs."""
    metrics = (
        PrometheusConfig(bind_address=metrics_bind_address(settings.metrics_host, settings.metrics_port),
                         # Prometheus conventions for the SDK's families and ours alike (metrics.py).
                         durations_as_seconds=True, counters_total_suffix=True, unit_suffix=True,
                         histogram_bucket_overrides=prometheus_bucket_overrides())
        if settings.metrics_port
        else None
    )
    return Runtime(telemetry=TelemetryConfig(
        metrics=metrics,
        global_tags={"service": "alga-temporal-worker", "environment": settings.environment},
        logging=LoggingConfig(
            filter=TelemetryFilter(core_level="WARN", other_level="ERROR"),
            forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core")),
        ),
    ))


async def connect_client(settings: Settings, runtime: Runtime | None = None) -> Client:
    return await Client.connect(
        **settings.temporal_connect,
        # Payload encryption when PAYLOAD_KEYS is set (alga_worker.payload_codec); the worker
        # inherits the client's converter.
        data_converter=data_converter(settings),
        runtime=runtime,
        identity=f"{socket.gethostname()}@{settings.build_id}",
        # Tracing (runtime/tracing.py) when on: the worker inherits the client's interceptor.
        interceptors=tracing.client_interceptors(),
    )


@dataclass
class WorkerResources:
    """What activities hold. Built once per process; closed on shutdown."""

    pool: DbPool
    sender: EmailSender
    activities: list[Callable[..., Any]]
    # nm-store calls (checkout activities); pooled connections, closed with the rest.
    http: httpx.AsyncClient | None = None
    # Stripe calls (its own SDK client and connection pool), closed with the rest.
    stripe: StripeActivities | None = None

    async def aclose(self) -> None:
        if self.http is not None:
            await self.http.aclose()
        if self.stripe is not None:
            await self.stripe.aclose()
        await self.sender.aclose()
        await self.pool.close()


async def build_resources(settings: Settings) -> WorkerResources:
    pool = await open_pool(settings, wait=False)
    try:
        await pool.wait(timeout=15.0)
    except BaseException:  # a pool that cannot fill must not keep reconnecting in the background
        await pool.close()
        raise
    sender = build_email_sender(settings)
    pepper = settings.password_pepper.get_secret_value()
    hasher = PasswordHasher(pepper=pepper, salt_bytes=settings.salt_bytes, iterations=settings.iterations,
                            key_length=settings.key_length, algorithm=settings.algorithm)
    sealer = CredentialSealer(pepper)
    tenants = TenantActivities(pool, hasher, sealer, settings.master_billing_tenant_id)
    notifications = NotificationActivities(
        sender, sealer, login_url=str(settings.application_url),
        client_portal_url=None if settings.client_portal_url is None else str(settings.client_portal_url),
        operations_email=settings.operations_email)
    customers = CustomerActivities(pool, hasher, sealer, settings)
    health = HealthActivities(pool, settings.build_id)
    http = new_http_client()
    checkout = CheckoutActivities(settings, http)
    stripe = StripeActivities(settings)
    licenses = LicenseActivities(pool, settings.management_tenant_id)
    # Audit records go to the master billing tenant, as the original's; else the management tenant.
    users = UserActivities(pool, hasher, sealer,
                           audit_tenant_id=settings.master_billing_tenant_id or settings.management_tenant_id)
    suspension = TenantSuspensionActivities(pool, settings.management_tenant_id, settings.master_billing_tenant_id)
    exports = TenantExportActivities(pool, settings)
    cancellation = TenantCancellationActivities(pool, settings.management_tenant_id)
    deletion = TenantDeletionActivities(pool, settings.management_tenant_id, settings.master_billing_tenant_id,
                                        settings.tenant_deletion_batch_size)
    activities: list[Callable[..., Any]] = [
        customers.track_customer, customers.untrack_customer, customers.track_customer_records,
        customers.load_customer_facts,
        notifications.send_portal_access_email,
        checkout.report_checkout_status, checkout.send_nm_store_callback, checkout.worker_capabilities,
        tenants.provision_tenant, tenants.remove_tenant, notifications.send_welcome_email,
        health.health_probe,
        stripe.fetch_stripe_details, stripe.tag_stripe_subscription,
        stripe.cancel_subscription_for_deletion, stripe.restore_subscription_after_rollback,
        licenses.update_license_count, licenses.license_usage,
        notifications.send_email, notifications.seal_test_password,
        users.create_user, users.find_user, users.set_temporary_password, users.set_user_active,
        users.record_audit, users.remove_user,
        exports.export_tenant_data,
        suspension.suspend_tenant, suspension.resume_tenant,
        deletion.validate_tenant_deletion, deletion.record_pending_deletion, deletion.update_deletion_status,
        deletion.deactivate_tenant_users, deletion.reactivate_tenant_users, deletion.collect_tenant_stats,
        deletion.delete_tenant_data,
        cancellation.tag_client_cancelled, cancellation.untag_client_cancelled,
    ]
    return WorkerResources(pool=pool, sender=sender, activities=activities, http=http, stripe=stripe)


# The sandbox re-imports workflow modules per run; our own package and the validation libraries the
# wire models call (email-validator imports idna lazily, at the first address) are deterministic and
# stateless, so they are passed through instead of being re-imported mid-run. OpenTelemetry too: the
# tracing interceptor's workflow half must see the same context module as the code outside.
SANDBOX = SandboxedWorkflowRunner(restrictions=SandboxRestrictions.default.with_passthrough_modules(
    "alga_worker", "pydantic", "pydantic_core", "email_validator", "idna", "dns", "opentelemetry",
))


def deployment_config(settings: Settings) -> WorkerDeploymentConfig | None:
    """Worker Versioning: join TEMPORAL_WORKER_DEPLOYMENT_NAME as version BUILD_ID, every workflow
    PINNED by default (workflows/__init__.py says why). None: versioning off, the worker polls
    unversioned as before."""
    version = settings.worker_deployment_version
    if version is None:
        return None
    return WorkerDeploymentConfig(version=version, use_worker_versioning=True,
                                  default_versioning_behavior=VERSIONING_BEHAVIOR)


def runtime_options(settings: Settings) -> dict[str, Any]:
    """The Worker arguments that size and pace it (slots, pollers, cache, drain, sandbox, heartbeats):
    the real worker's, and the bench's no-op worker's that measures the ceiling on the same settings."""
    return {
        "task_queue": settings.task_queue,
        "max_concurrent_activities": settings.max_concurrent_activities,
        "max_concurrent_workflow_tasks": settings.max_concurrent_workflow_tasks,
        "max_cached_workflows": settings.max_cached_workflows,
        "workflow_task_poller_behavior": PollerBehaviorSimpleMaximum(settings.workflow_task_pollers),
        "activity_task_poller_behavior": PollerBehaviorSimpleMaximum(settings.activity_task_pollers),
        "graceful_shutdown_timeout": settings.graceful_shutdown_timeout,
        "workflow_runner": SANDBOX,
        # Heartbeats reach the server at the pace activities beat (not 0.8 x the heartbeat timeout), so
        # a cancel (e.g. of a welcome email waiting to be sent) reaches the activity within seconds.
        "max_heartbeat_throttle_interval": timedelta(seconds=HEARTBEAT_INTERVAL_SECONDS),
    }


def build_worker(client: Client, settings: Settings, activities: Sequence[Callable[..., Any]]) -> Worker:
    return Worker(
        client,
        workflows=list(WORKFLOWS),
        activities=list(activities),
        # Database errors typed once for every activity; wrong start arguments typed for every workflow;
        # tenant ids on activity log lines and one log line per run's end (runtime/log_context.py).
        interceptors=[ProvisioningMetricsInterceptor(), LogContextInterceptor(), DatabaseErrorInterceptor(),
                      StrictStartInterceptor()],
        deployment_config=deployment_config(settings),
        **runtime_options(settings),
    )


class SchemaIncompatible(Exception):
    """The schema contract reports problems: a worker must not poll against this database."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__(f"{len(self.problems)} schema problem(s)")


class _Stopped(Exception):
    """SIGTERM (or ``stop``) arrived while waiting for a dependency at start-up."""


@dataclass
class Backoff:
    """Capped exponential backoff with jitter: bases 1, 2, 4 ... ``maximum`` s, each delay drawn from
    [base/2, base] so a fleet restarted together does not retry in lockstep."""

    initial: float = BACKOFF_INITIAL_SECONDS
    maximum: float = BACKOFF_MAX_SECONDS
    attempts: int = 0

    def next_delay(self) -> float:
        base: float = min(self.maximum, self.initial * 2.0 ** min(self.attempts, 32))
        self.attempts += 1
        return base / 2 + random.uniform(0, base / 2)  # noqa: S311 -- jitter, not cryptography


def _describe_temporal_error(err: BaseException) -> str:
    """A Temporal connection failure as one short line (the SDK's messages carry no credentials)."""
    if isinstance(err, TimeoutError):
        return "timed out"
    text = " ".join(str(err).split())[:200]
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _describe_schema_error(err: BaseException) -> str:
    if isinstance(err, SchemaIncompatible):
        return str(err)
    return describe_db_error(err)


async def _unless_stopped(stop: asyncio.Event, awaitable: Awaitable[T]) -> T:
    """Await ``awaitable``, or cancel it and raise :class:`_Stopped` as soon as ``stop`` is set."""
    task = asyncio.ensure_future(awaitable)
    stop_wait = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        task.cancel()
        raise
    finally:
        stop_wait.cancel()
    if task.done():
        return task.result()
    task.cancel()
    await asyncio.wait({task}, timeout=1.0)  # let it clean up, but never hold the exit for long
    raise _Stopped


async def _retry_until_ok(state: HealthState, stop: asyncio.Event, what: str,
                          attempt: Callable[[], Awaitable[T]], explain: Callable[[BaseException], str]) -> T:
    """Start-up: try ``attempt`` until it succeeds, backing off between failures; /readyz's detail
    names ``what`` and the last failure. One log line per failed attempt, never with a secret."""
    backoff = Backoff()
    state.update(waiting_for=f"waiting for {what}")
    while True:
        try:
            result = await _unless_stopped(stop, attempt())
        except _Stopped:
            raise
        except Exception as err:
            delay = backoff.next_delay()
            reason = explain(err)
            state.update(waiting_for=f"waiting for {what}: {reason} "
                                     f"(attempt {backoff.attempts}, next in {delay:.0f} s)")
            log.warning("waiting for a dependency", extra={"dependency": what, "attempt": backoff.attempts,
                                                           "retry_in_seconds": round(delay, 1), "error": reason})
            await _unless_stopped(stop, asyncio.sleep(delay))
        else:
            state.update(waiting_for=None)
            return result


async def _tick(state: HealthState) -> None:
    """The event loop's heartbeat: liveness fails when this stops (a blocked or stalled loop)."""
    while True:
        state.update(last_loop_tick=time.monotonic())
        await asyncio.sleep(TICK_SECONDS)


async def _check_temporal(client: Client) -> str | None:
    """None when Temporal answers its health check, else why not."""
    try:
        ok = await asyncio.wait_for(
            client.service_client.check_health(timeout=timedelta(seconds=CHECK_TIMEOUT_SECONDS)),
            CHECK_TIMEOUT_SECONDS + 1)
    except Exception as err:
        return _describe_temporal_error(err)
    return None if ok else "not serving"


async def _check_database(probe: DatabaseProbe) -> str | None:
    """None when the probe's own connection answers ``SELECT 1``, else why not."""
    try:
        await probe.ping()
    except Exception as err:
        return describe_db_error(err)
    return None


def _log_transition(name: str, was_ok: bool, error: str | None) -> None:
    """Log a dependency going down or coming back, not every failed check."""
    if was_ok and error is not None:
        log.warning("dependency check failing", extra={"dependency": name, "error": error})
    elif not was_ok and error is None:
        log.info("dependency check passing again", extra={"dependency": name})


async def _monitor(state: HealthState, client: Client, probe: DatabaseProbe, worker: Worker,
                   run_task: asyncio.Task[None]) -> None:
    """Refresh readiness: worker polling, Temporal and the database (on the probe's own connection,
    never the activities' pool) every ``MONITOR_INTERVAL_SECONDS``, the schema contract every
    ``SCHEMA_INTERVAL_SECONDS``. Each check has its own timeout."""
    # Ready as soon as the worker polls: wait (bounded) for that in-process flag, no network, then check.
    for _ in range(int(MONITOR_INTERVAL_SECONDS / 0.05)):
        if worker.is_running or run_task.done():
            break
        await asyncio.sleep(0.05)
    next_schema_check = time.monotonic() + SCHEMA_INTERVAL_SECONDS  # start-up just verified it
    while True:
        temporal_error, db_error = await asyncio.gather(_check_temporal(client), _check_database(probe))
        schema: dict[str, Any] = {}
        if db_error is None and time.monotonic() >= next_schema_check:
            try:
                problems = await probe.schema_problems()
            except Exception as err:
                db_error = f"schema check failed: {describe_db_error(err)}"
            else:
                next_schema_check = time.monotonic() + SCHEMA_INTERVAL_SECONDS
                if tuple(problems) != state.schema_problems:
                    log.warning("schema contract check", extra={"problems": problems})
                schema = {"schema_ok": not problems, "schema_problems": tuple(problems)}
        _log_transition("Temporal", state.temporal_ok, temporal_error)
        _log_transition("database", state.db_ok, db_error)
        state.update(
            temporal_ok=temporal_error is None,
            temporal_error=temporal_error,
            temporal_failures=0 if temporal_error is None else state.temporal_failures + 1,
            db_ok=db_error is None,
            db_error=db_error,
            db_failures=0 if db_error is None else state.db_failures + 1,
            worker_running=worker.is_running and not run_task.done(),
            **schema,
        )
        await asyncio.sleep(MONITOR_INTERVAL_SECONDS)


async def run_worker(settings: Settings, *, stop: asyncio.Event | None = None,
                     install_signal_handlers: bool = True, state: HealthState | None = None) -> int:
    """Run until SIGTERM/SIGINT (or ``stop``), drain, and return the process exit code."""
    require_encryption_policy(settings)  # ConfigError: a production worker must not write plain payloads
    stop = stop or asyncio.Event()
    state = state or HealthState(build_id=settings.build_id, task_queue=settings.task_queue)
    health: HealthServer | None = None
    if settings.enable_health_check:
        health = HealthServer(state, settings.health_check_host, settings.health_check_port)
        health.start()
        log.info("health server listening", extra={"port": health.port})

    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        # Readiness drops before anything else happens, so the Service stops routing (and
        # rollouts see the pod leaving) while in-flight work finishes.
        state.update(draining=True)
        log.info("shutdown requested, draining", extra={"signal": signal.Signals(signum).name})
        stop.set()

    if install_signal_handlers:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal, sig)

    ticker = asyncio.create_task(_tick(state), name="health-tick")
    probe = DatabaseProbe(settings.admin_conninfo())
    resources: WorkerResources | None = None
    sampler: asyncio.Task[None] | None = None
    try:
        # Before the client and the pool exist, so both are traced (off unless an OTLP endpoint is set).
        tracing.configure_tracing(settings.tracing, environment=settings.environment, build_id=settings.build_id)
        runtime = build_runtime(settings)
        meter = runtime.metric_meter.with_additional_attributes(
            {"namespace": settings.temporal_namespace, "task_queue": settings.task_queue})
        set_process_meter(meter)
        initialise_metrics(meter, meter.with_additional_attributes({"workflow_type": WORKFLOW_TYPE_TENANT_CREATION}),
                           settings.email_provider.value)
        # Readiness and dependency gauges follow the state from start-up on: a scrape shows what is awaited.
        state.watch(functools.partial(gauges.publish_state, meter))
        gauges.publish_state(meter, state)

        async def temporal_answers() -> Client:
            client = await asyncio.wait_for(connect_client(settings, runtime), CONNECT_TIMEOUT_SECONDS)
            state.update(temporal_ok=True)
            return client

        async def database_answers() -> None:
            await probe.ping()
            state.update(db_ok=True)

        async def schema_compatible() -> None:
            # Before polling: an incompatible database must never get an activity attempt.
            problems = await probe.schema_problems()
            state.update(schema_ok=not problems, schema_problems=tuple(problems))
            if problems:
                log.warning("schema contract check", extra={"problems": problems})
                raise SchemaIncompatible(problems)

        client = await _retry_until_ok(state, stop, f"Temporal at {settings.temporal_address}",
                                       temporal_answers, _describe_temporal_error)
        await _retry_until_ok(state, stop, f"the database at {probe.target}", database_answers,
                              describe_db_error)
        await _retry_until_ok(state, stop, "a compatible database schema", schema_compatible,
                              _describe_schema_error)
        resources = await _retry_until_ok(state, stop, f"the database pool at {probe.target}",
                                          lambda: build_resources(settings), describe_db_error)
        sampler = asyncio.create_task(gauges.sample_pool_forever(meter, resources.pool.get_stats),
                                      name="metrics-pool-gauges")
        worker = build_worker(client, settings, resources.activities)
        run_task = asyncio.create_task(worker.run(), name="temporal-worker")
        monitor = asyncio.create_task(_monitor(state, client, probe, worker, run_task))
        log.info("worker started", extra={"task_queue": settings.task_queue,
                                          "temporal": settings.temporal_address,
                                          "namespace": settings.temporal_namespace,
                                          "build_id": settings.build_id,
                                          "worker_deployment": settings.worker_deployment_name})
        stop_wait = asyncio.create_task(stop.wait())
        await asyncio.wait({run_task, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        if run_task.done():
            stop_wait.cancel()
            monitor.cancel()
            failure = run_task.exception() if not run_task.cancelled() else None
            state.update(run_task_died=True, worker_running=False, detail=f"worker stopped: {failure!r}")
            log.error("worker run task ended unexpectedly", exc_info=failure)
            return EXIT_WORKER_DIED
        state.update(draining=True)
        started = time.monotonic()
        await worker.shutdown()
        with contextlib.suppress(Exception):
            await run_task
        monitor.cancel()
        log.info("worker drained", extra={"seconds": round(time.monotonic() - started, 3)})
        return EXIT_OK
    except _Stopped:
        log.info("shutdown requested while waiting for dependencies; nothing to drain")
        return EXIT_OK
    finally:
        ticker.cancel()
        if sampler is not None:
            sampler.cancel()
        state.watch(None)
        set_process_meter(None)
        await probe.aclose()
        if resources is not None:
            await resources.aclose()
        tracing.shutdown_tracing()  # drained and closed: export the last spans before the process exits
        if install_signal_handlers:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
        if health is not None:
            health.stop()

"""Worker assembly and lifecycle: connect, poll, report health, drain on SIGTERM.

Lifecycle (each step visible on /readyz):
1. health server up first, answering 503 (so kubelet sees a live process that is not ready);
2. one SDK ``Runtime`` with Prometheus, the Temporal client (envconfig), the database pool;
3. the worker runs; /readyz turns 200 once it is polling and Temporal and the DB answer;
4. SIGTERM/SIGINT: /readyz 503 at once, ``worker.shutdown()`` lets in-flight activities finish within
   ``GRACEFUL_SHUTDOWN_TIMEOUT`` (the SDK default of 0 would cancel them), exit 0;
5. if the worker's run task dies (fatal poll error, bad credentials) the process reports it and exits
   1 so Kubernetes restarts it, instead of idling as a green zombie (alga-psa#3408).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.runtime import (
    LogForwardingConfig,
    LoggingConfig,
    PrometheusConfig,
    Runtime,
    TelemetryConfig,
    TelemetryFilter,
)
from temporalio.worker import PollerBehaviorSimpleMaximum, Worker

from alga_worker.activities.health import HealthActivities
from alga_worker.activities.notifications import NotificationActivities
from alga_worker.activities.tenants import TenantActivities
from alga_worker.config import Settings
from alga_worker.converter import DATA_CONVERTER
from alga_worker.db.pool import DbPool, open_pool
from alga_worker.email.providers import EmailSender, build_email_sender
from alga_worker.runtime.health import HealthServer, HealthState
from alga_worker.security import CredentialSealer, PasswordHasher
from alga_worker.workflows import WORKFLOWS

log = logging.getLogger(__name__)

MONITOR_INTERVAL_SECONDS = 5.0
STARTUP_INTERVAL_SECONDS = 0.2
EXIT_OK = 0
EXIT_WORKER_DIED = 1
EXIT_DB_UNREACHABLE = 3  # the same codes as `alga-worker check`
EXIT_TEMPORAL_UNREACHABLE = 4


def build_runtime(settings: Settings) -> Runtime:
    """One Runtime per process: SDK metrics on METRICS_PORT, core logs forwarded into our JSON logs."""
    metrics = (
        PrometheusConfig(bind_address=f"0.0.0.0:{settings.metrics_port}", durations_as_seconds=True)
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
        data_converter=DATA_CONVERTER,
        runtime=runtime,
        identity=f"{socket.gethostname()}@{settings.build_id}",
    )


@dataclass
class WorkerResources:
    """What activities hold. Built once per process; closed on shutdown."""

    pool: DbPool
    sender: EmailSender
    activities: list[Callable[..., Any]]

    async def aclose(self) -> None:
        await self.sender.aclose()
        await self.pool.close()


async def build_resources(settings: Settings) -> WorkerResources:
    pool = await open_pool(settings)
    sender = build_email_sender(settings)
    pepper = settings.password_pepper.get_secret_value()
    hasher = PasswordHasher(pepper=pepper, salt_bytes=settings.salt_bytes, iterations=settings.iterations,
                            key_length=settings.key_length, algorithm=settings.algorithm)
    sealer = CredentialSealer(pepper)
    tenants = TenantActivities(pool, hasher, sealer)
    notifications = NotificationActivities(sender, sealer, login_url=str(settings.application_url))
    health = HealthActivities(pool, settings.build_id)
    activities: list[Callable[..., Any]] = [
        tenants.provision_tenant, tenants.remove_tenant, notifications.send_welcome_email,
        health.health_probe,
    ]
    return WorkerResources(pool=pool, sender=sender, activities=activities)


def build_worker(client: Client, settings: Settings, activities: Sequence[Callable[..., Any]]) -> Worker:
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=list(WORKFLOWS),
        activities=list(activities),
        max_concurrent_activities=settings.max_concurrent_activities,
        max_concurrent_workflow_tasks=settings.max_concurrent_workflow_tasks,
        max_cached_workflows=settings.max_cached_workflows,
        workflow_task_poller_behavior=PollerBehaviorSimpleMaximum(settings.workflow_task_pollers),
        activity_task_poller_behavior=PollerBehaviorSimpleMaximum(settings.activity_task_pollers),
        graceful_shutdown_timeout=settings.graceful_shutdown_timeout,
    )


async def _monitor(state: HealthState, client: Client, pool: DbPool, worker: Worker,
                   run_task: asyncio.Task[None]) -> None:
    """Refresh the probe state: Temporal and DB reachability, worker running, event-loop tick."""
    while True:
        try:
            temporal_ok = await client.service_client.check_health(timeout=timedelta(seconds=3))
        except Exception:
            temporal_ok = False
        try:
            async with pool.connection(timeout=3) as conn:
                await conn.execute("SELECT 1")
            db_ok = True
        except Exception:
            db_ok = False
        state.update(
            temporal_ok=temporal_ok,
            temporal_failures=0 if temporal_ok else state.temporal_failures + 1,
            db_ok=db_ok,
            worker_running=worker.is_running and not run_task.done(),
            last_loop_tick=time.monotonic(),
        )
        # Check quickly until the worker is ready (fast readiness on start), then at the normal pace.
        ready, _ = state.readiness()
        await asyncio.sleep(MONITOR_INTERVAL_SECONDS if ready or state.draining else STARTUP_INTERVAL_SECONDS)


async def run_worker(settings: Settings, *, stop: asyncio.Event | None = None,
                     install_signal_handlers: bool = True, state: HealthState | None = None) -> int:
    """Run until SIGTERM/SIGINT (or ``stop``), drain, and return the process exit code."""
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

    resources: WorkerResources | None = None
    try:
        runtime = build_runtime(settings)
        try:
            client = await connect_client(settings, runtime)
        except Exception as err:
            log.error("cannot connect to Temporal", extra={"temporal": settings.temporal_address,
                                                           "error": f"{type(err).__name__}: {err}"})
            return EXIT_TEMPORAL_UNREACHABLE
        try:
            resources = await build_resources(settings)
        except Exception as err:  # the pool's timeout, a refused connection, bad credentials
            log.error("cannot open the database pool", extra={"error": type(err).__name__})
            return EXIT_DB_UNREACHABLE
        worker = build_worker(client, settings, resources.activities)
        run_task = asyncio.create_task(worker.run(), name="temporal-worker")
        monitor = asyncio.create_task(_monitor(state, client, resources.pool, worker, run_task))
        log.info("worker started", extra={"task_queue": settings.task_queue,
                                          "temporal": settings.temporal_address,
                                          "namespace": settings.temporal_namespace,
                                          "build_id": settings.build_id})
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
    finally:
        if resources is not None:
            await resources.aclose()
        if install_signal_handlers:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
        if health is not None:
            health.stop()

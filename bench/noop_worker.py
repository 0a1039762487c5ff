"""The ceiling's worker process: ``python -m bench.noop_worker``, configured like ``alga-worker run``.

It reads the same Settings from the same environment and builds the same SDK pieces as the real worker
(``build_runtime``: one Runtime with the Prometheus exporter; ``connect_client``: the data converter;
``SANDBOX``: the workflow runner with the same pass-through modules; the same slot, poller, cache and
heartbeat-throttle settings), but registers only the bench's no-op workflow and activity, and none of
the worker's interceptors: the ceiling is what the stack and the SDK can do with these settings, the
gap to it is the worker's own work. SIGTERM/SIGINT drains and exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import PollerBehaviorSimpleMaximum, Worker

from alga_worker.activities.heartbeat import DEFAULT_INTERVAL_SECONDS as HEARTBEAT_INTERVAL_SECONDS
from alga_worker.config import Settings, load_settings
from alga_worker.runtime.logging import configure_logging
from alga_worker.runtime.worker import SANDBOX, build_runtime, connect_client
from bench.noop import NoopWorkflow, noop_activity

log = logging.getLogger("bench.noop_worker")


def build_noop_worker(settings: Settings, client: Client) -> Worker:
    """A Worker with the real worker's runtime settings (runtime/worker.py ``build_worker``)."""
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=[NoopWorkflow],
        activities=[noop_activity],
        max_concurrent_activities=settings.max_concurrent_activities,
        max_concurrent_workflow_tasks=settings.max_concurrent_workflow_tasks,
        max_cached_workflows=settings.max_cached_workflows,
        workflow_task_poller_behavior=PollerBehaviorSimpleMaximum(settings.workflow_task_pollers),
        activity_task_poller_behavior=PollerBehaviorSimpleMaximum(settings.activity_task_pollers),
        graceful_shutdown_timeout=settings.graceful_shutdown_timeout,
        workflow_runner=SANDBOX,
        max_heartbeat_throttle_interval=timedelta(seconds=HEARTBEAT_INTERVAL_SECONDS),
    )


async def run(settings: Settings) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runtime = build_runtime(settings)
    client = await connect_client(settings, runtime)
    worker = build_noop_worker(settings, client)
    task = asyncio.create_task(worker.run())
    log.info("noop worker started", extra={"task_queue": settings.task_queue})
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        stopped.cancel()
        log.error("noop worker stopped unexpectedly", exc_info=task.exception())
        return 1
    await worker.shutdown()
    with contextlib.suppress(Exception):
        await task
    return 0


def main() -> None:
    settings = load_settings(os.environ)
    configure_logging(settings.log_level, settings.log_format, settings.secret_values(),
                      static={"service": "bench-noop-worker", "build_id": settings.build_id,
                              "environment": settings.environment})
    raise SystemExit(asyncio.run(run(settings)))


if __name__ == "__main__":
    main()

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

from temporalio.client import Client
from temporalio.worker import Worker

from alga_worker.config import Settings, load_settings
from alga_worker.runtime.logging import configure_logging
from alga_worker.runtime.worker import build_runtime, connect_client, runtime_options
from bench.noop import NoopWorkflow, noop_activity

log = logging.getLogger("bench.noop_worker")


def build_noop_worker(settings: Settings, client: Client) -> Worker:
    """A Worker with the real worker's runtime settings (runtime/worker.py ``runtime_options``)."""
    return Worker(client, workflows=[NoopWorkflow], activities=[noop_activity], **runtime_options(settings))


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

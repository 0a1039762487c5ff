"""Gauges of the worker's own state: readiness, each dependency, the activity pool.

Readiness and dependencies are published on every change of :class:`HealthState` (``HealthState.watch``),
so a scrape never contradicts ``/readyz``. The pool's "in use" changes with every activity: it is
sampled once a second instead, finer than any scrape interval, for a few gauge sets.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

from temporalio.common import MetricMeter

from alga_worker.runtime import metrics
from alga_worker.runtime.health import HealthState

SAMPLE_SECONDS = 1.0


def publish_state(meter: MetricMeter, state: HealthState) -> None:
    """Readiness and each dependency's last check, from one reading of ``state``."""
    ready, doc = state.readiness()
    metrics.record(metrics.WORKER_READY, 1 if ready else 0, meter=meter)
    checks = doc["checks"]
    for dependency in ("temporal", "database", "schema"):
        metrics.record(metrics.DEPENDENCY_UP, 1 if checks[dependency] else 0, meter=meter, dependency=dependency)


def publish_pool(meter: MetricMeter, pool_stats: Mapping[str, int]) -> None:
    """The activity pool from one ``get_stats()`` reading."""
    size, idle = pool_stats.get("pool_size", 0), pool_stats.get("pool_available", 0)
    metrics.record(metrics.DB_POOL_IN_USE, max(size - idle, 0), meter=meter)
    metrics.record(metrics.DB_POOL_WAITING, pool_stats.get("requests_waiting", 0), meter=meter)
    metrics.record(metrics.DB_POOL_SIZE, pool_stats.get("pool_max", 0), meter=meter)


async def sample_pool_forever(meter: MetricMeter, pool_stats: Callable[[], Mapping[str, int]]) -> None:
    """Publish the pool every :data:`SAMPLE_SECONDS` until cancelled."""
    while True:
        publish_pool(meter, pool_stats())
        await asyncio.sleep(SAMPLE_SECONDS)

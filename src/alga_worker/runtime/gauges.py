"""Gauges sampled from the worker's own state: readiness, each dependency, the activity pool.

Sampled once a second from the event loop rather than set where the state changes: readiness is the
conjunction of several flags written from several places, and a pool's "in use" changes with every
activity. A second's resolution is finer than any scrape interval, and the cost is a few gauge sets.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

from temporalio.common import MetricMeter

from alga_worker.runtime import metrics
from alga_worker.runtime.health import HealthState

SAMPLE_SECONDS = 1.0


def publish(meter: MetricMeter, state: HealthState, pool_stats: Mapping[str, int] | None) -> None:
    """Set every gauge from one reading of ``state`` and of the pool's ``get_stats()``."""
    ready, doc = state.readiness()
    metrics.record(metrics.WORKER_READY, 1 if ready else 0, meter=meter)
    checks = doc["checks"]
    for dependency, check in (("temporal", "temporal"), ("database", "database"), ("schema", "schema")):
        metrics.record(metrics.DEPENDENCY_UP, 1 if checks[check] else 0, meter=meter, dependency=dependency)
    if pool_stats is not None:
        size, idle = pool_stats.get("pool_size", 0), pool_stats.get("pool_available", 0)
        metrics.record(metrics.DB_POOL_IN_USE, max(size - idle, 0), meter=meter)
        metrics.record(metrics.DB_POOL_WAITING, pool_stats.get("requests_waiting", 0), meter=meter)
        metrics.record(metrics.DB_POOL_SIZE, pool_stats.get("pool_max", 0), meter=meter)


async def sample_forever(meter: MetricMeter, state: HealthState,
                         pool_stats: Callable[[], Mapping[str, int] | None]) -> None:
    """Publish every :data:`SAMPLE_SECONDS` until cancelled."""
    while True:
        publish(meter, state, pool_stats())
        await asyncio.sleep(SAMPLE_SECONDS)

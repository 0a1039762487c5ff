"""The activity behind ``healthCheckWorkflow``: proves a worker can take a task and reach its DB."""

from __future__ import annotations

from temporalio import activity

from alga_worker.db.pool import DbPool
from alga_worker.models import HealthCheckResult


class HealthActivities:
    def __init__(self, pool: DbPool, build_id: str) -> None:
        self._pool = pool
        self._build_id = build_id

    @activity.defn(name="health_probe")
    async def health_probe(self) -> HealthCheckResult:
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute("SELECT now() AS now")
            row = await cur.fetchone()
        assert row is not None
        return HealthCheckResult(status="healthy", build_id=self._build_id, timestamp=row["now"])

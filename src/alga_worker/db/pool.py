"""The worker's PostgreSQL pool.

One async pool per process, opened at start-up and checked before the worker polls: a worker that
cannot reach its database should not take tasks (it would only burn retry budgets).
"""

from __future__ import annotations

from psycopg import AsyncConnection
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool

from alga_worker.config import Settings

APPLICATION_NAME = "alga-temporal-worker"

DbConnection = AsyncConnection[DictRow]
DbPool = AsyncConnectionPool[DbConnection]


async def _configure(conn: DbConnection) -> None:
    # Bounded statements: a stuck lock must fail the attempt (and retry), not hang a slot for ever.
    await conn.execute("SET statement_timeout = '60s'")
    await conn.execute("SET lock_timeout = '15s'")
    await conn.execute("SET idle_in_transaction_session_timeout = '120s'")
    await conn.commit()


async def open_pool(settings: Settings, *, wait: bool = True, timeout: float = 15.0) -> DbPool:
    """Open and (optionally) prove the pool: ``wait`` blocks until ``db_pool_min`` connections work."""
    pool: DbPool = AsyncConnectionPool(
        settings.admin_conninfo(),
        connection_class=DbConnection,
        min_size=max(settings.db_pool_min, 1),
        max_size=settings.db_pool_max,
        kwargs={"application_name": APPLICATION_NAME, "row_factory": dict_row, "connect_timeout": 10},
        configure=_configure,
        check=AsyncConnectionPool.check_connection,
        open=False,
        name="alga-worker",
        timeout=30.0,
    )
    await pool.open(wait=wait, timeout=timeout)
    return pool


async def ping(conninfo: str, *, timeout: float = 5.0) -> str:
    """Connect once and return the server version: used by `alga-worker check`."""
    async with await AsyncConnection.connect(conninfo, connect_timeout=int(max(timeout, 1)),
                                             application_name=APPLICATION_NAME) as conn:
        cur = await conn.execute("SHOW server_version")
        row = await cur.fetchone()
        return str(row[0]) if row else "unknown"

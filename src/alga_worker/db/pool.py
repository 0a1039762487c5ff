"""The worker's PostgreSQL pool.

One async pool per process, opened at start-up and checked before the worker polls: a worker that
cannot reach its database should not take tasks (it would only burn retry budgets).

Safe behind PgBouncer in transaction mode (docs/deployment.md, "PgBouncer"): a server connection
serves this client for one transaction only, so nothing may outlive a transaction on it.

- **No session settings.** The statement, lock and idle-in-transaction timeouts are set with
  ``set_config(..., is_local => true)`` at the start of every transaction the worker opens
  (``conn.transaction()``), so they end with it; a session ``SET`` would stay on whichever server
  connection ran it (leaking to other clients) while this client's next transaction ran elsewhere
  without it.
- **No server-side prepared statements** unless ``DB_PREPARED_STATEMENTS=true``: psycopg prepares a
  statement after 5 executions on a connection, and a prepared name bound to one server connection
  is unknown on the next (PgBouncer before 1.21, or ``max_prepared_statements = 0``).
- Advisory locks are transaction-scoped (``pg_advisory_xact_lock``); only the dev-only
  ``alga-worker db migrate`` takes a session lock, on a direct connection of its own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from psycopg import AsyncConnection, AsyncTransaction
from psycopg.pq import TransactionStatus
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool

from alga_worker.config import Settings

APPLICATION_NAME = "alga-temporal-worker"

# Bounded statements: a stuck lock must fail the attempt (and retry), not hang a slot for ever.
TRANSACTION_TIMEOUTS: dict[str, str] = {
    "statement_timeout": "60s",
    "lock_timeout": "15s",
    "idle_in_transaction_session_timeout": "120s",
}
_SET_LOCAL_TIMEOUTS = "SELECT " + ", ".join(
    f"set_config('{name}', '{value}', true)" for name, value in TRANSACTION_TIMEOUTS.items()
)


class DbConnection(AsyncConnection[DictRow]):
    """A pool connection whose outermost transactions carry the worker's timeouts (SET LOCAL)."""

    @asynccontextmanager
    async def transaction(
        self, savepoint_name: str | None = None, force_rollback: bool = False
    ) -> AsyncIterator[AsyncTransaction]:
        outermost = not self.autocommit and self.info.transaction_status == TransactionStatus.IDLE
        async with super().transaction(savepoint_name, force_rollback) as tx:
            if outermost:
                await self.execute(_SET_LOCAL_TIMEOUTS)
            yield tx


DbPool = AsyncConnectionPool[DbConnection]


def prepare_threshold(settings: Settings) -> int | None:
    """psycopg's ``prepare_threshold`` for the pool: None never prepares server-side; 5 is psycopg's
    default (prepare a statement on its 6th execution on a connection)."""
    return 5 if settings.db_prepared_statements else None


async def open_pool(settings: Settings, *, wait: bool = True, timeout: float = 15.0) -> DbPool:
    """Open and (optionally) prove the pool: ``wait`` blocks until ``db_pool_min`` connections work."""
    pool: DbPool = AsyncConnectionPool(
        settings.admin_conninfo(),
        connection_class=DbConnection,
        min_size=max(settings.db_pool_min, 1),
        max_size=settings.db_pool_max,
        kwargs={
            "application_name": APPLICATION_NAME,
            "row_factory": dict_row,
            "connect_timeout": 10,
            "prepare_threshold": prepare_threshold(settings),
        },
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

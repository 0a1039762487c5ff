"""The worker's pool keeps no state on a server connection beyond one transaction, so it works
through PgBouncer in transaction mode (docs/deployment.md, "PgBouncer").

Why these checks: in transaction mode a client gets a server connection for one transaction only.
A statement psycopg prepared server-side (it does so after 5 executions) is then unknown on the next
server connection (PgBouncer < 1.21: "prepared statement _pg3_0 does not exist"), a session `SET`
stays behind on a server connection other clients get, and a session advisory lock is never released
where the client thinks. The tests run against the real PostgreSQL of the test stack and look at the
server's own catalogues (pg_prepared_statements, current_setting) on the pooled connection.
"""

from __future__ import annotations

import re
from pathlib import Path

from alga_worker.config import Settings
from alga_worker.db.pool import TRANSACTION_TIMEOUTS, open_pool

SRC = Path(__file__).resolve().parents[2] / "src" / "alga_worker"
EXECUTIONS = 20  # psycopg prepares on the 6th execution of a statement (prepare_threshold=5)


async def prepared_after_many_executions(settings: Settings) -> list[str]:
    """Run one parameterised statement EXECUTIONS times on a one-connection pool, each in its own
    transaction as the activities do; return the statements the server holds prepared for it."""
    single = settings.model_copy(update={"db_pool_min": 1, "db_pool_max": 1})
    pool = await open_pool(single)
    try:
        for i in range(EXECUTIONS):
            async with pool.connection() as conn, conn.transaction():
                cur = await conn.execute("SELECT %s::int + 1 AS n", (i,))
                row = await cur.fetchone()
                assert row is not None and row["n"] == i + 1
        async with pool.connection() as conn:
            backend_pids = {conn.info.backend_pid}
            cur = await conn.execute("SELECT statement FROM pg_prepared_statements")
            statements = [str(r["statement"]) for r in await cur.fetchall()]
            backend_pids.add(conn.info.backend_pid)
        assert len(backend_pids) == 1, "the check must look at the connection that ran the statement"
        return statements
    finally:
        await pool.close()


async def test_no_server_side_prepared_statements_by_default(settings: Settings) -> None:
    """DB_PREPARED_STATEMENTS unset (false): after many executions nothing is prepared on the server."""
    assert settings.db_prepared_statements is False
    assert await prepared_after_many_executions(settings) == []


async def test_prepared_statements_when_enabled(settings: Settings) -> None:
    """DB_PREPARED_STATEMENTS=true: psycopg prepares the repeated statement (the check above is live)."""
    enabled = settings.model_copy(update={"db_prepared_statements": True})
    statements = await prepared_after_many_executions(enabled)
    assert any("$1::int + 1" in s for s in statements), statements


async def test_timeouts_are_transaction_local_not_session_state(settings: Settings) -> None:
    """Inside a worker transaction the timeouts apply; after it the server connection is back to the
    server's defaults (nothing a session SET would leave for the next PgBouncer client)."""
    single = settings.model_copy(update={"db_pool_min": 1, "db_pool_max": 1})
    pool = await open_pool(single)
    names = list(TRANSACTION_TIMEOUTS)
    query = "SELECT " + ", ".join(f"current_setting('{n}') AS {n}" for n in names)
    try:
        async with pool.connection() as conn:
            conn_pid = conn.info.backend_pid
            cur = await conn.execute(query)
            defaults = await cur.fetchone()
        assert defaults is not None
        async with pool.connection() as conn, conn.transaction():
            assert conn.info.backend_pid == conn_pid
            cur = await conn.execute(query)
            inside = await cur.fetchone()
            # A nested block (savepoint) keeps the outer transaction's settings and adds none.
            async with conn.transaction():
                cur = await conn.execute(query)
                nested = await cur.fetchone()
        assert inside is not None and nested == inside
        as_ms = {"60s": "1min", "15s": "15s", "120s": "2min"}
        assert {n: inside[n] for n in names} == {n: as_ms[v] for n, v in TRANSACTION_TIMEOUTS.items()}
        async with pool.connection() as conn:
            assert conn.info.backend_pid == conn_pid
            cur = await conn.execute(query)
            after = await cur.fetchone()
        assert after == defaults, "a timeout outlived its transaction"
        assert defaults is not None and {defaults[n] for n in names} != set(as_ms.values())
    finally:
        await pool.close()


def test_advisory_locks_are_transaction_scoped() -> None:
    """Every advisory lock the worker takes is pg_advisory_xact_lock; a session lock (released only
    by an explicit unlock on the same server connection) appears only in the dev-only migrator."""
    session_lock = re.compile(r"pg_(try_)?advisory_(un)?lock(_shared)?\s*\(")
    offenders = sorted(
        str(path.relative_to(SRC))
        for path in SRC.rglob("*.py")
        if session_lock.search(path.read_text(encoding="utf-8"))
    )
    assert offenders == ["db/migrate.py"], offenders
    xact = [p for p in SRC.rglob("*.py") if "pg_advisory_xact_lock" in p.read_text(encoding="utf-8")]
    assert xact, "the worker's advisory locks moved: update this test"

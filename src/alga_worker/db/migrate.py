"""Dev/test migrations: the subset of Alga PSA's schema the worker touches.

Production schema belongs to Alga PSA; this runs only when someone types `alga-worker db migrate`
(or the dev stack / tests do). Each file runs once, in its own transaction, recorded in
``alga_worker_schema_migrations``; an advisory lock keeps two concurrent runners from racing.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

from psycopg import AsyncConnection

_LOCK_KEY = 0x41_6C_67_61  # "Alga"


@dataclass(frozen=True)
class Migration:
    name: str
    sql: str


def bundled_migrations() -> list[Migration]:
    folder = resources.files("alga_worker.db") / "migrations"
    files = sorted((p for p in folder.iterdir() if p.name.endswith(".sql")), key=lambda p: p.name)
    return [Migration(p.name, p.read_text(encoding="utf-8")) for p in files]


async def migrate(conninfo: str) -> list[str]:
    """Apply pending migrations; return the names applied now (empty when up to date)."""
    applied_now: list[str] = []
    async with await AsyncConnection.connect(conninfo, autocommit=True) as conn:
        await conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS alga_worker_schema_migrations ("
                " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            cur = await conn.execute("SELECT name FROM alga_worker_schema_migrations")
            done = {row[0] for row in await cur.fetchall()}
            for migration in bundled_migrations():
                if migration.name in done:
                    continue
                async with conn.transaction():
                    await conn.execute(migration.sql.encode("utf-8"))
                    await conn.execute(
                        "INSERT INTO alga_worker_schema_migrations (name) VALUES (%s)", (migration.name,)
                    )
                applied_now.append(migration.name)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied_now

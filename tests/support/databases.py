"""Scratch databases on the session's PostgreSQL server, for tests that must change a schema.

A test that drops a column or creates an index must not touch the shared database other tests use:
it gets a database of its own, migrated like the dev stack's, changed by the given statements
(autocommit, so ``CREATE INDEX CONCURRENTLY`` runs as operators run it), and dropped afterwards.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from alga_worker.db.migrate import migrate


@contextlib.asynccontextmanager
async def scratch_database(db: psycopg.AsyncConnection[Any], database_url: str,
                           *statements: str) -> AsyncIterator[str]:
    """The new database's conninfo, for the duration of the block."""
    name = f"scratch_{uuid.uuid4().hex[:10]}"
    await db.execute(f'CREATE DATABASE "{name}"')
    url = make_conninfo(database_url, dbname=name)
    try:
        await migrate(url)
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            for statement in statements:
                await conn.execute(statement)
        yield url
    finally:
        await db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

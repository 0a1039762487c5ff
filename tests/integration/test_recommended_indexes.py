"""Recommended indexes (``schema_contract.RECOMMENDED_INDEXES``) against real databases.

What must hold: ``alga-worker check`` names each missing one with its DDL and still exits 0 (a
warning, not a failure); it says nothing once they exist; an equivalent index under Alga's own name
counts, a partial one or one with other leading keys does not; and neither start-up nor readiness
depends on them (the worker is correct without them, only slower as Alga grows).

Each database is a scratch database on the session's embedded PostgreSQL, migrated with the project's
own migrations (which do not create these indexes: Alga's schema does not have them), altered, and
dropped afterwards, so the session database the other tests share is never touched.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from pathlib import Path

import psycopg
from tests.support.databases import scratch_database
from tests.support.processes import cli, start_worker

from alga_worker.db.schema_contract import RECOMMENDED_INDEXES, missing_recommended_indexes, verify_schema

DOCS = Path(__file__).resolve().parents[2] / "docs" / "database.md"
WARNING = "recommended index missing"


async def missing_names(url: str) -> list[str]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        return [index.name for index in await missing_recommended_indexes(conn)]


async def test_check_warns_with_the_ddl_of_each_missing_index_and_exits_0(db, stack, worker_env) -> None:
    async with scratch_database(db, stack.database_url) as url:
        code, out, err = await cli(dict(worker_env, DATABASE_URL=url), "check")
    assert code == 0, out + err
    assert "schema contract satisfied" in out
    assert err.count(WARNING) == len(RECOMMENDED_INDEXES), err
    for index in RECOMMENDED_INDEXES:
        assert f"{WARNING}: {index.name} on {index.table}" in err
        assert index.ddl in err, f"{index.name}: its DDL is not printed"
    assert "Temporal reachable" in out  # a warning stops none of the checks after it


async def test_check_is_silent_once_the_indexes_exist(db, stack, worker_env) -> None:
    async with scratch_database(db, stack.database_url, *(index.ddl for index in RECOMMENDED_INDEXES)) as url:
        assert await missing_names(url) == []
        code, out, err = await cli(dict(worker_env, DATABASE_URL=url), "check")
    assert code == 0, out + err
    assert WARNING not in err and WARNING not in out


async def test_the_dev_migrations_lack_every_recommended_index(db, stack) -> None:
    """The dev schema mirrors Alga's, which has none of them: the bench measures what Alga meets."""
    async with scratch_database(db, stack.database_url) as url:
        assert await missing_names(url) == [index.name for index in RECOMMENDED_INDEXES]


async def test_equivalent_indexes_count_whatever_their_name(db, stack) -> None:
    async with scratch_database(
        db, stack.database_url,
        # Alga's own shape: email as varchar (printed lower((email)::text)), more key columns after ours.
        "ALTER TABLE users ALTER COLUMN email TYPE varchar(255)",
        "CREATE INDEX alga_users_email_ci ON users (lower(email), tenant)",
        "CREATE INDEX alga_clients_tenant_key ON clients (tenant, (properties ->> 'tenant_id'))",
        # These do not serve the worker's statements as written: partial, and other leading keys.
        "CREATE INDEX contacts_active_email ON contacts (tenant, lower(email)) WHERE NOT is_inactive",
        "CREATE INDEX contacts_plain_email ON contacts (tenant, email)",
        "CREATE INDEX clients_key_first ON clients ((properties ->> 'alga_tenant_id'), tenant)",
    ) as url:
        assert await missing_names(url) == ["idx_contacts_tenant_lower_email", "idx_clients_tenant_alga_tenant_id"]


async def test_a_failed_concurrent_build_does_not_count(db, stack) -> None:
    """``CREATE INDEX CONCURRENTLY`` that fails leaves an invalid index under the name: still missing
    (and ``IF NOT EXISTS`` would skip it, so docs/database.md says to drop it first)."""
    people = {uuid.uuid4(): "ada@example.com", uuid.uuid4(): "Ada@Example.com"}  # one address, two tenants
    async with scratch_database(db, stack.database_url, *(
        f"INSERT INTO tenants (tenant, client_name, email) VALUES ('{t}', 'T', 'ada@example.com')" for t in people
    ), *(
        f"INSERT INTO users (tenant, username, hashed_password, email) VALUES ('{t}', 'ada', 'x', '{email}')"
        for t, email in people.items()
    )) as url:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            # Unique on lower(email) fails on the two rows, after its catalog entry was made.
            with contextlib.suppress(psycopg.errors.UniqueViolation):
                await conn.execute("CREATE UNIQUE INDEX CONCURRENTLY idx_users_lower_email ON users (lower(email))")
            cur = await conn.execute(
                "SELECT indisvalid FROM pg_index WHERE indexrelid = 'idx_users_lower_email'::regclass")
            assert await cur.fetchone() == (False,)
        assert "idx_users_lower_email" in await missing_names(url)


async def test_start_up_and_readiness_ignore_recommended_indexes(db, stack, worker_env, tmp_path) -> None:
    async with scratch_database(db, stack.database_url) as url:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            assert await verify_schema(conn) == []
            assert len(await missing_recommended_indexes(conn)) == len(RECOMMENDED_INDEXES)
        worker = start_worker(dict(worker_env, DATABASE_URL=url), tmp_path / "worker.log")
        try:
            await worker.wait_until("/readyz", 200)
            _, doc = worker.probe("/readyz")
        finally:
            worker.stop()
    assert doc["checks"]["schema"] is True and doc["status"] == "ok"
    assert "index" not in json.dumps(doc)


def test_docs_give_each_index_its_ddl_and_why() -> None:
    text = DOCS.read_text(encoding="utf-8")
    assert "## Indexes the worker recommends" in text or "Indexes the worker recommends" in text
    for index in RECOMMENDED_INDEXES:
        assert index.ddl in text, f"docs/database.md does not give the DDL of {index.name}"

"""The schema contract against real databases: the dev/test migrations satisfy it; databases that
differ (a dropped column, Alga's October 2025 names, a wrong type, a missing unique key, a new NOT NULL
column) are named by ``verify_schema`` and by ``alga-worker check`` (exit 7); and the contract is
complete: provisioning and removal run on a database reduced to exactly the contract, and on one
where every column has another type of its declared family.

Each altered database is a separate database on the session's embedded PostgreSQL, migrated with the
project's own migrations, then changed with one or two statements, and dropped afterwards.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row
from temporalio.testing import ActivityEnvironment
from tests.support.data import tenant_row_counts, unique_email
from tests.support.databases import scratch_database
from tests.support.processes import cli
from tests.support.workers import activity_name

from alga_worker.config import load_settings
from alga_worker.db import schema_contract
from alga_worker.db.provisioning import TENANT_TABLES_DELETE_ORDER
from alga_worker.db.schema_contract import CONTRACT, verify_schema
from alga_worker.models import AdminUserInput, ProvisionTenantInput, RemoveTenantInput
from alga_worker.runtime.worker import build_resources

DOCS = Path(__file__).resolve().parents[2] / "docs" / "database.md"


async def problems_of(url: str, **connect: Any) -> list[str]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True, **connect) as conn:
        return await verify_schema(conn)


# ---------------------------------------------------------------- what the worker's own schema gives


async def test_the_dev_migrations_satisfy_the_contract(db) -> None:
    assert await verify_schema(db) == []


async def test_a_non_autocommit_connection_is_left_idle(stack) -> None:
    async with await psycopg.AsyncConnection.connect(stack.database_url, row_factory=dict_row) as conn:
        assert await verify_schema(conn) == []
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


async def test_check_reports_the_contract_and_exits_0(worker_env) -> None:
    code, out, err = await cli(worker_env, "check")
    assert code == 0, err
    assert f"schema contract satisfied ({len(CONTRACT)} tables)" in out
    # The dev stack registers every one of them.
    assert "search attributes registered (CheckoutSessionId, TenantId, UserId, DeletionId)" in out


# ---------------------------------------------------------------- databases that differ


async def test_a_dropped_column_is_named_and_check_exits_7(db, stack, worker_env) -> None:
    async with scratch_database(db, stack.database_url, "ALTER TABLE users DROP COLUMN hashed_password") as url:
        assert await problems_of(url) == ["missing column users.hashed_password"]
        code, out, err = await cli(dict(worker_env, DATABASE_URL=url), "check")
    assert code == 7, out + err
    assert "schema contract: 1 problem(s)" in err
    assert "missing column users.hashed_password" in err
    assert "Temporal reachable" not in out  # the first failure decides the code


async def test_alga_october_2025_shape_names_clients(db, stack) -> None:
    """Before the companies -> clients rename (alga-psa, late October 2025)."""
    async with scratch_database(
        db, stack.database_url,
        "ALTER TABLE clients RENAME TO companies",
        "ALTER TABLE companies RENAME COLUMN client_id TO company_id",
        "ALTER TABLE companies RENAME COLUMN client_name TO company_name",
        "ALTER TABLE client_locations RENAME TO company_locations",
        "ALTER TABLE tenants RENAME COLUMN client_name TO company_name",
        "ALTER TABLE tenant_companies RENAME COLUMN client_id TO company_id",
    ) as url:
        assert await problems_of(url) == [
            "missing column tenants.client_name",
            "column tenants.company_name: NOT NULL without a default, and the worker's INSERT does not set it",
            "missing table clients",
            "missing table client_locations",
            "missing column tenant_companies.client_id",
            "column tenant_companies.company_id: NOT NULL without a default, and the worker's INSERT does not "
            "set it",
        ]


async def test_incompatible_types_missing_keys_and_unset_not_null_columns(db, stack) -> None:
    async with scratch_database(
        db, stack.database_url,
        "ALTER TABLE users ALTER COLUMN hashed_password TYPE integer USING length(hashed_password)",
        "ALTER TABLE tenant_settings ALTER COLUMN settings TYPE text",
        "ALTER TABLE users DROP CONSTRAINT users_tenant_user_id_unique CASCADE",
        # A partial unique index cannot be an ON CONFLICT (tenant, user_id) arbiter: still missing.
        "CREATE UNIQUE INDEX users_partial ON users (tenant, user_id) WHERE user_type = 'internal'",
        "ALTER TABLE tax_rates ADD COLUMN created_by uuid NOT NULL",
        "ALTER TABLE stripe_products ADD COLUMN owner uuid NOT NULL",  # the worker never inserts products
    ) as url:
        assert await problems_of(url) == [
            "column tenant_settings.settings: expected json, found text",
            "column tax_rates.created_by: NOT NULL without a default, and the worker's INSERT does not set it",
            "column users.hashed_password: expected text-like, found integer",
            "table users: no unique index on (tenant, user_id), the worker's ON CONFLICT target",
        ]


async def test_tables_are_found_through_the_search_path(db, stack) -> None:
    async with scratch_database(db, stack.database_url, "CREATE SCHEMA shadow",
                                "CREATE TABLE shadow.roles (tenant uuid, role_id uuid)") as url:
        assert await problems_of(url) == []
        shadowed = await problems_of(url, options="-c search_path=shadow,public")
        assert shadowed == [f"missing column roles.{c}" for c in CONTRACT[6].columns if c not in ("tenant", "role_id")]
        assert CONTRACT[6].name == "roles"


# ---------------------------------------------------------------- the contract is complete and its families hold


# Another type of the same family, for each type the migrations use whose family has one.
ALTERNATIVES = {"text": "varchar(255)", "character varying": "text", "timestamp with time zone": "timestamp",
                "date": "timestamptz", "jsonb": "json", "integer": "bigint", "numeric": "double precision"}


async def provision_and_remove(url: str, worker_env: dict[str, str]) -> None:
    """The worker's real activities on that database: every row written, then every row removed."""
    settings = load_settings(dict(worker_env, DATABASE_URL=url))
    resources = await build_resources(settings)
    acts = {activity_name(fn): fn for fn in resources.activities}
    req = ProvisionTenantInput(
        tenant_id=uuid.uuid4(), client_id=uuid.uuid4(), location_id=uuid.uuid4(), admin_user_id=uuid.uuid4(),
        tenant_name="Contract MSP", client_name="Contract Client", license_count=2, seal_binding="wf/run/contract",
        admin=AdminUserInput(first_name="Con", last_name="Tract", email=unique_email("contract")))
    try:
        env = ActivityEnvironment()
        provisioned = await env.run(acts["provision_tenant"], req)
        assert provisioned.created and provisioned.rows["role_permissions"] == 313
        again = await env.run(acts["provision_tenant"], req)  # the upserts' conflict targets hold
        assert not again.created and again.rows == provisioned.rows
        removed = await env.run(acts["remove_tenant"], RemoveTenantInput(tenant_id=req.tenant_id,
                                                                          client_id=req.client_id))
        assert removed.rows_deleted == provisioned.rows
    finally:
        await resources.aclose()
    async with await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row) as conn:
        assert set((await tenant_row_counts(conn, req.tenant_id)).values()) == {0}


async def test_provisioning_runs_on_a_database_reduced_to_the_contract(db, stack, worker_env) -> None:
    """Every column the contract does not declare is dropped: a column the SQL uses but the contract
    forgot fails here."""
    async with scratch_database(db, stack.database_url) as url:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            for table in CONTRACT:
                cur = await conn.execute("SELECT column_name FROM information_schema.columns"
                                         " WHERE table_schema = 'public' AND table_name = %s", (table.name,))
                for (column,) in await cur.fetchall():
                    if column not in table.columns:
                        await conn.execute(f'ALTER TABLE {table.name} DROP COLUMN "{column}" CASCADE')
        assert await problems_of(url) == []
        await provision_and_remove(url, worker_env)


async def test_provisioning_runs_on_other_types_of_each_declared_family(db, stack, worker_env) -> None:
    async with scratch_database(db, stack.database_url) as url:
        changed: set[str] = set()
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            for table in CONTRACT:
                cur = await conn.execute("SELECT column_name, data_type FROM information_schema.columns"
                                         " WHERE table_schema = 'public' AND table_name = %s", (table.name,))
                for column, data_type in await cur.fetchall():
                    other = ALTERNATIVES.get(data_type)
                    if column in table.columns and other is not None:
                        await conn.execute(f'ALTER TABLE {table.name} ALTER COLUMN "{column}" TYPE {other}')
                        changed.add(data_type)
        assert changed == set(ALTERNATIVES)  # every alternative was exercised
        assert await problems_of(url) == []
        await provision_and_remove(url, worker_env)


# ---------------------------------------------------------------- declared once, documented


def test_the_contract_covers_every_table_the_worker_counts_and_removes() -> None:
    assert {t.name for t in CONTRACT} == set(TENANT_TABLES_DELETE_ORDER)
    assert all(t.columns.get("tenant") is schema_contract.UUID for t in CONTRACT)


def test_docs_name_every_contracted_table_and_the_exit_code() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for table in CONTRACT:
        assert f"`{table.name}`" in text, f"docs/database.md does not mention {table.name}"
    assert "exit code 7" in text or "exit 7" in text

"""Helpers of the tenant deletion tests: a tenant with extra rows, and per-tenant row counts of every
table with a ``tenant`` column (the catalog's list, the same rule as the deletion's)."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
from psycopg import sql
from tests.support.users import provision_tenant

from alga_worker.config import Settings
from alga_worker.db import tenant_deletion

MGMT = uuid.UUID("00000000-0000-4000-8000-000000000001")  # 0002_management_tenant.sql


async def tenant_tables(db: psycopg.AsyncConnection[Any]) -> list[str]:
    tables, _ = await tenant_deletion.catalog(db)
    return [t.name for t in tables]


async def counts_by_tenant(db: psycopg.AsyncConnection[Any]) -> dict[tuple[str, str], int]:
    """``(table, tenant) -> rows`` over every tenant table."""
    counts: dict[tuple[str, str], int] = {}
    for table in await tenant_tables(db):
        cur = await db.execute(sql.SQL("SELECT tenant::text AS t, count(*) AS n FROM {} GROUP BY tenant").format(
            sql.Identifier(table)))
        for row in await cur.fetchall():
            counts[(table, row["t"])] = int(row["n"])
    return counts


def rows_of(counts: dict[tuple[str, str], int], tenant: uuid.UUID) -> dict[str, int]:
    return {table: n for (table, t), n in counts.items() if t == str(tenant)}


def without(counts: dict[tuple[str, str], int], tenant: uuid.UUID) -> dict[tuple[str, str], int]:
    return {k: n for k, n in counts.items() if k[1] != str(tenant)}


async def doomed_tenant(activities: dict[str, Any], settings: Settings, db: psycopg.AsyncConnection[Any], *,
                        extra_contacts: int = 0) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID]:
    """A provisioned tenant (roles, admin, client ...), plus ``extra_contacts`` contacts and one user who
    was inactive before any deletion. Returns (tenant, its active admin's user id, the inactive user's id)."""
    tenant, _ = await provision_tenant(activities, settings)
    if extra_contacts:
        await db.execute("INSERT INTO contacts (tenant, full_name, email) "
                         "SELECT %s, 'Contact ' || i, 'c' || i || '@example.com' FROM generate_series(1, %s) AS i",
                         (tenant.tenant_id, extra_contacts))
    inactive = uuid.uuid4()
    await db.execute("INSERT INTO users (tenant, user_id, username, hashed_password, email, is_inactive) "
                     "VALUES (%s, %s, %s, 'x', %s, true)",
                     (tenant.tenant_id, inactive, f"gone-{inactive.hex[:8]}", f"gone-{inactive.hex[:8]}@example.com"))
    return tenant.tenant_id, tenant.admin_user_id, inactive


async def active_user_ids(db: psycopg.AsyncConnection[Any], tenant: uuid.UUID) -> set[uuid.UUID]:
    cur = await db.execute("SELECT user_id FROM users WHERE tenant = %s AND is_inactive IS NOT TRUE", (tenant,))
    return {row["user_id"] for row in await cur.fetchall()}


async def pending_row(db: psycopg.AsyncConnection[Any], tenant: uuid.UUID) -> dict[str, Any] | None:
    cur = await db.execute("SELECT * FROM pending_tenant_deletions WHERE tenant = %s", (tenant,))
    return await cur.fetchone()


async def suspended(db: psycopg.AsyncConnection[Any], tenant: uuid.UUID) -> bool:
    cur = await db.execute("SELECT suspended_at FROM tenants WHERE tenant = %s", (tenant,))
    row = await cur.fetchone()
    return bool(row and row["suspended_at"] is not None)

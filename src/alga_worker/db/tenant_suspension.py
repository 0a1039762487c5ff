"""SQL for Alga's tenant-wide suspension flag: ``tenants.suspended_at`` and ``tenants.suspended_reason``.

What Alga means by it (``packages/db/src/lib/tenantSuspension.ts``, migration
``20260724120000_add_suspension_to_tenants``): a tenant is suspended iff ``suspended_at IS NOT NULL``;
``suspended_reason`` is a code its CHECK constraint limits (``tenant_cancelled`` so far). Suspending
stamps both only when the tenant is not suspended (an existing suspension keeps its time and code);
resuming clears both only when the stored code is the one named. The same semantics here, so the
worker's runs and Alga's own helpers agree on every row.

Why a row lock first: :func:`lock` reads the flag ``FOR NO KEY UPDATE`` (the lock ``db/users.py`` and
``db/licenses.py`` take on the tenant row, in the same place of their order), so a suspension and a
resumption of one tenant, or two suspensions, are decided one after the other: the second sees the
first's result and writes nothing. ``NO KEY UPDATE`` does not block the foreign-key checks the web app's
inserts take on the tenant row. ``updated_at`` is left alone, as Alga's helpers leave it.

Not in the schema contract (``db/schema_contract.py``): Alga versions before July 2026 lack the
columns, and such a database must still provision tenants. :func:`missing_columns` tells the activity
which are absent, so it can refuse with a message naming them instead of failing inside the statement.
Every statement filters one ``tenant`` value (a router statement on Citus).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection
from psycopg.rows import DictRow, tuple_row

# (table, column) the suspension needs, with where Alga adds them (for the refusal's message).
REQUIRED_COLUMNS: tuple[tuple[str, str], ...] = (("tenants", "suspended_at"), ("tenants", "suspended_reason"))
ALGA_MIGRATION = "server/migrations/20260724120000_add_suspension_to_tenants.cjs"


@dataclass(frozen=True)
class Suspension:
    """The tenant's flag as read (under the row lock): ``at`` None means not suspended."""

    at: datetime | None
    reason_code: str | None

    @property
    def suspended(self) -> bool:
        return self.at is not None


async def missing_columns(conn: AsyncConnection[Any]) -> list[str]:
    """``table.column`` of each required column absent from the table the ``search_path`` resolves to
    (the one the worker's unqualified SQL uses); a missing table lists all its columns. Any row factory."""
    missing: list[str] = []
    async with conn.cursor(row_factory=tuple_row) as cur:
        for table in dict.fromkeys(t for t, _ in REQUIRED_COLUMNS):
            wanted = [c for t, c in REQUIRED_COLUMNS if t == table]
            await cur.execute(
                "SELECT attname::text FROM pg_attribute WHERE attrelid = to_regclass(%s)"
                " AND attnum > 0 AND NOT attisdropped AND attname::text = ANY(%s)", (table, wanted))
            present = {name for (name,) in await cur.fetchall()}
            missing.extend(f"{table}.{c}" for c in wanted if c not in present)
    return missing


async def lock(conn: AsyncConnection[DictRow], tenant_id: UUID) -> Suspension | None:
    """Lock the tenant row and read its flag; None when the tenant does not exist. In a transaction."""
    cur = await conn.execute(
        "SELECT suspended_at, suspended_reason FROM tenants WHERE tenant = %s FOR NO KEY UPDATE", (tenant_id,))
    row = await cur.fetchone()
    return None if row is None else Suspension(at=row["suspended_at"], reason_code=row["suspended_reason"])


async def read(conn: AsyncConnection[DictRow], tenant_id: UUID) -> Suspension | None:
    """The flag without a lock (for the CLI and tests); None when the tenant does not exist."""
    cur = await conn.execute("SELECT suspended_at, suspended_reason FROM tenants WHERE tenant = %s", (tenant_id,))
    row = await cur.fetchone()
    return None if row is None else Suspension(at=row["suspended_at"], reason_code=row["suspended_reason"])


async def suspend(conn: AsyncConnection[DictRow], tenant_id: UUID, reason_code: str) -> Suspension | None:
    """Stamp the flag if the tenant is not suspended; the new state, or None when nothing was written
    (already suspended: the existing time and code stay). After :func:`lock`, in the same transaction."""
    cur = await conn.execute(
        "UPDATE tenants SET suspended_at = now(), suspended_reason = %s"
        " WHERE tenant = %s AND suspended_at IS NULL RETURNING suspended_at, suspended_reason",
        (reason_code, tenant_id),
    )
    row = await cur.fetchone()
    return None if row is None else Suspension(at=row["suspended_at"], reason_code=row["suspended_reason"])


async def resume(conn: AsyncConnection[DictRow], tenant_id: UUID, reason_code: str) -> bool:
    """Clear the flag if the tenant is suspended with ``reason_code``; False when nothing was written
    (not suspended, or suspended for another reason). After :func:`lock`, in the same transaction."""
    cur = await conn.execute(
        "UPDATE tenants SET suspended_at = NULL, suspended_reason = NULL"
        " WHERE tenant = %s AND suspended_at IS NOT NULL AND suspended_reason = %s",
        (tenant_id, reason_code),
    )
    return cur.rowcount > 0


async def audit_row_exists(conn: AsyncConnection[DictRow], audit_tenant_id: UUID, log_id: UUID) -> bool:
    """Whether the audit row with this run's minted id exists: the change was this run's own."""
    cur = await conn.execute("SELECT 1 FROM extension_audit_logs WHERE tenant = %s AND log_id = %s",
                             (audit_tenant_id, log_id))
    return await cur.fetchone() is not None


async def audit_table_exists(conn: AsyncConnection[DictRow]) -> bool:
    """``extension_audit_logs`` (Alga EE's table, not in the contract) on the ``search_path``."""
    cur = await conn.execute("SELECT to_regclass('extension_audit_logs') IS NOT NULL AS present")
    row = await cur.fetchone()
    return bool(row and row["present"])

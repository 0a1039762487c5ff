"""SQL for a tenant's licence limit and its use (reference 3.10).

Why a module of its own: the activities (``activities/licenses.py``) and the operator CLI
(``alga-worker tenant licenses``) read usage with the same statement, so the two cannot disagree about
what counts as a used licence (an active internal user; client-portal users hold none).

The update locks the tenant row (``SELECT ... FOR NO KEY UPDATE``, the lock ``db/users.py`` takes for
its licence checks; it does not block the foreign-key checks of inserts that reference the tenant)
before comparing ``stripe_event_id``, so two deliveries of one Stripe event cannot both see "not yet
applied" and both write: the second waits, then sees the first's event id and writes nothing. Every
statement filters one ``tenant`` value (a router statement on Citus).
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from psycopg import AsyncConnection
from psycopg.rows import DictRow


@dataclass(frozen=True)
class LicenseUpdate:
    """What one update did: the count before it, and whether this call wrote (False: event repeated)."""

    previous_license_count: int | None
    changed: bool


@dataclass(frozen=True)
class Usage:
    limit: int | None
    used: int

    @property
    def remaining(self) -> int | None:
        """Never negative: a tenant over its limit has none left, not a debt."""
        return None if self.limit is None else max(0, self.limit - self.used)


async def update_license_count(conn: AsyncConnection[DictRow], tenant_id: UUID, license_count: int,
                               event_id: str | None) -> LicenseUpdate | None:
    """Set the tenant's licence count; None when the tenant does not exist.

    Must run inside the caller's transaction: the row lock is what makes the event-id check and the
    write one step. A repeated ``event_id`` (the one stored) writes nothing, ``last_license_update``
    included, so a redelivered webhook leaves no trace.
    """
    cur = await conn.execute(
        "SELECT licensed_user_count, stripe_event_id FROM tenants WHERE tenant = %s FOR NO KEY UPDATE", (tenant_id,))
    row = await cur.fetchone()
    if row is None:
        return None
    previous: int | None = row["licensed_user_count"]
    if event_id is not None and row["stripe_event_id"] == event_id:
        return LicenseUpdate(previous_license_count=previous, changed=False)
    await conn.execute(
        "UPDATE tenants SET licensed_user_count = %s, last_license_update = now(), stripe_event_id = %s,"
        " updated_at = now() WHERE tenant = %s",
        (license_count, event_id, tenant_id),
    )
    return LicenseUpdate(previous_license_count=previous, changed=True)


async def license_usage(conn: AsyncConnection[DictRow], tenant_id: UUID) -> Usage | None:
    """The tenant's limit and its active internal users; None when the tenant does not exist.

    As Alga counts (``is_inactive = false``): a user whose ``is_inactive`` is NULL is not counted.
    """
    cur = await conn.execute("SELECT licensed_user_count FROM tenants WHERE tenant = %s", (tenant_id,))
    row = await cur.fetchone()
    if row is None:
        return None
    cur = await conn.execute(
        "SELECT count(*) AS used FROM users WHERE tenant = %s AND user_type = 'internal'"
        " AND NOT is_inactive",
        (tenant_id,),
    )
    counted = await cur.fetchone()
    return Usage(limit=row["licensed_user_count"], used=int(counted["used"]) if counted else 0)


"""Licence activities: set a tenant's licence limit, read how much of it is used (reference 3.10).

What the original did and this does instead: the TypeScript worker registered these but no workflow
called them, and its update compared ``stripe_event_id`` without locking the row, so two deliveries of
one Stripe event could both write. Here:

- **One transaction, the tenant row locked** (``db/licenses.py``): a repeated ``eventId`` is seen and
  writes nothing (``changed`` false, ``last_license_update`` untouched), so a retry after COMMIT or a
  redelivered webhook converges on one outcome.
- **Typed refusals, in the first attempt**: an unknown tenant is ``TenantNotFoundError``; the
  management tenant (``MANAGEMENT_TENANT_ID``) is never a target (``ValidationError``): it is not a
  customer and has no subscription whose seats could be counted.

Registered as bound methods, as :class:`alga_worker.activities.customers.CustomerActivities` is.
"""

from __future__ import annotations

import logging
from uuid import UUID

from temporalio import activity

from alga_worker import errors
from alga_worker.activities.heartbeat import heartbeating
from alga_worker.db import licenses as sql
from alga_worker.db.pool import DbPool
from alga_worker.models import LicenseCountResult, LicenseUsage, LicenseUsageInput, UpdateLicenseCountRequest

log = logging.getLogger(__name__)


class LicenseActivities:
    def __init__(self, pool: DbPool, management_tenant_id: UUID | None = None) -> None:
        self._pool = pool
        self._management_tenant_id = management_tenant_id

    @activity.defn(name="update_license_count")
    async def update_license_count(self, req: UpdateLicenseCountRequest) -> LicenseCountResult:
        """Set the licence count; a repeat of the stored ``eventId`` writes nothing (module docstring)."""
        if self._management_tenant_id is not None and req.tenant_id == self._management_tenant_id:
            raise errors.validation_error("the management tenant's licence count is not managed by the worker",
                                          {"tenantId": str(req.tenant_id)})
        async with heartbeating(), self._pool.connection() as conn, conn.transaction():
            done = await sql.update_license_count(conn, req.tenant_id, req.license_count, req.event_id)
        if done is None:
            raise errors.tenant_not_found_error(f"tenant {req.tenant_id} does not exist",
                                                {"tenantId": str(req.tenant_id)})
        log.info("licence count updated" if done.changed else "licence count unchanged: event already applied",
                 extra={"tenant_id": str(req.tenant_id), "license_count": req.license_count,
                        "previous_license_count": done.previous_license_count, "event_id": req.event_id})
        return LicenseCountResult(
            tenant_id=req.tenant_id, license_count=req.license_count,
            previous_license_count=done.previous_license_count, changed=done.changed, event_id=req.event_id,
        )

    @activity.defn(name="license_usage")
    async def license_usage(self, req: LicenseUsageInput) -> LicenseUsage:
        """The tenant's limit, its active internal users and what is left (None: no limit). Read only."""
        async with heartbeating(), self._pool.connection() as conn, conn.transaction():
            usage = await sql.license_usage(conn, req.tenant_id)
        if usage is None:
            raise errors.tenant_not_found_error(f"tenant {req.tenant_id} does not exist",
                                                {"tenantId": str(req.tenant_id)})
        return LicenseUsage(tenant_id=req.tenant_id, limit=usage.limit, used=usage.used, remaining=usage.remaining)

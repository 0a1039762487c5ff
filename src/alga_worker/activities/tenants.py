"""Tenant provisioning activities.

A class holding its clients (pool, hasher, sealer), registered as bound methods: the sample's
pattern for dependency injection, and what lets tests build the same activities on a test database.
"""

from __future__ import annotations

import asyncio
import logging
from uuid import UUID

from temporalio import activity

from alga_worker import errors
from alga_worker.activities.heartbeat import heartbeating
from alga_worker.db import provisioning as sql
from alga_worker.db import stripe_records
from alga_worker.db.pool import DbPool
from alga_worker.models import (
    ProvisionTenantInput,
    ProvisionTenantOutput,
    RemoveTenantInput,
    RemoveTenantOutput,
)
from alga_worker.security import CredentialSealer, PasswordHasher, generate_temporary_password

log = logging.getLogger(__name__)


class TenantActivities:
    def __init__(self, pool: DbPool, hasher: PasswordHasher, sealer: CredentialSealer,
                 master_billing_tenant_id: UUID | None = None) -> None:
        self._pool = pool
        self._hasher = hasher
        self._sealer = sealer
        self._master_billing_tenant_id = master_billing_tenant_id

    @activity.defn(name="provision_tenant")
    async def provision_tenant(self, req: ProvisionTenantInput) -> ProvisionTenantOutput:
        """Tenant, default client and location, settings, seeds and admin user in one transaction.

        The temporary password is generated here, stored only as an Alga hash, and leaves the activity
        sealed (AES-GCM, bound to this workflow run) so history never holds it in clear text.
        """
        password = generate_temporary_password()
        # PBKDF2 is CPU work (~10 ms): off the event loop so pollers and heartbeats keep running.
        hashed = await asyncio.to_thread(self._hasher.hash, password)
        async with heartbeating(), self._pool.connection() as conn, conn.transaction():
            # Locks in one order everywhere (tenant, then email): no deadlock between two runs.
            await sql.lock_tenant(conn, req.tenant_id)
            try:
                created = await sql.upsert_tenant(conn, req)
            except sql.TenantConflict as err:
                raise errors.tenant_conflict_error(str(err), {"tenantId": str(req.tenant_id)}) from None
            await sql.lock_email(conn, req.admin.email)
            other = await sql.find_internal_user_by_email(conn, req.admin.email,
                                                          except_user_id=req.admin_user_id)
            if other is not None:
                raise errors.duplicate_error(
                    f"admin email {req.admin.email} already belongs to an internal user",
                    {"email": req.admin.email},
                )
            await sql.upsert_default_client(conn, req)
            await sql.upsert_tenant_settings(conn, req.tenant_id)
            await sql.run_onboarding_seeds(conn, req.tenant_id)
            role_id = await sql.upsert_admin_user(conn, req, hashed)
            if req.stripe is not None:  # the customer's Stripe records belong to the tenant: same transaction
                await stripe_records.write_stripe_records(conn, req.tenant_id, req.stripe,
                                                          self._master_billing_tenant_id)
            counts = await sql.count_tenant_rows(conn, req.tenant_id)
        log.info("tenant provisioned", extra={"tenant_id": str(req.tenant_id), "tenant_created": created,
                                              "rows": sum(counts.values())})
        return ProvisionTenantOutput(
            tenant_id=req.tenant_id, client_id=req.client_id, admin_user_id=req.admin_user_id,
            admin_role_id=role_id, sealed_password=self._sealer.seal(password, binding=req.seal_binding),
            rows={k: v for k, v in counts.items() if v}, created=created,
        )

    @activity.defn(name="remove_tenant")
    async def remove_tenant(self, req: RemoveTenantInput) -> RemoveTenantOutput:
        """Delete every row of the tenant this run created (compensation for a cancel). Idempotent.

        Only with the ownership proof, checked under the tenant lock in the deleting transaction: a
        tenant this run did not create (an adopted id, the management tenant) is left untouched and
        reported as not owned. A tenant already gone is a no-op (an earlier attempt committed).
        """
        async with heartbeating(), self._pool.connection() as conn, conn.transaction():
            await sql.lock_tenant(conn, req.tenant_id)
            if not await sql.tenant_exists(conn, req.tenant_id):
                return RemoveTenantOutput(rows_deleted={})
            if not await sql.owns_tenant(conn, req.tenant_id, req.client_id):
                log.warning("tenant not removed: not created by this run", extra={"tenant_id": str(req.tenant_id)})
                return RemoveTenantOutput(rows_deleted={}, not_owned=True)
            deleted = await sql.delete_tenant(conn, req.tenant_id)
        log.info("tenant removed", extra={"tenant_id": str(req.tenant_id), "rows": sum(deleted.values())})
        return RemoveTenantOutput(rows_deleted={k: v for k, v in deleted.items() if v})

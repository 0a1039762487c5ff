"""Customer tracking activities: the new customer as a client of the management tenant ("Nine Minds").

What the original did wrong and this does instead (reference 3.5, 3.6, B4, B7, B8):

- **The management tenant by id**, from ``MANAGEMENT_TENANT_ID``; its name identifies nothing (anyone
  can call a tenant "Nine Minds LLC"). Unset, tracking refuses with a non-retryable
  ``ConfigurationError`` naming the variable.
- **One transaction, idempotent stages**, under an advisory lock on the customer's tenant id: client,
  contact, ``PSA Customer`` tag and portal user either all exist afterwards or none was written, and
  a retry or a second run for the same tenant converges on one of each (``db/customer_tracking.py``).
- **A collision is an error, not a skip**: a client with the same name that does not record this
  tenant id, or the admin's email on another client's contact or portal user, raises the
  non-retryable ``AmbiguousCustomerError`` in the first attempt, with nothing written, for an operator
  to resolve and then retry (``alga-worker customer track``).
- **The portal user has its own password**, never the admin's: generated here, stored as an Alga hash,
  returned only sealed (AES-GCM, bound to the run) for the welcome email to open. A portal user that
  already existed for this contact is reused untouched and yields no credentials.

The class holds its clients (pool, hasher, sealer, the management tenant id) and is registered as
bound methods, as :class:`alga_worker.activities.tenants.TenantActivities` is.
"""

from __future__ import annotations

import asyncio
import logging
from uuid import UUID

from pydantic import ValidationError
from temporalio import activity

from alga_worker import errors
from alga_worker.activities.heartbeat import heartbeating
from alga_worker.config import Settings
from alga_worker.db import customer_tracking as sql
from alga_worker.db.pool import DbPool
from alga_worker.models import (
    AdminUserInput,
    CustomerFacts,
    CustomerFactsInput,
    CustomerRecordsInput,
    CustomerTrackingInput,
    CustomerTrackingOutput,
    OutcomeStatus,
    StepOutcome,
)
from alga_worker.security import CredentialSealer, PasswordHasher, generate_temporary_password

log = logging.getLogger(__name__)

ALREADY_PRESENT = "already present"
PORTAL_RESUMED = "already present (resumed): its temporary password was replaced"
PORTAL_NOT_CREATED = ("not created: this run was not asked to create it (its temporary password would reach "
                      "nobody); run `alga-worker customer track --create-portal-user` to create it and email it")


class CustomerActivities:
    def __init__(self, pool: DbPool, hasher: PasswordHasher, sealer: CredentialSealer, settings: Settings) -> None:
        self._pool = pool
        self._hasher = hasher
        self._sealer = sealer
        self._management_tenant_id = settings.management_tenant_id

    @activity.defn(name="track_customer")
    async def track_customer(self, req: CustomerTrackingInput) -> CustomerTrackingOutput:
        """Client, contact, tag and portal user of one customer, in one transaction (module docstring).

        The portal user's temporary password is generated and hashed before the transaction (PBKDF2 is
        CPU work: off the event loop) and leaves the activity only sealed, and only when this call
        created the user or replaced the hash of the user this run had created.
        """
        mgmt = self._management_tenant(req.tenant_id)
        password = generate_temporary_password()
        hashed = await asyncio.to_thread(self._hasher.hash, password)
        records = CustomerRecordsInput(
            tenant_id=req.tenant_id, tenant_name=req.tenant_name, client_name=req.client_name, admin=req.admin,
            customer_client_id=req.customer_client_id, contact_id=req.contact_id,
        )
        out = await self._track(mgmt, records, portal_user_id=req.portal_user_id, hashed_password=hashed)
        if out.portal_user_id == req.portal_user_id:  # created or resumed by this run: its password is valid
            return out.model_copy(update={"sealed_portal_password": self._sealer.seal(password,
                                                                                     binding=req.seal_binding)})
        return out

    @activity.defn(name="untrack_customer")
    async def untrack_customer(self, req: CustomerTrackingInput) -> dict[str, int]:
        """Compensation for a cancelled tenant creation: remove the customer records *this run* created
        (the ids it minted), under the same lock as ``track_customer``. Idempotent."""
        mgmt = self._management_tenant(req.tenant_id)
        async with self._pool.connection() as conn, conn.transaction():
            await sql.lock(conn, "tenant", str(req.tenant_id))
            deleted = await sql.remove_minted_records(conn, mgmt, client_id=req.customer_client_id,
                                                      contact_id=req.contact_id, portal_user_id=req.portal_user_id)
        log.info("customer records removed", extra={"tenant_id": str(req.tenant_id),
                                                    "rows": sum(deleted.values())})
        return {table: n for table, n in deleted.items() if n}

    @activity.defn(name="track_customer_records")
    async def track_customer_records(self, req: CustomerRecordsInput) -> CustomerTrackingOutput:
        """As ``track_customer`` without creating a portal user: an existing one is reported, a missing
        one is skipped. For operator runs that have no way to deliver a new password."""
        mgmt = self._management_tenant(req.tenant_id)
        return await self._track(mgmt, req, portal_user_id=None, hashed_password=None)

    @activity.defn(name="load_customer_facts")
    async def load_customer_facts(self, req: CustomerFactsInput) -> CustomerFacts:
        """What tracking records about an existing tenant, read from the database rather than typed by
        an operator: its name, its default client's name and its first active MSP admin."""
        self._management_tenant(req.tenant_id)
        async with heartbeating(), self._pool.connection() as conn, conn.transaction():
            facts = await sql.load_facts(conn, req.tenant_id)
        if facts is None:
            raise errors.validation_error(f"tenant {req.tenant_id} does not exist", {"tenantId": str(req.tenant_id)})
        admin = facts["admin"]
        if admin is None:
            raise errors.validation_error(f"tenant {req.tenant_id} has no active MSP admin to record as the "
                                          "customer's contact", {"tenantId": str(req.tenant_id)})
        try:
            return CustomerFacts(
                tenant_id=req.tenant_id, tenant_name=facts["tenant_name"], client_name=facts["client_name"],
                admin_user_id=admin["user_id"],
                admin=AdminUserInput(first_name=admin["first_name"] or "", last_name=admin["last_name"] or "",
                                     email=admin["email"] or ""),
            )
        except ValidationError as err:
            # Field and problem only: the stored value (a person's name or address) stays out of history.
            problems = [{"field": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]}
                        for e in err.errors(include_input=False, include_url=False, include_context=False)]
            shown = "; ".join(f"{p['field']}: {p['problem']}" for p in problems)
            raise errors.validation_error(
                f"tenant {req.tenant_id}'s stored names or admin cannot be recorded as they are ({shown}); "
                "correct them in Alga, then retry", problems) from None

    # ---- helpers ----

    def _management_tenant(self, tenant_id: UUID) -> UUID:
        if self._management_tenant_id is None:
            raise errors.configuration_error(
                "customer tracking is not configured on this worker: set MANAGEMENT_TENANT_ID",
                {"missing": ["MANAGEMENT_TENANT_ID"]})
        if tenant_id == self._management_tenant_id:
            raise errors.validation_error("the management tenant is never recorded as its own customer",
                                          {"tenantId": str(tenant_id)})
        return self._management_tenant_id

    async def _track(self, mgmt: UUID, req: CustomerRecordsInput, *, portal_user_id: UUID | None,
                     hashed_password: str | None) -> CustomerTrackingOutput:
        """The four stages in one transaction; ``portal_user_id``/``hashed_password`` None: look up only."""
        email = req.admin.email
        async with heartbeating(), self._pool.connection() as conn, conn.transaction():
            # Locks in one order everywhere (tenant, client name, email): no deadlock between two runs.
            await sql.lock(conn, "tenant", str(req.tenant_id))
            await sql.lock(conn, "client-name", req.client_name)
            await sql.lock(conn, "email", email.lower())
            if not await sql.tenant_exists(conn, mgmt):
                raise errors.configuration_error(
                    f"MANAGEMENT_TENANT_ID names no tenant in this database ({mgmt})",
                    {"variables": ["MANAGEMENT_TENANT_ID"]})
            create: sql.NewPortalUser | None = None
            if portal_user_id is not None and hashed_password is not None:
                role_id = await sql.find_portal_admin_role(conn, mgmt)
                if role_id is None:
                    raise errors.configuration_error(
                        f"the management tenant {mgmt} has no client-portal Admin role (msp false, client true)",
                        {"variables": ["MANAGEMENT_TENANT_ID"]})
                create = sql.NewPortalUser(user_id=portal_user_id, role_id=role_id, first_name=req.admin.first_name,
                                           last_name=req.admin.last_name, hashed_password=hashed_password)
            try:
                client = await sql.resolve_client(
                    conn, mgmt, tenant_id=req.tenant_id, tenant_name=req.tenant_name,
                    client_name=req.client_name, minted_id=req.customer_client_id)
                contact = await sql.resolve_contact(
                    conn, mgmt, client_id=client.id, email=email,
                    full_name=f"{req.admin.first_name} {req.admin.last_name}", minted_id=req.contact_id)
                tag = await sql.ensure_tag(conn, mgmt, client_id=client.id)
                portal = await sql.resolve_portal_user(conn, mgmt, email=email, contact_id=contact.id, create=create)
            except sql.AmbiguousCustomer as err:
                # Raised inside the transaction: it rolls back, nothing of this attempt is kept.
                log.warning("customer tracking refused: ambiguous records", extra={"tenant_id": str(req.tenant_id)})
                raise errors.ambiguous_customer_error(str(err), err.details) from None
        log.info("customer tracked", extra={
            "tenant_id": str(req.tenant_id), "customer_client_id": str(client.id), "client_created": client.created,
            "contact_created": contact.created, "tag_mapped": tag.created, "portal_user": portal.state})
        return CustomerTrackingOutput(
            customer_client_id=client.id, contact_id=contact.id, tag_id=tag.id, portal_user_id=portal.user_id,
            outcomes={
                "customer_client": _outcome(client),
                "customer_contact": _outcome(contact),
                "customer_tag": _outcome(tag),
                "portal_user": _portal_outcome(portal),
            },
        )


def _outcome(stage: sql.Resolved) -> StepOutcome:
    return StepOutcome(status=OutcomeStatus.DONE, detail=None if stage.created else ALREADY_PRESENT,
                       rows=stage.rows)


def _portal_outcome(portal: sql.PortalUser) -> StepOutcome:
    if portal.state == "created":
        return StepOutcome(status=OutcomeStatus.DONE, rows=portal.rows)
    if portal.state == "replaced":
        return StepOutcome(status=OutcomeStatus.DONE, detail=PORTAL_RESUMED, rows=portal.rows)
    if portal.state == "existing":
        return StepOutcome(status=OutcomeStatus.DONE, detail=ALREADY_PRESENT)
    return StepOutcome(status=OutcomeStatus.SKIPPED, detail=PORTAL_NOT_CREATED)

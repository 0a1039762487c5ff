"""User management activities: create a user, find one, give it a new temporary password, (de|re)activate
it, record who did it, and remove a user a run created (compensation).

What they guarantee, each in one transaction (SQL and locks in ``db/users.py``):

- **One insert path.** ``create_user`` writes through ``db/users.insert_user``, as tenant creation's MSP
  admin and customer tracking's portal user do: the same columns, the same idempotent retry (a row
  with the minted id is this run's own; its hash is replaced).
- **Every refusal before any write, typed and final**: unknown tenant (``TenantNotFoundError``), an
  internal user's address already used by an internal user of any tenant, or a client user's by a
  client user of the same tenant (``DuplicateError``, never naming the other tenant), unknown roles
  (``UnknownRoleError``, listing the available ones), a bad contact (``ValidationError``), no licence
  left (``LicenseLimitError`` with ``{limit, used}``, unless ``force``), the last active MSP admin
  (``LastAdminError``), a password for an inactive user (``UserInactiveError``).
- **Checks that hold under concurrency.** The tenant row is locked (``FOR NO KEY UPDATE``) before the licence
  and last-admin checks and before the email advisory lock, in that order everywhere: concurrent
  creations at the limit are counted one after the other (exactly the free licences are used), two
  deactivations of a tenant's last two admins cannot both pass.
- **Passwords**: generated here, hashed off the event loop, stored only as Alga's hash, returned only
  sealed (AES-GCM, bound to the run) for ``send_email`` to open. Never logged; log lines carry ids.

``set_temporary_password`` replaces the hash on every attempt, retries included. That is safe: the
workflow emails the sealed password of the attempt whose result Temporal recorded, which is the
attempt that wrote the hash last, because an attempt only completes after its COMMIT and the row lock
orders the writes; an earlier attempt's password was never delivered and simply stops verifying.
(The one exception would be an abandoned attempt on a partitioned worker that commits after its
successor: its heartbeat fails, which cancels it, and the pool's statement and idle-in-transaction
timeouts bound it; a second reset repairs it.)

Registered as bound methods, as :class:`alga_worker.activities.tenants.TenantActivities` is.
"""

from __future__ import annotations

import asyncio
import logging
from uuid import UUID

from temporalio import activity

from alga_worker import errors
from alga_worker.activities.heartbeat import heartbeating
from alga_worker.db import customer_tracking, provisioning
from alga_worker.db import users as sql
from alga_worker.db.pool import DbPool
from alga_worker.models import (
    AuditRecord,
    AuditResult,
    CreatedUser,
    NewPassword,
    NewPasswordRequest,
    NewUser,
    RemoveUserInput,
    RemoveUserOutput,
    SetUserActiveRequest,
    SetUserActiveResult,
    UserFacts,
    UserLookup,
    UserType,
)
from alga_worker.security import CredentialSealer, PasswordHasher, generate_temporary_password

log = logging.getLogger(__name__)

AUDIT_EVENT_PREFIX = "tenant."
_WORKFLOW_ID_MAX = 255  # extension_audit_logs.workflow_id varchar(255)


class UserActivities:
    def __init__(self, pool: DbPool, hasher: PasswordHasher, sealer: CredentialSealer,
                 audit_tenant_id: UUID | None = None) -> None:
        self._pool = pool
        self._hasher = hasher
        self._sealer = sealer
        self._audit_tenant_id = audit_tenant_id

    @activity.defn(name="create_user")
    async def create_user(self, req: NewUser) -> CreatedUser:
        """One internal or client-portal user with its roles, in one transaction (module docstring).

        A retry after COMMIT finds the row with the minted id: it is neither a duplicate of itself nor
        counted against the licence limit (the licence was taken by the first attempt), its hash is
        replaced, and ``created`` is False.
        """
        if req.user_type is UserType.INTERNAL and req.contact_id is not None:
            raise errors.validation_error("contactId is only for client users; an internal user has no contact",
                                          {"field": "contactId"})
        password = generate_temporary_password()
        # PBKDF2 is CPU work: off the event loop so pollers and heartbeats keep running.
        hashed = await asyncio.to_thread(self._hasher.hash, password)
        tenant_id, user_id = req.tenant_id, req.user_id
        async with heartbeating(), self._pool.connection() as conn, conn.transaction():
            tenant = await sql.lock_tenant_row(conn, tenant_id)
            if tenant is None:
                raise _tenant_not_found(tenant_id)
            await provisioning.lock_email(conn, req.email.lower())
            if req.user_type is UserType.CLIENT:  # the key customer tracking's portal user takes
                await customer_tracking.lock(conn, "email", req.email.lower())
            existing = await sql.user_exists(conn, tenant_id, user_id)
            if req.user_type is UserType.INTERNAL:
                if await provisioning.find_internal_user_by_email(conn, req.email, except_user_id=user_id):
                    raise errors.duplicate_error(
                        "the email address already belongs to an internal user (internal users' addresses are "
                        "unique across all tenants)", {"field": "email", "userType": req.user_type.value})
            elif await sql.client_email_taken(conn, tenant_id, req.email, except_user_id=user_id):
                raise errors.duplicate_error(
                    "the email address already belongs to a client-portal user of this tenant",
                    {"field": "email", "userType": req.user_type.value, "tenantId": str(tenant_id)})
            roles = await sql.match_roles(conn, tenant_id, req.user_type, req.roles)
            if roles.unknown:
                raise _unknown_roles(req.user_type, roles)
            if req.contact_id is not None and not await sql.contact_exists(conn, tenant_id, req.contact_id):
                raise errors.validation_error(
                    f"contact {req.contact_id} is not a contact of tenant {tenant_id}",
                    {"field": "contactId", "contactId": str(req.contact_id), "tenantId": str(tenant_id)})
            forced = False
            if req.user_type is UserType.INTERNAL:
                used = await sql.licences_used(conn, tenant_id, except_user_id=user_id)
                # A retry of a committed creation already holds its licence: never refused by its own row.
                forced = _over_limit(tenant, used, force=req.force, tenant_id=tenant_id, refuse=not existing)
            await sql.insert_user(conn, sql.NewUserRow(
                tenant_id=tenant_id, user_id=user_id, email=req.email, first_name=req.first_name,
                last_name=req.last_name, user_type=req.user_type, hashed_password=hashed,
                role_ids=tuple(r.role_id for r in roles.found), contact_id=req.contact_id,
            ))
        log.info("user created" if not existing else "user already created by an earlier attempt: hash replaced",
                 extra={"tenant_id": str(tenant_id), "user_id": str(user_id), "user_type": req.user_type.value,
                        "roles": len(roles.found), "forced": forced})
        return CreatedUser(
            tenant_id=tenant_id, tenant_name=tenant.name, user_id=user_id, email=req.email,
            first_name=req.first_name, last_name=req.last_name, user_type=req.user_type,
            roles=[r.name for r in roles.found], role_ids=[r.role_id for r in roles.found],
            sealed_password=self._sealer.seal(password, binding=req.seal_binding), created=not existing,
            forced=forced,
        )

    @activity.defn(name="find_user")
    async def find_user(self, req: UserLookup) -> UserFacts:
        """A user of the tenant, or (no ``user_id``) its first active MSP admin. Read only."""
        async with heartbeating(), self._pool.connection() as conn, conn.transaction():
            name = await sql.tenant_name(conn, req.tenant_id)
            if name is None:
                raise _tenant_not_found(req.tenant_id)
            if req.user_id is not None:
                user = await sql.get_user(conn, req.tenant_id, req.user_id)
            else:
                user = await sql.first_active_msp_admin(conn, req.tenant_id)
        if user is None:
            if req.user_id is not None:
                raise _user_not_found(req.tenant_id, req.user_id)
            raise errors.user_not_found_error(f"tenant {req.tenant_id} has no active MSP admin",
                                              {"tenantId": str(req.tenant_id)})
        return _facts(req.tenant_id, name, user)

    @activity.defn(name="set_temporary_password")
    async def set_temporary_password(self, req: NewPasswordRequest) -> NewPassword:
        """Replace an active user's hash with a new temporary password's; returned sealed. A retry
        replaces it again (why that is safe: module docstring)."""
        password = generate_temporary_password()
        hashed = await asyncio.to_thread(self._hasher.hash, password)
        async with heartbeating(), self._pool.connection() as conn, conn.transaction():
            name = await sql.tenant_name(conn, req.tenant_id)
            if name is None:
                raise _tenant_not_found(req.tenant_id)
            user = await sql.get_user(conn, req.tenant_id, req.user_id, for_update=True)
            if user is None:
                raise _user_not_found(req.tenant_id, req.user_id)
            if user.is_inactive:
                raise errors.user_inactive_error(
                    f"user {req.user_id} of tenant {req.tenant_id} is deactivated: reactivate it before giving it "
                    "a new password", {"tenantId": str(req.tenant_id), "userId": str(req.user_id)})
            await sql.set_password(conn, req.tenant_id, req.user_id, hashed)
        log.info("temporary password replaced", extra={"tenant_id": str(req.tenant_id), "user_id": str(req.user_id)})
        return NewPassword(user=_facts(req.tenant_id, name, user),
                           sealed_password=self._sealer.seal(password, binding=req.seal_binding))

    @activity.defn(name="set_user_active")
    async def set_user_active(self, req: SetUserActiveRequest) -> SetUserActiveResult:
        """Deactivate (never the tenant's last active MSP admin) or reactivate (an internal user needs a
        free licence, or ``force``). Already in the requested state: ``changed`` False, nothing written."""
        async with heartbeating(), self._pool.connection() as conn, conn.transaction():
            tenant = await sql.lock_tenant_row(conn, req.tenant_id)
            if tenant is None:
                raise _tenant_not_found(req.tenant_id)
            user = await sql.get_user(conn, req.tenant_id, req.user_id, for_update=True)
            if user is None:
                raise _user_not_found(req.tenant_id, req.user_id)
            if user.is_inactive == (not req.active):  # already in the requested state
                return SetUserActiveResult(user=_facts(req.tenant_id, tenant.name, user), changed=False)
            forced = False
            if not req.active:
                if (await sql.is_active_msp_admin(conn, req.tenant_id, req.user_id)
                        and await sql.other_active_msp_admins(conn, req.tenant_id, req.user_id) == 0):
                    raise errors.last_admin_error(
                        f"user {req.user_id} is the last active MSP admin of tenant {req.tenant_id}: deactivating "
                        "it would lock the MSP out; give another active user the Admin role first",
                        {"tenantId": str(req.tenant_id), "userId": str(req.user_id)})
            elif user.user_type is UserType.INTERNAL:
                used = await sql.licences_used(conn, req.tenant_id, except_user_id=req.user_id)
                forced = _over_limit(tenant, used, force=req.force, tenant_id=req.tenant_id, refuse=True)
            await sql.set_inactive(conn, req.tenant_id, req.user_id, not req.active)
        log.info("user reactivated" if req.active else "user deactivated",
                 extra={"tenant_id": str(req.tenant_id), "user_id": str(req.user_id), "forced": forced})
        after = sql.UserRecord(user_id=user.user_id, email=user.email, first_name=user.first_name,
                               last_name=user.last_name, user_type=user.user_type, is_inactive=not req.active)
        return SetUserActiveResult(user=_facts(req.tenant_id, tenant.name, after), changed=True, forced=forced)

    @activity.defn(name="record_audit")
    async def record_audit(self, req: AuditRecord) -> AuditResult:
        """One ``extension_audit_logs`` row in the audit tenant, keyed by the minted ``log_id`` (a retry
        writes nothing new). No audit tenant configured: nothing written, ``recorded`` False."""
        if self._audit_tenant_id is None:
            log.warning("audit record not written: no audit tenant configured (MASTER_BILLING_TENANT_ID or "
                        "MANAGEMENT_TENANT_ID)", extra={"tenant_id": str(req.tenant_id), "log_id": str(req.log_id)})
            return AuditResult(log_id=None, recorded=False)
        actor = sql.actor_user_id(req.triggered_by)
        details: dict[str, object] = dict(req.details)
        if actor is None and req.triggered_by is not None:
            details["triggeredBy"] = req.triggered_by
        details["targetTenantId"] = str(req.tenant_id)
        row = sql.AuditRow(
            tenant_id=self._audit_tenant_id, log_id=req.log_id, event_type=audit_event_type(req.action),
            user_id=actor, user_email=req.triggered_by_email, resource_type=req.resource_type,
            resource_id=req.resource_id, workflow_id=req.workflow_id[:_WORKFLOW_ID_MAX], status=req.status,
            error_message=req.error, details=details,
        )
        async with heartbeating(), self._pool.connection() as conn, conn.transaction():
            written = await sql.insert_audit(conn, row)
        log.info("audit record written" if written else "audit record already written by an earlier attempt",
                 extra={"tenant_id": str(req.tenant_id), "log_id": str(req.log_id), "event_type": row.event_type})
        return AuditResult(log_id=req.log_id, recorded=True)

    @activity.defn(name="remove_user")
    async def remove_user(self, req: RemoveUserInput) -> RemoveUserOutput:
        """Compensation for a createUser run: delete the user with the id this run minted (and its role
        grants). Only such ids reach it, so no other user can be removed. Idempotent."""
        async with heartbeating(), self._pool.connection() as conn, conn.transaction():
            removed = await sql.delete_user(conn, req.tenant_id, req.user_id)
        log.info("user removed" if removed else "user to remove not found (never created, or removed before)",
                 extra={"tenant_id": str(req.tenant_id), "user_id": str(req.user_id)})
        return RemoveUserOutput(removed=removed)


# ---------------------------------------------------------------- helpers


def audit_event_type(action: str) -> str:
    """``WELCOME_EMAIL_RESENT`` -> ``tenant.welcome.email.resent``, as the original wrote it."""
    return AUDIT_EVENT_PREFIX + action.lower().replace("_", ".")


def _over_limit(tenant: sql.LockedTenant, used: int, *, force: bool, tenant_id: UUID, refuse: bool) -> bool:
    """Whether one more internal user goes beyond the licence limit; raises ``LicenseLimitError`` when
    it does, ``refuse`` holds and ``force`` is not given. Returns True when going beyond by force."""
    limit = tenant.licensed_user_count
    if limit is None or used < limit:
        return False
    if force or not refuse:
        return force
    raise errors.license_limit_error(
        f"tenant {tenant_id} uses {used} of its {limit} licences: none is free for another active internal user; "
        "add licences, deactivate a user, or pass force", {"limit": limit, "used": used})


def _unknown_roles(user_type: UserType, roles: sql.RoleMatch) -> Exception:
    kind = "internal (MSP)" if user_type is UserType.INTERNAL else "client-portal"
    unknown = ", ".join(repr(n) for n in roles.unknown)
    available = ", ".join(roles.available) or "none"
    return errors.unknown_role_error(
        f"unknown role(s) for a {kind} user: {unknown}; the tenant's {kind} roles are: {available}",
        {"unknown": roles.unknown, "available": roles.available, "userType": user_type.value})


def _tenant_not_found(tenant_id: UUID) -> Exception:
    return errors.tenant_not_found_error(f"tenant {tenant_id} does not exist", {"tenantId": str(tenant_id)})


def _user_not_found(tenant_id: UUID, user_id: UUID) -> Exception:
    return errors.user_not_found_error(f"user {user_id} does not exist in tenant {tenant_id}",
                                       {"tenantId": str(tenant_id), "userId": str(user_id)})


def _facts(tenant_id: UUID, tenant_name: str, user: sql.UserRecord) -> UserFacts:
    return UserFacts(tenant_id=tenant_id, tenant_name=tenant_name, user_id=user.user_id, email=user.email,
                     first_name=user.first_name, last_name=user.last_name, user_type=user.user_type,
                     is_inactive=user.is_inactive)

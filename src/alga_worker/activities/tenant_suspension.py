"""Tenant suspension activities: set or clear Alga's tenant-wide suspension flag, with who and why.

``suspend_tenant`` and ``resume_tenant`` serve ``suspendTenantWorkflow``/``resumeTenantWorkflow`` and,
later, the deletion workflow (suspend on cancellation, resume on rollback): a tenant id, a reason code,
a reason in words and an actor in; the tenant's state after the call out. What they guarantee:

- **One transaction, the tenant row locked** (``db/tenant_suspension.py``): the flag is read under the
  lock and written only when the tenant is not already in the requested state. A second suspension
  changes nothing and says so (``changed`` false, no audit row); so does a resumption of an active
  tenant, or of a tenant suspended with another reason code (Alga's own rule: a resume clears only the
  suspension it names).
- **Who and why, in the same transaction**: a change writes one ``extension_audit_logs`` row
  (``tenant.suspended``/``tenant.resumed``) in the audit tenant, the one the user workflows record in
  (``MASTER_BILLING_TENANT_ID``, else ``MANAGEMENT_TENANT_ID``), through the same insert
  (``db/users.insert_audit``): the reason, the reason code, the actor, the target tenant. The row and
  the change commit together, so a suspension is never without its record. Its id is minted by the
  calling run, so a retry after COMMIT finds its own row and reports the change as made
  (``changed`` true) rather than "already suspended". Without an audit tenant or table the change
  is still made (a warning is logged; ``auditLogId`` null), as auditing is not essential elsewhere.
- **Typed refusals before anything is written**: an unknown tenant is ``TenantNotFoundError``; the
  management tenant and the master billing tenant are never suspended or resumed (``ValidationError``:
  suspending the tenant Nine Minds runs its own business in would stop its background work); a
  database without Alga's suspension columns is ``SchemaMismatchError`` naming the missing columns and
  the Alga migration that adds them. All non-retryable.

Registered as bound methods, as :class:`alga_worker.activities.licenses.LicenseActivities` is.
"""

from __future__ import annotations

import logging
from uuid import UUID

from psycopg import AsyncConnection
from psycopg.rows import DictRow
from temporalio import activity
from temporalio.exceptions import ApplicationError

from alga_worker import errors
from alga_worker.activities.heartbeat import heartbeating
from alga_worker.activities.users import audit_event_type
from alga_worker.db import tenant_suspension as sql
from alga_worker.db import users as users_sql
from alga_worker.db.pool import DbPool
from alga_worker.models import TenantSuspensionChange, TenantSuspensionResult

log = logging.getLogger(__name__)

AUDIT_SUSPENDED = "SUSPENDED"  # event_type tenant.suspended
AUDIT_RESUMED = "RESUMED"  # event_type tenant.resumed
RESOURCE_TENANT = "tenant"
_WORKFLOW_ID_MAX = 255  # extension_audit_logs.workflow_id varchar(255)


class TenantSuspensionActivities:
    def __init__(self, pool: DbPool, management_tenant_id: UUID | None = None,
                 master_billing_tenant_id: UUID | None = None) -> None:
        self._pool = pool
        self._protected = {t for t in (management_tenant_id, master_billing_tenant_id) if t is not None}
        self._audit_tenant_id = master_billing_tenant_id or management_tenant_id

    @activity.defn(name="suspend_tenant")
    async def suspend_tenant(self, req: TenantSuspensionChange) -> TenantSuspensionResult:
        """Stamp the flag unless the tenant is already suspended (module docstring)."""
        return await self._change(req, suspend=True)

    @activity.defn(name="resume_tenant")
    async def resume_tenant(self, req: TenantSuspensionChange) -> TenantSuspensionResult:
        """Clear the flag if the tenant is suspended with ``reasonCode`` (module docstring)."""
        return await self._change(req, suspend=False)

    async def _change(self, req: TenantSuspensionChange, *, suspend: bool) -> TenantSuspensionResult:
        verb = "suspended" if suspend else "resumed"
        if req.tenant_id in self._protected:
            raise errors.validation_error(
                f"the management tenant (and the master billing tenant) is never {verb} by the worker",
                {"tenantId": str(req.tenant_id)})
        code = req.reason_code.value
        async with heartbeating(), self._pool.connection() as conn, conn.transaction():
            missing = await sql.missing_columns(conn)
            if missing:
                raise _schema_mismatch(missing)
            audit_tenant = self._audit_tenant_id if await self._can_audit(conn) else None
            before = await sql.lock(conn, req.tenant_id)
            if before is None:
                raise errors.tenant_not_found_error(f"tenant {req.tenant_id} does not exist",
                                                    {"tenantId": str(req.tenant_id)})
            if audit_tenant is not None and await sql.audit_row_exists(conn, audit_tenant, req.log_id):
                # An earlier attempt of this run committed the change and its record.
                log.info(f"tenant {verb} by an earlier attempt of this run",
                         extra={"tenant_id": str(req.tenant_id), "log_id": str(req.log_id)})
                return _result(req, before, changed=True, log_id=req.log_id)
            after: sql.Suspension | None
            if suspend:
                after = None if before.suspended else await sql.suspend(conn, req.tenant_id, code)
            else:
                resumable = before.suspended and before.reason_code == code
                after = sql.Suspension(at=None, reason_code=None) if (
                    resumable and await sql.resume(conn, req.tenant_id, code)) else None
            if after is None:
                log.info(f"tenant not {verb}: it already was" if suspend or not before.suspended else
                         "tenant not resumed: it is suspended with another reason code",
                         extra={"tenant_id": str(req.tenant_id), "reason_code": before.reason_code})
                return _result(req, before, changed=False, log_id=None)
            if audit_tenant is not None:
                await users_sql.insert_audit(conn, _audit_row(req, audit_tenant, suspend=suspend, before=before,
                                                              after=after))
        log.info(f"tenant {verb}", extra={"tenant_id": str(req.tenant_id), "reason_code": code,
                                          "audited": audit_tenant is not None})
        return _result(req, after, changed=True, log_id=req.log_id if audit_tenant is not None else None)

    async def _can_audit(self, conn: AsyncConnection[DictRow]) -> bool:
        if self._audit_tenant_id is None:
            log.warning("suspension change not audited: no audit tenant configured (MASTER_BILLING_TENANT_ID or "
                        "MANAGEMENT_TENANT_ID)")
            return False
        if not await sql.audit_table_exists(conn):
            log.warning("suspension change not audited: the database has no extension_audit_logs table")
            return False
        return True


def _result(req: TenantSuspensionChange, state: sql.Suspension, *, changed: bool,
            log_id: UUID | None) -> TenantSuspensionResult:
    return TenantSuspensionResult(
        tenant_id=req.tenant_id, suspended=state.suspended, changed=changed, suspended_at=state.at,
        reason_code=state.reason_code, reason=req.reason, triggered_by=req.triggered_by,
        audit_log_id=None if log_id is None else str(log_id),
    )


def _audit_row(req: TenantSuspensionChange, audit_tenant: UUID, *, suspend: bool, before: sql.Suspension,
               after: sql.Suspension) -> users_sql.AuditRow:
    """The record of who and why (``details`` as the user workflows write theirs, plus the flag)."""
    actor = users_sql.actor_user_id(req.triggered_by)
    details: dict[str, object] = {"targetTenantId": str(req.tenant_id), "reasonCode": req.reason_code.value}
    if req.reason is not None:
        details["reason"] = req.reason
    if actor is None and req.triggered_by is not None:
        details["triggeredBy"] = req.triggered_by
    stamped = after.at if suspend else before.at
    if stamped is not None:
        details["suspendedAt"] = stamped.isoformat()
    return users_sql.AuditRow(
        tenant_id=audit_tenant, log_id=req.log_id,
        event_type=audit_event_type(AUDIT_SUSPENDED if suspend else AUDIT_RESUMED),
        user_id=actor, user_email=req.triggered_by_email, resource_type=RESOURCE_TENANT,
        resource_id=str(req.tenant_id), workflow_id=req.workflow_id[:_WORKFLOW_ID_MAX], status="completed",
        error_message=None, details=details,
    )


def _schema_mismatch(missing: list[str]) -> ApplicationError:
    return ApplicationError(
        f"the database has no {', '.join(missing)}: this Alga PSA version predates tenant suspension "
        f"(Alga adds the columns in {sql.ALGA_MIGRATION}); run Alga's migrations first",
        {"missing": missing, "migration": sql.ALGA_MIGRATION},
        type=errors.SCHEMA_MISMATCH, non_retryable=True)

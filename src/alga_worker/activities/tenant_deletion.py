"""Tenant deletion activities: the steps of ``tenantDeletionWorkflow`` that touch the database.

The original's activities (``validateTenantDeletion``, ``recordPendingDeletion``,
``updateDeletionStatus``, ``deactivateAllTenantUsers``/``reactivateTenantUsers``,
``collectTenantStats``, ``deleteTenantData``), on this worker's rules:

- **Never the management tenant, never the master billing tenant**: every activity that writes refuses
  them (``ValidationError``, non-retryable) before touching the database, even when called directly.
- **The record first.** ``record_pending_deletion`` writes Alga's ``pending_tenant_deletions`` row
  before anything of the tenant changes, so a deletion is always findable, and the users it
  deactivates are stored in that row (``stats_snapshot.deactivatedUserIds``) in the same transaction
  as the deactivation: a retried attempt, or the rollback, reads them back, and exactly those are
  reactivated.
- **Batched deletion** (``delete_tenant_data``, plan and SQL in ``db/tenant_deletion.py``): children
  first, at most ``TENANT_DELETION_BATCH_SIZE`` rows per transaction, heartbeating its progress; it
  keeps nothing but the database's state, so an attempt that dies (SIGKILL) is simply continued by the
  next. It runs only for a tenant whose pending deletion (this ``deletionId``) is in status
  ``deleting``; the record and the tenant row go last, together, with a ``tenant.deleted`` audit row
  in the audit tenant (the suspension's kind), which is what stays of the deletion.

Registered as bound methods, as :class:`alga_worker.activities.licenses.LicenseActivities` is.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection
from psycopg.rows import DictRow, tuple_row
from psycopg.types.json import Jsonb
from temporalio import activity
from temporalio.exceptions import ApplicationError

from alga_worker import errors
from alga_worker.activities.heartbeat import heartbeating
from alga_worker.activities.users import audit_event_type
from alga_worker.db import tenant_deletion as sql
from alga_worker.db import users as users_sql
from alga_worker.db.pool import DbPool
from alga_worker.models import (
    DeletionStatusUpdate,
    DeletionTarget,
    PendingDeletionRecord,
    TenantDataDeletion,
    TenantDeletionCheck,
    TenantDeletionStatus,
    TenantRowStats,
    UsersDeactivation,
)

log = logging.getLogger(__name__)

AUDIT_DELETED = "DELETED"  # event_type tenant.deleted
_WORKFLOW_ID_MAX = 255
_MAX_SWEEPS = 5  # passes over all tables when rows keep appearing (a writer the suspension did not stop)


class TenantDeletionActivities:
    def __init__(self, pool: DbPool, management_tenant_id: UUID | None = None,
                 master_billing_tenant_id: UUID | None = None, batch_size: int = 1000) -> None:
        self._pool = pool
        self._protected = {t for t in (management_tenant_id, master_billing_tenant_id) if t is not None}
        self._audit_tenant_id = master_billing_tenant_id or management_tenant_id
        self._batch_size = batch_size

    def _refuse_protected(self, tenant_id: UUID) -> None:
        if tenant_id in self._protected:
            raise errors.validation_error(
                "the management tenant (and the master billing tenant) is never deleted by the worker",
                {"tenantId": str(tenant_id)})

    # ---- validate

    @activity.defn(name="validate_tenant_deletion")
    async def validate_tenant_deletion(self, req: DeletionTarget) -> TenantDeletionCheck:
        """Refuse what must never be deleted; read-only."""
        self._refuse_protected(req.tenant_id)
        async with self._pool.connection() as conn, conn.transaction():
            if not await sql.pending_table_exists(conn):
                raise _schema_mismatch()
            async with conn.cursor(row_factory=tuple_row) as cur:
                await cur.execute("SELECT client_name, email FROM tenants WHERE tenant = %s", (req.tenant_id,))
                row = await cur.fetchone()
            if row is None:
                raise errors.tenant_not_found_error(f"tenant {req.tenant_id} does not exist",
                                                    {"tenantId": str(req.tenant_id)})
            await _refuse_other_deletion(conn, req.tenant_id, req.deletion_id)
        return TenantDeletionCheck(tenant_id=req.tenant_id, tenant_name=row[0], tenant_email=row[1])

    # ---- the record

    @activity.defn(name="record_pending_deletion")
    async def record_pending_deletion(self, req: PendingDeletionRecord) -> None:
        """Insert the ``pending_tenant_deletions`` row (status ``pending``); a retry finds its own row.
        An earlier, finished deletion of the tenant (rolled back, failed) makes way: Alga allows one row per
        tenant."""
        self._refuse_protected(req.tenant_id)
        async with self._pool.connection() as conn, conn.transaction():
            if not await sql.tenant_exists(conn, req.tenant_id, lock=True):
                raise errors.tenant_not_found_error(f"tenant {req.tenant_id} does not exist",
                                                    {"tenantId": str(req.tenant_id)})
            await _refuse_other_deletion(conn, req.tenant_id, req.deletion_id)
            await conn.execute("DELETE FROM pending_tenant_deletions WHERE tenant = %s AND deletion_id <> %s",
                               (req.tenant_id, req.deletion_id))
            snapshot: dict[str, Any] = {"export": req.export}
            await conn.execute(
                """INSERT INTO pending_tenant_deletions
                     (deletion_id, tenant, trigger_source, triggered_by, subscription_external_id, canceled_at,
                      scheduled_deletion_date, workflow_id, workflow_run_id, status, stats_snapshot)
                   VALUES (%s, %s, %s, %s, %s, now(), %s, %s, %s, 'pending', %s)
                   ON CONFLICT (deletion_id) DO NOTHING""",
                (req.deletion_id, req.tenant_id, req.trigger_source.value, users_sql.actor_user_id(req.triggered_by),
                 req.subscription_external_id, req.scheduled_deletion_date, req.workflow_id, req.workflow_run_id,
                 Jsonb(snapshot)))
        log.info("pending tenant deletion recorded", extra={"tenant_id": str(req.tenant_id),
                                                            "deletion_id": str(req.deletion_id)})

    @activity.defn(name="update_deletion_status")
    async def update_deletion_status(self, req: DeletionStatusUpdate) -> None:
        """The original's ``updateDeletionStatus``: set what is given. A row already gone (the tenant is
        deleted) is not an error."""
        sets = ["updated_at = now()"]
        params: list[Any] = []
        if req.status is not None:
            sets.append("status = %s")
            params.append(req.status.value)
            if req.status is TenantDeletionStatus.DELETED:
                sets.append("deleted_at = now()")
        if req.confirmation_type is not None:
            sets.append("confirmation_type = %s")
            params.append(req.confirmation_type)
        if req.confirmed_by is not None:
            sets += ["confirmed_by = %s", "confirmed_at = coalesce(confirmed_at, now())"]
            params.append(users_sql.actor_user_id(req.confirmed_by))
        if req.deletion_scheduled_for is not None:
            sets.append("deletion_scheduled_for = %s")
            params.append(req.deletion_scheduled_for)
        if req.rollback_reason is not None:
            sets.append("rollback_reason = %s")
            params.append(req.rollback_reason)
        if req.rolled_back_by is not None:
            sets += ["rolled_back_by = %s", "rolled_back_at = coalesce(rolled_back_at, now())"]
            params.append(users_sql.actor_user_id(req.rolled_back_by))
        if req.error is not None:
            sets.append("error = %s")
            params.append(req.error[:4000])
        if req.stats is not None:
            sets.append("stats_snapshot = stats_snapshot || %s")
            params.append(Jsonb(req.stats))
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute(f"UPDATE pending_tenant_deletions SET {', '.join(sets)} "  # noqa: S608
                               "WHERE deletion_id = %s", (*params, req.deletion_id))

    # ---- users

    @activity.defn(name="deactivate_tenant_users")
    async def deactivate_tenant_users(self, req: DeletionTarget) -> UsersDeactivation:
        """Deactivate every active user of the tenant; the ids are stored in the pending deletion's row in
        the same transaction, so a retry returns the same ids and the rollback restores exactly them."""
        self._refuse_protected(req.tenant_id)
        async with heartbeating(), self._pool.connection() as conn, conn.transaction():
            snapshot = await _locked_snapshot(conn, req)
            if "deactivatedUserIds" in snapshot:
                return UsersDeactivation(user_ids=[UUID(u) for u in snapshot["deactivatedUserIds"]])
            async with conn.cursor(row_factory=tuple_row) as cur:
                await cur.execute("UPDATE users SET is_inactive = true, updated_at = now() "
                                  "WHERE tenant = %s AND is_inactive IS NOT TRUE RETURNING user_id", (req.tenant_id,))
                ids = sorted(str(r[0]) for r in await cur.fetchall())
            await conn.execute("UPDATE pending_tenant_deletions SET stats_snapshot = stats_snapshot || %s, "
                               "updated_at = now() WHERE deletion_id = %s",
                               (Jsonb({"deactivatedUserIds": ids}), req.deletion_id))
        log.info("tenant users deactivated", extra={"tenant_id": str(req.tenant_id), "count": len(ids)})
        return UsersDeactivation(user_ids=[UUID(u) for u in ids])

    @activity.defn(name="reactivate_tenant_users")
    async def reactivate_tenant_users(self, req: DeletionTarget) -> UsersDeactivation:
        """Reactivate exactly the users this deletion deactivated (read from its row); idempotent."""
        self._refuse_protected(req.tenant_id)
        async with heartbeating(), self._pool.connection() as conn, conn.transaction():
            snapshot = await _locked_snapshot(conn, req)
            ids = list(snapshot.get("deactivatedUserIds", []))
            async with conn.cursor(row_factory=tuple_row) as cur:
                await cur.execute("UPDATE users SET is_inactive = false, updated_at = now() "
                                  "WHERE tenant = %s AND user_id = ANY(%s::uuid[]) AND is_inactive",
                                  (req.tenant_id, ids))
                count = cur.rowcount
        log.info("tenant users reactivated", extra={"tenant_id": str(req.tenant_id), "count": count})
        return UsersDeactivation(user_ids=[UUID(u) for u in ids], reactivated_count=count)

    # ---- statistics

    @activity.defn(name="collect_tenant_stats")
    async def collect_tenant_stats(self, req: DeletionTarget) -> TenantRowStats:
        """Rows per table of the tenant (every table with a ``tenant`` column), users and active users."""
        async with heartbeating(), self._pool.connection() as conn, conn.transaction():
            tables, _ = await sql.catalog(conn)
            counts = await sql.remaining_rows(conn, [t.name for t in tables], req.tenant_id)
            async with conn.cursor(row_factory=tuple_row) as cur:
                await cur.execute("SELECT count(*), count(*) FILTER (WHERE is_inactive IS NOT TRUE), now() "
                                  "FROM users WHERE tenant = %s", (req.tenant_id,))
                row = await cur.fetchone()
        assert row is not None
        return TenantRowStats(tables=dict(sorted(counts.items())), record_count=sum(counts.values()),
                              user_count=int(row[0]), active_user_count=int(row[1]), collected_at=row[2])

    # ---- the deletion

    @activity.defn(name="delete_tenant_data")
    async def delete_tenant_data(self, req: DeletionTarget) -> TenantDataDeletion:
        """Every row of the tenant, children first, in batches (module docstring)."""
        self._refuse_protected(req.tenant_id)
        progress: dict[str, Any] = {"step": "planning", "table": None, "tablesDone": 0, "tableCount": 0,
                                    "rowsDeleted": 0}
        context = {"tenant_id": str(req.tenant_id), "deletion_id": str(req.deletion_id)}
        # Each batch takes a pool connection and commits on its own: nothing is held between batches.
        async with heartbeating(details=lambda: dict(progress)):
            async with self._pool.connection() as conn, conn.transaction():
                await self._authorised(conn, req)
                tables, keys = await sql.catalog(conn)
            try:
                plan = sql.deletion_plan(tables, keys)
            except sql.UnorderableTables as err:
                raise ApplicationError(str(err), {"tables": err.tables}, type=errors.SCHEMA_MISMATCH,
                                       non_retryable=True) from None
            progress.update(step="breaking_cycles", tableCount=len(plan.order) + 2)
            for fk in plan.broken:
                progress["table"] = fk.child
                while await self._batch(sql.break_batch, plan.tables[fk.child], fk, req.tenant_id):
                    pass
            progress["step"] = "deleting"
            for _sweep in range(_MAX_SWEEPS):
                for done, name in enumerate(plan.order):
                    progress.update(table=name, tablesDone=done)
                    while n := await self._batch(sql.delete_batch, plan.tables[name], req.tenant_id):
                        progress["rowsDeleted"] += n
                async with self._pool.connection() as conn, conn.transaction():
                    left = await sql.remaining_rows(conn, plan.order, req.tenant_id)
                if not left:
                    break
                log.warning("rows of the tenant appeared while it was deleted; another pass",
                            extra={**context, "tables": sorted(left)})
            else:
                raise ApplicationError(f"rows of tenant {req.tenant_id} keep appearing: {sorted(left)}",
                                       type=errors.TRANSIENT_DATABASE)
            progress.update(step="deleting_tenant", table=sql.TENANTS, tablesDone=len(plan.order))
            audit_id = await self._final(req, plan)
            progress.update(step="done", table=None, tablesDone=len(plan.order) + 2)
        log.info("tenant deleted", extra={**context, "tables": len(plan.order) + 2,
                                          "rows_deleted_by_this_attempt": progress["rowsDeleted"]})
        return TenantDataDeletion(tenant_id=req.tenant_id, deletion_id=req.deletion_id,
                                  tables=[*plan.order, *sql.FINAL_TABLES],
                                  broken_keys=[f"{k.child}.{k.name}" for k in plan.broken],
                                  audit_log_id=audit_id)

    async def _batch(self, fn: Any, *args: Any) -> int:
        """One batch statement, its own transaction (the pool's timeouts apply), committed."""
        async with self._pool.connection() as conn, conn.transaction():
            n: int = await fn(conn, *args, self._batch_size)
        return n

    async def _authorised(self, conn: AsyncConnection[DictRow], req: DeletionTarget) -> None:
        """Only a tenant whose pending deletion (this one) is ``deleting``; or one already gone (a retry)."""
        if not await sql.tenant_exists(conn, req.tenant_id):
            return
        rows = await sql.pending_for_tenant(conn, req.tenant_id)
        if not any(r["deletion_id"] == req.deletion_id and r["status"] == TenantDeletionStatus.DELETING.value
                   for r in rows):
            raise errors.validation_error(
                f"tenant {req.tenant_id} has no pending deletion {req.deletion_id} in status 'deleting': "
                "refusing to delete its data", {"tenantId": str(req.tenant_id), "deletionId": str(req.deletion_id)})

    async def _final(self, req: DeletionTarget, plan: sql.Plan) -> str | None:
        """The record and the tenant row, with the audit row, in one transaction; a retry finds the audit."""
        audit_tenant = self._audit_tenant_id
        async with self._pool.connection() as conn, conn.transaction():
            if audit_tenant is not None and not await _audit_table_exists(conn):
                audit_tenant = None
            if not await sql.tenant_exists(conn, req.tenant_id, lock=True):
                return str(req.deletion_id) if audit_tenant is not None else None
            await self._authorised(conn, req)
            left = await sql.remaining_rows(conn, plan.order, req.tenant_id)
            if left:
                raise ApplicationError(f"rows of tenant {req.tenant_id} appeared during the deletion: {sorted(left)}",
                                       type=errors.TRANSIENT_DATABASE)
            async with conn.cursor(row_factory=tuple_row) as cur:
                await cur.execute("SELECT stats_snapshot, trigger_source FROM pending_tenant_deletions "
                                  "WHERE deletion_id = %s", (req.deletion_id,))
                row = await cur.fetchone()
            await conn.execute("DELETE FROM pending_tenant_deletions WHERE tenant = %s", (req.tenant_id,))
            await conn.execute("DELETE FROM tenants WHERE tenant = %s", (req.tenant_id,))
            if audit_tenant is None:
                log.warning("tenant deletion not audited: no audit tenant or no extension_audit_logs table",
                            extra={"tenant_id": str(req.tenant_id)})
                return None
            snapshot = row[0] if row else {}
            details = {"targetTenantId": str(req.tenant_id), "deletionId": str(req.deletion_id),
                       "triggerSource": row[1] if row else None,
                       "stats": {k: v for k, v in (snapshot or {}).items() if k != "deactivatedUserIds"},
                       "tables": [*plan.order, *sql.FINAL_TABLES]}
            await users_sql.insert_audit(conn, users_sql.AuditRow(
                tenant_id=audit_tenant, log_id=req.deletion_id, event_type=audit_event_type(AUDIT_DELETED),
                user_id=None, user_email=None, resource_type="tenant", resource_id=str(req.tenant_id),
                workflow_id=req.workflow_id[:_WORKFLOW_ID_MAX] or "-", status="completed", error_message=None,
                details=json.loads(json.dumps(details, default=str))))
        return str(req.deletion_id)


async def _refuse_other_deletion(conn: AsyncConnection[Any], tenant_id: UUID, deletion_id: UUID) -> None:
    for row in await sql.pending_for_tenant(conn, tenant_id):
        if row["deletion_id"] != deletion_id and row["status"] in sql.ACTIVE_STATUSES:
            raise errors.validation_error(
                f"tenant {tenant_id} is already being deleted (deletion {row['deletion_id']}, {row['status']})",
                {"tenantId": str(tenant_id), "deletionId": str(row["deletion_id"])})


async def _locked_snapshot(conn: AsyncConnection[Any], req: DeletionTarget) -> dict[str, Any]:
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute("SELECT stats_snapshot FROM pending_tenant_deletions WHERE deletion_id = %s AND tenant = %s "
                          "FOR UPDATE", (req.deletion_id, req.tenant_id))
        row = await cur.fetchone()
    if row is None:
        raise errors.validation_error(f"no pending deletion {req.deletion_id} of tenant {req.tenant_id}",
                                      {"tenantId": str(req.tenant_id), "deletionId": str(req.deletion_id)})
    return dict(row[0] or {})


async def _audit_table_exists(conn: AsyncConnection[Any]) -> bool:
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute("SELECT to_regclass('extension_audit_logs') IS NOT NULL")
        row = await cur.fetchone()
    return bool(row and row[0])


def _schema_mismatch() -> ApplicationError:
    return ApplicationError(
        "the database has no pending_tenant_deletions table (Alga PSA EE's record of tenant deletions): run "
        "Alga's EE migrations first", {"missing": [sql.PENDING]}, type=errors.SCHEMA_MISMATCH, non_retryable=True)

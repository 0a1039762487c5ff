"""Support for the provisioning chaos tests: a batch of runs, progress counters, lock traps, exact counts.

The chaos tests kill or restart real worker processes while 30 provisionings run, then prove by their
own SQL and outbox reads that every tenant exists exactly once and whole. Everything here observes
(rows, files, pg_stat_activity, a worker's /metrics, workflow histories) or holds a lock; nothing
replaces worker code. Waits poll an observable condition with a bound, never a fixed sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row
from temporalio.api.enums.v1 import EventType, TimeoutType
from temporalio.client import Client, WorkflowHandle
from tests.support.data import TEST_PEPPER, all_row_counts, tenant_request
from tests.support.metrics import scrape
from tests.support.workers import outbox_messages, password_from_welcome

from alga_worker.db import onboarding_catalog as catalog
from alga_worker.db.provisioning import TENANT_TABLES_DELETE_ORDER
from alga_worker.models import TenantCreationResult
from alga_worker.runtime.gauges import SAMPLE_SECONDS
from alga_worker.security import PasswordHasher

PROVISIONINGS = 30
# The core SDK's marker for a local activity; its "data" detail is JSON carrying the attempt number.
LOCAL_ACTIVITY_MARKER = "core_local_activity"

# Rows one plain tenant request (no Stripe, no checkout) gives its tenant, from the onboarding catalogue
# rather than from the worker's own count: 1 tenant, its client, location and default link, settings,
# 8 roles, the permissions, 313 grants, the default tax region and rate, the admin and its role.
EXPECTED_ROWS_PER_TENANT: dict[str, int] = {table: 0 for table in TENANT_TABLES_DELETE_ORDER} | {
    "tenants": 1, "clients": 1, "client_locations": 1, "tenant_companies": 1,
    "tenant_settings": 1, "tenant_email_settings": 1,
    "roles": len(catalog.ROLES), "permissions": len(catalog.PERMISSIONS), "role_permissions": catalog.grant_count(),
    "tax_regions": 1, "tax_rates": 1, "users": 1, "user_roles": 1,
}


def chaos_seed() -> int:
    """The seed of a test's random choices: CHAOS_SEED to replay a failure, else a fresh one (printed)."""
    seed = int(os.environ["CHAOS_SEED"]) if os.environ.get("CHAOS_SEED") else secrets.randbits(32)
    print(f"chaos seed {seed} (replay with CHAOS_SEED={seed})")
    return seed


async def poll_until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 30.0,
                     interval: float = 0.05) -> None:
    """Poll ``check`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(interval)


# ---------------------------------------------------------------- the batch


@dataclass
class Batch:
    """The provisionings one test started: plain requests, each with its own admin address."""

    requests: list[dict[str, Any]]
    handles: list[WorkflowHandle[Any, TenantCreationResult]]

    @property
    def emails(self) -> list[str]:
        return [str(r["adminUser"]["email"]).lower() for r in self.requests]

    async def results(self, timeout: float) -> list[TenantCreationResult]:
        """Every run's result (a failed run raises), within one bound for the whole batch."""
        return list(await asyncio.wait_for(asyncio.gather(*(h.result() for h in self.handles)), timeout))


async def start_provisionings(client: Client, task_queue: str, prefix: str,
                              count: int = PROVISIONINGS) -> Batch:
    requests = [tenant_request() for _ in range(count)]
    assert len({r["adminUser"]["email"] for r in requests}) == count
    handles = await asyncio.gather(*(
        client.start_workflow("tenantCreationWorkflow", request, id=f"{prefix}-{i}-{uuid.uuid4().hex[:8]}",
                              task_queue=task_queue, result_type=TenantCreationResult)
        for i, request in enumerate(requests)))
    return Batch(requests=requests, handles=list(handles))


# ---------------------------------------------------------------- progress


async def admins_committed(db: psycopg.AsyncConnection[Any], emails: Sequence[str]) -> int:
    """Provisionings committed so far (an admin user commits with its whole tenant, in one transaction)."""
    cur = await db.execute("SELECT count(*) AS n FROM users WHERE lower(email) = ANY(%s)", (list(emails),))
    row = await cur.fetchone()
    return int(row["n"]) if row else 0


def emails_written(outbox: Path) -> int:
    """Welcome emails published so far (the outbox publishes each .eml atomically)."""
    return len(list(outbox.glob("*.eml"))) if outbox.exists() else 0


async def worker_transactions(db: psycopg.AsyncConnection[Any]) -> tuple[int, int]:
    """(open, waiting on a lock): worker backends inside a transaction right now."""
    cur = await db.execute(
        "SELECT count(*) FILTER (WHERE xact_start IS NOT NULL) AS open,"
        " count(*) FILTER (WHERE wait_event_type = 'Lock') AS waiting"
        " FROM pg_stat_activity WHERE application_name = 'alga-temporal-worker'")
    row = await cur.fetchone()
    assert row is not None
    return int(row["open"]), int(row["waiting"])


# ---------------------------------------------------------------- lock traps


class TableTrap:
    """A table held in SHARE ROW EXCLUSIVE mode: workers can read it but not write it, so their
    provisioning transactions wait there, open, exactly where a slow database would leave them.

    The lock is granted once every transaction that already wrote the table has ended, and from then on
    each transaction that wants to write it waits behind it (PostgreSQL queues lock requests in order).
    """

    def __init__(self, database_url: str, table: str) -> None:
        self.database_url = database_url
        self.table = table
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self.granted_at: float | None = None  # time.monotonic() when the lock was granted

    @property
    def pid(self) -> int:
        assert self._conn is not None
        return int(self._conn.info.backend_pid)

    async def connect(self) -> None:
        self._conn = await psycopg.AsyncConnection.connect(self.database_url, row_factory=dict_row)

    async def lock(self) -> None:
        """Ask for the lock and wait until it is granted (connects first when needed)."""
        if self._conn is None:
            await self.connect()
        assert self._conn is not None
        await self._conn.execute(f"LOCK TABLE {self.table} IN SHARE ROW EXCLUSIVE MODE")
        self.granted_at = time.monotonic()

    async def release(self) -> None:
        """End the lock's transaction (idempotent); closing the session releases it in any case."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                await conn.commit()
            await conn.close()

    def sampled_since_granted(self) -> bool:
        """Whether a worker's pool gauge read now was sampled after the lock was granted: a connection
        in use then belongs to a transaction that cannot end while the lock is held."""
        return self.granted_at is not None and time.monotonic() > self.granted_at + SAMPLE_SECONDS + 0.25


@asynccontextmanager
async def trapped(database_url: str, table: str) -> AsyncIterator[TableTrap]:
    trap = TableTrap(database_url, table)
    try:
        await trap.lock()
        yield trap
    finally:
        await trap.release()


async def handover(db: psycopg.AsyncConnection[Any], held: TableTrap, table: str) -> TableTrap:
    """Let the transactions waiting on ``held`` finish while every later provisioning waits on ``table``
    (written before ``held`` in the provisioning transaction): queue the new lock behind the
    transactions in flight, release the old one, and return once the new one is granted."""
    nxt = TableTrap(held.database_url, table)
    await nxt.connect()
    locking = asyncio.create_task(nxt.lock())

    async def queued() -> bool:
        row = await (await db.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s",
                                      (nxt.pid,))).fetchone()
        return locking.done() or (row is not None and row["wait_event_type"] == "Lock")

    try:
        await poll_until(queued, f"the lock on {table} to queue behind the transactions in flight", timeout=10)
        await held.release()
        await asyncio.wait_for(locking, 30)
    except BaseException:
        locking.cancel()
        await nxt.release()
        raise
    return nxt


async def pool_in_use(metrics_port: int) -> float:
    """A worker's own gauge of database connections lent out to activities (sampled every second)."""
    return (await asyncio.to_thread(scrape, metrics_port)).value("alga_db_pool_connections_in_use")


# ---------------------------------------------------------------- second attempts


async def second_attempts(handle: WorkflowHandle[Any, Any]) -> list[str]:
    """Every sign in a run's history that some step ran more than once: an activity attempt above 1, a
    local activity marker with an attempt above 1, a workflow task that failed or timed out while
    running (the local activities it ran are run again). A sticky workflow task that timed out before
    any worker started it redid nothing and is not listed."""
    history = await handle.fetch_history()
    found: list[str] = []
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            attempt = event.activity_task_started_event_attributes.attempt
            if attempt != 1:
                found.append(f"activity (event {event.event_id}) started attempt {attempt}")
        elif event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
            marker = event.marker_recorded_event_attributes
            if marker.marker_name == LOCAL_ACTIVITY_MARKER and "data" in marker.details:
                data = json.loads(marker.details["data"].payloads[0].data)
                if data.get("attempt", 1) != 1:
                    found.append(f"local activity {data.get('activity_type')} attempt {data['attempt']}")
        elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
            found.append(f"workflow task failed (event {event.event_id})")
        elif (event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT
              and event.workflow_task_timed_out_event_attributes.timeout_type
              == TimeoutType.TIMEOUT_TYPE_START_TO_CLOSE):
            found.append(f"workflow task timed out while running (event {event.event_id})")
    return [f"{handle.id}: {what}" for what in found]


# ---------------------------------------------------------------- exact counts


@dataclass(frozen=True)
class Snapshot:
    """The shared database before a test: other tests' rows stay, so counts are compared as deltas."""

    rows: dict[str, int]
    orphans: dict[str, int]


async def orphan_counts(db: psycopg.AsyncConnection[Any]) -> dict[str, int]:
    """Rows of every tenant-scoped table whose tenant has no ``tenants`` row."""
    counts: dict[str, int] = {}
    for table in TENANT_TABLES_DELETE_ORDER:
        if table == "tenants":
            continue
        cur = await db.execute(
            f"SELECT count(*) AS n FROM {table} x WHERE NOT EXISTS (SELECT 1 FROM tenants t WHERE t.tenant = x.tenant)")
        row = await cur.fetchone()
        counts[table] = int(row["n"]) if row else 0
    return counts


async def snapshot(db: psycopg.AsyncConnection[Any]) -> Snapshot:
    return Snapshot(rows=await all_row_counts(db), orphans=await orphan_counts(db))


# Rows of the batch's tenants that lack what must come with them; each query must count 0.
_BROKEN_LINKS: dict[str, str] = {
    "users without a role": "SELECT count(*) AS n FROM users u WHERE u.tenant = ANY(%(t)s) AND NOT EXISTS"
                            " (SELECT 1 FROM user_roles ur WHERE ur.tenant = u.tenant AND ur.user_id = u.user_id)",
    "user roles without their user or role": "SELECT count(*) AS n FROM user_roles ur WHERE ur.tenant = ANY(%(t)s)"
        " AND (NOT EXISTS (SELECT 1 FROM users u WHERE u.tenant = ur.tenant AND u.user_id = ur.user_id)"
        " OR NOT EXISTS (SELECT 1 FROM roles r WHERE r.tenant = ur.tenant AND r.role_id = ur.role_id))",
    "clients without a location": "SELECT count(*) AS n FROM clients c WHERE c.tenant = ANY(%(t)s) AND NOT EXISTS"
        " (SELECT 1 FROM client_locations l WHERE l.tenant = c.tenant AND l.client_id = c.client_id)",
    "locations without their client": "SELECT count(*) AS n FROM client_locations l WHERE l.tenant = ANY(%(t)s)"
        " AND NOT EXISTS (SELECT 1 FROM clients c WHERE c.tenant = l.tenant AND c.client_id = l.client_id)",
    "clients not the tenant's default": "SELECT count(*) AS n FROM clients c WHERE c.tenant = ANY(%(t)s) AND NOT"
        " EXISTS (SELECT 1 FROM tenant_companies tc WHERE tc.tenant = c.tenant AND tc.client_id = c.client_id"
        " AND tc.is_default)",
    "grants without their role or permission": "SELECT count(*) AS n FROM role_permissions rp"
        " WHERE rp.tenant = ANY(%(t)s)"
        " AND (NOT EXISTS (SELECT 1 FROM roles r WHERE r.tenant = rp.tenant AND r.role_id = rp.role_id)"
        " OR NOT EXISTS (SELECT 1 FROM permissions p WHERE p.tenant = rp.tenant"
        " AND p.permission_id = rp.permission_id))",
    "tax rates without their region": "SELECT count(*) AS n FROM tax_rates r WHERE r.tenant = ANY(%(t)s) AND NOT"
        " EXISTS (SELECT 1 FROM tax_regions g WHERE g.tenant = r.tenant AND g.region_code = r.region_code)",
}


async def _one_int(db: psycopg.AsyncConnection[Any], sql: str, params: dict[str, Any]) -> int:
    row = await (await db.execute(sql, params)).fetchone()
    return int(row["n"]) if row else 0


async def assert_exactly_provisioned(db: psycopg.AsyncConnection[Any], outbox: Path, batch: Batch,
                                     results: Sequence[TenantCreationResult], before: Snapshot, note: str) -> None:
    """Exactly one whole tenant, admin, Admin grant and welcome email per request; nothing else written.

    ``note`` (the seed and what the test did) is part of every failure message.
    """
    count = len(batch.requests)
    failed = [(h.id, r) for h, r in zip(batch.handles, results, strict=True) if not (r.success and r.email_sent)]
    assert not failed, f"{note}: runs that did not succeed with their email: {failed}"
    by_email = {r.admin_email.lower(): r for r in results}
    assert sorted(by_email) == sorted(batch.emails), f"{note}: results do not match the requests"
    tenant_ids = [r.tenant_id for r in results]

    # Tenants: 30 new rows in all, one per admin address, the one each run reported.
    rows = await (await db.execute("SELECT tenant::text AS tenant, lower(email) AS email FROM tenants"
                                   " WHERE lower(email) = ANY(%s)", (batch.emails,))).fetchall()
    assert sorted((r["email"], r["tenant"]) for r in rows) == sorted(
        (e, by_email[e].tenant_id) for e in batch.emails), f"{note}: tenants per admin address"

    # Admins: one user per address, in its run's tenant, with the id its run minted.
    rows = await (await db.execute("SELECT lower(email) AS email, tenant::text AS tenant, user_id::text AS user_id,"
                                   " hashed_password FROM users WHERE lower(email) = ANY(%s)",
                                   (batch.emails,))).fetchall()
    assert sorted((r["email"], r["tenant"], r["user_id"]) for r in rows) == sorted(
        (e, by_email[e].tenant_id, by_email[e].admin_user_id) for e in batch.emails), f"{note}: admin users"
    hashes = {r["email"]: r["hashed_password"] for r in rows}

    # Admin grants: each admin holds the tenant's MSP Admin role, once, and no other role.
    rows = await (await db.execute(
        "SELECT lower(u.email) AS email, r.role_name, r.msp, r.client FROM users u"
        " JOIN user_roles ur ON ur.tenant = u.tenant AND ur.user_id = u.user_id"
        " JOIN roles r ON r.tenant = ur.tenant AND r.role_id = ur.role_id WHERE lower(u.email) = ANY(%s)",
        (batch.emails,))).fetchall()
    admin = catalog.MSP_ADMIN_ROLE
    assert sorted((r["email"], r["role_name"], r["msp"], r["client"]) for r in rows) == sorted(
        (e, admin.name, admin.msp, admin.client) for e in batch.emails), f"{note}: admin role grants"

    # Welcome emails: one per address, none else, each carrying the password the stored hash accepts.
    messages = outbox_messages(outbox)
    recipients = Counter(str(m["To"]).lower() for m in messages)
    assert recipients == Counter(batch.emails), (
        f"{note}: outbox holds {len(messages)} messages; per address: "
        f"{ {a: n for a, n in recipients.items() if n != 1 or a not in by_email} } missing: "
        f"{sorted(set(batch.emails) - set(recipients))}")
    hasher = PasswordHasher(pepper=TEST_PEPPER)
    wrong = [str(m["To"]) for m in messages
             if not await asyncio.to_thread(hasher.verify, password_from_welcome(m), hashes[str(m["To"]).lower()])]
    assert not wrong, f"{note}: welcome emails whose password the stored hash refuses: {wrong}"

    # Every table: the batch's tenants hold exactly the rows a tenant gets, and the database grew by
    # exactly 30 of those (no half tenant under another id, no duplicate seeds anywhere).
    per_tenant: dict[str, dict[str, int]] = {}
    for table in TENANT_TABLES_DELETE_ORDER:
        got = await (await db.execute(f"SELECT tenant::text AS tenant, count(*) AS n FROM {table}"
                                      " WHERE tenant = ANY(%s::uuid[]) GROUP BY tenant", (tenant_ids,))).fetchall()
        per_tenant[table] = {r["tenant"]: int(r["n"]) for r in got}
    wrong_rows = {(table, t): per_tenant[table].get(t, 0) for table in TENANT_TABLES_DELETE_ORDER for t in tenant_ids
                  if per_tenant[table].get(t, 0) != EXPECTED_ROWS_PER_TENANT[table]}
    assert not wrong_rows, f"{note}: tenants whose rows differ from a whole tenant's: {wrong_rows}"
    after = await all_row_counts(db)
    grown = {t: after[t] - before.rows[t] for t in TENANT_TABLES_DELETE_ORDER}
    assert grown == {t: count * n for t, n in EXPECTED_ROWS_PER_TENANT.items()}, (
        f"{note}: rows added per table {grown}, expected {count} tenants' worth")

    # No orphans: no row without its tenant (compared with before: the shared database's own state),
    # and within the batch's tenants no user without its role, no client without its location, etc.
    orphans = await orphan_counts(db)
    assert orphans == before.orphans, f"{note}: rows without a tenant, before {before.orphans} after {orphans}"
    tenants = [uuid.UUID(t) for t in tenant_ids]
    broken = {what: await _one_int(db, sql, {"t": tenants}) for what, sql in _BROKEN_LINKS.items()}
    assert not any(broken.values()), f"{note}: broken links in the batch's tenants: {broken}"

"""tenantDeletionWorkflow with its worker process SIGKILLed in the middle of the deletion batches.

A real ``alga-worker run`` process deletes a tenant of 2,000 extra contacts in batches of 5 rows
(``TENANT_DELETION_BATCH_SIZE=5``), each its own transaction. Once some of the contacts are gone, the
test takes a SHARE lock on ``contacts`` (it waits for the batch in flight to commit), so the worker's
next batch waits, in flight, exactly where a slow database would leave it; the worker is SIGKILLed
there (PostgreSQL rolls that batch back), the lock released, and a new worker process started. The
deletion activity keeps nothing but the database's state, so the retry simply continues.

Proven by the test's own SQL: the run completes with status ``deleted``; zero rows of that tenant in
every table with a ``tenant`` column; every other tenant's per-table counts unchanged, the management
tenant's included (its audit log aside, which gains the deletion's records); the deletion activity ran
twice (the killed attempt and its retry), nothing else was repeated.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row
from temporalio.client import Client
from tests.support.chaos import poll_until
from tests.support.deletion import MGMT, counts_by_tenant, doomed_tenant, rows_of, without
from tests.support.processes import start_worker, wait_for_worker_blocked_on_lock
from tests.support.users import activity_attempts
from tests.support.workers import activity_name

from alga_worker.config import load_settings
from alga_worker.models import TenantDeletionResult, TenantDeletionState, TenantDeletionStatus
from alga_worker.runtime.devstack import DevStack
from alga_worker.runtime.worker import build_resources

pytestmark = pytest.mark.chaos

EXTRA_CONTACTS = 2000


async def test_sigkill_during_the_deletion_batches_then_a_new_worker_finishes_with_zero_rows_left(
        stack: DevStack, client: Client, worker_env: dict[str, str], db: psycopg.AsyncConnection[Any],
        tmp_path: Path) -> None:
    env = dict(worker_env, MANAGEMENT_TENANT_ID=str(MGMT), TENANT_DELETION_BATCH_SIZE="5")
    settings = load_settings(env)
    resources = await build_resources(settings)
    try:
        tenant, _, _ = await doomed_tenant({activity_name(fn): fn for fn in resources.activities}, settings, db,
                                           extra_contacts=EXTRA_CONTACTS)
    finally:
        await resources.aclose()
    before = await counts_by_tenant(db)
    contacts = rows_of(before, tenant)["contacts"]
    assert contacts >= EXTRA_CONTACTS

    worker_a = start_worker(env, tmp_path / "worker-a.log")
    worker_b = None
    try:
        await worker_a.wait_until("/readyz", 200)
        handle = await client.start_workflow(
            "tenantDeletionWorkflow", {"tenantId": str(tenant), "triggerSource": "manual", "gracePeriodSeconds": 0},
            id=f"tenant-deletion-{tenant}", task_queue=env["TEMPORAL_TASK_QUEUE"], result_type=TenantDeletionResult)

        async def awaiting() -> bool:
            s = await handle.query("getState", result_type=TenantDeletionState)
            return s is not None and s.status is TenantDeletionStatus.AWAITING_CONFIRMATION
        await poll_until(awaiting, "the run to await its confirmation", timeout=60)
        await handle.signal("confirmDeletion", {"type": "immediate", "confirmedBy": "chaos-test"})

        async def contacts_going() -> bool:
            cur = await db.execute("SELECT count(*) AS n FROM contacts WHERE tenant = %s", (tenant,))
            row = await cur.fetchone()
            return row is not None and 0 < row["n"] < contacts
        await poll_until(contacts_going, "the first contact batches to commit", timeout=60, interval=0.005)
        async with await psycopg.AsyncConnection.connect(stack.database_url, row_factory=dict_row) as lock:
            await lock.execute("LOCK TABLE contacts IN SHARE MODE")  # the next batch waits, in flight
            await wait_for_worker_blocked_on_lock(db)
            cur = await lock.execute("SELECT count(*) AS n FROM contacts WHERE tenant = %s", (tenant,))
            left_at_kill = (await cur.fetchone() or {"n": 0})["n"]
            worker_a.signal(signal.SIGKILL)
            assert await worker_a.wait_exit() == -signal.SIGKILL
            await lock.commit()
        assert 0 < left_at_kill < contacts  # killed in the middle of a table, batches committed before it
        worker_b = start_worker(env, tmp_path / "worker-b.log")
        result = await handle.result()
    finally:
        worker_a.stop()
        if worker_b is not None:
            worker_b.stop()

    assert result.status is TenantDeletionStatus.DELETED and result.success
    after = await counts_by_tenant(db)
    assert rows_of(after, tenant) == {}
    audit = ("extension_audit_logs", str(MGMT))
    assert {k: n for k, n in without(after, tenant).items() if k != audit} == \
        {k: n for k, n in without(before, tenant).items() if k != audit}
    assert await activity_attempts(handle, "delete_tenant_data") == [2]
    for name in ("export_tenant_data", "record_pending_deletion", "deactivate_tenant_users", "suspend_tenant",
                 "collect_tenant_stats"):
        assert await activity_attempts(handle, name) == [1], name

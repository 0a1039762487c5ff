"""createUserWorkflow with its worker process SIGKILLed mid-run, then a new worker: one user, one email.

The kill points are made real, not simulated: the test holds a table lock that lets the worker read
but not insert, so the worker's transaction waits exactly where a slow database would leave it:

- on ``users``: ``create_user`` has locked the tenant and checked everything, its INSERT waits, nothing
  is committed; the retry on the new worker creates the user once;
- on ``extension_audit_logs``: the user row is committed and the invitation was accepted by the
  provider; ``record_audit`` waits. The new worker retries only the audit: no second email.

Either way the emailed password verifies against the stored hash (independent PBKDF2), and no worker
log line holds it.
"""

from __future__ import annotations

import signal
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row
from tests.support.data import unique_email
from tests.support.processes import start_worker, wait_for_worker_blocked_on_lock
from tests.support.users import (
    activity_attempts,
    alga_hash_matches,
    assert_secret_absent,
    audit_rows,
    emailed_password,
    history_haystacks,
    provision_tenant,
    users_with_email,
)
from tests.support.workers import activity_name, outbox_messages

from alga_worker.config import load_settings
from alga_worker.models import CreateUserResult
from alga_worker.runtime.worker import build_resources

MGMT = "00000000-0000-4000-8000-000000000001"  # the audit tenant (0002_management_tenant.sql)


@asynccontextmanager
async def inserts_blocked(database_url: str, table: str) -> AsyncIterator[None]:
    async with await psycopg.AsyncConnection.connect(database_url, row_factory=dict_row) as conn:
        await conn.execute(f"LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE")
        try:
            yield
        finally:
            await conn.commit()


@pytest.mark.parametrize(("table", "retried"), [("users", "create_user"), ("extension_audit_logs", "record_audit")],
                         ids=["during create_user", "after the invitation, during the audit"])
async def test_sigkill_mid_create_user_then_restart_gives_one_user_and_one_invitation(
        stack, client, worker_env, db, outbox: Path, tmp_path: Path, table: str, retried: str) -> None:
    env = dict(worker_env, MANAGEMENT_TENANT_ID=MGMT)
    settings = load_settings(env)
    resources = await build_resources(settings)
    try:
        tenant, _ = await provision_tenant({activity_name(fn): fn for fn in resources.activities}, settings)
    finally:
        await resources.aclose()
    address = unique_email("killed")
    request: dict[str, Any] = {"tenantId": str(tenant.tenant_id), "email": address, "firstName": "Kim",
                               "lastName": "Killed", "roles": ["Technician"]}

    worker_a = start_worker(env, tmp_path / "worker-a.log")
    worker_b = None
    try:
        await worker_a.wait_until("/readyz", 200)
        async with inserts_blocked(stack.database_url, table):
            handle = await client.start_workflow(
                "createUserWorkflow", request, id=f"create-user-kill-{uuid.uuid4()}",
                task_queue=env["TEMPORAL_TASK_QUEUE"], result_type=CreateUserResult)
            await wait_for_worker_blocked_on_lock(db)
            worker_a.signal(signal.SIGKILL)
            assert await worker_a.wait_exit() == -signal.SIGKILL
        worker_b = start_worker(env, tmp_path / "worker-b.log")
        result = await handle.result()
    finally:
        worker_a.stop()
        if worker_b is not None:
            worker_b.stop()

    assert result.invitation_sent
    [user] = await users_with_email(db, address)
    assert str(user["user_id"]) == result.user_id and user["tenant"] == tenant.tenant_id
    [invitation] = [m for m in outbox_messages(outbox) if m["To"] == address]
    password = emailed_password(invitation)
    assert alga_hash_matches(password, user["hashed_password"], settings)
    # The killed attempt was retried (heartbeat timeout), not lost, and nothing else ran twice.
    assert await activity_attempts(handle, retried) == [2]
    assert await activity_attempts(handle, "send_email") == [1]
    assert len(await audit_rows(db, handle.id)) == 1
    logs = [(tmp_path / name).read_text(errors="replace") for name in ("worker-a.log", "worker-b.log")]
    assert all(logs)
    assert_secret_absent(password, logs, "a worker log line")
    assert_secret_absent(password, await history_haystacks(handle), "the workflow history")

"""The worker process under faults: SIGKILL mid-provisioning, SIGTERM during a slow step, bad config.

A "slow step" is made real, not simulated: the test holds a lock on ``users`` (SHARE ROW EXCLUSIVE lets
the worker read but not insert), so the provisioning transaction has written the tenant and its seeds
and waits, uncommitted, exactly where a slow database would leave it.
"""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row
from tests.support.data import TEST_PEPPER, tenant_request
from tests.support.processes import run_cli, start_worker, wait_for_worker_blocked_on_lock
from tests.support.workers import outbox_messages, password_from_welcome

from alga_worker.models import TenantCreationResult
from alga_worker.security import PasswordHasher


@asynccontextmanager
async def users_insert_blocked(database_url: str) -> AsyncIterator[None]:
    async with await psycopg.AsyncConnection.connect(database_url, row_factory=dict_row) as conn:
        await conn.execute("LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE")
        try:
            yield
        finally:
            await conn.commit()


def provision_attempts(history: Any) -> list[int]:
    scheduled = {e.event_id for e in history.events
                 if e.HasField("activity_task_scheduled_event_attributes")
                 and e.activity_task_scheduled_event_attributes.activity_type.name == "provision_tenant"}
    return [e.activity_task_started_event_attributes.attempt for e in history.events
            if e.HasField("activity_task_started_event_attributes")
            and e.activity_task_started_event_attributes.scheduled_event_id in scheduled]


async def test_sigkill_mid_provisioning_then_restart_gives_one_tenant_one_admin_one_email(
        stack, client, worker_env, db, outbox: Path, tmp_path: Path) -> None:
    request = tenant_request()
    worker_a = start_worker(worker_env, tmp_path / "worker-a.log")
    worker_b = None
    try:
        await worker_a.wait_until("/readyz", 200)
        async with users_insert_blocked(stack.database_url):
            handle = await client.start_workflow(
                "tenantCreationWorkflow", request, id=f"tenant-creation-{uuid.uuid4()}",
                task_queue=worker_env["TEMPORAL_TASK_QUEUE"], result_type=TenantCreationResult)
            await wait_for_worker_blocked_on_lock(db)
            worker_a.signal(signal.SIGKILL)
            assert await worker_a.wait_exit() == -signal.SIGKILL
        worker_b = start_worker(worker_env, tmp_path / "worker-b.log")
        result = await handle.result()
    finally:
        worker_a.stop()
        if worker_b is not None:
            worker_b.stop()

    assert result.success and result.email_sent
    email = request["adminUser"]["email"].lower()
    tenants = await (await db.execute("SELECT tenant FROM tenants WHERE client_name = %s",
                                      (request["tenantName"],))).fetchall()
    assert [str(t["tenant"]) for t in tenants] == [result.tenant_id]
    users = await (await db.execute("SELECT tenant, hashed_password FROM users WHERE email = %s",
                                    (email,))).fetchall()
    assert len(users) == 1 and str(users[0]["tenant"]) == result.tenant_id
    messages = [m for m in outbox_messages(outbox) if m["To"] == email]
    assert len(messages) == 1
    assert PasswordHasher(pepper=TEST_PEPPER).verify(password_from_welcome(messages[0]), users[0]["hashed_password"])
    # The killed attempt was retried (heartbeat timeout), not lost.
    assert provision_attempts(await handle.fetch_history()) == [2]


async def test_sigterm_drops_readiness_at_once_and_drains_the_step_in_flight(
        stack, client, worker_env, db, tmp_path: Path) -> None:
    worker = start_worker(worker_env, tmp_path / "worker.log")
    finisher = None
    try:
        await worker.wait_until("/readyz", 200)
        async with users_insert_blocked(stack.database_url):
            handle = await client.start_workflow(
                "tenantCreationWorkflow", tenant_request(), id=f"tenant-creation-{uuid.uuid4()}",
                task_queue=worker_env["TEMPORAL_TASK_QUEUE"], result_type=TenantCreationResult)
            await wait_for_worker_blocked_on_lock(db)
            worker.signal(signal.SIGTERM)
            # Readiness is gone while the step is still blocked on our lock: before the drain ends.
            await worker.wait_until("/readyz", 503)
            code, body = worker.probe("/readyz")
            assert code == 503 and body["draining"] is True and body["checks"]["not_draining"] is False
            assert worker.proc.poll() is None, "the worker must still be draining"
            assert worker.probe("/healthz")[0] == 200, "draining is not dead"
        assert await worker.wait_exit() == 0
        # The drained step completed on the stopped worker; another worker finishes the workflow.
        finisher = start_worker(worker_env, tmp_path / "finisher.log")
        result = await handle.result()
    finally:
        worker.stop()
        if finisher is not None:
            finisher.stop()
    assert result.success
    assert provision_attempts(await handle.fetch_history()) == [1]
    assert "worker drained" in worker.output()


def test_missing_required_variable_exits_2_naming_it(worker_env) -> None:
    env = {k: v for k, v in worker_env.items() if k != "ALGA_AUTH_KEY"}
    done = run_cli(env, "run")
    assert done.returncode == 2
    assert "ALGA_AUTH_KEY" in done.stderr
    assert "required" in done.stderr


def test_malformed_variable_exits_2_and_never_prints_secret_values(worker_env) -> None:
    sentinel_pepper = "SENTINEL-pepper-" + uuid.uuid4().hex
    sentinel_db_password = "SENTINEL-dbpass-" + uuid.uuid4().hex
    env = {k: v for k, v in worker_env.items() if k != "DATABASE_URL"}
    env.update(ALGA_AUTH_KEY=sentinel_pepper, DB_HOST="db.internal", DB_PORT="not-a-port",
               DB_PASSWORD_ADMIN=sentinel_db_password)
    done = run_cli(env, "run")
    assert done.returncode == 2
    assert "DB_PORT" in done.stderr
    for sentinel in (sentinel_pepper, sentinel_db_password):
        assert sentinel not in done.stdout + done.stderr


def test_check_names_what_failed_by_exit_code(worker_env, tmp_path: Path) -> None:
    assert run_cli(worker_env, "check").returncode == 0
    no_db = dict(worker_env, DATABASE_URL=f"postgresql://postgres@/postgres?host={tmp_path}/nowhere")
    assert run_cli(no_db, "check").returncode == 3
    no_temporal = dict(worker_env, TEMPORAL_ADDRESS="127.0.0.1:1")
    assert run_cli(no_temporal, "check").returncode == 4


async def test_sentinel_secrets_and_the_temporary_password_never_reach_the_output(
        client, worker_env, outbox: Path, tmp_path: Path) -> None:
    sentinels = {
        "ALGA_AUTH_KEY": "SENTINEL-pepper-" + uuid.uuid4().hex,
        "INTERNAL_API_SHARED_SECRET": "SENTINEL-internal-" + uuid.uuid4().hex,
        "RESEND_API_KEY": "re_SENTINEL" + uuid.uuid4().hex,
        "SMTP_PASSWORD": 'SENTINEL"quote\\' + uuid.uuid4().hex,
    }
    # Half of them arrive as Vault-agent files, as in production.
    secrets_dir = Path(worker_env["SECRETS_DIR"])
    (secrets_dir / "internal-api").write_text(
        f'export INTERNAL_API_SHARED_SECRET="{sentinels["INTERNAL_API_SHARED_SECRET"]}"\n')
    (secrets_dir / "resend").write_text(f"export RESEND_API_KEY='{sentinels['RESEND_API_KEY']}'\n")
    env = dict(worker_env, LOG_LEVEL="debug", ALGA_AUTH_KEY=sentinels["ALGA_AUTH_KEY"],
               SMTP_PASSWORD=sentinels["SMTP_PASSWORD"])
    worker = start_worker(env, tmp_path / "worker.log")
    try:
        await worker.wait_until("/readyz", 200)
        request = tenant_request()
        result = await client.execute_workflow(
            "tenantCreationWorkflow", request, id=f"tenant-creation-{uuid.uuid4()}",
            task_queue=worker_env["TEMPORAL_TASK_QUEUE"], result_type=TenantCreationResult)
        assert result.success
        worker.signal(signal.SIGTERM)
        assert await worker.wait_exit() == 0
    finally:
        worker.stop()
    output = worker.output()
    assert "tenant provisioned" in output and "welcome email sent" in output
    for value in sentinels.values():
        assert value not in output
    password = password_from_welcome(outbox_messages(outbox)[0])
    assert password not in output
    # Every line the worker printed is a JSON log record (the dev server is not in this process).
    import json

    records = [json.loads(line) for line in output.splitlines() if line.strip()]
    assert records and all({"timestamp", "level", "logger", "message"} <= r.keys() for r in records)
    assert any(r.get("workflow_id") for r in records if r["message"] == "tenant provisioned")


async def test_a_worker_whose_run_dies_exits_1_instead_of_idling(worker_env, tmp_path: Path) -> None:
    """A fatal worker error (here: a namespace that does not exist) must end the process, so
    Kubernetes restarts it, instead of a live process that polls nothing (alga-psa#3408)."""
    worker = start_worker(dict(worker_env, TEMPORAL_NAMESPACE=f"missing-{uuid.uuid4().hex[:6]}"),
                          tmp_path / "worker.log")
    try:
        assert await worker.wait_exit() == 1
    finally:
        worker.stop()
    assert "worker run task ended unexpectedly" in worker.output()


async def test_unreachable_temporal_at_start_up_waits_not_ready_and_sigterm_exits_0(
        worker_env, tmp_path: Path) -> None:
    """No exit 4 (a crash loop that outlives the outage): the process waits, live and not ready."""
    worker = start_worker(dict(worker_env, TEMPORAL_ADDRESS="127.0.0.1:1"), tmp_path / "worker.log")
    try:
        await worker.wait_until("/readyz", 503)
        await worker.wait_until("/healthz", 200)
        code, body = worker.probe("/readyz")
        assert code == 503 and body["checks"]["worker_polling"] is False
        assert body["detail"].startswith("waiting for Temporal at 127.0.0.1:1")
        worker.signal(signal.SIGTERM)
        assert await worker.wait_exit(timeout=10) == 0
    finally:
        worker.stop()
    assert "waiting for a dependency" in worker.output()


async def test_unreachable_database_at_start_up_waits_not_ready_without_leaking_the_dsn(
        worker_env, tmp_path: Path) -> None:
    """The probe server is up before anything connects and says 503 until the worker polls; here it
    never does (no database), and the process waits instead of exiting 3. Neither the probe body nor
    the logs carry the password or the connection string."""
    sentinel = "SENTINEL-dbpass-" + uuid.uuid4().hex
    database_url = f"postgresql://postgres:{sentinel}@/postgres?host={tmp_path}/nowhere"
    worker = start_worker(dict(worker_env, DATABASE_URL=database_url), tmp_path / "worker.log")
    try:
        for _ in range(300):  # until the first failed attempt is reported (bounded)
            code, body = worker.probe("/readyz")
            if "(attempt 1," in body.get("detail", ""):
                break
            assert worker.proc.poll() is None, worker.output()
            await asyncio.sleep(0.1)
        assert code == 503 and body["checks"]["worker_polling"] is False
        assert body["detail"].startswith(f"waiting for the database at {tmp_path}/nowhere:5432/postgres: ")
        assert worker.probe("/healthz")[0] == 200
        worker.signal(signal.SIGTERM)
        assert await worker.wait_exit(timeout=10) == 0
    finally:
        worker.stop()
    for text in (str(body), worker.output()):
        assert sentinel not in text
        assert database_url not in text
    assert "waiting for a dependency" in worker.output()

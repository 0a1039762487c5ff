"""The operator CLI against a real server: create, status, list, cancel, health-check, db migrate."""

from __future__ import annotations

import json
import re
import uuid

from tests.support.data import unique_email
from tests.support.processes import cli
from tests.support.workers import Gate, running_worker


async def test_tenant_create_status_and_list(client, settings, worker_env) -> None:
    email = unique_email("cli")
    async with running_worker(client, settings):
        code, out, err = await cli(worker_env, "tenant", "create", "--name", "CLI MSP", "--admin-email", email,
                                   "--admin-first-name", "Cli", "--admin-last-name", "User", "--license-count", "3")
        assert code == 0, err
        workflow_id = re.search(r"started (\S+)", out)
        assert workflow_id, out
        assert "Tenant created" in out and email in out and "role_permissions 313" in out

        code, out, err = await cli(worker_env, "tenant", "status", workflow_id.group(1))
        assert code == 0, err
        status = json.loads(out)
        assert status["status"] == "COMPLETED"
        assert status["state"]["step"] == "completed" and status["state"]["progress"] == 100

        code, out, err = await cli(worker_env, "tenant", "list", "--limit", "100")
        assert code == 0, err
        assert workflow_id.group(1) in out


async def test_tenant_create_reports_a_typed_failure(client, settings, worker_env) -> None:
    email = unique_email("cli-dup")
    args = ("tenant", "create", "--name", "Dup MSP", "--admin-email", email, "--admin-first-name", "A",
            "--admin-last-name", "B")
    async with running_worker(client, settings):
        assert (await cli(worker_env, *args))[0] == 0
        code, _, err = await cli(worker_env, *args)
    assert code == 1
    assert "DuplicateError" in err


async def test_invalid_input_is_refused_before_starting(worker_env) -> None:
    code, _, err = await cli(worker_env, "tenant", "create", "--name", "X", "--admin-email", "not-an-email",
                             "--admin-first-name", "A", "--admin-last-name", "B")
    assert code == 2
    assert "email" in err and "not a valid email address" in err


async def test_tenant_cancel_signals_the_workflow(client, settings, worker_env) -> None:
    gate = Gate()
    async with running_worker(client, settings, gates={"provision_tenant": gate}):
        handle = await client.start_workflow(
            "tenantCreationWorkflow",
            {"tenantName": "Cancel MSP", "adminUser": {"firstName": "C", "lastName": "D", "email": unique_email()}},
            id=f"tenant-creation-{uuid.uuid4()}", task_queue=settings.task_queue)
        await gate.entered.wait()
        code, out, err = await cli(worker_env, "tenant", "cancel", handle.id, "--reason", "wrong plan", "--by", "ops")
        assert code == 0, err
        assert f"cancel sent to {handle.id}" in out
        state = await handle.query("getState")
        gate.release.set()
        assert state["cancelRequested"] is True
    code, _, _ = await cli(worker_env, "tenant", "cancel", f"no-such-{uuid.uuid4()}")
    assert code == 6


async def test_health_check_runs_through_temporal(client, settings, worker_env) -> None:
    async with running_worker(client, settings):
        code, out, err = await cli(worker_env, "health-check", "--expect-build-id", "test-build")
        assert code == 0, err
        assert json.loads(out)["buildId"] == "test-build"
        code, _, err = await cli(worker_env, "health-check", "--expect-build-id", "other-build")
        assert code == 1 and "expected other-build" in err


async def test_db_migrate_is_idempotent(worker_env) -> None:
    code, out, err = await cli(worker_env, "db", "migrate")
    assert code == 0, err
    assert "schema up to date" in out


async def test_demo_provisions_a_tenant_on_its_own_embedded_stack(tmp_path) -> None:
    """The README's first command (`make demo` runs exactly this), on a fresh state folder."""
    code, out, err = await cli({}, "demo", "--state-dir", str(tmp_path / "demo-stack"))
    assert code == 0, err
    assert "Tenant created" in out
    assert "465 rows written for tenant" in out
    outbox_file = re.search(r"welcome email: (\S+\.eml)", out)
    assert outbox_file and (tmp_path / "demo-stack" / "outbox").exists()

"""Tenant suspension (issue 13) on real PostgreSQL and a real Temporal dev server.

What is proven here:

- ``suspendTenantWorkflow`` through the real worker stamps Alga's flag (``tenants.suspended_at``,
  ``suspended_reason = 'tenant_cancelled'``) and writes one ``tenant.suspended`` audit row in the audit
  tenant with who and why; a second suspension succeeds with ``changed`` false and writes nothing
  (the flag keeps its first time, no new audit row); ``resumeTenantWorkflow`` clears both columns with a
  ``tenant.resumed`` row; resuming an active tenant changes nothing; every run carries ``TenantId``;
- an unknown tenant is ``TenantNotFoundError``, the management and the master billing tenant are
  ``ValidationError``, each non-retryable in one attempt with zero rows changed;
- malformed starts (wrong types, unknown or snake_case fields, a missing or non-UUID tenant id, an empty
  reason, a reason code Alga does not allow) end with ``ValidationError`` before any activity runs;
- each activity executed twice by one run gives one outcome (the retry recognises its own audit row);
  eight concurrent suspensions change the tenant once; a suspension with another reason code survives
  a resume (Alga's rule);
- a database of an Alga version without the suspension columns still satisfies the schema contract
  (the worker starts; ``alga-worker check`` warns and exits 0), and the activities refuse with
  ``SchemaMismatchError`` naming the columns;
- ``alga-worker tenant suspend|resume`` end to end, with exit codes 0, 1 and 2.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment
from tests.support.databases import scratch_database
from tests.support.processes import cells, cli
from tests.support.users import activity_attempts, failure_of
from tests.support.visibility import workflow_ids_matching
from tests.support.workers import Activities, activities_for, activity_name, running_worker

from alga_worker import errors
from alga_worker.config import Settings, load_settings
from alga_worker.db.schema_contract import verify_schema
from alga_worker.models import TenantSuspensionChange, TenantSuspensionResult
from alga_worker.runtime.worker import build_resources

MGMT = uuid.UUID("00000000-0000-4000-8000-000000000001")  # 0002_management_tenant.sql



# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture
def suspension_env(worker_env: dict[str, str]) -> dict[str, str]:
    return dict(worker_env, MANAGEMENT_TENANT_ID=str(MGMT), COLUMNS="200")


@pytest.fixture
def suspension_settings(suspension_env: dict[str, str]) -> Settings:
    return load_settings(suspension_env)


@pytest.fixture
async def acts(suspension_settings: Settings) -> AsyncIterator[Activities]:
    async with activities_for(suspension_settings) as found:
        yield found


async def new_tenant(db: Any) -> uuid.UUID:
    tenant = uuid.uuid4()
    await db.execute("INSERT INTO tenants (tenant, client_name, email, created_at) VALUES (%s, %s, %s, now())",
                     (tenant, f"Suspended MSP {tenant.hex[:8]}", f"suspension-{tenant.hex[:8]}@example.com"))
    return tenant


async def tenant_row(db: Any, tenant: uuid.UUID) -> dict[str, Any]:
    cur = await db.execute("SELECT * FROM tenants WHERE tenant = %s", (tenant,))
    row = await cur.fetchone()
    assert row is not None
    return dict(row)


async def audit_of(db: Any, tenant: uuid.UUID) -> list[dict[str, Any]]:
    """Every audit row about this tenant, in any audit tenant, oldest first."""
    cur = await db.execute("SELECT * FROM extension_audit_logs WHERE details->>'targetTenantId' = %s"
                           " ORDER BY created_at, event_type", (str(tenant),))
    return [dict(r) for r in await cur.fetchall()]


async def start(client: Client, settings: Settings, workflow: str, request: Any) -> WorkflowHandle[Any, Any]:
    return await client.start_workflow(
        workflow, request, id=f"suspension-test-{uuid.uuid4()}", task_queue=settings.task_queue,
        result_type=TenantSuspensionResult, execution_timeout=timedelta(minutes=2),
    )


async def run(client: Client, settings: Settings, workflow: str, request: Any
              ) -> tuple[TenantSuspensionResult, WorkflowHandle[Any, Any]]:
    handle = await start(client, settings, workflow, request)
    return await handle.result(), handle


SUSPEND, RESUME = "suspendTenantWorkflow", "resumeTenantWorkflow"


# ---------------------------------------------------------------- the workflows


async def test_suspend_twice_then_resume_twice(client, suspension_settings, db) -> None:
    tenant = await new_tenant(db)
    untouched = await new_tenant(db)
    before_untouched = await tenant_row(db, untouched)
    resumer = str(uuid.uuid4())  # an Alga user id: recorded as the audit row's user_id
    async with running_worker(client, suspension_settings):
        suspended, first = await run(client, suspension_settings, SUSPEND, {
            "tenantId": str(tenant), "reason": "  chargeback on the last invoice  ", "triggeredBy": "ops-alice",
            "triggeredByEmail": "Alice@NineMinds.example"})
        row = await tenant_row(db, tenant)
        assert row["suspended_at"] is not None and row["suspended_reason"] == "tenant_cancelled"
        assert suspended == TenantSuspensionResult(
            tenant_id=tenant, suspended=True, changed=True, suspended_at=row["suspended_at"],
            reason_code="tenant_cancelled", reason="chargeback on the last invoice", triggered_by="ops-alice",
            audit_log_id=suspended.audit_log_id)
        [record] = await audit_of(db, tenant)
        assert str(record["log_id"]) == suspended.audit_log_id
        assert (record["tenant"], record["event_type"], record["resource_type"], record["resource_id"],
                record["workflow_id"], record["status"], record["user_id"], record["user_email"]) == (
            MGMT, "tenant.suspended", "tenant", str(tenant), first.id, "completed", None, "alice@nineminds.example")
        assert record["details"] == {"targetTenantId": str(tenant), "reasonCode": "tenant_cancelled",
                                     "reason": "chargeback on the last invoice", "triggeredBy": "ops-alice",
                                     "suspendedAt": row["suspended_at"].isoformat()}

        # Again: a success that changes nothing (the first suspension's time stays), nothing recorded.
        again, second = await run(client, suspension_settings, SUSPEND,
                                  {"tenantId": str(tenant), "reason": "second try", "triggeredBy": "ops-bob"})
        assert (again.changed, again.suspended, again.suspended_at, again.reason_code, again.audit_log_id) == (
            False, True, row["suspended_at"], "tenant_cancelled", None)
        assert await tenant_row(db, tenant) == row
        assert len(await audit_of(db, tenant)) == 1

        resumed, third = await run(client, suspension_settings, RESUME, {
            "tenantId": str(tenant), "reason": "paid in full", "triggeredBy": resumer})
        assert (resumed.changed, resumed.suspended, resumed.suspended_at, resumed.reason_code) == (
            True, False, None, None)
        row_after = await tenant_row(db, tenant)
        assert row_after["suspended_at"] is None and row_after["suspended_reason"] is None
        assert row_after == dict(row, suspended_at=None, suspended_reason=None)  # nothing else touched
        records = await audit_of(db, tenant)
        assert [r["event_type"] for r in records] == ["tenant.suspended", "tenant.resumed"]
        assert str(records[1]["log_id"]) == resumed.audit_log_id and records[1]["workflow_id"] == third.id
        assert str(records[1]["user_id"]) == resumer and records[1]["user_email"] is None
        assert records[1]["details"] == {"targetTenantId": str(tenant), "reasonCode": "tenant_cancelled",
                                         "reason": "paid in full", "suspendedAt": row["suspended_at"].isoformat()}

        # Resuming an active tenant: nothing to do, nothing written (no reason needed).
        idle, fourth = await run(client, suspension_settings, RESUME, {"tenantId": str(tenant)})
        assert (idle.changed, idle.suspended, idle.audit_log_id, idle.reason) == (False, False, None, None)
        assert await tenant_row(db, tenant) == row_after
        assert len(await audit_of(db, tenant)) == 2

    assert await tenant_row(db, untouched) == before_untouched
    runs = {first.id, second.id, third.id, fourth.id}
    assert await workflow_ids_matching(client, f'TenantId = "{tenant}"', runs) == runs


async def test_an_unknown_tenant_fails_in_one_attempt(client, suspension_settings, db) -> None:
    unknown = uuid.uuid4()
    async with running_worker(client, suspension_settings):
        for workflow in (SUSPEND, RESUME):
            handle = await start(client, suspension_settings, workflow, {"tenantId": str(unknown), "reason": "x"})
            refused = await failure_of(handle)
            assert refused.type == errors.TENANT_NOT_FOUND and refused.non_retryable
            assert "does not exist" in str(refused)
            assert await activity_attempts(handle) == [1]
    assert await audit_of(db, unknown) == []
    cur = await db.execute("SELECT count(*) AS n FROM tenants WHERE tenant = %s", (unknown,))
    assert (await cur.fetchone())["n"] == 0


async def test_the_management_and_master_billing_tenants_are_refused(client, suspension_env, db) -> None:
    billing = await new_tenant(db)
    settings = load_settings(dict(suspension_env, MASTER_BILLING_TENANT_ID=str(billing)))
    before = {t: await tenant_row(db, t) for t in (MGMT, billing)}
    audit_count = (await (await db.execute("SELECT count(*) AS n FROM extension_audit_logs")).fetchone())["n"]
    async with running_worker(client, settings):
        for protected in (MGMT, billing):
            for workflow in (SUSPEND, RESUME):
                handle = await start(client, settings, workflow, {"tenantId": str(protected), "reason": "no"})
                refused = await failure_of(handle)
                assert refused.type == errors.VALIDATION_ERROR and refused.non_retryable, (protected, workflow)
                assert "management tenant" in str(refused)
                assert await activity_attempts(handle) == [1]
    assert {t: await tenant_row(db, t) for t in (MGMT, billing)} == before
    assert (await (await db.execute("SELECT count(*) AS n FROM extension_audit_logs")).fetchone())["n"] \
        == audit_count


@pytest.mark.parametrize(("workflow", "request_body"), [
    (SUSPEND, {"tenantId": "TENANT", "reason": 5}),
    (SUSPEND, {"tenantId": 5, "reason": "why"}),
    (SUSPEND, {"tenantId": "TENANT", "reason": "why", "extra": True}),
    (SUSPEND, {"tenantId": "TENANT", "reason": "why", "triggered_by": "snake"}),
    (SUSPEND, {"reason": "why"}),
    (SUSPEND, {"tenantId": "not-a-uuid", "reason": "why"}),
    (SUSPEND, {"tenantId": "TENANT"}),  # a suspension says why
    (SUSPEND, {"tenantId": "TENANT", "reason": "   "}),
    (SUSPEND, {"tenantId": "TENANT", "reason": "why", "reasonCode": "manual"}),  # Alga's CHECK refuses it
    (SUSPEND, {"tenantId": "TENANT", "reason": "why", "triggeredByEmail": "not an address"}),
    (SUSPEND, ["TENANT"]),
    (RESUME, {"tenantId": "TENANT", "reason": False}),
    (RESUME, {"tenantId": "TENANT", "unknown": 1}),
    (RESUME, {}),
    (RESUME, {"tenantId": "TENANT-1"}),
    (RESUME, {"tenantId": "TENANT", "triggeredBy": 7}),
])
async def test_malformed_input_is_a_validation_error(client, suspension_settings, db, workflow: str,
                                                     request_body: Any) -> None:
    tenant = await new_tenant(db)
    if workflow == RESUME:
        await db.execute("UPDATE tenants SET suspended_at = now(), suspended_reason = 'tenant_cancelled'"
                         " WHERE tenant = %s", (tenant,))

    def fill(value: Any) -> Any:
        return str(tenant) + value[6:] if isinstance(value, str) and value.startswith("TENANT") else value

    body = ({k: fill(v) for k, v in request_body.items()} if isinstance(request_body, dict)
            else [fill(v) for v in request_body])
    before = await tenant_row(db, tenant)
    async with running_worker(client, suspension_settings):
        handle = await start(client, suspension_settings, workflow, body)
        refused = await failure_of(handle)
    assert refused.type == errors.VALIDATION_ERROR and refused.non_retryable
    assert ("invalid suspend tenant input" if workflow == SUSPEND else "invalid resume tenant input") in str(refused)
    assert await activity_attempts(handle) == []  # refused before any activity ran
    assert await tenant_row(db, tenant) == before
    assert await audit_of(db, tenant) == []


# ---------------------------------------------------------------- activities executed twice


def change(tenant: uuid.UUID, log_id: uuid.UUID | None = None, **extra: Any) -> TenantSuspensionChange:
    return TenantSuspensionChange(tenant_id=tenant, reason="twice", triggered_by="ops", log_id=log_id or uuid.uuid4(),
                                  workflow_id="suspension-twice", **extra)


async def test_each_activity_executed_twice_gives_one_outcome(acts, db) -> None:
    tenant = await new_tenant(db)
    req = change(tenant)
    first: TenantSuspensionResult = await ActivityEnvironment().run(acts["suspend_tenant"], req)
    row = await tenant_row(db, tenant)
    # The same run's retry after COMMIT: its own audit row is found, the change reported as made.
    second: TenantSuspensionResult = await ActivityEnvironment().run(acts["suspend_tenant"], req)
    assert first == second and first.changed and first.suspended_at == row["suspended_at"]
    assert await tenant_row(db, tenant) == row
    assert len(await audit_of(db, tenant)) == 1
    # Another run: already suspended, nothing written.
    other: TenantSuspensionResult = await ActivityEnvironment().run(acts["suspend_tenant"], change(tenant))
    assert not other.changed and other.suspended and other.audit_log_id is None
    assert len(await audit_of(db, tenant)) == 1

    resume = change(tenant)
    undone: TenantSuspensionResult = await ActivityEnvironment().run(acts["resume_tenant"], resume)
    redone: TenantSuspensionResult = await ActivityEnvironment().run(acts["resume_tenant"], resume)
    assert undone.changed and redone.changed and not redone.suspended
    assert undone.audit_log_id == redone.audit_log_id == str(resume.log_id)
    assert [r["event_type"] for r in await audit_of(db, tenant)] == ["tenant.suspended", "tenant.resumed"]
    row = await tenant_row(db, tenant)
    assert row["suspended_at"] is None and row["suspended_reason"] is None


async def test_concurrent_suspensions_change_it_once(acts, db) -> None:
    """Eight runs at once: the row lock orders them, exactly one stamps the flag and records it."""
    tenant = await new_tenant(db)
    results: list[TenantSuspensionResult] = await asyncio.gather(*(
        ActivityEnvironment().run(acts["suspend_tenant"], change(tenant)) for _ in range(8)))
    assert sorted(r.changed for r in results) == [False] * 7 + [True]
    row = await tenant_row(db, tenant)
    assert {r.suspended_at for r in results} == {row["suspended_at"]}
    [record] = await audit_of(db, tenant)
    assert [str(record["log_id"])] == [r.audit_log_id for r in results if r.changed]


async def test_a_suspension_with_another_code_survives_a_resume(db, stack, worker_env) -> None:
    """Alga's rule: a resume clears only the suspension it names. Alga allows no second code yet, so the
    database here is one whose CHECK constraint has been dropped, holding a future code."""
    async with scratch_database(db, stack.database_url,
                                "ALTER TABLE tenants DROP CONSTRAINT tenants_suspended_reason_check") as url:
        import psycopg
        from psycopg.rows import dict_row

        tenant = uuid.uuid4()
        async with await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row) as scratch:
            await scratch.execute(
                "INSERT INTO tenants (tenant, client_name, email, created_at, suspended_at, suspended_reason)"
                " VALUES (%s, 'Manually Suspended MSP', 'manual@example.com', now(), now(), 'manual')", (tenant,))
            before = await tenant_row(scratch, tenant)
            resources = await build_resources(load_settings(dict(worker_env, DATABASE_URL=url,
                                                                 MANAGEMENT_TENANT_ID=str(MGMT))))
            try:
                acts = {activity_name(fn): fn for fn in resources.activities}
                resumed: TenantSuspensionResult = await ActivityEnvironment().run(acts["resume_tenant"],
                                                                                  change(tenant))
                suspended: TenantSuspensionResult = await ActivityEnvironment().run(acts["suspend_tenant"],
                                                                                    change(tenant))
            finally:
                await resources.aclose()
            for result in (resumed, suspended):
                assert (result.changed, result.suspended, result.reason_code, result.audit_log_id) == (
                    False, True, "manual", None)
            assert await tenant_row(scratch, tenant) == before
            assert await audit_of(scratch, tenant) == []


async def test_without_an_audit_tenant_the_change_is_made_unrecorded(worker_env, db) -> None:
    resources = await build_resources(load_settings(worker_env))  # no MANAGEMENT_TENANT_ID, no master billing
    try:
        acts = {activity_name(fn): fn for fn in resources.activities}
        tenant = await new_tenant(db)
        done: TenantSuspensionResult = await ActivityEnvironment().run(acts["suspend_tenant"], change(tenant))
    finally:
        await resources.aclose()
    assert done.changed and done.suspended and done.audit_log_id is None
    assert (await tenant_row(db, tenant))["suspended_at"] is not None
    assert await audit_of(db, tenant) == []


async def test_an_alga_version_without_the_columns_starts_but_refuses_suspension(db, stack, worker_env) -> None:
    async with scratch_database(db, stack.database_url,
                                "ALTER TABLE tenants DROP COLUMN suspended_at, DROP COLUMN suspended_reason") as url:
        import psycopg

        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            assert await verify_schema(conn) == []  # the worker starts and provisions on it
        code, out, err = await cli(dict(worker_env, DATABASE_URL=url), "check")
        assert code == 0, out + err  # a warning, not a failure
        assert "tenant suspension unavailable: the database has no tenants.suspended_at, " \
               "tenants.suspended_reason" in err
        resources = await build_resources(load_settings(dict(worker_env, DATABASE_URL=url,
                                                             MANAGEMENT_TENANT_ID=str(MGMT))))
        try:
            acts = {activity_name(fn): fn for fn in resources.activities}
            for name in ("suspend_tenant", "resume_tenant"):
                with pytest.raises(ApplicationError) as caught:
                    await ActivityEnvironment().run(acts[name], change(uuid.uuid4()))
                assert caught.value.type == errors.SCHEMA_MISMATCH and caught.value.non_retryable
                assert "tenants.suspended_at, tenants.suspended_reason" in str(caught.value)
                assert "20260724120000_add_suspension_to_tenants" in str(caught.value)
        finally:
            await resources.aclose()


# ---------------------------------------------------------------- the CLI


async def test_cli_suspend_and_resume(client, suspension_settings, suspension_env, db) -> None:
    tenant = await new_tenant(db)
    tid = str(tenant)
    async with running_worker(client, suspension_settings):
        code, out, err = await cli(suspension_env, "tenant", "suspend", tid, "--reason", "fraud review",
                                   "--by", "ops-carol", "--by-email", "carol@nineminds.example")
        assert code == 0, err
        assert f"started tenant-suspension-{tid}" in out and "Tenant suspended" in out
        shown = cells(out)
        row = await tenant_row(db, tenant)
        assert (shown["tenant id"], shown["suspended"], shown["reason code"], shown["changed"], shown["reason"],
                shown["by"]) == (tid, "yes", "tenant_cancelled", "yes", "fraud review", "ops-carol")
        assert shown["suspended at"] == row["suspended_at"].isoformat(timespec="seconds")
        [record] = await audit_of(db, tenant)
        assert shown["audit log id"] == str(record["log_id"])
        assert record["user_email"] == "carol@nineminds.example"

        code, out, err = await cli(suspension_env, "tenant", "suspend", tid, "--reason", "again")
        assert code == 0, err
        assert "Tenant already suspended (nothing changed)" in out and cells(out)["changed"] == "no"
        assert cells(out)["by"].startswith("operator:")  # without --by: the login name

        code, out, err = await cli(suspension_env, "tenant", "resume", tid, "--reason", "cleared")
        assert code == 0, err
        assert "Tenant resumed" in out and cells(out)["suspended"] == "no"
        records = await audit_of(db, tenant)
        assert [r["event_type"] for r in records] == ["tenant.suspended", "tenant.resumed"]
        assert records[1]["details"]["triggeredBy"].startswith("operator:")

        code, out, err = await cli(suspension_env, "tenant", "resume", tid)
        assert code == 0, err
        assert "Tenant was not suspended (nothing changed)" in out

        # Workflows that fail: exit 1, the typed error printed, nothing written.
        for args, error_type in (((str(uuid.uuid4()), "--reason", "x"), "TenantNotFoundError"),
                                 ((str(MGMT), "--reason", "x"), "ValidationError")):
            code, out, err = await cli(suspension_env, "tenant", "suspend", *args)
            assert code == 1, (args, out, err)
            assert error_type in err, (args, err)
    assert len(await audit_of(db, tenant)) == 2
    assert (await tenant_row(db, MGMT))["suspended_at"] is None


async def test_check_is_silent_about_suspension_on_the_dev_schema(worker_env) -> None:
    code, out, err = await cli(worker_env, "check")
    assert code == 0, out + err
    assert "tenant suspension" not in out + err


async def test_cli_refuses_bad_arguments_before_starting(suspension_env) -> None:
    tid = str(uuid.uuid4())
    for args in (("suspend", "not-a-uuid", "--reason", "x"),
                 ("suspend", tid),  # --reason is required
                 ("suspend", tid, "--reason", "   "),
                 ("suspend", tid, "--reason", "x", "--by-email", "nope"),
                 ("resume", "not-a-uuid")):
        code, out, err = await cli(suspension_env, "tenant", *args)
        assert code == 2, (args, out, err)
        assert "started" not in out

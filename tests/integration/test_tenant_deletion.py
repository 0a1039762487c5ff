"""Tenant deletion (issue 13): ``tenantDeletionWorkflow`` on real PostgreSQL, its grace period on
Temporal's time-skipping test server (the durable timers of days pass in seconds).

What is proven here:

- confirm, then the grace period passes: every row of the tenant is gone (every table with a
  ``tenant`` column), every other tenant's per-table counts are unchanged, the management tenant
  untouched; the export was written first; a ``tenant.deleted`` audit row stays;
- rollback before the deadline: exactly the users that were active are active again (the one inactive
  before stays inactive), the tenant is resumed, the record says ``rolled_back``, nothing deleted;
- no confirmation: however long it waits, nothing is deleted and ``getState`` says it waits for
  the confirmation;
- refusals (nothing written): unknown tenant (``TenantNotFoundError``), the management tenant
  (``ValidationError``), malformed payloads (``ValidationError``), a second deletion of the same tenant
  (refused by workflow id while one runs; refused by the record for a caller with another id);
- each activity executed twice gives one outcome; ``delete_tenant_data`` refuses a tenant without a
  pending deletion in status ``deleting``, and the management tenant, even when called directly.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from tests.support.chaos import poll_until
from tests.support.deletion import (
    MGMT,
    active_user_ids,
    counts_by_tenant,
    doomed_tenant,
    pending_row,
    rows_of,
    suspended,
    without,
)
from tests.support.processes import cli
from tests.support.workers import Activities, activities_for, running_worker

from alga_worker import errors
from alga_worker.config import Settings, load_settings
from alga_worker.converter import DATA_CONVERTER
from alga_worker.models import (
    DeletionStatusUpdate,
    DeletionTarget,
    DeletionTriggerSource,
    PendingDeletionRecord,
    TenantDeletionResult,
    TenantDeletionState,
    TenantDeletionStatus,
)
from alga_worker.runtime.devstack import find_binary
from alga_worker.runtime.worker import build_worker

WEEK = 7 * 24 * 3600


@pytest.fixture
def deletion_settings(worker_env: dict[str, str]) -> Settings:
    return load_settings(dict(worker_env, MANAGEMENT_TENANT_ID=str(MGMT), TENANT_DELETION_BATCH_SIZE="7"))


@pytest.fixture
async def acts(deletion_settings: Settings) -> AsyncIterator[Activities]:
    async with activities_for(deletion_settings) as found:
        yield found


@pytest.fixture
async def skipping(deletion_settings: Settings, acts: Activities) -> AsyncIterator[WorkflowEnvironment]:
    """The time-skipping test server (the installed binary) with a worker of the real activities."""
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=DATA_CONVERTER, test_server_existing_path=find_binary("temporal-test-server"))
    try:
        async with build_worker(env.client, deletion_settings, list(acts.values())):
            yield env
    finally:
        await env.shutdown()


async def start(env: WorkflowEnvironment, settings: Settings, tenant: uuid.UUID | str, **extra: Any
                ) -> WorkflowHandle[Any, TenantDeletionResult]:
    request = {"tenantId": str(tenant), "triggerSource": "manual", "triggeredBy": "ops-test",
               "reason": "customer left", **extra}
    return await env.client.start_workflow(
        "tenantDeletionWorkflow", request, id=f"tenant-deletion-{tenant}", task_queue=settings.task_queue,
        result_type=TenantDeletionResult, id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE)


async def state(handle: WorkflowHandle[Any, Any]) -> TenantDeletionState | None:
    result: TenantDeletionState | None = await handle.query("getState", result_type=TenantDeletionState)
    return result


async def until_awaiting(handle: WorkflowHandle[Any, Any]) -> TenantDeletionState:
    async def awaiting() -> bool:
        s = await state(handle)
        return s is not None and s.status is TenantDeletionStatus.AWAITING_CONFIRMATION
    await poll_until(awaiting, "the run to await its confirmation", timeout=60)
    s = await state(handle)
    assert s is not None
    return s


def others(counts: dict[tuple[str, str], int], tenant: uuid.UUID) -> dict[tuple[str, str], int]:
    """Every other tenant's per-table counts, the audit tenant's audit log aside (it records the deletion)."""
    return {k: n for k, n in without(counts, tenant).items() if k != ("extension_audit_logs", str(MGMT))}


async def failure(handle: WorkflowHandle[Any, Any]) -> ApplicationError:
    with pytest.raises(WorkflowFailureError) as caught:
        await handle.result()
    cause = caught.value.cause
    while not isinstance(cause, ApplicationError) and cause is not None:
        cause = cause.cause
    assert isinstance(cause, ApplicationError)
    return cause


# ---------------------------------------------------------------- the three endings


async def test_confirm_then_the_grace_period_then_every_row_of_the_tenant_is_deleted(
        skipping, deletion_settings, acts, db) -> None:
    tenant, _, _ = await doomed_tenant(acts, deletion_settings, db, extra_contacts=40)
    before = await counts_by_tenant(db)
    assert sum(rows_of(before, tenant).values()) > 100
    handle = await start(skipping, deletion_settings, tenant, gracePeriodSeconds=WEEK)
    waiting = await until_awaiting(handle)
    assert waiting.waiting_for == ["confirmation", "grace_period"]
    assert waiting.stats is not None and waiting.stats.tables["contacts"] >= 40
    assert waiting.export_location is not None and waiting.deactivated_user_count == 1
    assert await active_user_ids(db, tenant) == set() and await suspended(db, tenant)
    record = await pending_row(db, tenant)
    assert record is not None and record["status"] == "awaiting_confirmation"
    assert record["stats_snapshot"]["recordCount"] == waiting.stats.record_count

    await handle.signal("confirmDeletion", {"type": "immediate", "confirmedBy": "ops-test"})
    result = await handle.result()  # the test server skips the week

    assert result.success and result.status is TenantDeletionStatus.DELETED and result.deleted_at is not None
    assert result.deletion_id == waiting.deletion_id
    after = await counts_by_tenant(db)
    assert rows_of(after, tenant) == {}
    # Every other tenant, the management tenant included, as it was; the audit tenant gained only the
    # records of this deletion (the suspension and the deletion itself).
    assert others(after, tenant) == others(before, tenant)
    cur = await db.execute("SELECT event_type FROM extension_audit_logs WHERE resource_id = %s ORDER BY created_at",
                           (str(tenant),))
    assert [r["event_type"] for r in await cur.fetchall()] == ["tenant.suspended", "tenant.deleted"]
    audit_rows = after[("extension_audit_logs", str(MGMT))] - before.get(("extension_audit_logs", str(MGMT)), 0)
    assert audit_rows == 2
    final = await state(handle)
    assert final is not None and final.deleted_tables[-1] == "tenants"
    assert final.deletion_scheduled_for == final.grace_period_ends_at


async def test_rollback_before_the_deadline_restores_users_and_resumes_the_tenant(
        skipping, deletion_settings, acts, db) -> None:
    tenant, admin, inactive = await doomed_tenant(acts, deletion_settings, db)
    before = await counts_by_tenant(db)
    handle = await start(skipping, deletion_settings, tenant, gracePeriodSeconds=WEEK)
    await until_awaiting(handle)
    await handle.signal("confirmDeletion", {"type": "30_days", "confirmedBy": "ops-test"})

    async def confirmed() -> bool:
        s = await state(handle)
        return s is not None and s.status is TenantDeletionStatus.CONFIRMED
    await poll_until(confirmed, "the confirmation")
    await handle.signal("rollbackDeletion", {"reason": "paid after all", "rolledBackBy": "ops-test"})
    result = await handle.result()

    assert result.status is TenantDeletionStatus.ROLLED_BACK and result.deleted_at is None
    assert await active_user_ids(db, tenant) == {admin}  # the one inactive before stays inactive
    assert inactive not in await active_user_ids(db, tenant)
    assert not await suspended(db, tenant)
    record = await pending_row(db, tenant)
    assert record is not None and record["status"] == "rolled_back"
    assert record["rollback_reason"] == "paid after all"
    after = await counts_by_tenant(db)
    assert {t: n for t, n in rows_of(after, tenant).items() if t != "pending_tenant_deletions"} == \
        rows_of(before, tenant)

    # After a rollback the tenant may be deleted again (the workflow id is free, the old record makes way).
    again = await start(skipping, deletion_settings, tenant, gracePeriodSeconds=0)
    await until_awaiting(again)
    await again.signal("rollback", {})  # the short name is the same signal
    assert (await again.result()).status is TenantDeletionStatus.ROLLED_BACK


async def test_without_confirmation_nothing_is_deleted_and_the_state_says_it_waits(
        skipping, deletion_settings, acts, db) -> None:
    tenant, _, _ = await doomed_tenant(acts, deletion_settings, db)
    handle = await start(skipping, deletion_settings, tenant, gracePeriodSeconds=60)
    await until_awaiting(handle)
    rows = rows_of(await counts_by_tenant(db), tenant)
    await skipping.sleep(timedelta(days=400))  # far past the grace period, and past the original's 90 days

    s = await state(handle)
    assert s is not None and s.status is TenantDeletionStatus.AWAITING_CONFIRMATION
    assert s.waiting_for == ["confirmation"]  # the grace period is over; the confirmation never came
    assert rows_of(await counts_by_tenant(db), tenant) == rows
    # A malformed confirmation is not a confirmation.
    await handle.signal("confirmDeletion", {"type": "tomorrow"})
    await poll_until(lambda: _ignored(handle), "the malformed signal to be counted")
    assert rows_of(await counts_by_tenant(db), tenant) == rows
    await handle.signal("rollbackDeletion", {"reason": "cleanup", "rolledBackBy": "ops-test"})
    assert (await handle.result()).status is TenantDeletionStatus.ROLLED_BACK


async def _ignored(handle: WorkflowHandle[Any, Any]) -> bool:
    s = await state(handle)
    return s is not None and s.ignored_signals == 1


# ---------------------------------------------------------------- refusals


async def test_a_second_deletion_of_the_same_tenant_is_refused(skipping, deletion_settings, acts, db) -> None:
    tenant, _, _ = await doomed_tenant(acts, deletion_settings, db)
    handle = await start(skipping, deletion_settings, tenant)
    await until_awaiting(handle)
    with pytest.raises(WorkflowAlreadyStartedError):
        await start(skipping, deletion_settings, tenant)
    # A caller choosing another workflow id is refused by the record (nothing written).
    other = await skipping.client.start_workflow(
        "tenantDeletionWorkflow", {"tenantId": str(tenant), "triggerSource": "manual"},
        id=f"another-{uuid.uuid4()}", task_queue=deletion_settings.task_queue,
        result_type=TenantDeletionResult)
    err = await failure(other)
    assert err.type == errors.VALIDATION_ERROR and "already being deleted" in str(err)
    await handle.signal("rollbackDeletion", {})
    await handle.result()


@pytest.mark.parametrize("tenant", [str(MGMT), str(uuid.UUID(int=7))], ids=["management", "unknown"])
async def test_the_management_tenant_and_an_unknown_tenant_are_refused(
        skipping, deletion_settings, db, tenant: str) -> None:
    before = await counts_by_tenant(db)
    err = await failure(await start(skipping, deletion_settings, tenant))
    assert err.type == (errors.VALIDATION_ERROR if tenant == str(MGMT) else errors.TENANT_NOT_FOUND)
    assert err.non_retryable
    assert await counts_by_tenant(db) == before


@pytest.mark.parametrize("payload", [
    {"tenantId": "not-a-uuid", "triggerSource": "manual"},
    {"tenantId": str(uuid.uuid4())},
    {"tenantId": str(uuid.uuid4()), "triggerSource": "cron"},
    {"tenantId": str(uuid.uuid4()), "triggerSource": "manual", "tenant_id": "x"},
    {"tenantId": str(uuid.uuid4()), "triggerSource": "manual", "gracePeriodSeconds": "60"},
    {"tenantId": str(uuid.uuid4()), "triggerSource": "manual", "gracePeriodSeconds": -1},
    ["not", "an", "object"],
], ids=["bad-uuid", "no-trigger", "unknown-trigger", "snake-case", "string-grace", "negative-grace", "list"])
async def test_malformed_payloads_are_a_validation_error(skipping, deletion_settings, payload: Any) -> None:
    handle = await skipping.client.start_workflow(
        "tenantDeletionWorkflow", payload, id=f"bad-{uuid.uuid4()}", task_queue=deletion_settings.task_queue)
    err = await failure(handle)
    assert err.type == errors.VALIDATION_ERROR and err.non_retryable


# ---------------------------------------------------------------- activities, directly


async def test_each_activity_executed_twice_gives_one_outcome(deletion_settings, acts, db) -> None:
    env = ActivityEnvironment()
    tenant, admin, _ = await doomed_tenant(acts, deletion_settings, db, extra_contacts=20)
    before = await counts_by_tenant(db)
    target = DeletionTarget(tenant_id=tenant, deletion_id=uuid.uuid4(), workflow_id="test-twice")
    record = PendingDeletionRecord(deletion_id=target.deletion_id, tenant_id=tenant,
                                   trigger_source=DeletionTriggerSource.MANUAL, workflow_id="test-twice",
                                   workflow_run_id="run", scheduled_deletion_date=datetime(2030, 1, 1, tzinfo=UTC))
    for _ in range(2):
        await env.run(acts["record_pending_deletion"], record)
    first = await env.run(acts["deactivate_tenant_users"], target)
    second = await env.run(acts["deactivate_tenant_users"], target)
    assert first.user_ids == second.user_ids == [admin]
    # delete_tenant_data refuses until the record says "deleting".
    with pytest.raises(ApplicationError) as refused:
        await env.run(acts["delete_tenant_data"], target)
    assert refused.value.type == errors.VALIDATION_ERROR and rows_of(await counts_by_tenant(db), tenant)
    await env.run(acts["update_deletion_status"],
                  DeletionStatusUpdate(deletion_id=target.deletion_id, status=TenantDeletionStatus.DELETING))
    one = await env.run(acts["delete_tenant_data"], target)
    two = await env.run(acts["delete_tenant_data"], target)
    assert one == two and one.tables[-2:] == ["pending_tenant_deletions", "tenants"]
    after = await counts_by_tenant(db)
    assert rows_of(after, tenant) == {}
    assert others(after, tenant) == others(before, tenant)


async def test_delete_tenant_data_refuses_the_management_tenant_even_when_called_directly(acts, db) -> None:
    before = await counts_by_tenant(db)
    with pytest.raises(ApplicationError) as refused:
        await ActivityEnvironment().run(acts["delete_tenant_data"],
                                        DeletionTarget(tenant_id=MGMT, deletion_id=uuid.uuid4()))
    assert refused.value.type == errors.VALIDATION_ERROR and refused.value.non_retryable
    assert await counts_by_tenant(db) == before


# ---------------------------------------------------------------- the CLI, end to end (real dev server)


async def test_cli_delete_confirm_and_rollback(client, worker_env, deletion_settings, acts, db) -> None:
    env = dict(worker_env, MANAGEMENT_TENANT_ID=str(MGMT))
    doomed, _, _ = await doomed_tenant(acts, deletion_settings, db)
    kept, admin, _ = await doomed_tenant(acts, deletion_settings, db)
    before = await counts_by_tenant(db)
    async with running_worker(client, deletion_settings):
        code, out, err = await cli(env, "tenant", "delete", str(doomed), "--reason", "left us", "--grace", "0s",
                                   "--by", "ops-cli")
        assert code == 0, err
        assert f"tenant-deletion-{doomed}" in out and "awaiting confirmation (nothing deleted)" in out
        assert "confirmation" in out and rows_of(await counts_by_tenant(db), doomed)

        code, out, err = await cli(env, "tenant", "delete", str(doomed), "--reason", "again")
        assert code == 1 and "already running" in err

        code, out, err = await cli(env, "tenant", "confirm-deletion", str(doomed), "--by", "ops-cli")
        assert code == 0, err
        assert "Tenant deleted" in out and "deleted" in out
        assert rows_of(await counts_by_tenant(db), doomed) == {}

        code, out, err = await cli(env, "tenant", "delete", str(kept), "--reason", "left us", "--grace", "30d")
        assert code == 0, err
        assert "grace_period" in out
        code, out, err = await cli(env, "tenant", "rollback-deletion", str(kept), "--reason", "came back")
        assert code == 0, err
        assert "rolled back" in out and "came back" in out
        assert await active_user_ids(db, kept) == {admin} and not await suspended(db, kept)

        code, _, err = await cli(env, "tenant", "rollback-deletion", str(kept))
        assert code == 1 and "has ended" in err
    after = await counts_by_tenant(db)
    assert {k: n for k, n in others(after, doomed).items() if k[1] != str(kept)} == \
        {k: n for k, n in others(before, doomed).items() if k[1] != str(kept)}


@pytest.mark.parametrize("args", [["not-a-uuid", "--reason", "x"], [str(uuid.uuid4()), "--reason", "x", "--grace",
                                                                     "soon"], [str(uuid.uuid4()), "--reason", ""]],
                         ids=["bad-uuid", "bad-grace", "empty-reason"])
async def test_cli_refuses_bad_input_before_starting(worker_env, args: list[str]) -> None:
    code, _, err = await cli(worker_env, "tenant", "delete", *args)
    assert code == 2, err

"""A run writes into, and a cancel removes from, only a tenant that this run created.

Ownership is proven by the default client whose id the run minted, checked in the transaction that
writes or deletes; an adopted ``tenantId`` of a tenant that exists and is not this run's (another
customer's, or the management tenant) fails typed in one attempt, and that tenant's rows are identical
before and after, with or without a cancel.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError
from temporalio.testing import ActivityEnvironment
from tests.support.data import all_row_counts, tenant_request, tenant_row_counts
from tests.support.workers import Gate, activity_name, outbox_messages, running_worker

from alga_worker.models import RemoveTenantInput, TenantCreationResult
from alga_worker.runtime.worker import build_resources

MANAGEMENT_TENANT = "00000000-0000-4000-8000-000000000001"


async def _existing_tenant(client: Client, settings) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """A real customer tenant provisioned by the worker: (tenant id, tenant name)."""
    request = tenant_request()
    result = await client.execute_workflow(
        "tenantCreationWorkflow", request, id=f"owner-{uuid.uuid4()}", task_queue=settings.task_queue,
        result_type=TenantCreationResult)
    return result.tenant_id, request["tenantName"]


async def _target(kind: str, client: Client, settings, db) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    if kind == "management tenant":
        row = await (await db.execute("SELECT client_name FROM tenants WHERE tenant = %s",
                                      (MANAGEMENT_TENANT,))).fetchone()
        return MANAGEMENT_TENANT, row["client_name"]
    tenant_id, name = await _existing_tenant(client, settings)
    return tenant_id, name if kind == "same name" else f"Other name {uuid.uuid4().hex[:6]}"


def _provision_attempts(history: Any) -> list[int]:
    return [e.activity_task_started_event_attributes.attempt for e in history.events
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED]


async def _assert_conflict(handle: WorkflowHandle[Any, Any]) -> None:
    with pytest.raises(WorkflowFailureError) as caught:
        await handle.result()
    cause = caught.value.cause
    assert isinstance(cause, ActivityError)
    inner = cause.cause
    assert isinstance(inner, ApplicationError) and inner.type == "TenantConflictError" and inner.non_retryable
    assert _provision_attempts(await handle.fetch_history()) == [1]


KINDS = ["same name", "other name", "management tenant"]


@pytest.mark.parametrize("kind", KINDS)
async def test_adopting_an_existing_tenant_fails_typed_and_writes_nothing(client: Client, settings, db, outbox,
                                                                          kind: str) -> None:
    async with running_worker(client, settings):
        tenant_id, name = await _target(kind, client, settings, db)
        before, all_before = await tenant_row_counts(db, tenant_id), await all_row_counts(db)
        sent_before = len(outbox_messages(outbox))
        handle = await client.start_workflow(
            "tenantCreationWorkflow", tenant_request(tenantId=tenant_id, tenantName=name),
            id=f"adopt-{uuid.uuid4()}", task_queue=settings.task_queue)
        await _assert_conflict(handle)
        state = await handle.query("getState")
    assert await tenant_row_counts(db, tenant_id) == before
    assert await all_row_counts(db) == all_before
    assert len(outbox_messages(outbox)) == sent_before
    assert state["step"] == "failed" and "TenantConflictError" in state["error"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("how", ["signal", "temporal cancel request"])
async def test_a_cancelled_adoption_removes_nothing(client: Client, settings, db, kind: str, how: str) -> None:
    gate = Gate()
    async with running_worker(client, settings, gates={"provision_tenant": gate}):
        gate.release.set()  # the owner's own provisioning passes straight through
        tenant_id, name = await _target(kind, client, settings, db)
        gate.release.clear()
        gate.entered.clear()
        before, all_before = await tenant_row_counts(db, tenant_id), await all_row_counts(db)
        handle = await client.start_workflow(
            "tenantCreationWorkflow", tenant_request(tenantId=tenant_id, tenantName=name),
            id=f"adopt-cancel-{uuid.uuid4()}", task_queue=settings.task_queue)
        await gate.entered.wait()
        if how == "signal":
            await handle.signal("cancel", {"reason": "changed my mind", "cancelledBy": "pytest"})
        else:
            await handle.cancel()
        gate.release.set()
        with pytest.raises(WorkflowFailureError) as caught:
            await handle.result()
        desc = await handle.describe()
    if how == "signal":
        # The conflict settles the provisioning step first: the run fails typed; nothing to compensate.
        assert desc.status == WorkflowExecutionStatus.FAILED
        assert isinstance(caught.value.cause, ActivityError)
    else:
        # The cancel request compensates, and the compensation proves it owns nothing.
        assert desc.status == WorkflowExecutionStatus.CANCELED
        assert isinstance(caught.value.cause, CancelledError)
    assert await tenant_row_counts(db, tenant_id) == before
    assert await all_row_counts(db) == all_before


async def test_remove_tenant_without_the_ownership_proof_removes_nothing(client: Client, settings, db) -> None:
    async with running_worker(client, settings):
        tenant_id, _ = await _existing_tenant(client, settings)
    resources = await build_resources(settings)
    try:
        remove = {activity_name(fn): fn for fn in resources.activities}["remove_tenant"]
        env = ActivityEnvironment()
        for target in (tenant_id, MANAGEMENT_TENANT):
            before = await tenant_row_counts(db, target)
            out = await env.run(remove, RemoveTenantInput(tenant_id=uuid.UUID(target), client_id=uuid.uuid4()))
            assert out.not_owned is True and out.rows_deleted == {}
            assert await tenant_row_counts(db, target) == before
        # A tenant that does not exist: nothing to do, nothing refused.
        gone = await env.run(remove, RemoveTenantInput(tenant_id=uuid.uuid4(), client_id=uuid.uuid4()))
        assert gone.not_owned is False and gone.rows_deleted == {}
    finally:
        await resources.aclose()


async def test_two_runs_adopting_one_new_tenant_id_one_wins(client: Client, settings, db) -> None:
    """Concurrent runs given the same fresh ``tenantId``: the tenant row's unique key serialises them;
    the second sees a tenant it cannot prove is its own and fails typed, writing nothing."""
    tenant_id = str(uuid.uuid4())
    async with running_worker(client, settings):
        handles = [
            await client.start_workflow(
                "tenantCreationWorkflow", tenant_request(tenantId=tenant_id), id=f"race-{i}-{uuid.uuid4()}",
                task_queue=settings.task_queue)
            for i in range(2)
        ]
        outcomes: list[Any] = []
        for handle in handles:
            try:
                outcomes.append(await handle.result())
            except WorkflowFailureError as err:
                outcomes.append(err.cause)
    winners = [o for o in outcomes if isinstance(o, dict)]
    losers = [o for o in outcomes if isinstance(o, ActivityError)]
    assert len(winners) == 1 and len(losers) == 1
    assert isinstance(losers[0].cause, ApplicationError) and losers[0].cause.type == "TenantConflictError"
    counts = await tenant_row_counts(db, tenant_id)
    assert counts["tenants"] == 1 and counts["users"] == 1 and counts["clients"] == 1
    assert counts["role_permissions"] == 313

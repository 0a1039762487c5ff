"""Every activity run twice leaves one outcome; a cancel at any step leaves no row of the tenant."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.testing import ActivityEnvironment
from tests.support.data import tenant_request, tenant_row_counts, unique_email
from tests.support.workers import Gate, activity_name, outbox_messages, password_from_welcome, running_worker

from alga_worker.db.provisioning import TENANT_TABLES_DELETE_ORDER
from alga_worker.models import (
    AdminUserInput,
    ProvisionTenantInput,
    RemoveTenantInput,
    TenantCreationResult,
    WelcomeEmailInput,
)
from alga_worker.runtime.worker import build_resources

EMPTY = dict.fromkeys(TENANT_TABLES_DELETE_ORDER, 0)


def provision_input() -> ProvisionTenantInput:
    return ProvisionTenantInput(
        tenant_id=uuid.uuid4(), client_id=uuid.uuid4(), location_id=uuid.uuid4(), admin_user_id=uuid.uuid4(),
        tenant_name=f"Twice MSP {uuid.uuid4().hex[:6]}", client_name="Twice Client",
        admin=AdminUserInput(first_name="Tom", last_name="Twice", email=unique_email("twice")),
        license_count=3, seal_binding="wf/run/tenant",
    )


async def test_each_activity_run_twice_leaves_one_outcome(settings, db, outbox: Path) -> None:
    resources = await build_resources(settings)
    acts = {activity_name(fn): fn for fn in resources.activities}
    env = ActivityEnvironment()
    try:
        req = provision_input()
        first = await env.run(acts["provision_tenant"], req)
        rows_after_first = await tenant_row_counts(db, req.tenant_id)
        second = await env.run(acts["provision_tenant"], req)
        assert first.created is True and second.created is False
        assert await tenant_row_counts(db, req.tenant_id) == rows_after_first
        assert rows_after_first["tenants"] == 1 and rows_after_first["users"] == 1
        assert rows_after_first["role_permissions"] == 313

        # The retry's sealed password is the valid one: the hash was replaced with it.
        email_req = WelcomeEmailInput(
            tenant_id=req.tenant_id, admin_user_id=req.admin_user_id, tenant_name=req.tenant_name,
            client_name=req.client_name, admin=req.admin, sealed_password=second.sealed_password,
            seal_binding=req.seal_binding,
        )
        sent1 = await env.run(acts["send_welcome_email"], email_req)
        sent2 = await env.run(acts["send_welcome_email"], email_req)
        assert (sent1.duplicate, sent2.duplicate) == (False, True)
        assert sent1.message_id == sent2.message_id
        messages = outbox_messages(outbox)
        assert len(messages) == 1
        user = await (await db.execute("SELECT hashed_password FROM users WHERE tenant = %s",
                                       (str(req.tenant_id),))).fetchone()
        hasher = _hasher(settings)
        assert hasher.verify(password_from_welcome(messages[0]), user["hashed_password"])

        remove = RemoveTenantInput(tenant_id=req.tenant_id, client_id=req.client_id)
        removed1 = await env.run(acts["remove_tenant"], remove)
        removed2 = await env.run(acts["remove_tenant"], remove)
        assert sum(removed1.rows_deleted.values()) == sum(rows_after_first.values())
        assert removed2.rows_deleted == {}
        assert await tenant_row_counts(db, req.tenant_id) == EMPTY
    finally:
        await resources.aclose()


def _hasher(settings):  # type: ignore[no-untyped-def]
    from alga_worker.security import PasswordHasher

    return PasswordHasher(pepper=settings.password_pepper.get_secret_value())


async def _start(client, settings):  # type: ignore[no-untyped-def]
    return await client.start_workflow(
        "tenantCreationWorkflow", tenant_request(), id=f"tenant-creation-{uuid.uuid4()}",
        task_queue=settings.task_queue, result_type=TenantCreationResult)


async def _assert_cancelled(handle, db) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(WorkflowFailureError) as caught:
        await handle.result()
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "TenantCreationCancelled"
    assert cause.non_retryable
    details = cause.details[0]
    assert details["reason"] == "test says stop" and details["cancelledBy"] == "pytest"
    tenant_id = details["tenantId"]
    if tenant_id is not None:
        assert await tenant_row_counts(db, tenant_id) == EMPTY
    return str(tenant_id)


async def test_cancel_before_the_first_step_writes_nothing(client, settings, db, outbox) -> None:
    async with running_worker(client, settings):
        # Signal-with-start: the cancel is delivered with the first workflow task, before any step.
        handle = await client.start_workflow(
            "tenantCreationWorkflow", tenant_request(), id=f"tenant-creation-{uuid.uuid4()}",
            task_queue=settings.task_queue, result_type=TenantCreationResult,
            start_signal="cancel", start_signal_args=[{"reason": "test says stop", "cancelledBy": "pytest"}])
        tenant_id = await _assert_cancelled(handle, db)
        state = await handle.query("getState")
    assert tenant_id == "None"
    assert state["step"] == "cancelled"
    assert state["outcomes"]["tenant"]["status"] == "skipped"
    assert outbox_messages(outbox) == []


# A cancel during the welcome email has its own suite (test_cancel_email.py): it cancels the email.
@pytest.mark.parametrize("step", ["provision_tenant"])
async def test_cancel_signal_during_a_step_removes_every_row(client, settings, db, step: str) -> None:
    gate = Gate()
    async with running_worker(client, settings, gates={step: gate}):
        handle = await _start(client, settings)
        await gate.entered.wait()
        await handle.signal("cancel", {"reason": "test says stop", "cancelledBy": "pytest"})
        # The signal is recorded before the step is let go, so the workflow must see it next.
        await _until(lambda: _cancel_seen(handle))
        gate.release.set()
        tenant_id = await _assert_cancelled(handle, db)
        state = await handle.query("getState")
    assert tenant_id != "None"
    assert state["step"] == "cancelled" and state["cancelRequested"] is True
    assert state["outcomes"]["tenant"]["status"] == "removed"
    assert state["progress"] >= (10 if step == "provision_tenant" else 80)  # never goes down


async def test_temporal_cancel_request_waits_for_the_step_then_removes(client, settings, db) -> None:
    gate = Gate()
    async with running_worker(client, settings, gates={"provision_tenant": gate}):
        handle = await _start(client, settings)
        await gate.entered.wait()
        await handle.cancel()
        await _until(lambda: _cancel_requested_in_history(handle))
        gate.release.set()  # the provisioning commits *after* the cancel request...
        with pytest.raises(WorkflowFailureError) as caught:
            await handle.result()
        assert isinstance(caught.value.cause, CancelledError)
        desc = await handle.describe()
        state = await handle.query("getState")
    assert desc.status == WorkflowExecutionStatus.CANCELED
    # ...and is still removed: compensation ran only once the step had settled.
    assert await tenant_row_counts(db, state["tenantId"]) == EMPTY
    assert state["outcomes"]["tenant"]["status"] == "removed"


async def _cancel_seen(handle) -> bool:  # type: ignore[no-untyped-def]
    state = await handle.query("getState")
    return bool(state["cancelRequested"])


async def _cancel_requested_in_history(handle) -> bool:  # type: ignore[no-untyped-def]
    history = await handle.fetch_history()
    return any(e.HasField("workflow_execution_cancel_requested_event_attributes") for e in history.events)


async def _until(predicate, attempts: int = 200) -> None:  # type: ignore[no-untyped-def]
    """Poll a server-side condition (a query or history), yielding between polls; no fixed sleeps."""
    for _ in range(attempts):
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached")

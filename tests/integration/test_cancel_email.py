"""Cancel is all or nothing for the customer: no run that ends cancelled has sent credentials.

- a cancel while the welcome email waits to be sent, or waits in retry backoff after a provider
  failure, cancels the email: nothing is ever sent, the tenant is removed;
- a cancel that arrives after the provider accepted the email keeps the tenant, and state and result
  say ``cancelTooLate``;
- other tenants are untouched either way.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError, CancelledError
from tests.fakes.resend_server import FakeResendServer
from tests.support.data import all_row_counts, tenant_request, tenant_row_counts
from tests.support.workers import Gate, outbox_messages, running_worker

from alga_worker.config import load_settings
from alga_worker.models import TenantCreationResult


async def _until(predicate: Callable[[], Awaitable[bool]], attempts: int = 400) -> None:
    for _ in range(attempts):
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached")


async def _cancel(handle: WorkflowHandle[Any, Any], how: str) -> None:
    if how == "signal":
        await handle.signal("cancel", {"reason": "test says stop", "cancelledBy": "pytest"})
    else:
        await handle.cancel()


async def _assert_ended_cancelled(handle: WorkflowHandle[Any, Any], how: str) -> None:
    with pytest.raises(WorkflowFailureError) as caught:
        await handle.result()
    desc = await handle.describe()
    if how == "signal":
        assert desc.status == WorkflowExecutionStatus.FAILED
        cause = caught.value.cause
        assert isinstance(cause, ApplicationError) and cause.type == "TenantCreationCancelled"
    else:
        assert desc.status == WorkflowExecutionStatus.CANCELED
        assert isinstance(caught.value.cause, CancelledError)


def _others(all_counts: dict[str, int], mine: dict[str, int]) -> dict[str, int]:
    return {table: all_counts[table] - mine.get(table, 0) for table in all_counts}


HOW = ["signal", "temporal cancel request"]


@pytest.mark.parametrize("how", HOW)
async def test_cancel_while_the_email_waits_sends_nothing_and_removes_the_tenant(client: Client, settings, db,
                                                                                   outbox, how: str) -> None:
    gate = Gate()
    async with running_worker(client, settings, gates={"send_email": gate}):
        all_before = await all_row_counts(db)
        handle = await client.start_workflow(
            "tenantCreationWorkflow", tenant_request(), id=f"cancel-email-{uuid.uuid4()}",
            task_queue=settings.task_queue)
        await gate.entered.wait()
        await _cancel(handle, how)
        await _ended(handle)
        gate.release.set()
        await _assert_ended_cancelled(handle, how)
        state = await handle.query("getState")
    assert outbox_messages(outbox) == []
    assert sum((await tenant_row_counts(db, state["tenantId"])).values()) == 0
    assert await all_row_counts(db) == all_before
    assert state["step"] == "cancelled" and state["cancelTooLate"] is False
    assert state["outcomes"]["welcome_email"]["status"] == "skipped"


async def _ended(handle: WorkflowHandle[Any, Any]) -> None:
    """The run closes without the gate being released: the cancel reached the waiting activity."""

    async def closed() -> bool:
        return (await handle.describe()).status != WorkflowExecutionStatus.RUNNING

    await _until(closed)


@pytest.mark.parametrize("how", HOW)
async def test_cancel_during_retry_backoff_sends_nothing(client: Client, worker_env, db, how: str) -> None:
    with FakeResendServer() as resend:
        settings = load_settings({**worker_env, "EMAIL_PROVIDER": "resend", "RESEND_API_URL": resend.url,
                                  "RESEND_API_KEY": resend.api_key})
        resend.fail_next(1_000, status=503)  # down until the test says otherwise
        async with running_worker(client, settings):
            all_before = await all_row_counts(db)
            handle = await client.start_workflow(
                "tenantCreationWorkflow", tenant_request(), id=f"cancel-backoff-{uuid.uuid4()}",
                task_queue=settings.task_queue)

            async def failed_once() -> bool:
                history = await handle.fetch_history()
                return any(e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED for e in history.events) \
                    and len(resend.requests) >= 1

            await _until(failed_once)
            await _cancel(handle, how)
            await _assert_ended_cancelled(handle, how)
            state = await handle.query("getState")
        assert resend.emails == []
    assert sum((await tenant_row_counts(db, state["tenantId"])).values()) == 0
    assert await all_row_counts(db) == all_before
    assert state["cancelTooLate"] is False


@pytest.mark.parametrize("how", HOW)
async def test_cancel_after_the_provider_accepted_keeps_the_tenant(client: Client, settings, db, outbox,
                                                                   how: str) -> None:
    gate = Gate(after=True)  # the email is accepted; the result is not yet reported to Temporal
    async with running_worker(client, settings, gates={"send_email": gate}):
        handle = await client.start_workflow(
            "tenantCreationWorkflow", tenant_request(), id=f"cancel-late-{uuid.uuid4()}",
            task_queue=settings.task_queue, result_type=TenantCreationResult)
        await gate.entered.wait()
        assert len(outbox_messages(outbox)) == 1
        await _cancel(handle, how)
        await _until(lambda: _cancel_recorded(handle))
        gate.release.set()
        result = await handle.result()
        state = await handle.query("getState")
        desc = await handle.describe()
    assert desc.status == WorkflowExecutionStatus.COMPLETED
    assert result.cancel_too_late is True and result.email_sent is True
    assert state["cancelTooLate"] is True and state["step"] == "completed"
    assert "too late" in state["error"]
    counts = await tenant_row_counts(db, result.tenant_id)
    assert counts["tenants"] == 1 and counts["users"] == 1 and counts["role_permissions"] == 313
    assert len(outbox_messages(outbox)) == 1


async def _cancel_recorded(handle: WorkflowHandle[Any, Any]) -> bool:
    history = await handle.fetch_history()
    return any(e.event_type in (EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
                                EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED)
               for e in history.events)


async def test_many_runs_cancelled_at_random_moments_never_email_a_cancelled_tenant(client: Client, settings,
                                                                                     db, outbox) -> None:
    """The invariant over a crowd: every run either ends cancelled with no email and no rows, or ends
    completed with exactly one email (with or without a too-late cancel). Cancels land at staggered
    moments from before provisioning to after the email."""
    runs = 24
    async with running_worker(client, settings):
        handles = []
        for i in range(runs):
            handle = await client.start_workflow(
                "tenantCreationWorkflow", tenant_request(), id=f"cancel-crowd-{i}-{uuid.uuid4()}",
                task_queue=settings.task_queue)
            handles.append(handle)

        async def cancel_later(i: int, handle: WorkflowHandle[Any, Any]) -> None:
            for _ in range(i):  # stagger by yielding to the event loop and one server round trip each
                await handle.describe()
            await _cancel(handle, "signal" if i % 2 else "temporal cancel request")

        await asyncio.gather(*(cancel_later(i, h) for i, h in enumerate(handles)), return_exceptions=True)
        outcomes = []
        for handle in handles:
            try:
                await handle.result()
                outcomes.append("completed")
            except WorkflowFailureError:
                outcomes.append("cancelled")
            state = await handle.query("getState")
            outcomes[-1] = (outcomes[-1], state)
    by_recipient: dict[str, int] = {}
    for message in outbox_messages(outbox):
        by_recipient[str(message["To"])] = by_recipient.get(str(message["To"]), 0) + 1
    for outcome, state in outcomes:
        tenant_id = state["tenantId"]
        rows = sum((await tenant_row_counts(db, tenant_id)).values()) if tenant_id else 0
        if outcome == "cancelled":
            assert state["step"] == "cancelled" and rows == 0 and state["emailSent"] is not True
        else:
            assert state["step"] == "completed" and rows > 0 and state["emailSent"] is True
    assert sum(by_recipient.values()) == sum(1 for o, _ in outcomes if o == "completed")
    assert all(n == 1 for n in by_recipient.values())

"""`alga-worker checkout status|resend` against a real run: the real tenantCreationWorkflow with a
checkoutSessionId, the real worker in-process, the Temporal dev server, PostgreSQL and a fake nm-store.

What matters to an operator: the run is found by its checkout session alone; status shows what nm-store
was told and how it answered; resend repeats exactly what was sent (same body, same idempotency key),
so nm-store sees a duplicate, never a second event.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator

import pytest
from temporalio.client import Client
from tests.fakes.nmstore_server import CALLBACK_PATH, STATUS_PATH, FakeNmStoreServer
from tests.support.data import tenant_request
from tests.support.processes import cli
from tests.support.workers import running_worker

from alga_worker.config import load_settings
from alga_worker.models import TenantCreationResult
from alga_worker.nmstore import callback_idempotency_key, status_idempotency_key

VISIBILITY_DEADLINE_SECONDS = 30.0



@pytest.fixture
def nmstore() -> Iterator[FakeNmStoreServer]:
    with FakeNmStoreServer() as fake:
        yield fake


@pytest.fixture
def checkout_env(worker_env: dict[str, str], nmstore: FakeNmStoreServer) -> dict[str, str]:
    return {**worker_env, "NMSTORE_BASE_URL": nmstore.url, "INTERNAL_API_SHARED_SECRET": nmstore.internal_secret,
            "TEMPORAL_WEBHOOK_SECRET": nmstore.webhook_secret}


async def wait_visible(client: Client, session_id: str) -> None:
    """Visibility is eventually consistent: wait (bounded) until the run is listed by its session."""
    query = f'WorkflowType="tenantCreationWorkflow" AND CheckoutSessionId="{session_id}"'
    async with asyncio.timeout(VISIBILITY_DEADLINE_SECONDS):
        while not [wf async for wf in client.list_workflows(query)]:
            await asyncio.sleep(0.2)


async def finished_checkout_run(client: Client, checkout_env: dict[str, str], session_id: str) -> str:
    handle = await client.start_workflow(
        "tenantCreationWorkflow", tenant_request(checkoutSessionId=session_id),
        id=f"tenant-creation-{uuid.uuid4()}", task_queue=checkout_env["TEMPORAL_TASK_QUEUE"],
        result_type=TenantCreationResult)
    result = await handle.result()
    assert result.success
    await wait_visible(client, session_id)
    return handle.id


async def test_checkout_status_shows_the_reports_and_resend_repeats_them_exactly(
        client: Client, checkout_env: dict[str, str], nmstore: FakeNmStoreServer) -> None:
    session_id = f"cs_test_{uuid.uuid4().hex}"
    async with running_worker(client, load_settings(checkout_env)):
        workflow_id = await finished_checkout_run(client, checkout_env, session_id)

        code, out, err = await cli(checkout_env, "checkout", "status", session_id)
        assert code == 0, err
        doc = json.loads(out)
        assert (doc["checkoutSessionId"], doc["workflowId"], doc["status"]) == (session_id, workflow_id, "COMPLETED")
        checkout = doc["checkout"]
        assert checkout["checkoutSessionId"] == session_id and checkout["lastStatus"] == "completed"
        assert checkout["statusDelivery"]["httpStatus"] == 200
        assert checkout["statusDelivery"]["idempotencyKey"] == status_idempotency_key(workflow_id, "completed")
        assert checkout["callbackDelivery"]["httpStatus"] == 200
        assert checkout["callbackDelivery"]["idempotencyKey"] == callback_idempotency_key(workflow_id, "completed")
        assert "deliveredAt" in checkout["statusDelivery"] and checkout.get("lastError") is None
        assert nmstore.status_history(session_id) == ["in_progress", "completed"]
        [original_callback] = nmstore.callbacks_for(session_id)
        assert original_callback["algaTenantId"] == doc["tenantId"]

        sent_before = len(nmstore.calls)
        code, out, err = await cli(checkout_env, "checkout", "resend", session_id)
    assert code == 0, err
    resent = nmstore.calls[sent_before:]
    assert [(c.path, c.status, c.duplicate) for c in resent] == [(STATUS_PATH, 200, True), (CALLBACK_PATH, 200, True)]
    assert resent[0].idempotency_key == status_idempotency_key(workflow_id, "completed")
    assert resent[1].idempotency_key == callback_idempotency_key(workflow_id, "completed")
    originals = {c.idempotency_key: c for c in nmstore.calls[:sent_before] if c.status == 200 and not c.duplicate}
    for call in resent:
        assert call.raw_body == originals[call.idempotency_key].raw_body  # byte for byte what the workflow sent
    assert out.count("HTTP 200") == 2 and resent[0].idempotency_key in out
    # Nothing new happened at nm-store.
    assert nmstore.status_history(session_id) == ["in_progress", "completed"]
    assert nmstore.callbacks_for(session_id) == [original_callback]
    for secret in (nmstore.internal_secret, nmstore.webhook_secret):
        assert secret not in out + err


async def test_resend_reports_a_failed_delivery_with_a_non_zero_exit(
        client: Client, checkout_env: dict[str, str], nmstore: FakeNmStoreServer) -> None:
    session_id = f"cs_test_{uuid.uuid4().hex}"
    async with running_worker(client, load_settings(checkout_env)):
        await finished_checkout_run(client, checkout_env, session_id)
    nmstore.down()
    code, _, err = await cli(checkout_env, "checkout", "resend", session_id)
    assert code == 1
    assert "NmStoreUnavailableError" in err and "HTTP 503" in err


async def test_unknown_and_malformed_session_ids(checkout_env: dict[str, str], nmstore: FakeNmStoreServer) -> None:
    for command in ("status", "resend"):
        code, _, err = await cli(checkout_env, "checkout", command, f"cs_test_missing_{uuid.uuid4().hex}")
        assert code == 6, err
        assert "no tenantCreationWorkflow run" in err
        # Quotes and operators never reach the visibility query.
        code, _, err = await cli(checkout_env, "checkout", command, 'cs_x" OR WorkflowType!="x')
        assert code == 2 and "invalid checkout session id" in err
    assert nmstore.calls == []

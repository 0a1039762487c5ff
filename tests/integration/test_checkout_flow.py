"""The signup path from nm-store, end to end: real worker, real Temporal, real PostgreSQL, and local
fakes of nm-store and Stripe that speak their wire protocols (secrets and signatures checked byte for
byte by the fakes themselves).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from tests.fakes.nmstore_server import FakeNmStoreServer
from tests.fakes.stripe_server import FakeStripeServer
from tests.support.data import all_row_counts, tenant_request, tenant_row_counts, unique_email
from tests.support.workers import Gate, outbox_messages, running_worker, text_body

from alga_worker.config import Settings, load_settings
from alga_worker.runtime.devstack import find_binary

MANAGEMENT_TENANT = "00000000-0000-4000-8000-000000000001"


@pytest.fixture
def nmstore() -> Iterator[FakeNmStoreServer]:
    with FakeNmStoreServer() as server:
        yield server


@pytest.fixture
def stripe() -> Iterator[FakeStripeServer]:
    with FakeStripeServer() as server:
        yield server


def checkout_env(worker_env: dict[str, str], nmstore: FakeNmStoreServer, stripe: FakeStripeServer,
                 **overrides: str) -> dict[str, str]:
    return {**worker_env, "NMSTORE_BASE_URL": nmstore.url, "INTERNAL_API_SHARED_SECRET": nmstore.internal_secret,
            "TEMPORAL_WEBHOOK_SECRET": nmstore.webhook_secret, "STRIPE_SECRET_KEY": stripe.api_key,
            "STRIPE_API_BASE": stripe.url, "MANAGEMENT_TENANT_ID": MANAGEMENT_TENANT,
            "CLIENT_PORTAL_URL": "https://portal.nineminds.example/login", **overrides}


@pytest.fixture
def checkout_settings(worker_env, nmstore, stripe) -> Settings:  # type: ignore[no-untyped-def]
    return load_settings(checkout_env(worker_env, nmstore, stripe))


async def _until(predicate: Callable[[], Awaitable[bool]], attempts: int = 600) -> None:
    for _ in range(attempts):
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached")


def _signup(session_id: str, **overrides: Any) -> dict[str, Any]:
    """The S-OCT shape nm-store sends (companyName, billingPlan, licenseCount, checkoutSessionId)."""
    request = tenant_request(checkoutSessionId=session_id, companyName=f"Signup Co {uuid.uuid4().hex[:6]}",
                             billingPlan="psa-pro")
    request.pop("clientName")
    request.pop("licenseCount")
    request.update(overrides)
    return request


async def _start(client: Client, settings: Settings, request: dict[str, Any]) -> WorkflowHandle[Any, Any]:
    return await client.start_workflow("tenantCreationWorkflow", request, id=f"signup-{uuid.uuid4()}",
                                       task_queue=settings.task_queue)


def _assert_ordered(nmstore: FakeNmStoreServer, session_id: str, final: str) -> None:
    history = nmstore.status_history(session_id)
    assert history in ([final], ["in_progress", final]), history
    status_seqs = [c.seq for c in nmstore.status_calls if c.json and c.json.get("checkoutSessionId") == session_id
                   and c.json.get("workflowStatus") == final and c.status < 300]
    callback_seqs = [c.seq for c in nmstore.callback_calls if c.json and c.json.get("sessionId") == session_id
                     and c.status < 300]
    assert status_seqs and callback_seqs and min(callback_seqs) > max(status_seqs), "callback after final status"


async def test_a_paid_checkout_becomes_a_tenant_and_nm_store_hears_it(client, checkout_settings, db, outbox,
                                                                       nmstore, stripe) -> None:
    ids = stripe.add_session(quantity=7)
    request = _signup(ids["session"])
    async with running_worker(client, checkout_settings):
        handle = await _start(client, checkout_settings, request)
        result = await handle.result()
        state = await handle.query("getState")
    tenant_id = result["tenantId"]
    _assert_ordered(nmstore, ids["session"], "completed")
    completed = [c for c in nmstore.status_calls if c.json.get("workflowStatus") == "completed"][-1]
    assert completed.json["workflowId"] == handle.id and completed.json["workflowCompletedAt"].endswith("Z")
    assert nmstore.callbacks_for(ids["session"]) == [
        {"sessionId": ids["session"], "algaTenantId": tenant_id, "status": "completed"}]
    # Stripe: seat count became the licence count; the customer row exists; the subscription is tagged.
    tenant = await (await db.execute("SELECT licensed_user_count FROM tenants WHERE tenant = %s",
                                     (tenant_id,))).fetchone()
    assert tenant["licensed_user_count"] == 7
    customers = await (await db.execute("SELECT count(*) AS n FROM stripe_customers WHERE tenant = %s",
                                        (tenant_id,))).fetchone()
    assert customers["n"] == 1
    assert stripe.subscription(ids["subscription"])["metadata"].get("alga_tenant_id") == tenant_id
    # Customer tracking: every stage done, and the email claims the portal with the portal's own password.
    for stage in ("stripe_details", "customer_client", "customer_contact", "customer_tag", "portal_user"):
        assert state["outcomes"][stage]["status"] == "done", (stage, state["outcomes"][stage])
    assert state["checkout"]["lastStatus"] == "completed"
    assert state["checkout"]["callbackDelivery"]["httpStatus"] < 300
    [message] = outbox_messages(outbox)
    assert "portal.nineminds.example" in text_body(message)
    # Nothing secret travelled to nm-store.
    for call in nmstore.calls:
        assert checkout_settings.password_pepper.get_secret_value() not in call.raw_body.decode()


async def test_a_failed_signup_reports_failed_with_a_summary_and_no_secret(client, checkout_settings, db,
                                                                            nmstore, stripe) -> None:
    email = unique_email("taken")
    ids = stripe.add_session()
    async with running_worker(client, checkout_settings):
        first = await _start(client, checkout_settings, tenant_request(adminUser={
            "firstName": "A", "lastName": "B", "email": email}))
        await first.result()
        handle = await _start(client, checkout_settings, _signup(ids["session"], adminUser={
            "firstName": "A", "lastName": "B", "email": email}))
        with pytest.raises(WorkflowFailureError):
            await handle.result()
    _assert_ordered(nmstore, ids["session"], "failed")
    failed = [c for c in nmstore.status_calls if c.json.get("workflowStatus") == "failed"][-1]
    assert "DuplicateError" in failed.json["error"]
    for secret in checkout_settings.secret_values():
        assert secret not in failed.json["error"]
    assert nmstore.callbacks_for(ids["session"]) == [
        {"sessionId": ids["session"], "algaTenantId": None, "status": "failed",
         "error": failed.json["error"]}]


async def test_a_cancelled_signup_reports_failed(client, checkout_settings, db, nmstore, stripe) -> None:
    ids = stripe.add_session()
    gate = Gate()
    async with running_worker(client, checkout_settings, gates={"provision_tenant": gate}):
        handle = await _start(client, checkout_settings, _signup(ids["session"]))
        await gate.entered.wait()
        await handle.signal("cancel", {"reason": "customer refunded", "cancelledBy": "ops"})
        gate.release.set()
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        state = await handle.query("getState")
    assert sum((await tenant_row_counts(db, state["tenantId"])).values()) == 0
    _assert_ordered(nmstore, ids["session"], "failed")
    assert nmstore.callbacks_for(ids["session"])[0]["status"] == "failed"
    assert "customer refunded" in nmstore.callbacks_for(ids["session"])[0]["error"]


async def test_nm_store_down_then_back_gets_the_reports_in_order(client, checkout_settings, nmstore,
                                                                stripe) -> None:
    ids = stripe.add_session()
    nmstore.down()
    async with running_worker(client, checkout_settings):
        handle = await _start(client, checkout_settings, _signup(ids["session"]))

        async def provisioned_and_refused() -> bool:
            state = await handle.query("getState")
            return state["step"] == "completed" and any(c.status == 503 for c in nmstore.status_calls)

        await _until(provisioned_and_refused)
        nmstore.up()
        result = await handle.result()
    _assert_ordered(nmstore, ids["session"], "completed")
    assert nmstore.callbacks_for(ids["session"])[0]["algaTenantId"] == result["tenantId"]


async def test_a_wrong_secret_fails_the_report_non_retryably_and_says_which(client, worker_env, db, nmstore,
                                                                           stripe) -> None:
    settings = load_settings(checkout_env(worker_env, nmstore, stripe,
                                          INTERNAL_API_SHARED_SECRET="not-the-right-secret-123"))
    ids = stripe.add_session()
    async with running_worker(client, settings):
        handle = await _start(client, settings, _signup(ids["session"]))
        result = await handle.result()  # the tenant is not failed for it
        state = await handle.query("getState")
    assert result["success"] is True
    assert "INTERNAL_API_SHARED_SECRET" in state["checkout"]["lastError"]
    assert "not-the-right-secret-123" not in json.dumps(state)
    refused = [c for c in nmstore.status_calls if c.status in (401, 403)]
    # in_progress and the final status: one attempt each, no retry of a refused secret
    assert len(refused) == 2 and nmstore.status_history(ids["session"]) == []


async def test_a_checkout_id_without_checkout_settings_is_refused_before_anything(client, worker_env, db,
                                                                                 outbox) -> None:
    settings = load_settings({**worker_env, "NMSTORE_BASE_URL": "http://127.0.0.1:9"})  # secrets unset
    before = await all_row_counts(db)
    async with running_worker(client, settings):
        handle = await _start(client, settings, _signup("cs_test_unconfigured"))
        with pytest.raises(WorkflowFailureError) as caught:
            await handle.result()
    cause = caught.value.cause
    assert cause.type == "ConfigurationError" and cause.non_retryable
    assert "INTERNAL_API_SHARED_SECRET" in str(cause) and "TEMPORAL_WEBHOOK_SECRET" in str(cause)
    assert await all_row_counts(db) == before
    assert outbox_messages(outbox) == []


async def test_an_invalid_checkout_session_still_creates_the_tenant(client, checkout_settings, db, nmstore,
                                                                   stripe) -> None:
    request = _signup("cs_test_doesnotexist", licenseCount=4)
    async with running_worker(client, checkout_settings):
        handle = await _start(client, checkout_settings, request)
        result = await handle.result()
        state = await handle.query("getState")
    assert state["outcomes"]["stripe_details"]["status"] == "failed"
    tenant = await (await db.execute("SELECT licensed_user_count FROM tenants WHERE tenant = %s",
                                     (result["tenantId"],))).fetchone()
    assert tenant["licensed_user_count"] == 4
    assert nmstore.last_status("cs_test_doesnotexist") == "completed"


@pytest.fixture
async def checkout_worker(client, checkout_settings) -> AsyncIterator[Settings]:  # type: ignore[no-untyped-def]
    async with running_worker(client, checkout_settings):
        yield checkout_settings


@pytest.mark.parametrize("snapshot", ["S-OCT", "S-DEC"])
async def test_the_typescript_callers_start_through_the_temporal_cli_completes(
        client, stack, checkout_worker, nmstore, stripe, snapshot: str) -> None:
    ids = stripe.add_session(quantity=3)
    request: dict[str, Any] = {
        "tenantName": f"CLI MSP {uuid.uuid4().hex[:6]}",
        "adminUser": {"firstName": "Cli", "lastName": "Caller", "email": unique_email("cli")},
        "companyName": "CLI Co", "billingPlan": "psa", "licenseCount": 3, "checkoutSessionId": ids["session"],
    }
    if snapshot == "S-DEC":
        request.update(clientName="CLI Client", contractLine="psa-pro", stripeCustomerId=ids["customer"],
                       stripeSubscriptionId=ids["subscription"], stripeSubscriptionItemId=ids["item"],
                       stripePriceId=ids["price"])
        del request["billingPlan"]
    workflow_id = f"cli-{snapshot}-{uuid.uuid4()}"
    subprocess.run([find_binary("temporal"), "workflow", "start", "--address", stack.temporal_address,
                    "--type", "tenantCreationWorkflow", "--task-queue", checkout_worker.task_queue,
                    "--workflow-id", workflow_id, "--input", json.dumps(request)],
                   check=True, capture_output=True, timeout=60)
    result = await client.get_workflow_handle(workflow_id).result()
    assert result["success"] is True
    assert nmstore.last_status(ids["session"]) == "completed"


async def test_a_cancel_before_the_email_removes_the_customer_records_too(client, checkout_settings, db, outbox,
                                                                          nmstore, stripe) -> None:
    ids = stripe.add_session()
    gate = Gate()
    email = unique_email("untracked")
    async with running_worker(client, checkout_settings, gates={"send_email": gate}):
        handle = await _start(client, checkout_settings, _signup(ids["session"], adminUser={
            "firstName": "Una", "lastName": "Tracked", "email": email}))
        await gate.entered.wait()
        state = await handle.query("getState")
        assert state["outcomes"]["customer_client"]["status"] == "done"
        await handle.signal("cancel", {"reason": "changed their mind", "cancelledBy": "ops"})
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        gate.release.set()
        state = await handle.query("getState")
    assert outbox_messages(outbox) == []
    assert sum((await tenant_row_counts(db, state["tenantId"])).values()) == 0
    leftovers = await (await db.execute(
        "SELECT (SELECT count(*) FROM clients WHERE tenant = %(m)s AND properties->>'alga_tenant_id' = %(t)s)"
        " + (SELECT count(*) FROM contacts WHERE tenant = %(m)s AND email = %(e)s)"
        " + (SELECT count(*) FROM users WHERE tenant = %(m)s AND email = %(e)s) AS n",
        {"m": MANAGEMENT_TENANT, "t": state["tenantId"], "e": email})).fetchone()
    assert leftovers["n"] == 0
    assert state["outcomes"]["customer_client"]["status"] == "removed"
    assert nmstore.last_status(ids["session"]) == "failed"


async def test_an_ambiguous_customer_name_is_a_typed_error_in_state_and_no_portal_claim(
        client, checkout_settings, db, outbox, nmstore, stripe) -> None:
    clash = f"Clash Co {uuid.uuid4().hex[:6]}"
    await db.execute(
        "INSERT INTO clients (client_id, tenant, client_name, client_type, is_inactive, properties, created_at,"
        " updated_at) VALUES (%s, %s, %s, 'company', false, '{}'::jsonb, now(), now())",
        (uuid.uuid4(), MANAGEMENT_TENANT, clash))
    ids = stripe.add_session()
    async with running_worker(client, checkout_settings):
        handle = await _start(client, checkout_settings, _signup(ids["session"], companyName=clash))
        result = await handle.result()  # the tenant is not failed for it
        state = await handle.query("getState")
    assert result["success"] is True
    outcome = state["outcomes"]["customer_client"]
    assert outcome["status"] == "failed" and "AmbiguousCustomerError" in outcome["detail"]
    assert state["outcomes"]["portal_user"]["status"] == "failed"
    [message] = outbox_messages(outbox)
    assert "portal" not in text_body(message).lower()
    assert nmstore.last_status(ids["session"]) == "completed"

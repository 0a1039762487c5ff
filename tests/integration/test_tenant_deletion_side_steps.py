"""The deletion's external side steps (issue 13): the ``Canceled`` tag on the customer's client in the
management tenant, the Stripe subscription set to cancel at period end, the ``tenant_cancelled`` email;
each non-fatal (its outcome in ``getState``), idempotent, and undone by ``rollbackDeletion``.

Real PostgreSQL, Temporal's time-skipping test server, the fake Stripe API (a real local HTTP server,
``tests/fakes/stripe_server.py``) and the outbox email provider.
"""

from __future__ import annotations

import email
import email.policy
import json
import uuid
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from tests.fakes.stripe_server import FakeStripeServer
from tests.support.chaos import poll_until
from tests.support.deletion import MGMT, doomed_tenant
from tests.support.workers import Activities, activities_for, activity_name

from alga_worker import errors
from alga_worker.config import Settings, load_settings
from alga_worker.converter import DATA_CONVERTER
from alga_worker.models import (
    CancelledTagInput,
    OutcomeStatus,
    SubscriptionCancellationInput,
    TenantDeletionResult,
    TenantDeletionState,
    TenantDeletionStatus,
)
from alga_worker.runtime.devstack import find_binary
from alga_worker.runtime.worker import build_resources, build_worker

SIDE_STEP_ATTEMPTS = 6  # workflows.tenant_creation.SIDE_STEP_RETRY


@pytest.fixture
def fake_stripe() -> Any:
    with FakeStripeServer() as server:
        yield server


def _settings(worker_env: dict[str, str], fake_stripe: FakeStripeServer, **extra: str) -> Settings:
    env = {**worker_env, "MANAGEMENT_TENANT_ID": str(MGMT), "STRIPE_SECRET_KEY": fake_stripe.api_key,
           "STRIPE_API_BASE": fake_stripe.url, **extra}
    return load_settings({k: v for k, v in env.items() if v != ""})


@pytest.fixture
def side_settings(worker_env: dict[str, str], fake_stripe: FakeStripeServer) -> Settings:
    return _settings(worker_env, fake_stripe)


@pytest.fixture
async def acts(side_settings: Settings) -> AsyncIterator[Activities]:
    async with activities_for(side_settings) as found:
        yield found


async def _skipping(settings: Settings) -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=DATA_CONVERTER, test_server_existing_path=find_binary("temporal-test-server"))
    resources = await build_resources(settings)
    try:
        async with build_worker(env.client, settings, resources.activities):
            yield env
    finally:
        await resources.aclose()
        await env.shutdown()


@pytest.fixture
async def skipping(side_settings: Settings) -> AsyncIterator[WorkflowEnvironment]:
    async for env in _skipping(side_settings):
        yield env


async def customer(db: Any, tenant: uuid.UUID, *, email_address: str | None = "billing@doomed.example") -> uuid.UUID:
    """The customer's client in the management tenant (as customer tracking records it) and the
    tenant's registered address."""
    client_id = uuid.uuid4()
    await db.execute(
        "INSERT INTO clients (client_id, tenant, client_name, client_type, is_inactive, properties, created_at,"
        " updated_at) VALUES (%s, %s, %s, 'company', false, %s::jsonb, now(), now())",
        (client_id, MGMT, f"Customer {tenant}", json.dumps({"alga_tenant_id": str(tenant)})))
    await db.execute("UPDATE tenants SET email = %s WHERE tenant = %s", (email_address, tenant))
    return client_id


async def cancelled_tags(db: Any, client_id: uuid.UUID) -> list[uuid.UUID]:
    cur = await db.execute(
        "SELECT m.mapping_id FROM tag_mappings m JOIN tag_definitions d ON d.tenant = m.tenant AND d.tag_id = m.tag_id"
        " WHERE m.tenant = %s AND m.tagged_id = %s AND d.tag_text = 'Canceled'", (MGMT, client_id))
    return [r["mapping_id"] for r in await cur.fetchall()]


async def start(env: WorkflowEnvironment, settings: Settings, tenant: uuid.UUID, **extra: Any
                ) -> WorkflowHandle[Any, TenantDeletionResult]:
    request = {"tenantId": str(tenant), "triggerSource": "nineminds_extension", "triggeredBy": "ops-test",
               "reason": "customer left", "gracePeriodSeconds": 7 * 24 * 3600, **extra}
    return await env.client.start_workflow(
        "tenantDeletionWorkflow", request, id=f"tenant-deletion-{tenant}", task_queue=settings.task_queue,
        result_type=TenantDeletionResult, id_conflict_policy=WorkflowIDConflictPolicy.FAIL)


async def until_awaiting(handle: WorkflowHandle[Any, Any]) -> TenantDeletionState:
    async def awaiting() -> bool:
        s = await handle.query("getState", result_type=TenantDeletionState)
        return s is not None and s.status is TenantDeletionStatus.AWAITING_CONFIRMATION
    await poll_until(awaiting, "the run to await its confirmation", timeout=120)
    s: TenantDeletionState = await handle.query("getState", result_type=TenantDeletionState)
    return s


def outbox_messages(outbox: Path) -> list[EmailMessage]:
    found = []
    for path in sorted(outbox.glob("*.eml")) if outbox.exists() else []:
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        found.append(msg)
    return found


def body_of(msg: EmailMessage) -> str:
    return "\n".join(str(part.get_content()) for part in msg.walk() if part.get_content_maintype() == "text")


# ---------------------------------------------------------------- the three steps, then the rollback


async def test_tag_stripe_and_email_then_rollback_restores_tag_and_subscription(
        skipping, side_settings, acts, db, fake_stripe, outbox) -> None:
    tenant, _, _ = await doomed_tenant(acts, side_settings, db)
    client_id = await customer(db, tenant)
    ids = fake_stripe.add_session(metadata={"alga_tenant_id": str(tenant), "plan": "pro"})
    sub = ids["subscription"]
    handle = await start(skipping, side_settings, tenant, subscriptionExternalId=sub)
    waiting = await until_awaiting(handle)

    assert {k: v.status for k, v in waiting.outcomes.items()} == {
        "client_tag": OutcomeStatus.DONE, "stripe_subscription": OutcomeStatus.DONE,
        "cancellation_email": OutcomeStatus.DONE}
    assert len(await cancelled_tags(db, client_id)) == 1
    stored = fake_stripe.subscription(sub)
    assert stored["cancel_at_period_end"] is True and stored["cancel_at"] == stored["current_period_end"]
    assert stored["metadata"] == {"alga_tenant_id": str(tenant), "plan": "pro",
                                  "alga_deletion_id": str(waiting.deletion_id),
                                  "alga_deletion_prior_cancel_at_period_end": "false"}
    cancel = [w for w in fake_stripe.writes() if w.path == f"/v1/subscriptions/{sub}"]
    assert len(cancel) == 1 and ("cancel_at_period_end", "true") in cancel[0].form
    assert cancel[0].headers["idempotency-key"].startswith(f"alga-worker/deletion/{waiting.deletion_id}/cancel/")

    [msg] = outbox_messages(outbox)
    assert msg["To"] == "billing@doomed.example" and msg["X-Alga-Tag-email_type"] == "tenant_cancelled"
    body = body_of(msg)
    assert "has been cancelled" in body and "will not be charged again" in body
    assert fake_stripe.api_key not in body and "password" not in body.lower()

    await handle.signal("rollbackDeletion", {"reason": "came back", "rolledBackBy": "ops-test"})
    result = await handle.result()
    assert result.status is TenantDeletionStatus.ROLLED_BACK
    assert await cancelled_tags(db, client_id) == []
    restored = fake_stripe.subscription(sub)
    assert restored["cancel_at_period_end"] is False and restored["cancel_at"] is None
    assert restored["metadata"] == {"alga_tenant_id": str(tenant), "plan": "pro"}
    final: TenantDeletionState = await handle.query("getState", result_type=TenantDeletionState)
    assert final.outcomes["client_tag"].status is OutcomeStatus.REMOVED
    assert final.outcomes["stripe_subscription"].status is OutcomeStatus.REMOVED
    history = json.dumps((await handle.fetch_history()).to_json_dict())
    assert fake_stripe.api_key not in history


async def test_a_canceled_tag_that_was_there_before_stays_after_the_rollback(
        skipping, side_settings, acts, db) -> None:
    tenant, _, _ = await doomed_tenant(acts, side_settings, db)
    client_id = await customer(db, tenant)
    env = ActivityEnvironment()
    earlier = CancelledTagInput(tenant_id=tenant, deletion_id=uuid.uuid4(), mapping_id=uuid.uuid4())
    assert (await env.run(acts["tag_client_cancelled"], earlier)).added
    handle = await start(skipping, side_settings, tenant, triggerSource="manual")
    waiting = await until_awaiting(handle)
    assert waiting.outcomes["client_tag"].status is OutcomeStatus.DONE
    assert "already tagged" in (waiting.outcomes["client_tag"].detail or "")
    assert waiting.outcomes["stripe_subscription"].status is OutcomeStatus.SKIPPED
    assert waiting.outcomes["cancellation_email"].status is OutcomeStatus.SKIPPED  # manual: as the original
    await handle.signal("rollbackDeletion", {})
    await handle.result()
    assert await cancelled_tags(db, client_id) == [earlier.mapping_id]


# ---------------------------------------------------------------- failures are not fatal


@pytest.mark.parametrize("failure", ["stripe-500", "stripe-400", "bad-email"])
async def test_a_failed_side_step_leaves_the_deletion_going_on(
        skipping, side_settings, acts, db, fake_stripe, outbox, failure: str) -> None:
    tenant, _, _ = await doomed_tenant(acts, side_settings, db)
    await customer(db, tenant, email_address="not an address" if failure == "bad-email" else "b@doomed.example")
    sub = fake_stripe.add_session(metadata={})["subscription"]
    if failure == "stripe-500":
        fake_stripe.fail_next(SIDE_STEP_ATTEMPTS)  # 500 for longer than the step's retries
    elif failure == "stripe-400":
        fake_stripe.fail_next(1, 400, error_type="invalid_request_error", code="resource_missing",
                              message="No such subscription")
    handle = await start(skipping, side_settings, tenant, subscriptionExternalId=sub)
    waiting = await until_awaiting(handle)
    failed = "cancellation_email" if failure == "bad-email" else "stripe_subscription"
    assert waiting.outcomes[failed].status is OutcomeStatus.FAILED
    assert all(o.status is OutcomeStatus.DONE for k, o in waiting.outcomes.items() if k != failed)
    if failure == "stripe-500":
        assert errors.STRIPE_UNAVAILABLE in (waiting.outcomes[failed].detail or "")
        assert len([r for r in fake_stripe.requests if r.path == f"/v1/subscriptions/{sub}"]) == SIDE_STEP_ATTEMPTS
    if failure == "stripe-400":
        assert errors.STRIPE_REJECTED in (waiting.outcomes[failed].detail or "")
    assert fake_stripe.subscription(sub)["cancel_at_period_end"] is (failure == "bad-email")
    await handle.signal("confirmDeletion", {"type": "immediate", "confirmedBy": "ops-test"})
    assert (await handle.result()).status is TenantDeletionStatus.DELETED


async def test_without_management_tenant_or_stripe_key_the_steps_are_skipped(
        worker_env, fake_stripe, db, outbox) -> None:
    settings = _settings(worker_env, fake_stripe, MANAGEMENT_TENANT_ID="", STRIPE_SECRET_KEY="")
    resources = await build_resources(settings)
    try:
        tenant, _, _ = await doomed_tenant({activity_name(fn): fn for fn in resources.activities}, settings, db)
    finally:
        await resources.aclose()
    client_id = await customer(db, tenant)
    async for env in _skipping(settings):
        handle = await start(env, settings, tenant, subscriptionExternalId="sub_never_called")
        waiting = await until_awaiting(handle)
        assert waiting.outcomes["client_tag"].status is OutcomeStatus.SKIPPED
        assert "MANAGEMENT_TENANT_ID" in (waiting.outcomes["client_tag"].detail or "")
        assert waiting.outcomes["stripe_subscription"].status is OutcomeStatus.SKIPPED
        assert "STRIPE_SECRET_KEY" in (waiting.outcomes["stripe_subscription"].detail or "")
        assert waiting.outcomes["cancellation_email"].status is OutcomeStatus.DONE
        await handle.signal("rollbackDeletion", {})
        await handle.result()
    assert fake_stripe.requests == [] and await cancelled_tags(db, client_id) == []


# ---------------------------------------------------------------- each activity twice, one outcome


async def test_each_new_activity_executed_twice_gives_one_outcome(acts, side_settings, db, fake_stripe) -> None:
    env = ActivityEnvironment()
    tenant, _, _ = await doomed_tenant(acts, side_settings, db)
    client_id = await customer(db, tenant)
    tag = CancelledTagInput(tenant_id=tenant, deletion_id=uuid.uuid4(), mapping_id=uuid.uuid4())
    one, two = [await env.run(acts["tag_client_cancelled"], tag) for _ in range(2)]
    assert one == two and one.added and one.client_id == client_id
    assert await cancelled_tags(db, client_id) == [tag.mapping_id]
    assert [await env.run(acts["untag_client_cancelled"], tag) for _ in range(2)] == [1, 0]
    assert await cancelled_tags(db, client_id) == []

    sub = fake_stripe.add_session(metadata={"alga_tenant_id": str(tenant)})["subscription"]
    req = SubscriptionCancellationInput(tenant_id=tenant, deletion_id=tag.deletion_id, stripe_subscription_id=sub)
    first, second = [await env.run(acts["cancel_subscription_for_deletion"], req) for _ in range(2)]
    assert first == second and first.changed and first.cancel_at is not None
    assert len(fake_stripe.writes()) == 1
    back1, back2 = [await env.run(acts["restore_subscription_after_rollback"], req) for _ in range(2)]
    assert back1.outcome.status is back2.outcome.status is OutcomeStatus.REMOVED
    assert len(fake_stripe.writes()) == 2 and fake_stripe.subscription(sub)["cancel_at_period_end"] is False

    # A subscription that pays for another tenant is never cancelled.
    other = fake_stripe.add_session(metadata={"alga_tenant_id": str(uuid.uuid4())})["subscription"]
    with pytest.raises(Exception) as refused:
        await env.run(acts["cancel_subscription_for_deletion"],
                      req.model_copy(update={"stripe_subscription_id": other}))
    assert getattr(refused.value, "type", None) == errors.STRIPE_SUBSCRIPTION_CONFLICT
    assert fake_stripe.subscription(other)["cancel_at_period_end"] is False

"""The checkout activities as Temporal runs them (``ActivityEnvironment``), with the worker's real
settings pointing at a fake nm-store: a repeated attempt is one outcome, refusals keep their type,
and the worker registers all three activities and closes their HTTP client on shutdown."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import httpx
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment
from tests.fakes.nmstore_server import FakeNmStoreServer
from tests.support.workers import activity_name

from alga_worker import errors
from alga_worker.activities.checkout import CheckoutActivities
from alga_worker.config import Settings, load_settings
from alga_worker.models import CheckoutStatus, CheckoutStatusReport, NmStoreCallback, WorkerCapabilities
from alga_worker.nmstore import callback_idempotency_key, new_http_client, status_idempotency_key
from alga_worker.runtime.worker import build_resources

WORKFLOW_ID = "tenant-creation-activities-test"
SESSION = "cs_test_activities_1"
TENANT = "0b9c3a5e-6d7f-4e21-8a90-1c2d3e4f5a6b"


@pytest.fixture
def nmstore() -> Iterator[FakeNmStoreServer]:
    with FakeNmStoreServer() as fake:
        yield fake


@pytest.fixture
def checkout_env(worker_env: dict[str, str], nmstore: FakeNmStoreServer) -> dict[str, str]:
    return {**worker_env, "NMSTORE_BASE_URL": nmstore.url, "INTERNAL_API_SHARED_SECRET": nmstore.internal_secret,
            "TEMPORAL_WEBHOOK_SECRET": nmstore.webhook_secret}


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with new_http_client() as client:
        yield client


@pytest.fixture
def activities(checkout_env: dict[str, str], http: httpx.AsyncClient) -> CheckoutActivities:
    return CheckoutActivities(load_settings(checkout_env), http)


async def test_report_checkout_status_twice_is_one_outcome(activities: CheckoutActivities,
                                                           nmstore: FakeNmStoreServer) -> None:
    report = CheckoutStatusReport(checkout_session_id=SESSION, workflow_status=CheckoutStatus.COMPLETED,
                                  workflow_id=WORKFLOW_ID, workflow_completed_at=datetime(2025, 8, 19, tzinfo=UTC))
    env = ActivityEnvironment()
    first = await env.run(activities.report_checkout_status, report)
    second = await env.run(activities.report_checkout_status, report)

    key = status_idempotency_key(WORKFLOW_ID, CheckoutStatus.COMPLETED)
    assert first.idempotency_key == second.idempotency_key == key
    assert first.http_status == second.http_status == 200
    one, two = nmstore.status_calls
    assert (one.idempotency_key, two.idempotency_key) == (key, key)
    assert one.raw_body == two.raw_body
    assert (one.duplicate, two.duplicate) == (False, True)
    assert nmstore.status_history(SESSION) == ["completed"]


async def test_send_nm_store_callback_twice_is_one_outcome(activities: CheckoutActivities,
                                                           nmstore: FakeNmStoreServer) -> None:
    callback = NmStoreCallback(session_id=SESSION, alga_tenant_id=TENANT, status=CheckoutStatus.COMPLETED,
                               workflow_id=WORKFLOW_ID)
    env = ActivityEnvironment()
    first = await env.run(activities.send_nm_store_callback, callback)
    second = await env.run(activities.send_nm_store_callback, callback)

    key = callback_idempotency_key(WORKFLOW_ID, CheckoutStatus.COMPLETED)
    assert first.idempotency_key == second.idempotency_key == key
    assert (first.kind, second.kind) == ("callback", "callback")
    one, two = nmstore.callback_calls
    assert (one.idempotency_key, two.idempotency_key) == (key, key)
    assert one.raw_body == two.raw_body and one.headers["x-temporal-signature"] == two.headers["x-temporal-signature"]
    assert (one.duplicate, two.duplicate) == (False, True)
    assert nmstore.callbacks_for(SESSION) == [{"sessionId": SESSION, "algaTenantId": TENANT, "status": "completed"}]


async def test_a_refusal_keeps_its_type_through_the_activity(checkout_env: dict[str, str], http: httpx.AsyncClient,
                                                             nmstore: FakeNmStoreServer) -> None:
    wrong = CheckoutActivities(load_settings({**checkout_env, "INTERNAL_API_SHARED_SECRET": "not-the-secret-42"}),
                               http)
    report = CheckoutStatusReport(checkout_session_id=SESSION, workflow_status=CheckoutStatus.IN_PROGRESS,
                                  workflow_id=WORKFLOW_ID)
    with pytest.raises(ApplicationError) as info:
        await ActivityEnvironment().run(wrong.report_checkout_status, report)
    assert info.value.type == errors.NMSTORE_AUTH and info.value.non_retryable
    assert "not-the-secret-42" not in str(info.value)

    nmstore.fail_next(1, 503, retry_after="2")
    with pytest.raises(ApplicationError) as info:
        await ActivityEnvironment().run(CheckoutActivities(load_settings(checkout_env), http).report_checkout_status,
                                        report)
    assert info.value.type == errors.NMSTORE_UNAVAILABLE and not info.value.non_retryable


async def test_worker_capabilities_name_what_is_missing_and_never_a_value(worker_env: dict[str, str],
                                                                         checkout_env: dict[str, str],
                                                                         http: httpx.AsyncClient) -> None:
    env = ActivityEnvironment()
    configured = await env.run(CheckoutActivities(load_settings(checkout_env), http).worker_capabilities)
    assert configured == WorkerCapabilities(missing_checkout_settings=[], stripe_enabled=False,
                                            customer_tracking_enabled=False)

    stripe_key = "sk_test_capabilities_not_real_91"
    bare = load_settings({**worker_env, "STRIPE_SECRET_KEY": stripe_key,
                          "MANAGEMENT_TENANT_ID": "11111111-2222-4333-8444-555555555555"})
    caps = await env.run(CheckoutActivities(bare, http).worker_capabilities)
    assert caps.missing_checkout_settings == ["NMSTORE_BASE_URL", "INTERNAL_API_SHARED_SECRET",
                                              "TEMPORAL_WEBHOOK_SECRET"]
    assert caps.stripe_enabled and caps.customer_tracking_enabled
    assert stripe_key not in caps.model_dump_json()


async def test_the_worker_registers_the_checkout_activities_and_closes_their_client(settings: Settings) -> None:
    resources = await build_resources(settings)
    try:
        names = {activity_name(fn) for fn in resources.activities}
        assert {"report_checkout_status", "send_nm_store_callback", "worker_capabilities"} <= names
        assert resources.http is not None and not resources.http.is_closed
    finally:
        await resources.aclose()
    assert resources.http.is_closed

"""Stripe activities against a fake Stripe API on loopback, through the official SDK, in an ActivityEnvironment.

The settings are real (``load_settings`` with ``STRIPE_API_BASE`` pointing at the fake), so the SDK
builds real HTTP requests: what the fake records is what Stripe would receive.
"""

from __future__ import annotations

import logging
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment
from tests.fakes.stripe_server import FakeStripeServer

from alga_worker import errors
from alga_worker.activities.stripe import API_VERSION, TENANT_METADATA_KEY, StripeActivities
from alga_worker.config import Settings, load_settings
from alga_worker.models import StripeDetails, StripeDetailsInput, TagStripeSubscriptionInput

PEPPER = "pepper-for-stripe-tests-0123456789"


@pytest.fixture
def fake() -> Iterator[FakeStripeServer]:
    with FakeStripeServer() as server:
        yield server


def make_settings(tmp_path: Path, **env: str) -> Settings:
    secrets = tmp_path / "secrets"
    secrets.mkdir(exist_ok=True)
    return load_settings({"SECRETS_DIR": str(secrets), "DB_HOST": "db.internal", "ALGA_AUTH_KEY": PEPPER, **env})


@pytest.fixture
async def acts(fake: FakeStripeServer, tmp_path: Path) -> AsyncIterator[StripeActivities]:
    activities = StripeActivities(make_settings(tmp_path, STRIPE_SECRET_KEY=fake.api_key, STRIPE_API_BASE=fake.url))
    yield activities
    await activities.aclose()


async def fetch(acts: StripeActivities, session_id: str) -> StripeDetails:
    result: StripeDetails = await ActivityEnvironment().run(acts.fetch_stripe_details,
                                                            StripeDetailsInput(checkout_session_id=session_id))
    return result


async def fetch_error(acts: StripeActivities, session_id: str) -> ApplicationError:
    with pytest.raises(ApplicationError) as info:
        await fetch(acts, session_id)
    return info.value


# ---------------------------------------------------------------- fetch_stripe_details


async def test_session_with_subscription_gives_ids_seats_and_price(fake: FakeStripeServer,
                                                                   acts: StripeActivities) -> None:
    ids = fake.add_session(quantity=7, email="billing@acme.test", name="Acme IT", metadata={"plan": "pro"},
                           cancel_at_period_end=True)

    details = await fetch(acts, ids["session"])

    assert details.stripe_customer_id == ids["customer"]
    assert details.stripe_subscription_id == ids["subscription"]
    assert details.stripe_subscription_item_id == ids["item"]
    assert details.stripe_price_id == ids["price"]
    assert details.license_count == 7
    assert (details.customer_email, details.customer_name) == ("billing@acme.test", "Acme IT")
    assert (details.status, details.currency, details.cancel_at_period_end) == ("active", "usd", True)
    assert details.metadata == {"plan": "pro"}
    assert details.current_period_start is not None and details.current_period_end is not None
    assert details.current_period_end - details.current_period_start == timedelta(days=30)
    assert details.current_period_start.tzinfo is not None
    assert abs(details.current_period_start - datetime.now(UTC)) < timedelta(minutes=5)

    session, customer, subscription = fake.requests
    assert session.method == "GET" and session.path == f"/v1/checkout/sessions/{ids['session']}"
    assert customer.path == f"/v1/customers/{ids['customer']}"
    assert subscription.path == f"/v1/subscriptions/{ids['subscription']}"
    assert [value for name, value in subscription.query if name.startswith("expand[")] == ["items.data.price"]
    for request in fake.requests:
        assert request.headers["authorization"] == f"Bearer {fake.api_key}"
        assert request.headers["stripe-version"] == API_VERSION


async def test_session_without_subscription_gives_the_customer_only(fake: FakeStripeServer,
                                                                    acts: StripeActivities) -> None:
    """A one-off payment: no seats from Stripe, so license_count stays None (the caller's count applies)."""
    ids = fake.add_session(with_subscription=False, email=None, name=None)

    details = await fetch(acts, ids["session"])

    assert details == StripeDetails(stripe_customer_id=ids["customer"])
    assert details.license_count is None and details.stripe_price_id is None
    assert [r.path for r in fake.requests] == [f"/v1/checkout/sessions/{ids['session']}",
                                               f"/v1/customers/{ids['customer']}"]


async def test_a_price_alga_does_not_know_is_still_returned(fake: FakeStripeServer, acts: StripeActivities) -> None:
    """Whether Alga records the price is the database's business (stripe_records); the details carry it."""
    price = f"price_{uuid.uuid4().hex[:20]}"
    ids = fake.add_session(price_id=price, quantity=3)

    details = await fetch(acts, ids["session"])

    assert details.stripe_price_id == price and details.license_count == 3


async def test_seats_default_to_one_and_an_itemless_subscription_has_no_price(fake: FakeStripeServer,
                                                                              acts: StripeActivities) -> None:
    metered = fake.add_session(quantity=None)
    assert (await fetch(acts, metered["session"])).license_count == 1  # the original's `quantity || 1`

    itemless = fake.add_session(items=0)
    details = await fetch(acts, itemless["session"])
    assert details.stripe_subscription_id == itemless["subscription"]
    assert (details.stripe_subscription_item_id, details.stripe_price_id, details.license_count) == (None, None, None)


async def test_rate_limit_is_retryable_with_stripes_delay_then_succeeds(fake: FakeStripeServer,
                                                                        acts: StripeActivities) -> None:
    ids = fake.add_session(quantity=4)
    fake.rate_limit_next(1, retry_after="3")

    limited = await fetch_error(acts, ids["session"])
    assert limited.type == errors.STRIPE_UNAVAILABLE and not limited.non_retryable
    assert limited.next_retry_delay == timedelta(seconds=3)
    assert "429" in limited.message and "rate_limit" in limited.message

    assert (await fetch(acts, ids["session"])).license_count == 4


async def test_server_errors_and_lost_connections_are_retryable(fake: FakeStripeServer, acts: StripeActivities,
                                                                tmp_path: Path) -> None:
    ids = fake.add_session()
    fake.fail_next(1, 503)
    unavailable = await fetch_error(acts, ids["session"])
    assert unavailable.type == errors.STRIPE_UNAVAILABLE and not unavailable.non_retryable
    assert unavailable.next_retry_delay is None and "503" in unavailable.message

    with socket.socket() as probe:  # a port nothing listens on once this socket is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    offline = StripeActivities(make_settings(tmp_path, STRIPE_SECRET_KEY=fake.api_key,
                                             STRIPE_API_BASE=f"http://127.0.0.1:{port}"))
    try:
        refused = await fetch_error(offline, ids["session"])
    finally:
        await offline.aclose()
    assert refused.type == errors.STRIPE_UNAVAILABLE and not refused.non_retryable
    assert "APIConnectionError" in refused.message


@pytest.mark.parametrize(("status", "error_type", "code", "should_retry", "expected", "retryable"), [
    (400, "invalid_request_error", "parameter_invalid_empty", None, errors.STRIPE_REJECTED, False),
    (402, "card_error", "card_declined", None, errors.STRIPE_REJECTED, False),
    (403, "invalid_request_error", None, None, errors.STRIPE_AUTH, False),
    (409, "api_error", None, None, errors.STRIPE_UNAVAILABLE, True),
    (500, "api_error", None, None, errors.STRIPE_UNAVAILABLE, True),
    # Stripe's own verdict on this exact request wins over the status.
    (500, "api_error", None, False, errors.STRIPE_REJECTED, False),
    (400, "invalid_request_error", "lock_timeout", True, errors.STRIPE_UNAVAILABLE, True),
])
async def test_every_stripe_error_class_is_typed(fake: FakeStripeServer, acts: StripeActivities, status: int,
                                                 error_type: str, code: str | None, should_retry: bool | None,
                                                 expected: str, retryable: bool) -> None:
    ids = fake.add_session()
    fake.fail_next(1, status, error_type=error_type, code=code, message="Your card was declined.",
                   should_retry=should_retry)
    failure = await fetch_error(acts, ids["session"])
    assert (failure.type, failure.non_retryable) == (expected, not retryable)
    assert str(status) in failure.message
    assert failure.details[0]["httpStatus"] == status and failure.details[0]["requestId"].startswith("req_")


async def test_retry_after_as_an_http_date_is_honoured(fake: FakeStripeServer, acts: StripeActivities) -> None:
    ids = fake.add_session()
    fake.rate_limit_next(1, retry_after=format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True))
    limited = await fetch_error(acts, ids["session"])
    assert limited.next_retry_delay is not None
    assert timedelta(seconds=60) < limited.next_retry_delay <= timedelta(seconds=90)


async def test_unknown_session_id_is_rejected_for_good(fake: FakeStripeServer, acts: StripeActivities) -> None:
    rejected = await fetch_error(acts, "cs_test_doesnotexist")
    assert rejected.type == errors.STRIPE_REJECTED and rejected.non_retryable
    assert "404" in rejected.message and "resource_missing" in rejected.message
    assert "No such checkout.session: 'cs_test_doesnotexist'" in rejected.message


async def test_malformed_session_id_is_a_validation_error_without_a_request(fake: FakeStripeServer,
                                                                           acts: StripeActivities) -> None:
    for bad in ("", "cs_test_1/../../v1/customers", "cs test"):
        invalid = await fetch_error(acts, bad)
        assert invalid.type == errors.VALIDATION_ERROR and invalid.non_retryable
    assert fake.requests == []


async def test_session_without_customer_is_an_incomplete_checkout(fake: FakeStripeServer,
                                                                  acts: StripeActivities) -> None:
    ids = fake.add_session(with_customer=False, with_subscription=False)
    incomplete = await fetch_error(acts, ids["session"])
    assert incomplete.type == errors.STRIPE_INCOMPLETE_CHECKOUT and incomplete.non_retryable
    assert "has no customer" in incomplete.message


async def test_wrong_key_is_an_auth_error_naming_the_variable_never_the_key(
        fake: FakeStripeServer, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    wrong_key = "sk_test_wrongwrongwrong0000KEY9"
    ids = fake.add_session()
    acts = StripeActivities(make_settings(tmp_path, STRIPE_SECRET_KEY=wrong_key, STRIPE_API_BASE=fake.url,
                                          LOG_LEVEL="info"))
    try:
        refused = await fetch_error(acts, ids["session"])
    finally:
        await acts.aclose()

    assert refused.type == errors.STRIPE_AUTH and refused.non_retryable
    assert "STRIPE_SECRET_KEY" in refused.message and "401" in refused.message
    shown = f"{refused.message} {refused.details} {refused.__cause__!r} {caplog.text}"
    for fragment in (wrong_key, wrong_key[-4:], wrong_key[:12], fake.api_key):
        assert fragment not in shown
    [request] = fake.requests
    assert request.headers["authorization"] == f"Bearer {wrong_key}"  # it was sent, and refused


async def test_missing_key_is_a_configuration_error(fake: FakeStripeServer, tmp_path: Path) -> None:
    acts = StripeActivities(make_settings(tmp_path, STRIPE_API_BASE=fake.url))
    try:
        unset = await fetch_error(acts, "cs_test_any")
        with pytest.raises(ApplicationError) as tag:
            await ActivityEnvironment().run(acts.tag_stripe_subscription, TagStripeSubscriptionInput(
                stripe_subscription_id="sub_any", tenant_id=uuid.uuid4()))
    finally:
        await acts.aclose()
    for failure in (unset, tag.value):
        assert failure.type == errors.CONFIGURATION_ERROR and failure.non_retryable
        assert "STRIPE_SECRET_KEY" in failure.message
    assert fake.requests == []


# ---------------------------------------------------------------- tag_stripe_subscription


async def tag(acts: StripeActivities, subscription_id: str, tenant_id: uuid.UUID) -> None:
    await ActivityEnvironment().run(acts.tag_stripe_subscription, TagStripeSubscriptionInput(
        stripe_subscription_id=subscription_id, tenant_id=tenant_id))


async def test_tagging_twice_writes_the_metadata_once(fake: FakeStripeServer, acts: StripeActivities) -> None:
    ids = fake.add_session(metadata={"source": "nm-store"})
    tenant_id = uuid.uuid4()

    await tag(acts, ids["subscription"], tenant_id)
    await tag(acts, ids["subscription"], tenant_id)

    [write] = fake.writes()
    assert write.path == f"/v1/subscriptions/{ids['subscription']}"
    assert write.form == [(f"metadata[{TENANT_METADATA_KEY}]", str(tenant_id))]
    assert write.headers["idempotency-key"] == f"alga-worker/tag/{ids['subscription']}/{tenant_id}"
    assert fake.subscription(ids["subscription"])["metadata"] == {"source": "nm-store",
                                                                  TENANT_METADATA_KEY: str(tenant_id)}
    assert [r.method for r in fake.requests] == ["GET", "POST", "GET"]


async def test_a_subscription_tagged_with_another_tenant_is_not_overwritten(fake: FakeStripeServer,
                                                                            acts: StripeActivities) -> None:
    other = str(uuid.uuid4())
    ids = fake.add_session(metadata={TENANT_METADATA_KEY: other})

    with pytest.raises(ApplicationError) as info:
        await tag(acts, ids["subscription"], uuid.uuid4())

    assert info.value.type == errors.STRIPE_SUBSCRIPTION_CONFLICT and info.value.non_retryable
    assert other in info.value.message
    assert fake.writes() == []
    assert fake.subscription(ids["subscription"])["metadata"] == {TENANT_METADATA_KEY: other}


async def test_tagging_an_unknown_subscription_is_rejected_and_a_rate_limit_retried(
        fake: FakeStripeServer, acts: StripeActivities) -> None:
    with pytest.raises(ApplicationError) as missing:
        await tag(acts, "sub_doesnotexist", uuid.uuid4())
    assert missing.value.type == errors.STRIPE_REJECTED and missing.value.non_retryable

    ids = fake.add_session()
    fake.rate_limit_next(1)
    with pytest.raises(ApplicationError) as limited:
        await tag(acts, ids["subscription"], uuid.uuid4())
    assert limited.value.type == errors.STRIPE_UNAVAILABLE and not limited.value.non_retryable
    assert fake.writes() == []

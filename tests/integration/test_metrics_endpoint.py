"""The worker's one Prometheus endpoint, scraped around real runs of a real `alga-worker run` process.

Each case scrapes before and after one run and asserts the *whole* change of the worker's own
counters: the expected series moved by exactly the expected amount and no other series moved. Email
goes through the fake Resend server and checkouts through the fake nm-store and Stripe servers, so
every counter is moved by the same code path as in production.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowFailureError
from tests.fakes.nmstore_server import FakeNmStoreServer
from tests.fakes.resend_server import FakeResendServer
from tests.fakes.stripe_server import FakeStripeServer
from tests.support.data import tenant_request, unique_email
from tests.support.metrics import Scrape, changes, key, scrape
from tests.support.outages import wait_for
from tests.support.processes import WorkerProcess, start_worker

from alga_worker.runtime import metrics
from alga_worker.runtime.devstack import free_port

MANAGEMENT_TENANT = "00000000-0000-4000-8000-000000000001"
WORKFLOW = {"workflow_type": "tenantCreationWorkflow"}


@pytest.fixture(scope="module")
def fakes() -> Iterator[tuple[FakeResendServer, FakeNmStoreServer, FakeStripeServer]]:
    with FakeResendServer() as resend, FakeNmStoreServer() as nmstore, FakeStripeServer() as stripe:
        yield resend, nmstore, stripe


class MeteredWorker:
    def __init__(self, process: WorkerProcess, metrics_port: int, task_queue: str) -> None:
        self.process = process
        self.port = metrics_port
        self.task_queue = task_queue

    def scrape(self) -> Scrape:
        return scrape(self.port)


@pytest.fixture
async def worker(worker_env: dict[str, str], fakes: Any, tmp_path: Path) -> AsyncIterator[MeteredWorker]:
    resend, nmstore, stripe = fakes
    port = free_port()
    env = {**worker_env, "METRICS_PORT": str(port), "METRICS_HOST": "127.0.0.1",
           "EMAIL_PROVIDER": "resend", "RESEND_API_KEY": resend.api_key, "RESEND_API_URL": resend.url,
           "NMSTORE_BASE_URL": nmstore.url, "INTERNAL_API_SHARED_SECRET": nmstore.internal_secret,
           "TEMPORAL_WEBHOOK_SECRET": nmstore.webhook_secret, "STRIPE_SECRET_KEY": stripe.api_key,
           "STRIPE_API_BASE": stripe.url, "MANAGEMENT_TENANT_ID": MANAGEMENT_TENANT}
    process = start_worker(env, tmp_path / "worker.log")
    try:
        await process.wait_until("/readyz", 200)
        yield MeteredWorker(process, port, worker_env["TEMPORAL_TASK_QUEUE"])
    finally:
        process.stop()


async def _provision(client: Client, task_queue: str, request: dict[str, Any]) -> dict[str, Any]:
    handle = await client.start_workflow("tenantCreationWorkflow", request, id=f"metrics-{uuid.uuid4()}",
                                         task_queue=task_queue)
    result: dict[str, Any] = await handle.result()
    return result


def _duration_count(outcome: str) -> Any:
    """The duration histogram's observation count of one outcome."""
    return key("alga_provisioning_duration_seconds_count", outcome=outcome, **WORKFLOW)


def _own(before: Scrape, after: Scrape) -> dict[Any, float]:
    """Changes of the worker's own counters and its duration histogram's count (buckets and sum are
    implied by the count and vary with timing)."""
    moved = changes(before, after, "alga_")
    return {k: v for k, v in moved.items()
            if after.families.get(k[0]) == "counter" or k[0].startswith("alga_provisioning_duration_seconds_count")}


async def test_the_endpoint_serves_the_sdk_families_and_ours_with_closed_label_sets(worker: MeteredWorker) -> None:
    got = worker.scrape()
    for spec in metrics.CATALOGUE:
        if spec.kind != "histogram":  # a histogram family appears with its first observation
            assert spec.exposed_name in got.families, spec.exposed_name
    for family in ("temporal_num_pollers", "temporal_worker_task_slots_available", "temporal_request_total"):
        assert family in got.families, family
    # Every label value of ours is one of its declared values: no id, address or message as a label.
    declared = {spec.exposed_name: spec for spec in metrics.CATALOGUE}
    for (name, labels), _ in got.samples.items():
        spec = declared.get(name.removesuffix("_bucket").removesuffix("_sum").removesuffix("_count")) \
            or declared.get(name)
        if spec is None:
            continue
        for label, value in labels:
            if label in spec.labels:
                assert value in spec.labels[label], (name, label, value)
    assert got.value("alga_worker_ready") == 1
    for dependency in ("temporal", "database", "schema"):
        assert got.value("alga_dependency_up", dependency=dependency) == 1


async def test_a_provisioning_moves_provisioned_and_one_sent_welcome_email(worker: MeteredWorker,
                                                                         client: Client) -> None:
    before = worker.scrape()
    result = await _provision(client, worker.task_queue, tenant_request())
    assert result["success"] is True and result["emailSent"] is True

    def completed(sample: Scrape) -> float:
        return sample.value("temporal_workflow_completed_total", workflow_type="tenantCreationWorkflow")

    # The SDK counts a completion when the server has acknowledged the last workflow task, which can be
    # a moment after the client already has the result: wait for that count, then compare everything.
    async def counted() -> Scrape | None:
        sample = worker.scrape()
        return sample if completed(sample) > completed(before) else None

    after = await wait_for("the SDK's completion count", counted, timeout=30)
    assert _own(before, after) == {
        key("alga_tenants_provisioned_total", **WORKFLOW): 1.0,
        key("alga_emails_sent_total", provider="resend", template="tenant_welcome"): 1.0,
        _duration_count("succeeded"): 1.0,
    }
    assert completed(after) - completed(before) == 1


async def test_a_refused_request_moves_failed_by_validation_and_nothing_else(worker: MeteredWorker,
                                                                           client: Client) -> None:
    before = worker.scrape()
    with pytest.raises(WorkflowFailureError):
        await _provision(client, worker.task_queue, {"tenantName": "", "adminUser": {"email": "not-an-address"}})
    after = worker.scrape()
    assert _own(before, after) == {
        key("alga_tenants_failed_total", reason="validation", **WORKFLOW): 1.0,
        _duration_count("failed"): 1.0,
    }


async def test_a_rejected_welcome_email_moves_email_failed_and_the_tenant_still_counts(
        worker: MeteredWorker, client: Client, fakes: Any) -> None:
    resend = fakes[0]
    before = worker.scrape()
    resend.fail_next(1, status=422, name="validation_error", message="The `to` field is invalid.")
    result = await _provision(client, worker.task_queue, tenant_request())
    after = worker.scrape()
    assert result["success"] is True and result["emailSent"] is False
    assert _own(before, after) == {
        key("alga_tenants_provisioned_total", **WORKFLOW): 1.0,
        key("alga_emails_failed_total", provider="resend", template="tenant_welcome", reason="rejected"): 1.0,
        _duration_count("succeeded"): 1.0,
    }


async def test_a_checkout_counts_every_stripe_and_nm_store_call_by_operation(
        worker: MeteredWorker, client: Client, fakes: Any) -> None:
    _, nmstore, stripe = fakes
    ids = stripe.add_session(quantity=3)
    before = worker.scrape()
    result = await _provision(client, worker.task_queue, tenant_request(
        checkoutSessionId=ids["session"], adminUser={"firstName": "Bo", "lastName": "Buyer", "email": unique_email()}))
    after = worker.scrape()
    assert result["success"] is True
    # As many status reports and callbacks as the fake nm-store accepted for this session.
    reports = [c for c in nmstore.status_calls if c.json and c.json.get("checkoutSessionId") == ids["session"]]
    callbacks = [c for c in nmstore.callback_calls if c.json and c.json.get("sessionId") == ids["session"]]
    assert all(c.status < 300 for c in reports + callbacks) and len(callbacks) == 1
    moved = _own(before, after)
    assert {k: v for k, v in moved.items() if k[0] == "alga_nmstore_requests_total"} == {
        key("alga_nmstore_requests_total", operation="status_report", outcome="success"): float(len(reports)),
        key("alga_nmstore_requests_total", operation="callback", outcome="success"): 1.0,
    }
    # Details: session, customer, subscription; tagging: subscription again, then its update.
    assert {k: v for k, v in moved.items() if k[0] == "alga_stripe_requests_total"} == {
        key("alga_stripe_requests_total", operation="retrieve_checkout_session", outcome="success"): 1.0,
        key("alga_stripe_requests_total", operation="retrieve_customer", outcome="success"): 1.0,
        key("alga_stripe_requests_total", operation="retrieve_subscription", outcome="success"): 2.0,
        key("alga_stripe_requests_total", operation="update_subscription", outcome="success"): 1.0,
    }
    assert moved[key("alga_tenants_provisioned_total", **WORKFLOW)] == 1.0

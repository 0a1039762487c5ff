"""The metric catalogue and its recording rules, read back through the SDK's own MetricBuffer.

A MetricBuffer is the Temporal runtime's in-memory metrics sink: the values below went through the
same Rust meter the worker's Prometheus endpoint reads, not through a double of our code.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg_pool import PoolTimeout
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    RetryState,
    TimeoutError,
    TimeoutType,
)
from temporalio.runtime import (
    BUFFERED_METRIC_KIND_COUNTER,
    BUFFERED_METRIC_KIND_HISTOGRAM,
    MetricBuffer,
    MetricBufferDurationFormat,
    Runtime,
    TelemetryConfig,
)
from temporalio.testing import ActivityEnvironment
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput
from tests.fakes.nmstore_server import FakeNmStoreServer
from tests.fakes.stripe_server import FakeStripeServer

from alga_worker import errors
from alga_worker.activities.db_errors import DatabaseErrorInterceptor
from alga_worker.activities.notifications import NotificationActivities
from alga_worker.activities.stripe import StripeActivities
from alga_worker.config import load_settings
from alga_worker.email.outbox import OutboxEmailSender
from alga_worker.models import CheckoutStatus, CheckoutStatusReport, EmailTemplate, SendEmailRequest, StripeDetailsInput
from alga_worker.nmstore import NmStoreClient, new_http_client
from alga_worker.runtime import metrics
from alga_worker.security import CredentialSealer


class Buffered:
    """A runtime whose metrics land in a buffer; installed as the process meter while in use."""

    def __init__(self) -> None:
        self.buffer = MetricBuffer(10_000, duration_format=MetricBufferDurationFormat.SECONDS)
        self.runtime = Runtime(telemetry=TelemetryConfig(metrics=self.buffer))
        self.meter = self.runtime.metric_meter

    def totals(self) -> dict[tuple[str, frozenset[tuple[str, Any]]], float]:
        """Counter sums and the last gauge value per series; histograms as their observation count."""
        out: dict[tuple[str, frozenset[tuple[str, Any]]], float] = {}
        for update in self.buffer.retrieve_updates():
            series = (update.metric.name,
                      frozenset((k, v) for k, v in update.attributes.items() if k != "service_name"))
            kind = update.metric.kind
            if kind == BUFFERED_METRIC_KIND_COUNTER:  # deltas
                out[series] = out.get(series, 0) + update.value
            elif kind == BUFFERED_METRIC_KIND_HISTOGRAM:  # one update per observation
                out[(series[0] + ":count", series[1])] = out.get((series[0] + ":count", series[1]), 0) + 1
                out[(series[0] + ":last", series[1])] = update.value
            else:
                out[series] = update.value
        return out


@pytest.fixture
def buffered() -> Iterator[Buffered]:
    sink = Buffered()
    metrics.set_process_meter(sink.meter)
    try:
        yield sink
    finally:
        metrics.set_process_meter(None)


# ---------------------------------------------------------------- the catalogue itself


def test_names_follow_prometheus_conventions_and_are_unique() -> None:
    exposed = [spec.exposed_name for spec in metrics.CATALOGUE]
    assert len(exposed) == len(set(exposed))
    for spec in metrics.CATALOGUE:
        assert re.fullmatch(r"alga_[a-z_]+", spec.name), spec.name
        assert not spec.name.endswith(("_total", "_seconds")), "the SDK adds the suffixes"
        assert spec.help.endswith(".")
        if spec.kind == "counter":
            assert spec.exposed_name.endswith("_total")
        if spec.kind == "histogram":
            assert spec.seconds and spec.exposed_name.endswith("_seconds")


def test_every_label_is_a_closed_set_with_other() -> None:
    for spec in metrics.CATALOGUE:
        for label, values in spec.labels.items():
            assert metrics.OTHER in values, (spec.name, label)
            assert all(re.fullmatch(r"[a-z_]+", v) for v in values), (spec.name, label)


def test_a_value_outside_the_set_becomes_other_and_an_undeclared_label_is_refused() -> None:
    spec = metrics.TENANTS_FAILED
    assert metrics.closed_labels(spec, {"reason": "validation"}) == {"reason": "validation"}
    assert metrics.closed_labels(spec, {"reason": "ada@example.com"}) == {"reason": "other"}
    assert metrics.closed_labels(spec, {"reason": "3f2c-tenant-id"}) == {"reason": "other"}
    with pytest.raises(ValueError, match="undeclared label"):
        metrics.closed_labels(spec, {"tenant_id": "x"})


def _activity_error(cause: BaseException) -> ActivityError:
    err = ActivityError("activity failed", scheduled_event_id=5, started_event_id=6, identity="w",
                        activity_type="provision_tenant", activity_id="1", retry_state=RetryState.NON_RETRYABLE_FAILURE)
    err.__cause__ = cause
    return err


@pytest.mark.parametrize(("error", "reason"), [
    (ApplicationError("bad", type=errors.VALIDATION_ERROR), "validation"),
    (ApplicationError("dup", type=errors.DUPLICATE_ERROR), "duplicate"),
    (ApplicationError("cancelled", type=errors.CANCELLED), "cancelled"),
    (_activity_error(ApplicationError("db", type=errors.CONSTRAINT_VIOLATION)), "database"),
    (_activity_error(ApplicationError("st", type=errors.STRIPE_REJECTED)), "stripe"),
    (_activity_error(ApplicationError("nm", type=errors.NMSTORE_AUTH)), "nm_store"),
    (_activity_error(TimeoutError("t", type=TimeoutType.START_TO_CLOSE, last_heartbeat_details=[])), "timeout"),
    (CancelledError("c"), "cancelled"),
    (ApplicationError("?", type="SomethingNew"), "other"),
    (RuntimeError("boom"), "other"),
])
def test_failure_reason_reads_the_innermost_typed_error(error: BaseException, reason: str) -> None:
    assert metrics.failure_reason(error) == reason
    assert reason in metrics.FAILURE_REASONS


def test_every_error_type_a_provisioning_can_fail_with_has_its_own_reason() -> None:
    # The error types of tenant creation and its activities: none may fall into "other".
    provisioning_types = [errors.VALIDATION_ERROR, errors.DUPLICATE_ERROR, errors.TENANT_CONFLICT,
                          errors.EMAIL_REJECTED, errors.CANCELLED, errors.CONFIGURATION_ERROR,
                          errors.AMBIGUOUS_CUSTOMER, errors.CONSTRAINT_VIOLATION, errors.INVALID_DATA,
                          errors.SCHEMA_MISMATCH, errors.DATABASE_UNAVAILABLE, errors.TRANSIENT_DATABASE,
                          errors.NMSTORE_UNAVAILABLE, errors.NMSTORE_AUTH, errors.NMSTORE_REJECTED,
                          errors.STRIPE_UNAVAILABLE, errors.STRIPE_AUTH, errors.STRIPE_REJECTED,
                          errors.STRIPE_INCOMPLETE_CHECKOUT, errors.STRIPE_SUBSCRIPTION_CONFLICT]
    for error_type in provisioning_types:
        assert metrics.failure_reason(ApplicationError("x", type=error_type)) != metrics.OTHER, error_type


# ---------------------------------------------------------------- recording through the SDK meter


def test_record_adds_observes_and_sets_through_the_meter(buffered: Buffered) -> None:
    metrics.record(metrics.EMAILS_SENT, provider="resend", template="tenant_welcome")
    metrics.record(metrics.EMAILS_SENT, provider="resend", template="tenant_welcome")
    metrics.record(metrics.EMAILS_SENT, provider="resend", template="Hello <ada@example.com>")
    metrics.record(metrics.PROVISIONING_DURATION, 1.5, outcome="succeeded")
    metrics.record(metrics.DB_POOL_IN_USE, 4)
    metrics.record(metrics.DB_POOL_IN_USE, 2)
    got = buffered.totals()
    assert got[("alga_emails_sent", frozenset({("provider", "resend"), ("template", "tenant_welcome")}))] == 2
    assert got[("alga_emails_sent", frozenset({("provider", "resend"), ("template", "other")}))] == 1
    assert got[("alga_provisioning_duration:count", frozenset({("outcome", "succeeded")}))] == 1
    assert got[("alga_provisioning_duration:last", frozenset({("outcome", "succeeded")}))] == pytest.approx(1.5)
    assert got[("alga_db_pool_connections_in_use", frozenset())] == 2


def test_initialise_gives_every_counter_series_a_zero(buffered: Buffered) -> None:
    metrics.initialise(buffered.meter, buffered.meter.with_additional_attributes({"workflow_type": "t"}), "smtp")
    got = buffered.totals()
    assert all(value == 0 for value in got.values())
    failed = {dict(labels)["reason"] for name, labels in got if name == "alga_tenants_failed"}
    assert failed == set(metrics.FAILURE_REASONS)
    email_failures = [dict(labels) for name, labels in got if name == "alga_emails_failed"]
    assert {e["provider"] for e in email_failures} == {"smtp"}
    assert len(email_failures) == len(metrics.EMAIL_TEMPLATES) * len(metrics.EMAIL_FAILURES)
    assert {name for name, _ in got} == {spec.name for spec in metrics.CATALOGUE if spec.kind == "counter"}


class _Raising(ActivityInboundInterceptor):
    """The end of the SDK's interceptor chain, standing in for an activity that raised ``error``."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        raise self.error


@pytest.mark.parametrize(("error", "error_class"), [
    (psycopg.errors.UniqueViolation("duplicate key"), "constraint_violation"),
    (psycopg.errors.DeadlockDetected("deadlock"), "transient"),
    (psycopg.errors.UndefinedTable("no table"), "schema_mismatch"),
    (PoolTimeout("pool exhausted"), "unavailable"),
])
async def test_database_errors_are_counted_by_class(buffered: Buffered, error: BaseException,
                                                    error_class: str) -> None:
    inbound = DatabaseErrorInterceptor().intercept_activity(_Raising(error))
    with pytest.raises(ApplicationError):
        await inbound.execute_activity(None)  # type: ignore[arg-type]
    assert buffered.totals() == {("alga_database_errors", frozenset({("error_class", error_class)})): 1}


async def test_an_error_that_is_not_the_databases_is_not_counted(buffered: Buffered) -> None:
    inbound = DatabaseErrorInterceptor().intercept_activity(_Raising(ValueError("not sql")))
    with pytest.raises(ValueError):
        await inbound.execute_activity(None)  # type: ignore[arg-type]
    assert buffered.totals() == {}


@pytest.mark.parametrize(("status", "outcome"), [(200, "success"), (503, "unavailable"), (429, "unavailable"),
                                                  (401, "auth_error"), (422, "rejected")])
async def test_nm_store_calls_are_counted_by_outcome(buffered: Buffered, tmp_path: Path, status: int,
                                                     outcome: str) -> None:
    with FakeNmStoreServer() as server:
        settings = load_settings({"SECRETS_DIR": str(tmp_path), "DB_HOST": "db.internal",
                                  "ALGA_AUTH_KEY": "unit-pepper-4c2f9e-not-real", "NMSTORE_BASE_URL": server.url,
                                  "INTERNAL_API_SHARED_SECRET": server.internal_secret})
        if status != 200:
            server.reply_next(status, {"error": "no"})
        async with new_http_client() as http:
            client = NmStoreClient(settings, http, total_timeout=5)
            report = CheckoutStatusReport(checkout_session_id="cs_test_1", workflow_id="wf-1",
                                          workflow_status=CheckoutStatus.IN_PROGRESS)
            try:
                await client.report_status(report)
            except ApplicationError:
                assert status != 200
    assert buffered.totals() == {
        ("alga_nmstore_requests", frozenset({("operation", "status_report"), ("outcome", outcome)})): 1}


def test_the_histogram_buckets_are_seconds() -> None:
    overrides = metrics.prometheus_bucket_overrides()
    assert overrides == {"alga_provisioning_duration": list(metrics.DURATION_BUCKETS)}
    assert metrics.DURATION_BUCKETS[0] < 1 < metrics.DURATION_BUCKETS[-1]
    assert timedelta(seconds=metrics.DURATION_BUCKETS[-1]) >= timedelta(minutes=10)


async def test_stripe_calls_are_counted_by_operation_and_outcome(buffered: Buffered, tmp_path: Path) -> None:
    with FakeStripeServer() as fake:
        ids = fake.add_session(quantity=2)
        settings = load_settings({"SECRETS_DIR": str(tmp_path), "DB_HOST": "db.internal",
                                  "ALGA_AUTH_KEY": "unit-pepper-4c2f9e-not-real", "STRIPE_SECRET_KEY": fake.api_key,
                                  "STRIPE_API_BASE": fake.url})
        acts = StripeActivities(settings)
        try:
            await ActivityEnvironment().run(acts.fetch_stripe_details,
                                            StripeDetailsInput(checkout_session_id=ids["session"]))
            fake.fail_next(1, status=404, error_type="invalid_request_error", code="resource_missing")
            with pytest.raises(ApplicationError):
                await ActivityEnvironment().run(acts.fetch_stripe_details,
                                                StripeDetailsInput(checkout_session_id="cs_test_missing"))
        finally:
            await acts.aclose()

    def series(operation: str, outcome: str) -> tuple[str, frozenset[tuple[str, str]]]:
        return "alga_stripe_requests", frozenset({("operation", operation), ("outcome", outcome)})

    assert buffered.totals() == {
        series("retrieve_checkout_session", "success"): 1, series("retrieve_customer", "success"): 1,
        series("retrieve_subscription", "success"): 1, series("retrieve_checkout_session", "rejected"): 1}


def test_the_observability_doc_lists_every_family_with_its_labels() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "observability.md").read_text()
    rows = {line.split("|")[1].strip().strip("`"): line for line in doc.splitlines()
            if line.startswith("| `alga_")}
    assert set(rows) == {spec.exposed_name for spec in metrics.CATALOGUE}
    for spec in metrics.CATALOGUE:
        for label in spec.labels:
            assert f"`{label}`" in rows[spec.exposed_name], (spec.exposed_name, label)


def _notice() -> SendEmailRequest:
    return SendEmailRequest(
        template=EmailTemplate.PROVISIONING_FAILED, to_operations=True, idempotency_key="k/1",
        variables={"tenant_name": "Acme", "admin_email": "ada@example.com", "workflow_id": "wf-1",
                   "run_id": "run-1", "failed_step": "creating_tenant", "error_type": "X", "error_message": "boom"})


async def test_an_email_the_worker_cannot_address_counts_as_failed_by_configuration(
        buffered: Buffered, tmp_path: Path) -> None:
    sender = OutboxEmailSender(tmp_path / "outbox", from_address="noreply@example.com", from_name="Alga")
    acts = NotificationActivities(sender, CredentialSealer("unit-pepper-4c2f9e-not-real"),
                                  login_url="https://app.example.com", operations_email=None)
    with pytest.raises(ApplicationError) as refused:
        await ActivityEnvironment().run(acts.send_email, _notice())
    assert refused.value.type == errors.CONFIGURATION_ERROR
    acts = NotificationActivities(sender, CredentialSealer("unit-pepper-4c2f9e-not-real"),
                                  login_url="https://app.example.com", operations_email="ops@example.com")
    await ActivityEnvironment().run(acts.send_email, _notice())

    def series(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
        return name, frozenset({("provider", "outbox"), ("template", "provisioning_failed"), *labels.items()})

    assert buffered.totals() == {series("alga_emails_failed", reason="configuration"): 1,
                                 series("alga_emails_sent"): 1}

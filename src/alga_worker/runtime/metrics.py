"""The worker's own Prometheus metrics, recorded through the Temporal SDK's metric meter.

Why the SDK meter and not ``prometheus_client``: the SDK's metrics come from its Rust core and cannot
share a ``prometheus_client`` registry (temporalio/sdk-python#856); recording ours through the same
meter puts both on one endpoint (``METRICS_HOST:METRICS_PORT``) with one set of global labels, and a
workflow's meter (``workflow.metric_meter()``) records nothing during replay, so a counter moved by a
workflow moves once per run however often the run is replayed.

Every metric is declared once, in :data:`CATALOGUE`: its name, kind, help text and, for each label,
the closed set of values it may take. :func:`record` maps any other value to ``"other"``, so no tenant
id, email address or error message can ever become a label value (an unbounded label is a time series
per tenant). The Grafana dashboard, the alert rules and ``docs/observability.md`` use these names; a
test holds that each name they use is exposed by a real scrape.

Names follow Prometheus' conventions once exposed: counters end in ``_total`` and durations are in
seconds ending in ``_seconds`` (:func:`prometheus_config` turns on the SDK's suffixes, so the SDK's
own families follow the same rules).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from itertools import product
from typing import Literal

from temporalio import activity, workflow
from temporalio.common import MetricMeter
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, ChildWorkflowError, TimeoutError

from alga_worker import errors
from alga_worker.config import EmailProvider
from alga_worker.models import EmailTemplate

Kind = Literal["counter", "histogram", "gauge"]
OTHER = "other"

# Seconds. Provisioning takes a fraction of a second to a few seconds normally; minutes when it waits
# for a retried dependency. The SDK's latency histograms get the same buckets.
DURATION_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0)


@dataclass(frozen=True)
class MetricSpec:
    """One metric: ``name`` as registered (the SDK adds ``_total`` / ``_seconds`` on exposure)."""

    name: str
    kind: Kind
    help: str
    labels: Mapping[str, frozenset[str]] = field(default_factory=dict)
    seconds: bool = False  # a duration histogram, recorded as a timedelta: exposed in seconds, ``_seconds``

    @property
    def exposed_name(self) -> str:
        """The family name a scrape shows."""
        if self.kind == "counter":
            return f"{self.name}_total"
        if self.seconds:
            return f"{self.name}_seconds"
        return self.name


def _closed(*values: str) -> frozenset[str]:
    return frozenset((*values, OTHER))


# Why a tenant creation failed: its ApplicationError type, grouped (see failure_reason()).
FAILURE_REASONS = _closed("validation", "duplicate", "conflict", "cancelled", "configuration", "database",
                          "stripe", "nm_store", "email", "timeout", "not_found")
# How a call to an external service ended (see call_outcome()).
CALL_OUTCOMES = _closed("success", "rejected", "auth_error", "unavailable")
EMAIL_PROVIDERS = _closed(*(provider.value for provider in EmailProvider))
EMAIL_TEMPLATES = _closed(*(template.value for template in EmailTemplate))
EMAIL_FAILURES = _closed("rejected", "unavailable", "configuration", "cancelled")
NMSTORE_OPERATIONS = _closed("status_report", "callback")
STRIPE_OPERATIONS = _closed("retrieve_checkout_session", "retrieve_customer", "retrieve_subscription",
                            "update_subscription")
DATABASE_ERROR_CLASSES = _closed("constraint_violation", "invalid_data", "schema_mismatch", "unavailable",
                                 "transient")
DEPENDENCIES = _closed("temporal", "database", "schema")

TENANTS_PROVISIONED = MetricSpec(
    "alga_tenants_provisioned", "counter", "Tenant creation runs that completed (the tenant exists).")
TENANTS_FAILED = MetricSpec(
    "alga_tenants_failed", "counter", "Tenant creation runs that failed or were cancelled, by reason.",
    {"reason": FAILURE_REASONS})
PROVISIONING_DURATION = MetricSpec(
    "alga_provisioning_duration", "histogram",
    "Tenant creation from the run's start to its end, by outcome.",
    {"outcome": _closed("succeeded", "failed")}, seconds=True)
EMAILS_SENT = MetricSpec(
    "alga_emails_sent", "counter", "Emails the provider accepted, by provider and template.",
    {"provider": EMAIL_PROVIDERS, "template": EMAIL_TEMPLATES})
EMAILS_FAILED = MetricSpec(
    "alga_emails_failed", "counter",
    "Failed send attempts, by provider, template and reason (unavailable attempts are retried).",
    {"provider": EMAIL_PROVIDERS, "template": EMAIL_TEMPLATES, "reason": EMAIL_FAILURES})
NMSTORE_REQUESTS = MetricSpec(
    "alga_nmstore_requests", "counter", "Calls to nm-store's internal API, by operation and outcome.",
    {"operation": NMSTORE_OPERATIONS, "outcome": CALL_OUTCOMES})
STRIPE_REQUESTS = MetricSpec(
    "alga_stripe_requests", "counter", "Calls to Stripe, by operation and outcome.",
    {"operation": STRIPE_OPERATIONS, "outcome": CALL_OUTCOMES})
DATABASE_ERRORS = MetricSpec(
    "alga_database_errors", "counter", "Database errors raised by activities, by class.",
    {"error_class": DATABASE_ERROR_CLASSES})
DB_POOL_IN_USE = MetricSpec(
    "alga_db_pool_connections_in_use", "gauge", "Activity pool connections lent out right now.")
DB_POOL_SIZE = MetricSpec(
    "alga_db_pool_connections_max", "gauge", "The activity pool's maximum size (DB_POOL_MAX_SIZE).")
DB_POOL_WAITING = MetricSpec(
    "alga_db_pool_requests_waiting", "gauge", "Activities waiting for a pool connection right now.")
WORKER_READY = MetricSpec(
    "alga_worker_ready", "gauge", "1 while /readyz answers 200, else 0 (draining, or a dependency is down).")
DEPENDENCY_UP = MetricSpec(
    "alga_dependency_up", "gauge", "1 while the last check of a dependency passed, else 0.",
    {"dependency": DEPENDENCIES})

CATALOGUE: tuple[MetricSpec, ...] = (
    TENANTS_PROVISIONED, TENANTS_FAILED, PROVISIONING_DURATION, EMAILS_SENT, EMAILS_FAILED,
    NMSTORE_REQUESTS, STRIPE_REQUESTS, DATABASE_ERRORS, DB_POOL_IN_USE, DB_POOL_SIZE, DB_POOL_WAITING,
    WORKER_READY, DEPENDENCY_UP,
)

_process_meter: MetricMeter | None = None


def set_process_meter(meter: MetricMeter | None) -> None:
    """The runtime's meter, for recordings outside any workflow or activity (pool gauges, readiness)."""
    global _process_meter
    _process_meter = meter


def current_meter() -> MetricMeter:
    """The meter of the calling context.

    In a workflow, the workflow's (it records nothing during replay). Elsewhere, activities included,
    the process's (labels: namespace and task queue), so that each series has exactly the labels
    :func:`initialise` gives it a zero with; the activity's own meter (labels the activity and
    workflow type too) only where no process meter was set, such as a worker built by a test. With
    neither (a CLI command, a unit test) nothing is recorded.
    """
    if workflow.in_workflow():
        return workflow.metric_meter()
    if _process_meter is not None:
        return _process_meter
    if activity.in_activity():
        return activity.metric_meter()
    return MetricMeter.noop


def closed_labels(spec: MetricSpec, labels: Mapping[str, str]) -> dict[str, str]:
    """``labels`` with every value outside its declared set replaced by ``"other"``; a label the spec
    does not declare is a programming error."""
    unknown = set(labels) - set(spec.labels)
    if unknown:
        raise ValueError(f"{spec.name}: undeclared label(s) {sorted(unknown)}")
    return {key: str(value) if value in spec.labels[key] else OTHER for key, value in labels.items()}


def record(spec: MetricSpec, value: float = 1, meter: MetricMeter | None = None, **labels: str) -> None:
    """Add to a counter, observe a histogram (seconds) or set a gauge. Never raises into the caller's
    work: a metric must not fail an activity."""
    attributes = closed_labels(spec, labels)
    meter = meter or current_meter()
    if spec.kind == "counter":
        meter.create_counter(spec.name, spec.help).add(int(value), attributes)
    elif spec.kind == "histogram":
        # A timedelta histogram: with durations_as_seconds the SDK exposes it in seconds, "_seconds".
        meter.create_histogram_timedelta(spec.name, spec.help).record(timedelta(seconds=value), attributes)
    else:
        meter.create_gauge_float(spec.name, spec.help).set(float(value), attributes)


def initialise(meter: MetricMeter, workflow_meter: MetricMeter, email_provider: str) -> None:
    """Add 0 to every counter series the worker can produce, so each exists from the first scrape.

    Without it a series is born at its first increment, and ``increase()`` over a window that starts
    before its birth reads 0: the first failure of a kind would never fire an alert. ``meter`` is the
    process meter activities record through; ``workflow_meter`` carries the labels a provisioning
    run's own meter adds (namespace, task queue, workflow type). Emails are initialised for the
    configured provider only.
    """
    for spec in CATALOGUE:
        if spec.kind != "counter":
            continue
        target = workflow_meter if spec in (TENANTS_PROVISIONED, TENANTS_FAILED) else meter
        names = sorted(spec.labels)
        choices = [[email_provider] if name == "provider" else sorted(spec.labels[name]) for name in names]
        counter = target.create_counter(spec.name, spec.help)
        for values in product(*choices):
            counter.add(0, closed_labels(spec, dict(zip(names, values, strict=True))))


# ---------------------------------------------------------------- classification of outcomes

_REASON_BY_TYPE: dict[str, str] = {
    errors.VALIDATION_ERROR: "validation",
    errors.DUPLICATE_ERROR: "duplicate",
    errors.TENANT_CONFLICT: "conflict",
    errors.AMBIGUOUS_CUSTOMER: "conflict",
    errors.CANCELLED: "cancelled",
    errors.CONFIGURATION_ERROR: "configuration",
    errors.TENANT_NOT_FOUND: "not_found",
    errors.USER_NOT_FOUND: "not_found",
    errors.EMAIL_REJECTED: "email",
    errors.CONSTRAINT_VIOLATION: "database",
    errors.INVALID_DATA: "database",
    errors.SCHEMA_MISMATCH: "database",
    errors.DATABASE_UNAVAILABLE: "database",
    errors.TRANSIENT_DATABASE: "database",
    errors.NMSTORE_UNAVAILABLE: "nm_store",
    errors.NMSTORE_AUTH: "nm_store",
    errors.NMSTORE_REJECTED: "nm_store",
    errors.STRIPE_UNAVAILABLE: "stripe",
    errors.STRIPE_AUTH: "stripe",
    errors.STRIPE_REJECTED: "stripe",
    errors.STRIPE_INCOMPLETE_CHECKOUT: "stripe",
    errors.STRIPE_SUBSCRIPTION_CONFLICT: "stripe",
}

_OUTCOME_BY_TYPE: dict[str, str] = {
    errors.NMSTORE_UNAVAILABLE: "unavailable", errors.NMSTORE_AUTH: "auth_error",
    errors.NMSTORE_REJECTED: "rejected",
    errors.STRIPE_UNAVAILABLE: "unavailable", errors.STRIPE_AUTH: "auth_error",
    errors.STRIPE_REJECTED: "rejected",
}

_DATABASE_CLASS_BY_TYPE: dict[str, str] = {
    errors.CONSTRAINT_VIOLATION: "constraint_violation", errors.INVALID_DATA: "invalid_data",
    errors.SCHEMA_MISMATCH: "schema_mismatch", errors.DATABASE_UNAVAILABLE: "unavailable",
    errors.TRANSIENT_DATABASE: "transient",
}


def root_cause(err: BaseException) -> BaseException:
    """The innermost Temporal failure: an activity's or child's error wraps the one that explains it."""
    while isinstance(err, ActivityError | ChildWorkflowError) and err.cause is not None:
        err = err.cause
    return err


def failure_reason(err: BaseException) -> str:
    """A run's failure as one of :data:`FAILURE_REASONS`."""
    cause = root_cause(err)
    if isinstance(cause, ApplicationError):
        return _REASON_BY_TYPE.get(cause.type or "", OTHER)
    if isinstance(cause, CancelledError):
        return "cancelled"
    if isinstance(cause, TimeoutError):
        return "timeout"
    return OTHER


def call_outcome(err: BaseException | None) -> str:
    """An external call's end as one of :data:`CALL_OUTCOMES` (``None``: it succeeded)."""
    if err is None:
        return "success"
    if isinstance(err, ApplicationError):
        return _OUTCOME_BY_TYPE.get(err.type or "", OTHER)
    return OTHER


def database_error_class(err: BaseException) -> str | None:
    """The class label of a classified database error, or None when ``err`` is not one."""
    if isinstance(err, ApplicationError):
        return _DATABASE_CLASS_BY_TYPE.get(err.type or "")
    return None


def prometheus_bucket_overrides() -> dict[str, list[float]]:
    """Seconds buckets for our duration histograms (the SDK's defaults suit milliseconds)."""
    return {spec.name: list(DURATION_BUCKETS) for spec in CATALOGUE if spec.kind == "histogram"}

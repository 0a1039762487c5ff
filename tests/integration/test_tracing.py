"""One provisioning, one trace: a real `alga-worker run` and a real `alga-worker tenant create`, both
exporting OTLP/HTTP to an in-process receiver.

What is proven, on the spans the receiver decoded (``ExportTraceServiceRequest`` protobufs):

- the CLI's ``StartWorkflow:tenantCreationWorkflow`` is the root, and every span of the run (anything
  carrying its workflow id, and the SQL and HTTP spans below them) is in that one trace, with every
  parent present: the links survived two processes, Temporal's headers and the sandbox;
- ``RunWorkflow``, each ``StartActivity`` with its ``RunActivity``, SQL spans under
  ``RunActivity:provision_tenant`` and the Resend call under the email activity's ``RunActivity``;
- nothing twice although the worker replays the whole history on every workflow task
  (``MAX_CACHED_WORKFLOWS=0``): workflow spans are not re-created on replay;
- the worker's batch is flushed when it drains: its schedule delay is longer than the test, so every
  worker span reached the receiver through :func:`shutdown_tracing` on SIGTERM;
- no attribute anywhere holds the admin's email, the temporary password, the pepper or the API key;
- statements outside any trace (the readiness probe's) are not exported as one-span traces;
- every httpx client the worker uses is traced: nm-store's and Stripe's, built before tracing was
  configured, and Resend's, built inside its SDK per request (the instrumentation wraps transports).
"""

from __future__ import annotations

import re
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import stripe
from tests.fakes.otlp_collector import OtlpReceiver, ReceivedSpan, render
from tests.fakes.resend_server import FakeResendServer
from tests.support.data import TEST_PEPPER, unique_email
from tests.support.processes import cli, start_worker

from alga_worker.config import TracingSettings
from alga_worker.email.message import EmailMessage
from alga_worker.email.resend_sender import ResendEmailSender
from alga_worker.nmstore import new_http_client
from alga_worker.runtime.tracing import configure_tracing, shutdown_tracing

WORKFLOW = "tenantCreationWorkflow"
EMAIL_ACTIVITIES = {"send_email", "send_welcome_email"}  # the welcome email's activity (generic or legacy)


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as server:
        yield server


def _ancestors(span: ReceivedSpan, by_id: dict[str, ReceivedSpan]) -> list[str]:
    names = []
    while span.parent_id in by_id:
        span = by_id[span.parent_id]
        names.append(span.name)
    return names


def _is_http(span: ReceivedSpan) -> bool:
    return "http.request.method" in span.attributes or "http.method" in span.attributes


async def test_one_provisioning_is_one_trace_from_the_cli_to_sql_and_http(
        worker_env: dict[str, str], receiver: OtlpReceiver, tmp_path: Path) -> None:
    email = unique_email("traced")
    with FakeResendServer() as resend:
        worker = start_worker(dict(
            worker_env, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url,
            # Longer than the test: the worker's spans can only arrive through the flush on drain.
            OTEL_BSP_SCHEDULE_DELAY="600000",
            # Every workflow task replays the whole history: spans must still not repeat.
            MAX_CACHED_WORKFLOWS="0",
            EMAIL_PROVIDER="resend", RESEND_API_KEY=resend.api_key, RESEND_API_URL=resend.url,
        ), tmp_path / "worker.log")
        try:
            await worker.wait_until("/readyz", 200)
            code, out, err = await cli(
                dict(worker_env, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url, OTEL_BSP_SCHEDULE_DELAY="100"),
                "tenant", "create", "--name", "Traced MSP", "--admin-email", email,
                "--admin-first-name", "Tracy", "--admin-last-name", "Span")
            assert code == 0, err
            started = re.search(r"started (\S+)", out)
            assert started, out
            workflow_id = started.group(1)
            worker.signal(signal.SIGTERM)
            assert await worker.wait_exit() == 0, worker.output()
        finally:
            worker.stop()
        assert len(resend.emails) == 1
        password = re.search(r"Temporary password:\s*(\S+)", resend.emails[0].body["text"], re.IGNORECASE)
        assert password, "welcome email without a temporary password"

    def complete(spans: list[ReceivedSpan]) -> bool:
        names = {s.name for s in spans}
        return ({f"StartWorkflow:{WORKFLOW}", f"CompleteWorkflow:{WORKFLOW}", "RunActivity:provision_tenant"} <= names
                and any(_is_http(s) for s in spans))

    spans = await receiver.wait_for(complete, "the run's spans")
    tree = render(spans)

    roots = [s for s in spans if s.name == f"StartWorkflow:{WORKFLOW}"]
    assert len(roots) == 1, tree
    root = roots[0]
    assert root.parent_id == "" and root.attributes["temporalWorkflowID"] == workflow_id
    assert root.resource["service.name"] == "alga-worker-cli"

    # One trace: whatever names the run, and everything in its trace, with every parent present.
    trace = [s for s in spans if s.trace_id == root.trace_id]
    by_id = {s.span_id: s for s in trace}
    assert len(by_id) == len(trace), "a span id repeats"
    assert all(s.trace_id == root.trace_id for s in spans if s.attributes.get("temporalWorkflowID") == workflow_id)
    orphans = [s.name for s in trace if s is not root and s.parent_id not in by_id]
    assert not orphans, f"parents missing for {orphans}:\n{tree}"
    assert all(root.name in _ancestors(s, by_id) for s in trace if s is not root), tree

    # The workflow's own spans, once each although every task replayed the history.
    names = Counter(s.name for s in trace)
    assert names[f"RunWorkflow:{WORKFLOW}"] == 1 and names[f"CompleteWorkflow:{WORKFLOW}"] == 1, tree
    started_activities = Counter(n.split(":", 1)[1] for n in names.elements() if n.startswith("StartActivity:"))
    run_activities = Counter(n.split(":", 1)[1] for n in names.elements() if n.startswith("RunActivity:"))
    assert "provision_tenant" in started_activities and EMAIL_ACTIVITIES & set(started_activities), tree
    assert started_activities == run_activities, tree  # one attempt each, each scheduled once
    assert max(started_activities.values()) == 1, tree
    for span in trace:
        if span.name.startswith("RunActivity:"):
            parent = by_id[span.parent_id]
            assert parent.name == "StartActivity:" + span.name.split(":", 1)[1], tree
            assert span.resource["service.name"] == "alga-temporal-worker"
            assert span.resource["service.version"] == "test-build"
            assert span.resource["deployment.environment"] == worker_env.get("NODE_ENV", "production")

    # SQL under the provisioning activity (statement text, never values); HTTP under the email.
    sql = [s for s in trace if s.is_sql and "RunActivity:provision_tenant" in _ancestors(s, by_id)]
    assert sql, tree
    assert any(str(s.attributes.get("db.statement") or s.attributes.get("db.query.text", "")).strip() for s in sql)
    email_runs = {f"RunActivity:{name}" for name in EMAIL_ACTIVITIES}
    http = [s for s in trace if _is_http(s) and email_runs & set(_ancestors(s, by_id))]
    assert http, tree
    assert any(str(s.attributes.get("url.full") or s.attributes.get("http.url")) == f"{resend.url}/emails"
               for s in http), tree

    # No secret or personal value in any attribute, event, link or status of any span.
    forbidden = {"the admin's email": email, "the temporary password": password.group(1),
                 "the pepper": TEST_PEPPER, "the Resend API key": resend.api_key}
    for span in spans:
        values = [*map(str, span.attributes.values()), *map(str, span.resource.values()), *span.texts]
        for what, secret in forbidden.items():
            assert not any(secret in value for value in values), f"{what} in span {span.name}"

    # Statements outside any trace (readiness probe) are not exported as traces, nor the pool's empty check.
    assert all(s.parent_id for s in spans if s.is_sql), [s.name for s in spans if s.is_sql and not s.parent_id]
    assert all(s.attributes.get("db.statement") for s in spans if s.is_sql), tree
    print(f"{len(trace)} spans in the trace; {len(sql)} SQL, {len(http)} HTTP\n{tree}")


async def test_every_http_client_of_the_worker_is_traced(receiver: OtlpReceiver) -> None:
    with FakeResendServer() as server:
        # Built as the worker builds them at start-up, before tracing is configured.
        nmstore = new_http_client()
        stripe_http = stripe.HTTPXClient(timeout=5)
        configure_tracing(TracingSettings.model_validate({"endpoint": receiver.url}),
                          environment="test", build_id="b1")
        try:
            await nmstore.post(f"{server.url}/api/internal/checkout-session-status", json={})
            await stripe_http.request_async("get", f"{server.url}/v1/checkout/sessions/cs_test_1", {})
            sender = ResendEmailSender(api_key=server.api_key, api_url=server.url,
                                       from_address="noreply@example.com", from_name="Alga PSA")
            await sender.send(EmailMessage(to=["ops@example.com"], subject="traced", html="<p>x</p>", text="x"),
                              idempotency_key="traced-1")
        finally:
            await nmstore.aclose()
            await stripe_http.close_async()  # type: ignore[no-untyped-call]
            shutdown_tracing()  # flushes: the spans are in the receiver once it returns
    urls = {str(s.attributes.get("url.full") or s.attributes.get("http.url")) for s in receiver.spans if _is_http(s)}
    assert urls == {f"{server.url}/api/internal/checkout-session-status",
                    f"{server.url}/v1/checkout/sessions/cs_test_1", f"{server.url}/emails"}

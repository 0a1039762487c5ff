"""The log lines of real provisionings: within budget, correlated, and free of secrets.

A real worker process (``alga-worker run``, LOG_LEVEL=info, LOG_FORMAT=json) provisions tenants the
way a paid nm-store checkout does, the path that logs most: Stripe details, the tenant, customer
tracking with a client-portal user, the subscription tag, the welcome email, nm-store status reports
and callback (local fakes of nm-store and Stripe; the welcome email goes to the outbox, where the test
reads the temporary passwords back). Everything the process prints is checked.

Budget: at most 30 lines per provisioned tenant at info level, worker and SDK together (the TypeScript
original logged about 730). Measured when this test was written: 20 lines per tenant before
(9 of them httpx's per-request "HTTP Request: ..." lines), 12 after.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import signal
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from tests.fakes.nmstore_server import FakeNmStoreServer
from tests.fakes.stripe_server import FakeStripeServer
from tests.support.data import TEST_PEPPER, tenant_request
from tests.support.processes import start_worker
from tests.support.workers import outbox_messages, password_from_welcome, text_body

TENANTS = 3
BUDGET_PER_TENANT = 30
MANAGEMENT_TENANT = "00000000-0000-4000-8000-000000000001"  # 0002_management_tenant.sql
RFC3339_MS_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
ACTIVITY_FIELDS = ("workflow_id", "run_id", "workflow_type", "activity_id", "activity_type", "attempt",
                   "task_queue", "namespace")
WORKFLOW_FIELDS = ("workflow_id", "run_id", "workflow_type", "attempt", "task_queue", "namespace")
# Activities whose input names the tenant (a ``tenant_id`` field, or the mailer's ``tags``).
TENANT_ACTIVITIES = {"provision_tenant", "track_customer", "tag_stripe_subscription", "send_email"}


def encoded_forms(secret: str) -> set[str]:
    """The secret as written, JSON-escaped, and base64 (standard and URL-safe) at each of the three
    alignments it can have inside a longer base64 blob (the stable middle of each)."""
    forms = {secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=True)[1:-1]}
    raw = secret.encode()
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw).decode()
        start = (shift * 4 + 2) // 3  # characters still touched by the padding bytes
        end = len(encoded) - 4  # the last group may mix in whatever follows
        for form in (encoded, encoded.replace("+", "-").replace("/", "_")):
            if end - start >= 8:
                forms.add(form[start:end])
    return forms


def checkout_env(worker_env: dict[str, str], nmstore: FakeNmStoreServer, stripe: FakeStripeServer) -> dict[str, str]:
    return {**worker_env, "NMSTORE_BASE_URL": nmstore.url, "INTERNAL_API_SHARED_SECRET": nmstore.internal_secret,
            "TEMPORAL_WEBHOOK_SECRET": nmstore.webhook_secret, "STRIPE_SECRET_KEY": stripe.api_key,
            "STRIPE_API_BASE": stripe.url, "MANAGEMENT_TENANT_ID": MANAGEMENT_TENANT,
            "CLIENT_PORTAL_URL": "https://portal.nineminds.example/login",
            "LOG_LEVEL": "info", "LOG_FORMAT": "json"}


def signup(session_id: str) -> dict[str, Any]:
    """nm-store's start (S-OCT shape): the licence count comes from the Stripe subscription."""
    request = tenant_request(checkoutSessionId=session_id, companyName=f"Budget Co {uuid.uuid4().hex[:6]}",
                             billingPlan="psa-pro")
    request.pop("clientName")
    request.pop("licenseCount")
    return request


async def test_provisioning_logs_are_within_budget_correlated_and_secret_free(
        client, worker_env, outbox: Path, tmp_path: Path) -> None:
    with FakeNmStoreServer() as nmstore, FakeStripeServer() as stripe:
        env = checkout_env(worker_env, nmstore, stripe)
        worker = start_worker(env, tmp_path / "worker.log")
        try:
            await worker.wait_until("/readyz", 200)
            started_at = len(worker.output().splitlines())
            requests = [signup(stripe.add_session(quantity=5 + n)["session"]) for n in range(TENANTS)]
            handles = await asyncio.gather(*(
                client.start_workflow("tenantCreationWorkflow", request, id=f"tenant-creation-{uuid.uuid4()}",
                                      task_queue=env["TEMPORAL_TASK_QUEUE"])
                for request in requests))
            results = await asyncio.gather(*(handle.result() for handle in handles))
            ended_at = len(worker.output().splitlines())
            worker.signal(signal.SIGTERM)
            assert await worker.wait_exit() == 0
        finally:
            worker.stop()

    lines = worker.output().splitlines()
    records = []
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise AssertionError(f"line {number} is not JSON: {line!r}") from None
        assert isinstance(record, dict), line
        records.append(record)
    for record in records:
        assert RFC3339_MS_UTC.match(record["timestamp"]), record
        assert record["level"] in {"debug", "info", "warning", "error", "critical"}, record
        assert record["logger"] and isinstance(record["message"], str), record
        assert "ts" not in record

    # Budget: every line from the first start to the last result, per tenant.
    window = records[started_at:ended_at]
    per_tenant = len(window) / TENANTS
    print(f"\nlog lines per provisioned tenant: {per_tenant:.1f} ({len(window)} for {TENANTS}); "
          f"by logger: {dict(Counter(r['logger'] for r in window))}")
    assert per_tenant <= BUDGET_PER_TENANT, [r["message"] for r in window]
    # A clean provisioning warns only that this worker has no MASTER_BILLING_TENANT_ID for the
    # subscription row (configuration the fakes do not cover).
    assert {r["message"] for r in window if r["level"] != "info"} <= {"stripe subscription row not written"}

    # Correlation: every line of the window belongs to one of the runs, with its tenant where known.
    tenant_of = {handle.id: result["tenantId"] for handle, result in zip(handles, results, strict=True)}
    run_of = {handle.id: handle.result_run_id for handle in handles}
    assert len(set(tenant_of.values())) == TENANTS
    for record in window:
        assert record.get("workflow_id") in tenant_of, f"line outside any run: {record}"
        assert record["run_id"] == run_of[record["workflow_id"]], record
        assert record["workflow_type"] == "tenantCreationWorkflow", record
        assert record["namespace"] == "default" and record["task_queue"] == env["TEMPORAL_TASK_QUEUE"], record
        if "tenant_id" in record:
            assert record["tenant_id"] == tenant_of[record["workflow_id"]], record
        if record["logger"] == "temporalio.workflow":
            assert all(record.get(f) is not None for f in WORKFLOW_FIELDS), record
            assert "activity_type" not in record
        else:  # every other line of a provisioning is logged inside an activity attempt
            assert all(record.get(f) is not None for f in ACTIVITY_FIELDS), record
            assert record["attempt"] >= 1
            if record["activity_type"] in TENANT_ACTIVITIES:
                assert record.get("tenant_id") == tenant_of[record["workflow_id"]], record
    for workflow_id, tenant_id in tenant_of.items():
        mine = [r for r in window if r["workflow_id"] == workflow_id]
        provisioned = [r for r in mine if r.get("activity_type") == "provision_tenant"]
        assert [r["message"] for r in provisioned].count("tenant provisioned") == 1
        assert provisioned and all(r["tenant_id"] == tenant_id for r in provisioned)
        # One outcome line per run, from the workflow, with the tenant from its search attribute.
        outcome = [r for r in mine if r["logger"] == "temporalio.workflow"]
        assert [r["message"] for r in outcome] == ["workflow completed"], outcome
        assert outcome[0]["tenant_id"] == tenant_id
        assert "(" not in outcome[0]["message"], "workflow details belong in fields, not the message"

    # Secrets: none, in any spelling, anywhere the process printed.
    messages = outbox_messages(outbox)
    assert len(messages) == TENANTS
    passwords = set()
    for message in messages:
        passwords.add(password_from_welcome(message))
        passwords.update(re.findall(r"temporary password:\s*(\S+)", text_body(message), re.IGNORECASE))
    assert len(passwords) == 2 * TENANTS, "each welcome email has an admin and a client-portal password"
    secrets = {TEST_PEPPER, env["ALGA_AUTH_KEY"], nmstore.internal_secret, nmstore.webhook_secret,
               stripe.api_key, *passwords}
    output = worker.output()
    for secret in secrets:
        for form in encoded_forms(secret):
            assert form not in output, f"a secret ({len(secret)} chars) appears in the logs"


def test_encoded_forms_cover_base64_at_every_alignment() -> None:
    secret = "Xy7!pa55-word-QZ"
    forms = encoded_forms(secret)
    for prefix in (b"", b"a", b"ab", b"abc", b'{"password": "'):
        blob = base64.b64encode(prefix + secret.encode() + b'", "more": 1}').decode()
        assert any(form in blob for form in forms), prefix
        urlsafe = base64.urlsafe_b64encode(prefix + secret.encode() + b"~~??").decode()
        assert any(form in urlsafe for form in forms), prefix
    assert json.dumps('a"b\\c')[1:-1] in encoded_forms('a"b\\c')

"""Provider outages: Resend, nm-store and Stripe answer 500 or 429 for a while, then recover.

Real processes throughout: the worker is ``alga-worker run`` (EMAIL_PROVIDER=resend, every checkout
setting), Temporal and PostgreSQL are the session's, and the three providers are the local fakes that
speak their wire protocols (tests/fakes/). The worker's own retry policies apply, unchanged; outages
are a few refusals long, so they fit well inside them (EMAIL_RETRY and SIDE_STEP_RETRY allow 8 and
6 attempts, nm-store reports retry for a day).

Where an outage lands is forced, not left to timing: the fakes answer scripted refusals first come,
first served, and the only traffic a fake sees at that moment is the one the test aims at. To aim at
the *final* nm-store report and at the Stripe subscription tag, the test holds a lock on ``users``
(provisioning then waits inside its transaction, as on a slow database), arms the outage once the
earlier calls have gone through, and releases the lock. The signed callback goes to its own nm-store
fake (``NM_STORE_URL`` may differ from ``NMSTORE_BASE_URL``), so its outage hits callbacks only.

What each test proves: every workflow completes, each email / status report / callback / subscription
tag is accepted exactly once by its provider (the fakes de-duplicate by ``Idempotency-Key``; a replay
is allowed, a second accepted one is not), in the right order, and ``getState`` and the result say so.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowHandle
from tests.chaos.test_worker_process import users_insert_blocked
from tests.fakes.nmstore_server import CALLBACK_PATH, STATUS_PATH, FakeNmStoreServer, RecordedCall
from tests.fakes.resend_server import FakeResendServer
from tests.fakes.stripe_server import FakeStripeServer
from tests.support.data import tenant_request, unique_email
from tests.support.processes import start_worker

from alga_worker.models import OutcomeStatus, TenantCreationResult, TenantCreationState

pytestmark = pytest.mark.chaos

MANAGEMENT_TENANT = "00000000-0000-4000-8000-000000000001"  # 0002_management_tenant.sql
RUNS = 3  # provisionings per test
# Bound of every wait on a condition. The lock on users is held for a few seconds; were it held past the
# worker's 15 s lock_timeout on a crawling machine, provisioning would only be retried (DB_RETRY).
POLL_SECONDS = 20.0
# Longer than REPORT_RETRY's first interval (1 s): a retry that waited this long honoured the hint.
NMSTORE_RETRY_AFTER = 2.0
# Longer than EMAIL_RETRY's first interval (2 s), for the same reason.
RESEND_RETRY_AFTER = 3.0
CLOCK_SLACK = 0.1  # the fake's clock vs. the Temporal server's timers


@dataclass
class Providers:
    resend: FakeResendServer
    nmstore: FakeNmStoreServer  # status reports (NMSTORE_BASE_URL)
    callbacks: FakeNmStoreServer  # signed callbacks (NM_STORE_URL)
    stripe: FakeStripeServer


@pytest.fixture
def providers() -> Iterator[Providers]:
    with FakeResendServer() as resend, FakeNmStoreServer() as nmstore, FakeNmStoreServer() as callbacks, \
            FakeStripeServer() as stripe:
        yield Providers(resend, nmstore, callbacks, stripe)


def provider_env(worker_env: dict[str, str], p: Providers) -> dict[str, str]:
    return {**worker_env, "EMAIL_PROVIDER": "resend", "RESEND_API_KEY": p.resend.api_key,
            "RESEND_API_URL": p.resend.url, "NMSTORE_BASE_URL": p.nmstore.url, "NM_STORE_URL": p.callbacks.url,
            "INTERNAL_API_SHARED_SECRET": p.nmstore.internal_secret,
            "TEMPORAL_WEBHOOK_SECRET": p.callbacks.webhook_secret, "STRIPE_SECRET_KEY": p.stripe.api_key,
            "STRIPE_API_BASE": p.stripe.url, "MANAGEMENT_TENANT_ID": MANAGEMENT_TENANT,
            "CLIENT_PORTAL_URL": "https://portal.nineminds.example/login"}


@asynccontextmanager
async def worker_process(env: dict[str, str], log_path: Path) -> AsyncIterator[None]:
    worker = start_worker(env, log_path)
    try:
        await worker.wait_until("/readyz", 200)
        yield
    finally:
        worker.stop()


async def until(what: str, predicate: Callable[[], Awaitable[bool]]) -> None:
    """Poll ``predicate`` until it holds, for at most POLL_SECONDS."""
    deadline = time.monotonic() + POLL_SECONDS
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {POLL_SECONDS} s: {what}")
        await asyncio.sleep(0.05)


def request_for(session: str | None = None) -> dict[str, Any]:
    """A tenant request with a client name of its own (customer tracking refuses a shared one); with a
    checkout session, no licence count of its own (the seat count then comes from Stripe)."""
    request = tenant_request(clientName=f"Outage Co {uuid.uuid4().hex[:8]}")
    if session is not None:  # a signup: the seat count comes from the Stripe subscription
        request["checkoutSessionId"] = session
        del request["licenseCount"]
    return request


async def start_runs(client: Client, env: dict[str, str],
                     requests: list[dict[str, Any]]) -> list[WorkflowHandle[Any, TenantCreationResult]]:
    return [await client.start_workflow("tenantCreationWorkflow", req, id=f"outage-{uuid.uuid4()}",
                                        task_queue=env["TEMPORAL_TASK_QUEUE"], result_type=TenantCreationResult)
            for req in requests]


async def state_of(handle: WorkflowHandle[Any, Any]) -> TenantCreationState:
    state: TenantCreationState = await handle.query("getState", result_type=TenantCreationState)
    return state


async def finish(handles: list[WorkflowHandle[Any, TenantCreationResult]],
                 ) -> list[tuple[TenantCreationResult, TenantCreationState]]:
    results = await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), 120)
    return [(result, await state_of(h)) for result, h in zip(results, handles, strict=True)]


def assert_one_welcome_each(resend: FakeResendServer, handles: list[WorkflowHandle[Any, Any]],
                            requests: list[dict[str, Any]], refusals: int) -> None:
    """One accepted message per admin, under its run's key; every attempt reused that key."""
    accepted = resend.emails
    for handle, req in zip(handles, requests, strict=True):
        mine = [m for m in accepted if m.body["to"] == [req["adminUser"]["email"]]]
        assert len(mine) == 1, f"{req['adminUser']['email']}: {len(mine)} accepted welcome emails"
        assert mine[0].headers["idempotency-key"].startswith(f"tenantCreationWorkflow/{handle.id}/")
    assert len(accepted) == len(requests)
    keys = Counter(r.get("idempotency-key") for r in resend.requests)
    assert set(keys) == {m.headers["idempotency-key"] for m in accepted}, keys
    # Each refusal was retried under the same key (replays of an accepted key would only add to this).
    assert sum(keys.values()) >= len(requests) + refusals, keys


async def assert_one_tenant_and_admin_each(db: Any, outcomes: list[tuple[TenantCreationResult, TenantCreationState]],
                                           requests: list[dict[str, Any]]) -> None:
    """By SQL: one tenant per request; the admin's email is on exactly two users, the admin in the new
    tenant and the client-portal user customer tracking made in the management tenant."""
    for (result, state), req in zip(outcomes, requests, strict=True):
        tenants = await (await db.execute("SELECT tenant FROM tenants WHERE client_name = %s",
                                          (req["tenantName"],))).fetchall()
        assert [str(t["tenant"]) for t in tenants] == [result.tenant_id]
        users = await (await db.execute("SELECT tenant, user_id FROM users WHERE email = %s",
                                        (req["adminUser"]["email"],))).fetchall()
        assert sorted((str(u["tenant"]), str(u["user_id"])) for u in users) == sorted(
            [(result.tenant_id, result.admin_user_id), (MANAGEMENT_TENANT, state.portal_user_id)])


def assert_truthful(outcome: tuple[TenantCreationResult, TenantCreationState], *, checkout: bool) -> None:
    result, state = outcome
    assert result.success and result.email_sent and result.email_provider == "resend", result
    assert state.email_sent is True and state.outcomes["welcome_email"].status is OutcomeStatus.DONE
    assert state.step.value == "completed" and state.error is None, state
    for stage in ("customer_client", "customer_contact", "customer_tag", "portal_user"):
        assert state.outcomes[stage].status is OutcomeStatus.DONE, (stage, state.outcomes[stage])
    if checkout:
        assert state.checkout is not None
        assert state.checkout.last_status is not None and state.checkout.last_status.value == "completed"
        assert state.checkout.last_error is None, state.checkout.last_error
        assert state.checkout.status_delivery is not None and state.checkout.status_delivery.http_status == 200
        assert state.checkout.callback_delivery is not None and state.checkout.callback_delivery.http_status == 200
        for step in ("stripe_details", "stripe_subscription_tag"):
            assert state.outcomes[step].status is OutcomeStatus.DONE, (step, state.outcomes[step])


# ---------------------------------------------------------------------------------------------- Resend


def email_attempts(log_path: Path) -> dict[str, list[tuple[int, datetime, int | None]]]:
    """The worker's own record of each Resend call (``alga_worker.email`` log lines), per workflow:
    (attempt, when it was logged, the HTTP status of a refusal or None when sent), in attempt order."""
    found: dict[str, list[tuple[int, datetime, int | None]]] = {}
    for line in log_path.read_text().splitlines():
        if not line.startswith("{"):
            continue
        record = json.loads(line)
        if record.get("logger") == "alga_worker.email" and record.get("activity_type") == "send_email":
            when = datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00"))
            found.setdefault(record["workflow_id"], []).append((record["attempt"], when, record.get("status")))
    return {wf: sorted(attempts) for wf, attempts in found.items()}


@pytest.mark.parametrize(("status", "retry_after"), [(500, None), (429, str(int(RESEND_RETRY_AFTER)))],
                         ids=["500", "429 Retry-After 3"])
async def test_resend_outage_then_each_admin_gets_one_welcome_email(
        client, worker_env, db, providers: Providers, tmp_path: Path, status: int, retry_after: str | None) -> None:
    env = provider_env(worker_env, providers)
    # Welcome emails are the only traffic Resend sees here, so every scripted refusal hits one; each
    # run's email is accepted only once the queue of refusals is empty, so all of them were used.
    providers.resend.fail_next(RUNS, status, retry_after=retry_after)
    requests = [request_for() for _ in range(RUNS)]
    log_path = tmp_path / "worker.log"
    async with worker_process(env, log_path):
        handles = await start_runs(client, env, requests)
        outcomes = await finish(handles)
    for outcome in outcomes:
        assert_truthful(outcome, checkout=False)
    await assert_one_tenant_and_admin_each(db, outcomes, requests)
    assert_one_welcome_each(providers.resend, handles, requests, RUNS)
    attempts = email_attempts(log_path)
    assert set(attempts) == {h.id for h in handles}, attempts
    assert sum(status_ == status for runs in attempts.values() for _, _, status_ in runs) == RUNS
    for workflow_id, runs in attempts.items():
        assert [n for n, _, _ in runs] == list(range(1, len(runs) + 1)), (workflow_id, runs)
        assert runs[-1][2] is None and all(s == status for _, _, s in runs[:-1]), (workflow_id, runs)
        if retry_after is not None:  # the hint is longer than EMAIL_RETRY's first interval (2 s)
            for (_, refused_at, _), (_, next_at, _) in pairwise(runs):
                gap = (next_at - refused_at).total_seconds()
                assert gap >= RESEND_RETRY_AFTER - CLOCK_SLACK, f"{workflow_id}: retried after {gap:.2f} s"


# ---------------------------------------------------------------------------------------------- nm-store


def accepted(calls: list[RecordedCall]) -> list[RecordedCall]:
    """Calls nm-store acted on: answered 2xx and not a replay of an earlier key."""
    return [c for c in calls if 200 <= c.status < 300 and not c.duplicate]


def for_session(calls: list[RecordedCall], session: str, status: str | None = None) -> list[RecordedCall]:
    def matches(c: RecordedCall) -> bool:
        body = c.json if isinstance(c.json, dict) else {}
        if c.path == CALLBACK_PATH:
            return body.get("sessionId") == session
        return body.get("checkoutSessionId") == session and (status is None or body.get("workflowStatus") == status)
    return [c for c in calls if matches(c)]


def assert_retry_after_honoured(calls: list[RecordedCall], status: int, seconds: float) -> None:
    """After each refusal carrying ``Retry-After``, the same request came back no sooner than that."""
    by_key: dict[str | None, list[RecordedCall]] = {}
    for call in calls:
        by_key.setdefault(call.idempotency_key, []).append(call)
    for key, repeats in by_key.items():
        for refused, retry in pairwise(repeats):
            if refused.status == status:
                gap = retry.received_at - refused.received_at
                assert gap >= seconds - CLOCK_SLACK, f"key {key}: retried after {gap:.2f} s, asked {seconds} s"


@pytest.mark.parametrize(("status", "retry_after"), [(500, None), (429, str(int(NMSTORE_RETRY_AFTER)))],
                         ids=["500", "429 Retry-After 2"])
async def test_nm_store_outage_then_each_report_and_callback_arrives_once_in_order(
        stack, client, worker_env, db, providers: Providers, tmp_path: Path, status: int,
        retry_after: str | None) -> None:
    env = provider_env(worker_env, providers)
    nmstore, callbacks = providers.nmstore, providers.callbacks
    sessions = [providers.stripe.add_session(email=unique_email("billing"))["session"] for _ in range(RUNS)]
    requests = [request_for(s) for s in sessions]
    # Outage 1: the first RUNS status requests are the in_progress reports, sent as each run starts.
    nmstore.fail_next(RUNS, status, retry_after)
    # The callback fake only ever sees callbacks: all its refusals land on them.
    callbacks.fail_next(RUNS, status, retry_after)
    async with worker_process(env, tmp_path / "worker.log"):
        async with users_insert_blocked(stack.database_url):
            handles = await start_runs(client, env, requests)

            async def in_progress_delivered() -> bool:
                return all(nmstore.status_history(s) == ["in_progress"] for s in sessions)

            await until("in_progress accepted for every session after the first outage", in_progress_delivered)
            # Outage 2, while provisioning still waits on the lock: the next status requests are the
            # final reports, so these refusals land on them.
            nmstore.fail_next(RUNS, status, retry_after)
        outcomes = await finish(handles)

    for outcome in outcomes:
        assert_truthful(outcome, checkout=True)
    await assert_one_tenant_and_admin_each(db, outcomes, requests)
    assert_one_welcome_each(providers.resend, handles, requests, 0)
    status_calls, callback_calls = nmstore.status_calls, callbacks.callback_calls
    assert {c.path for c in status_calls} == {STATUS_PATH} and {c.path for c in callback_calls} == {CALLBACK_PATH}
    refused = Counter(c.json["workflowStatus"] for c in status_calls if c.status == status)
    assert refused == {"in_progress": RUNS, "completed": RUNS}, refused
    assert sum(c.status == status for c in callback_calls) == RUNS
    for session, handle, (result, _) in zip(sessions, handles, outcomes, strict=True):
        assert nmstore.status_history(session) == ["in_progress", "completed"]
        [in_progress] = accepted(for_session(status_calls, session, "in_progress"))
        [completed] = accepted(for_session(status_calls, session, "completed"))
        [callback] = accepted(for_session(callback_calls, session))
        assert in_progress.seq < completed.seq, "in_progress after completed"
        assert callback.received_at > completed.received_at, "callback before the final status"
        assert completed.json["workflowId"] == handle.id and completed.json["workflowCompletedAt"].endswith("Z")
        assert callbacks.callbacks_for(session) == [
            {"sessionId": session, "algaTenantId": result.tenant_id, "status": "completed"}]
        # Every attempt of one report (or callback) carried one key: nm-store could de-duplicate it.
        for kind_calls in (for_session(status_calls, session, "in_progress"),
                           for_session(status_calls, session, "completed"), for_session(callback_calls, session)):
            assert len({c.idempotency_key for c in kind_calls}) == 1
    if retry_after is not None:
        assert_retry_after_honoured(status_calls, status, NMSTORE_RETRY_AFTER)
        assert_retry_after_honoured(callback_calls, status, NMSTORE_RETRY_AFTER)


# ---------------------------------------------------------------------------------------------- Stripe


def script_stripe(stripe: FakeStripeServer, status: int, count: int) -> None:
    if status == 429:
        stripe.rate_limit_next(count, retry_after="1")
    else:
        stripe.fail_next(count, status)


@pytest.mark.parametrize("status", [500, 429], ids=["500", "429 Retry-After 1"])
async def test_stripe_outage_then_details_fetched_and_each_subscription_tagged_once(
        stack, client, worker_env, db, providers: Providers, tmp_path: Path, status: int) -> None:
    env = provider_env(worker_env, providers)
    stripe, nmstore = providers.stripe, providers.nmstore
    seats = [4 + i for i in range(RUNS)]
    ids = [stripe.add_session(email=unique_email("billing"), quantity=n) for n in seats]
    requests = [request_for(i["session"]) for i in ids]
    # Outage 1: fetching the checkout details is all Stripe sees until provisioning is done.
    script_stripe(stripe, status, RUNS)
    async with worker_process(env, tmp_path / "worker.log"):
        async with users_insert_blocked(stack.database_url):
            handles = await start_runs(client, env, requests)

            async def details_fetched() -> bool:
                states = [await state_of(h) for h in handles]
                return all(s.outcomes.get("stripe_details") is not None
                           and s.outcomes["stripe_details"].status is OutcomeStatus.DONE for s in states)

            await until("Stripe details fetched for every run after the first outage", details_fetched)
            fetched = len(stripe.requests)
            # Outage 2, while provisioning waits on the lock: the next Stripe calls tag the subscriptions.
            script_stripe(stripe, status, RUNS)
        outcomes = await finish(handles)

    for outcome in outcomes:
        assert_truthful(outcome, checkout=True)
    await assert_one_tenant_and_admin_each(db, outcomes, requests)
    assert_one_welcome_each(providers.resend, handles, requests, 0)
    # Each run's fetch was refused, then read session, customer and subscription: at least RUNS * 4 calls.
    assert fetched >= RUNS * 4, fetched
    # Then each tag was refused once (outage 2) and read the subscription and wrote it: RUNS * 3 more.
    assert len(stripe.requests) - fetched >= RUNS * 3, len(stripe.requests) - fetched
    writes = stripe.writes()
    for session_ids, n, (result, state), req in zip(ids, seats, outcomes, requests, strict=True):
        sub = session_ids["subscription"]
        tenant = result.tenant_id
        mine = [w for w in writes if w.path == f"/v1/subscriptions/{sub}"]
        assert len(mine) == 1, f"{sub}: {len(mine)} subscription updates"
        assert mine[0].headers["idempotency-key"] == f"alga-worker/tag/{sub}/{tenant}"
        assert stripe.subscription(sub)["metadata"] == {"alga_tenant_id": tenant}
        assert state.stripe_customer_id == session_ids["customer"]
        row = await (await db.execute("SELECT licensed_user_count FROM tenants WHERE tenant = %s",
                                      (tenant,))).fetchone()
        assert row is not None and row["licensed_user_count"] == n, "the seat count came from Stripe"
        customers = await (await db.execute(
            "SELECT stripe_customer_external_id AS id FROM stripe_customers WHERE tenant = %s",
            (tenant,))).fetchall()
        assert [c["id"] for c in customers] == [session_ids["customer"]]
        assert nmstore.status_history(req["checkoutSessionId"])[-1:] == ["completed"]
        assert [c["status"] for c in providers.callbacks.callbacks_for(req["checkoutSessionId"])] == ["completed"]
    assert len(writes) == RUNS

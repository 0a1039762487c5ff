"""Database errors inside a real activity, on a real worker built by ``build_worker``: typed, and a
violation a retry cannot fix fails on the first attempt, without the row's values in history.

The activities are test activities of the same shape as the worker's own (a class holding the pool,
one transaction per attempt) registered next to them on the worker ``build_worker`` assembles, so the
interceptor under test is the one production registers. A tiny workflow on its own queue calls them.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from temporalio import activity, workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from alga_worker import errors
from alga_worker.config import Settings
from alga_worker.db.pool import DbPool, open_pool
from alga_worker.runtime.worker import build_worker

MANAGEMENT_TENANT = "00000000-0000-4000-8000-000000000001"  # created by the dev/test migrations


@dataclass
class ProbeActivities:
    """Same shape as ``TenantActivities``: holds the pool, one transaction per attempt."""

    pool: DbPool
    attempts: list[int] = field(default_factory=list)
    secret: str = field(default_factory=lambda: f"Secret Client {uuid.uuid4().hex}")

    @activity.defn(name="test_duplicate_client")
    async def duplicate_client(self) -> str:
        """Inserts the same client name twice in one tenant: clients_tenant_client_name_unique. The
        transaction rolls back, so nothing is left behind."""
        self.attempts.append(activity.info().attempt)
        async with self.pool.connection() as conn, conn.transaction():
            for _ in range(2):
                await conn.execute(
                    "INSERT INTO clients (tenant, client_id, client_name) VALUES (%s, gen_random_uuid(), %s)",
                    (MANAGEMENT_TENANT, self.secret))
        return "unreachable"

    @activity.defn(name="test_undefined_column")
    async def undefined_column(self) -> str:
        self.attempts.append(activity.info().attempt)
        async with self.pool.connection() as conn:
            await conn.execute("SELECT hashed_passwrd FROM users LIMIT 1")
        return "unreachable"

    @activity.defn(name="test_timeout_once")
    async def timeout_once(self) -> str:
        """Attempt 1 hits a real statement timeout; attempt 2 succeeds."""
        attempt = activity.info().attempt
        self.attempts.append(attempt)
        async with self.pool.connection() as conn, conn.transaction():
            if attempt == 1:
                await conn.execute("SET LOCAL statement_timeout = '20ms'")
                await conn.execute("SELECT pg_sleep(5)")
            cur = await conn.execute("SELECT count(*) AS n FROM tenants")
            row = await cur.fetchone()
        assert row is not None
        return f"{row['n']} tenants"


@workflow.defn(name="dbErrorsProbeWorkflow")
class ProbeWorkflow:
    @workflow.run
    async def run(self, activity_name: str, activity_queue: str) -> str:
        result: str = await workflow.execute_activity(
            activity_name, task_queue=activity_queue, start_to_close_timeout=timedelta(seconds=30),
            # Three quick attempts: a classification that failed to stop retries shows as attempt 3.
            retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=100), backoff_coefficient=1.0,
                                     maximum_attempts=3),
        )
        return result


@dataclass
class Harness:
    client: Client
    activities: ProbeActivities
    activity_queue: str
    workflow_queue: str

    async def run(self, activity_name: str) -> tuple[str | None, BaseException | None, object]:
        handle = await self.client.start_workflow(
            ProbeWorkflow.run, args=[activity_name, self.activity_queue], id=f"db-errors-{uuid.uuid4()}",
            task_queue=self.workflow_queue, execution_timeout=timedelta(seconds=60))
        result: str | None = None
        failure: BaseException | None = None
        try:
            result = await handle.result()
        except WorkflowFailureError as err:
            failure = err.cause
        history = await handle.fetch_history()
        return result, failure, history


@pytest.fixture
async def harness(client: Client, settings: Settings, task_queue: str) -> AsyncIterator[Harness]:
    pool = await open_pool(settings)
    acts = ProbeActivities(pool)
    activity_worker = build_worker(client, settings, [acts.duplicate_client, acts.undefined_column,
                                                      acts.timeout_once])
    workflow_queue = f"{task_queue}-wf"
    workflow_worker = Worker(client, task_queue=workflow_queue, workflows=[ProbeWorkflow],
                             workflow_runner=UnsandboxedWorkflowRunner())
    try:
        async with activity_worker, workflow_worker:
            yield Harness(client, acts, settings.task_queue, workflow_queue)
    finally:
        await pool.close()


def activity_failure(failure: BaseException | None) -> ApplicationError:
    assert isinstance(failure, ActivityError), failure
    assert isinstance(failure.cause, ApplicationError), failure.cause
    return failure.cause


def started_attempts(history: object) -> list[int]:
    return [e.activity_task_started_event_attributes.attempt for e in history.events  # type: ignore[attr-defined]
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED]


async def test_constraint_violation_fails_once_typed_and_without_values(harness: Harness) -> None:
    _, failure, history = await harness.run("test_duplicate_client")
    err = activity_failure(failure)
    assert err.type == errors.CONSTRAINT_VIOLATION and err.non_retryable
    assert err.message == ("unique violation: table clients, constraint clients_tenant_client_name_unique, "
                           "key (tenant, client_name) (23505)")
    assert err.details[0]["constraint"] == "clients_tenant_client_name_unique"
    assert harness.activities.attempts == [1]
    assert started_attempts(history) == [1]
    # psycopg's DETAIL quoted the client name; neither the failure nor its cause chain carries it.
    assert err.cause is None
    assert harness.activities.secret not in history.to_json()  # type: ignore[attr-defined]


async def test_undefined_column_is_a_schema_mismatch_in_one_attempt(harness: Harness) -> None:
    _, failure, history = await harness.run("test_undefined_column")
    err = activity_failure(failure)
    assert err.type == errors.SCHEMA_MISMATCH and err.non_retryable
    assert 'column "hashed_passwrd" does not exist' in err.message
    assert harness.activities.attempts == [1]
    assert started_attempts(history) == [1]


async def test_statement_timeout_is_retried_and_the_retry_succeeds(harness: Harness) -> None:
    result, failure, history = await harness.run("test_timeout_once")
    assert failure is None and result is not None and result.endswith("tenants")
    assert harness.activities.attempts == [1, 2]
    started = [e.activity_task_started_event_attributes for e in history.events  # type: ignore[attr-defined]
               if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED]
    assert [s.attempt for s in started] == [2]
    assert started[0].last_failure.application_failure_info.type == errors.TRANSIENT_DATABASE

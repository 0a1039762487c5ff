"""No log line is repeated when a workflow is replayed.

Workflow code runs again from the start whenever a worker rebuilds a run from history: after an
eviction from the sticky cache, on another worker, after a restart. ``workflow.logger`` is silent while
history is replayed; a plain logger or ``print`` is not, and would repeat every earlier line of the run
on every later workflow task. So: workflow modules use nothing but ``workflow.logger`` (checked in
their source), and a real run with the sticky cache off (``MAX_CACHED_WORKFLOWS=0``: every workflow
task replays the whole history) logs each workflow line once. A control run with the SDK's replay
suppression turned off shows the same run *would* repeat the line, so the check has teeth.

Each run's end is one line too (``runtime/log_context.py``): a failed provisioning says so once, with
the failure's type and the tenant it was creating, and the SDK's own activity-failure line names that
tenant as well.
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio import workflow
from temporalio.client import Client, WorkflowFailureError
from tests.fakes.nmstore_server import FakeNmStoreServer
from tests.fakes.stripe_server import FakeStripeServer
from tests.support.data import tenant_request, unique_email
from tests.support.logs import logging_restored
from tests.support.workers import running_worker

import alga_worker.workflows
from alga_worker.config import load_settings
from alga_worker.runtime.logging import configure_logging

WORKFLOWS_DIR = Path(alga_worker.workflows.__file__).parent
MID_RUN_WARNING = "stripe details not fetched; continuing without them"


def test_workflow_modules_log_only_through_workflow_logger() -> None:
    offences = []
    for path in sorted(WORKFLOWS_DIR.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
                if any(n and (n == "logging" or n.startswith("logging.")) for n in names):
                    offences.append(f"{path.name}:{node.lineno} imports logging")
            elif isinstance(node, ast.Call):
                func = node.func
                if isinstance(func, ast.Name) and func.id == "print":
                    offences.append(f"{path.name}:{node.lineno} print()")
                if isinstance(func, ast.Attribute) and func.attr == "getLogger":
                    offences.append(f"{path.name}:{node.lineno} getLogger()")
            elif isinstance(node, ast.Attribute) and node.attr == "base_logger":
                offences.append(f"{path.name}:{node.lineno} workflow.logger.base_logger (logs during replay)")
    assert offences == []
    assert any("workflow.logger" in p.read_text() for p in WORKFLOWS_DIR.glob("*.py"))  # the scan sees code


@contextlib.contextmanager
def captured_logs() -> Iterator[io.StringIO]:
    """The worker's JSON logging, into a buffer; the process's logging restored afterwards."""
    with logging_restored():
        stream = io.StringIO()
        configure_logging("info", "json", stream=stream)
        yield stream


async def run_with_replays(client: Client, worker_env: dict[str, str]) -> tuple[list[dict[str, Any]], str, Any]:
    """A signup whose Stripe session does not exist: the workflow warns mid-run, then provisions,
    emails and reports on, so every later workflow task replays the warning's code. Returns this
    run's log records, its tenant id and its history."""
    with FakeNmStoreServer() as nmstore, FakeStripeServer() as stripe:
        settings = load_settings({
            **worker_env, "MAX_CACHED_WORKFLOWS": "0", "NMSTORE_BASE_URL": nmstore.url,
            "INTERNAL_API_SHARED_SECRET": nmstore.internal_secret, "TEMPORAL_WEBHOOK_SECRET": nmstore.webhook_secret,
            "STRIPE_SECRET_KEY": stripe.api_key, "STRIPE_API_BASE": stripe.url})
        assert settings.max_cached_workflows == 0
        request = tenant_request(checkoutSessionId=f"cs_test_missing_{uuid.uuid4().hex[:8]}", licenseCount=4)
        with captured_logs() as stream:
            async with running_worker(client, settings):
                handle = await client.start_workflow("tenantCreationWorkflow", request,
                                                     id=f"replay-logs-{uuid.uuid4()}", task_queue=settings.task_queue)
                result = await handle.result()
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    return [r for r in records if r.get("workflow_id") == handle.id], result["tenantId"], await handle.fetch_history()


def workflow_tasks_after(history: Any, predicate: Any) -> int:
    """Workflow tasks completed after the first event matching ``predicate``: each one replayed it."""
    events = list(history.events)
    first = next(i for i, e in enumerate(events) if predicate(e))
    return sum(1 for e in events[first:] if e.HasField("workflow_task_completed_event_attributes"))


def stripe_failed(event: Any) -> bool:
    return event.HasField("activity_task_failed_event_attributes")


async def test_each_workflow_line_appears_once_although_every_task_replays(client, worker_env) -> None:
    records, tenant_id, history = await run_with_replays(client, worker_env)

    # The run really replayed the warning's code, several times over.
    assert workflow_tasks_after(history, stripe_failed) >= 3
    workflow_lines = Counter(r["message"] for r in records if r["logger"] == "temporalio.workflow")
    assert workflow_lines == {MID_RUN_WARNING: 1, "workflow completed": 1}, workflow_lines
    # Logged in the sandbox after the run set its TenantId search attribute: the line carries it.
    [warning] = [r for r in records if r["message"] == MID_RUN_WARNING]
    assert warning["tenant_id"] == tenant_id and warning["level"] == "warning"
    assert warning["workflow_type"] == "tenantCreationWorkflow" and warning["run_id"]
    # Activities are never replayed: one line per attempt and message.
    activity_lines = Counter((r["activity_id"], r["attempt"], r["message"]) for r in records if "activity_id" in r)
    assert activity_lines and set(activity_lines.values()) == {1}, activity_lines
    assert ("tenant provisioned" in {message for _, _, message in activity_lines})


async def test_control_without_replay_suppression_the_same_run_repeats_the_line(client, worker_env) -> None:
    workflow.logger.log_during_replay = True
    try:
        records, _, history = await run_with_replays(client, worker_env)
    finally:
        workflow.logger.log_during_replay = False
    # Logged live by the task that saw the failure, then again by every later task's replay.
    repeats = sum(1 for r in records if r["message"] == MID_RUN_WARNING)
    assert repeats == workflow_tasks_after(history, stripe_failed) >= 3


async def test_a_failed_provisioning_ends_in_one_warning_naming_its_tenant(client, worker_env) -> None:
    """A duplicate admin email fails ``provision_tenant`` (non-retryable) after the run minted its
    tenant id: the SDK's activity-failure line and the run's end both name that tenant."""
    settings = load_settings({**worker_env, "MAX_CACHED_WORKFLOWS": "0"})
    email = unique_email("dup")
    with captured_logs() as stream:
        async with running_worker(client, settings):
            await client.execute_workflow(
                "tenantCreationWorkflow", tenant_request(adminUser={"firstName": "A", "lastName": "B", "email": email}),
                id=f"first-{uuid.uuid4()}", task_queue=settings.task_queue)
            handle = await client.start_workflow(
                "tenantCreationWorkflow", tenant_request(adminUser={"firstName": "C", "lastName": "D", "email": email}),
                id=f"duplicate-{uuid.uuid4()}", task_queue=settings.task_queue)
            with pytest.raises(WorkflowFailureError):
                await handle.result()
            state = await handle.query("getState")
    records = [r for r in map(json.loads, stream.getvalue().splitlines()) if r.get("workflow_id") == handle.id]
    tenant_id = state["tenantId"]
    assert tenant_id
    [ended] = [r for r in records if r["logger"] == "temporalio.workflow"]
    assert (ended["message"], ended["level"], ended["error_type"]) == ("workflow failed", "warning", "DuplicateError")
    assert ended["tenant_id"] == tenant_id and ended["duration_seconds"] >= 0
    [failed] = [r for r in records if r["message"] == "Completing activity as failed"]
    assert (failed["activity_type"], failed["attempt"], failed["tenant_id"]) == ("provision_tenant", 1, tenant_id)
    assert failed["logger"] == "temporalio.activity" and "DuplicateError" in failed["exception"]
    # The run's end names the failure's type, never its message (which quotes the address here).
    assert email not in json.dumps(ended)

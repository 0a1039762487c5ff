"""Every malformed start ends: the run fails with a typed, non-retryable ValidationError after its first
workflow task, for every workflow type the worker registers. Nothing is written.

Starts are made with raw payloads through the Python client (any bytes, any encoding, any argument
count) and through the Temporal CLI, as a hostile or careless caller would.
"""

from __future__ import annotations

import base64
import json
import subprocess
import uuid
from typing import Any

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.common import RawValue
from temporalio.exceptions import ApplicationError
from tests.support.data import all_row_counts, tenant_request
from tests.support.workers import outbox_messages, running_worker

from alga_worker.runtime.devstack import find_binary


def _json(data: bytes) -> RawValue:
    return RawValue(Payload(metadata={"encoding": b"json/plain"}, data=data))


VALID = json.dumps(tenant_request()).encode()
DEEP = b"[" * 100_000 + b"]" * 100_000
DEEP_OBJECT = b'{"tenantName": ' + b'{"a": ' * 5_000 + b"1" + b"}" * 5_000 + b"}"

# name -> the arguments of the start (each a RawValue, i.e. exactly these bytes on the wire)
MALFORMED_TENANT_STARTS: dict[str, list[Any]] = {
    "truncated JSON": [_json(VALID[: len(VALID) // 2])],
    "invalid UTF-8": [_json(b'{"tenantName": "Acme \xff\xfe MSP"}')],
    "lone surrogate": [_json(b'{"tenantName": "Acme \\ud800 MSP", "adminUser": {"firstName": "A",'
                             b' "lastName": "B", "email": "a@example.com"}}')],
    "deep nesting (arrays)": [_json(DEEP)],
    "deep nesting (objects)": [_json(DEEP_OBJECT)],
    "JSON that is not an object": [_json(b"[1, 2, 3]")],
    "JSON null": [_json(b"null")],
    "empty bytes": [_json(b"")],
    "binary/null encoding": [RawValue(Payload(metadata={"encoding": b"binary/null"}))],
    "unknown encoding": [RawValue(Payload(metadata={"encoding": b"binary/x-evil"}, data=b"\x00\x01"))],
    "protobuf encoding": [RawValue(Payload(metadata={"encoding": b"json/protobuf",
                                                     "messageType": b"temporal.api.common.v1.Payload"},
                                           data=b"{}"))],
    "no argument": [],
    "two arguments": [_json(VALID), _json(VALID)],
    "two arguments, second undecodable": [_json(VALID), _json(b'{"x": ')],
}


async def _assert_failed_validation(handle: WorkflowHandle[Any, Any]) -> ApplicationError:
    with pytest.raises(WorkflowFailureError) as caught:
        await handle.result()
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError), cause
    assert cause.type == "ValidationError" and cause.non_retryable
    history = await handle.fetch_history()
    types = [e.event_type for e in history.events]
    # Ended after its first workflow task: no task failure, no retry loop, no activity.
    assert EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED not in types
    assert types.count(EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED) == 1
    assert EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED not in types
    assert types[-1] == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED
    return cause


@pytest.mark.parametrize("case", list(MALFORMED_TENANT_STARTS))
async def test_malformed_tenant_creation_start_fails_typed(client: Client, settings, db, outbox, case: str) -> None:
    before = await all_row_counts(db)
    async with running_worker(client, settings):
        handle = await client.start_workflow(
            "tenantCreationWorkflow", args=MALFORMED_TENANT_STARTS[case], id=f"malformed-{uuid.uuid4()}",
            task_queue=settings.task_queue,
        )
        cause = await _assert_failed_validation(handle)
    assert await all_row_counts(db) == before
    assert outbox_messages(outbox) == []
    # The failure names no input value (a hostile payload is not echoed back into history).
    assert "\ufffd" not in str(cause) and "Acme" not in str(cause)


@pytest.mark.parametrize("args", [[_json(b"{}")], [_json(b'{"x": ')], [_json(b"{}"), _json(b"{}")]],
                         ids=["one argument", "one undecodable argument", "two arguments"])
async def test_malformed_health_check_start_fails_typed(client: Client, settings, args: list[Any]) -> None:
    async with running_worker(client, settings):
        handle = await client.start_workflow("healthCheckWorkflow", args=args, id=f"malformed-hc-{uuid.uuid4()}",
                                             task_queue=settings.task_queue)
        await _assert_failed_validation(handle)


def _cli_start(stack, settings, workflow_id: str, *input_args: str) -> None:  # type: ignore[no-untyped-def]
    done = subprocess.run(
        [find_binary("temporal"), "workflow", "start", "--address", stack.temporal_address,
         "--type", "tenantCreationWorkflow", "--task-queue", settings.task_queue, "--workflow-id", workflow_id,
         *input_args],
        capture_output=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")


# The CLI refuses to send invalid JSON as json/plain itself; other bytes go out under another encoding.
CLI_STARTS: dict[str, list[str]] = {
    "arbitrary bytes (binary/plain)": ["--input-base64", "--input-meta", "encoding=binary/plain", "--input",
                                       base64.b64encode(b"\xff\xfe\x00{").decode()],
    "lone surrogate": ["--input", '{"tenantName": "Acme \\ud800", "adminUser": {"firstName": "A", '
                                  '"lastName": "B", "email": "a@example.com"}}'],
    "deep nesting": ["--input", "[" * 5_000 + "]" * 5_000],
    "snake_case keys": ["--input", json.dumps({"tenant_name": "Acme", "admin_user": {
        "first_name": "A", "last_name": "B", "email": "a@example.com"}})],
    "licenseCount as a string": ["--input", json.dumps(tenant_request(licenseCount="5"))],
    "two inputs": ["--input", json.dumps(tenant_request()), "--input", json.dumps(tenant_request())],
    "no input": [],
}


@pytest.mark.parametrize("case", list(CLI_STARTS))
async def test_malformed_start_through_the_temporal_cli_fails_typed(client: Client, stack, settings, db,
                                                                   case: str) -> None:
    before = await all_row_counts(db)
    workflow_id = f"malformed-cli-{uuid.uuid4()}"
    async with running_worker(client, settings):
        _cli_start(stack, settings, workflow_id, *CLI_STARTS[case])
        await _assert_failed_validation(client.get_workflow_handle(workflow_id))
    assert await all_row_counts(db) == before


async def test_a_malformed_cancel_signal_still_cancels(client: Client, settings, db) -> None:
    """Signal payloads are hostile input too: any shape of ``cancel`` is a cancel, never a stuck task."""
    async with running_worker(client, settings):
        handle = await client.start_workflow(
            "tenantCreationWorkflow", tenant_request(), id=f"cancel-shape-{uuid.uuid4()}",
            task_queue=settings.task_queue, start_signal="cancel",
            start_signal_args=[{"reason": 42, "cancelledBy": ["x"]}, "extra"])
        with pytest.raises(WorkflowFailureError) as caught:
            await handle.result()
        history = await handle.fetch_history()
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "TenantCreationCancelled"
    assert EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED not in [e.event_type for e in history.events]

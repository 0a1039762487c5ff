"""A valid tenant request that fails to become a tenant notifies operators (OPERATIONS_EMAIL), once.

Input refused by validation is the caller's error and notifies nobody; a worker without OPERATIONS_EMAIL
fails the same way, without trying to send. The notice never changes how the run ends.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError
from tests.support.data import tenant_request, unique_email
from tests.support.workers import outbox_messages, running_worker, text_body

from alga_worker.config import Settings, load_settings
from alga_worker.models import TenantCreationResult

OPERATIONS = "ops-team@nineminds.example"


def _with_operations(worker_env: dict[str, str]) -> Settings:
    return load_settings({**worker_env, "OPERATIONS_EMAIL": OPERATIONS})


async def _fails(client: Client, settings: Settings, request: Any, wf_id: str) -> ApplicationError:
    handle = await client.start_workflow("tenantCreationWorkflow", request, id=wf_id,
                                         task_queue=settings.task_queue, result_type=TenantCreationResult)
    with pytest.raises(WorkflowFailureError) as caught:
        await handle.result()
    cause: BaseException | None = caught.value.cause
    while cause is not None and not isinstance(cause, ApplicationError):
        cause = cause.__cause__
    assert isinstance(cause, ApplicationError)
    return cause


def _to(msg: Any) -> str:
    return str(msg["To"])


async def test_a_failed_provisioning_sends_one_notice_to_operations(client: Client, worker_env: dict[str, str],
                                                                    outbox) -> None:
    settings = _with_operations(worker_env)
    email = unique_email()
    async with running_worker(client, settings):
        first = await client.execute_workflow("tenantCreationWorkflow", tenant_request(
            adminUser={"firstName": "Ada", "lastName": "Lovelace", "email": email}),
            id=f"tenant-creation-{uuid.uuid4()}", task_queue=settings.task_queue, result_type=TenantCreationResult)
        assert first.success
        wf_id = f"tenant-creation-{uuid.uuid4()}"
        error = await _fails(client, settings, tenant_request(
            tenantName="Second Acme", adminUser={"firstName": "Ada", "lastName": "Again", "email": email.upper()}),
            wf_id)
    assert error.type == "DuplicateError"
    notices = [m for m in outbox_messages(outbox) if _to(m) == OPERATIONS]
    assert len(notices) == 1, [str(m["Subject"]) for m in outbox_messages(outbox)]
    body = text_body(notices[0])
    html = notices[0].get_body(preferencelist=("html",))
    assert html is not None
    for fact in ("Second Acme", wf_id, "DuplicateError"):
        assert fact in body
        assert fact in str(html.get_content())
    # The customer's welcome went to the first run's admin only; the notice went nowhere else.
    assert [_to(m) for m in outbox_messages(outbox)].count(email) == 1


async def test_refused_input_notifies_nobody(client: Client, worker_env: dict[str, str], outbox) -> None:
    settings = _with_operations(worker_env)
    async with running_worker(client, settings):
        error = await _fails(client, settings, tenant_request(tenantName=""), f"tenant-creation-{uuid.uuid4()}")
    assert error.type == "ValidationError"
    assert outbox_messages(outbox) == []


async def test_without_operations_email_the_run_fails_alike_and_nothing_is_sent(
        client: Client, settings: Settings, outbox) -> None:
    assert settings.operations_email is None
    email = unique_email()
    async with running_worker(client, settings):
        await client.execute_workflow("tenantCreationWorkflow", tenant_request(
            adminUser={"firstName": "Ada", "lastName": "Lovelace", "email": email}),
            id=f"tenant-creation-{uuid.uuid4()}", task_queue=settings.task_queue, result_type=TenantCreationResult)
        wf_id = f"tenant-creation-{uuid.uuid4()}"
        error = await _fails(client, settings, tenant_request(
            adminUser={"firstName": "Bob", "lastName": "Again", "email": email}), wf_id)
        history = await client.get_workflow_handle(wf_id).fetch_history()
    assert error.type == "DuplicateError"
    assert len(outbox_messages(outbox)) == 1  # the first tenant's welcome, nothing else
    scheduled = [e.activity_task_scheduled_event_attributes.activity_type.name for e in history.events
                 if e.HasField("activity_task_scheduled_event_attributes")]
    assert "send_email" not in scheduled

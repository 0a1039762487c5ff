"""Bad input and duplicate admins: a typed, non-retryable failure, and not one row written."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError
from tests.support.data import all_row_counts, tenant_request, unique_email
from tests.support.workers import outbox_messages, running_worker

from alga_worker.models import TenantCreationResult


def _admin(**fields: Any) -> dict[str, Any]:
    admin = {"firstName": "Ada", "lastName": "Lovelace", "email": unique_email()}
    admin.update(fields)
    return admin


BAD_INPUTS: dict[str, Any] = {
    "empty tenant name": tenant_request(tenantName=""),
    "blank tenant name": tenant_request(tenantName="   "),
    "over-long tenant name": tenant_request(tenantName="x" * 256),
    "control character in name": tenant_request(tenantName="Acme\x00MSP"),
    "empty first name": tenant_request(adminUser=_admin(firstName="")),
    "over-long last name": tenant_request(adminUser=_admin(lastName="y" * 101)),
    "email without at": tenant_request(adminUser=_admin(email="ada.example.com")),
    "email without tld": tenant_request(adminUser=_admin(email="ada@localhost")),
    "email with space": tenant_request(adminUser=_admin(email="ada lovelace@example.com")),
    "email with double dot": tenant_request(adminUser=_admin(email="ada@example..com")),
    "missing admin": {"tenantName": "Acme"},
    "unknown top-level field": tenant_request(licenceCount=5),
    "unknown admin field": tenant_request(adminUser=_admin(role="owner")),
    "zero licences": tenant_request(licenseCount=0),
    "not an object": ["tenantName", "Acme"],
}


async def _expect_failure(client, settings, request: Any) -> ApplicationError:
    handle = await client.start_workflow("tenantCreationWorkflow", request, id=f"tenant-creation-{uuid.uuid4()}",
                                         task_queue=settings.task_queue, result_type=TenantCreationResult)
    with pytest.raises(WorkflowFailureError) as caught:
        await handle.result()
    cause = caught.value.cause
    while not isinstance(cause, ApplicationError) and cause is not None and cause.__cause__ is not None:
        cause = cause.__cause__  # an ActivityError wraps the activity's ApplicationError
    assert isinstance(cause, ApplicationError), caught.value.cause
    return cause


@pytest.mark.parametrize("case", list(BAD_INPUTS))
async def test_bad_input_fails_validation_without_writing(client, settings, db, outbox, case: str) -> None:
    before = await all_row_counts(db)
    async with running_worker(client, settings):
        error = await _expect_failure(client, settings, BAD_INPUTS[case])
    assert error.type == "ValidationError"
    assert error.non_retryable
    assert error.details and error.details[0], "the failure lists the offending fields"
    assert await all_row_counts(db) == before
    assert outbox_messages(outbox) == []


async def test_admin_email_of_an_internal_user_in_another_tenant_is_a_duplicate(client, settings, db, outbox) -> None:
    email = unique_email("dup")
    async with running_worker(client, settings):
        first = await client.execute_workflow(
            "tenantCreationWorkflow", tenant_request(adminUser=_admin(email=email)),
            id=f"tenant-creation-{uuid.uuid4()}", task_queue=settings.task_queue, result_type=TenantCreationResult)
        assert first.success
        before = await all_row_counts(db)
        # Same address, other case: emails are compared lower-cased, as the web app's SSO does.
        error = await _expect_failure(client, settings,
                                      tenant_request(adminUser=_admin(email=email.upper())))
    assert error.type == "DuplicateError"
    assert error.non_retryable
    assert await all_row_counts(db) == before
    assert len(outbox_messages(outbox)) == 1  # only the first tenant's welcome


async def test_duplicate_is_not_retried(client, settings) -> None:
    """Non-retryable means one attempt: the activity history shows attempt 1 failing the workflow."""
    email = unique_email("dup")
    async with running_worker(client, settings):
        await client.execute_workflow(
            "tenantCreationWorkflow", tenant_request(adminUser=_admin(email=email)),
            id=f"tenant-creation-{uuid.uuid4()}", task_queue=settings.task_queue, result_type=TenantCreationResult)
        handle = await client.start_workflow(
            "tenantCreationWorkflow", tenant_request(adminUser=_admin(email=email)),
            id=f"tenant-creation-{uuid.uuid4()}", task_queue=settings.task_queue, result_type=TenantCreationResult)
        with pytest.raises(WorkflowFailureError):
            await handle.result()
    history = await handle.fetch_history()
    started = [e.activity_task_started_event_attributes.attempt for e in history.events
               if e.HasField("activity_task_started_event_attributes")]
    assert started == [1]

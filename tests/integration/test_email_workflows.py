"""The email layer end to end: ``send_email`` through a running worker, ``sendEmailWorkflow`` and
``testEmailWorkflow``, against the Temporal dev server, the outbox provider and the fake Resend API.

Templates with a secret are sent by workflows that seal the password in an activity; here a small
probe workflow stands in for them (the test seals, exactly as those activities do, and the real
``send_email`` opens). Every test checks what went out (the outbox's ``.eml`` files or the fake
Resend's requests) and, where a password is involved, that no event of the run's history holds it.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from temporalio import workflow
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.common import RawValue
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.worker import Worker
from tests.fakes.resend_server import FakeResendServer
from tests.support.data import TEST_PEPPER, unique_email
from tests.support.workers import outbox_messages, password_from_welcome, running_worker, text_body

from alga_worker import search_attributes
from alga_worker.config import Settings, load_settings
from alga_worker.email.templates import DEFAULT_CLIENT_PORTAL_PATH
from alga_worker.models import (
    EmailSmokeTestResult,
    EmailTemplate,
    SendEmailRequest,
    SendEmailResult,
    SendEmailWorkflowResult,
)
from alga_worker.runtime.worker import build_resources
from alga_worker.security import CredentialSealer
from alga_worker.workflows import emailing

OPERATIONS = "ops-team@nineminds-ops.com"
PASSWORD = "Tq8#vN3!rWz5kLp2"
PORTAL_PASSWORD = "Mk4&Hs9*Qd2!Lx7p"
PERSON = {"tenant_name": "Acme IT", "first_name": "Ada", "last_name": "Lovelace"}


@workflow.defn(name="emailProbeWorkflow", sandboxed=False)
class EmailProbeWorkflow:
    """What the user and tenant workflows do: hand ``send_email`` a request with sealed secrets."""

    @workflow.run
    async def run(self, req: SendEmailRequest) -> SendEmailResult:
        return await emailing.send_email(req)


@contextlib.asynccontextmanager
async def probe_worker(client: Client, settings: Settings) -> AsyncIterator[str]:
    """The worker's real activities and the probe workflow on a queue of their own."""
    queue = f"{settings.task_queue}-probe"
    resources = await build_resources(settings)
    try:
        async with Worker(client, task_queue=queue, workflows=[EmailProbeWorkflow],
                          activities=resources.activities):
            yield queue
    finally:
        await resources.aclose()


def sealed(binding: str, **secrets: str) -> dict[str, str]:
    sealer = CredentialSealer(TEST_PEPPER)
    return {name: sealer.seal(value, binding=binding) for name, value in secrets.items()}


async def probe(client: Client, queue: str, req: SendEmailRequest) -> tuple[SendEmailResult, WorkflowHandle[Any, Any]]:
    handle = await client.start_workflow(EmailProbeWorkflow.run, req, id=f"email-probe-{uuid.uuid4()}",
                                         task_queue=queue)
    return await handle.result(), handle


async def history_bytes(handle: WorkflowHandle[Any, Any]) -> bytes:
    history = await handle.fetch_history()
    return b"".join(event.SerializeToString() for event in history.events)


async def failure(handle: WorkflowHandle[Any, Any]) -> ApplicationError:
    with pytest.raises(WorkflowFailureError) as caught:
        await handle.result()
    cause: BaseException | None = caught.value.cause
    while isinstance(cause, ActivityError):
        cause = cause.cause
    assert isinstance(cause, ApplicationError), cause
    return cause


async def assert_refused_at_start(handle: WorkflowHandle[Any, Any]) -> ApplicationError:
    """Failed with ValidationError after its first workflow task: no retry loop, no activity."""
    error = await failure(handle)
    assert error.type == "ValidationError" and error.non_retryable
    types = [e.event_type for e in (await handle.fetch_history()).events]
    assert EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED not in types
    assert types.count(EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED) == 1
    assert EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED not in types
    assert types[-1] == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED
    return error


def refused_fields(error: ApplicationError) -> list[str]:
    """The fields a ValidationError names (its first detail: ``[{field, problem}, ...]``)."""
    return [problem["field"] for problem in error.details[0]]


async def activity_attempts(handle: WorkflowHandle[Any, Any]) -> list[int]:
    history = await handle.fetch_history()
    return [e.activity_task_started_event_attributes.attempt for e in history.events
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED]


def html_of(msg: Any) -> str:
    part = msg.get_body(preferencelist=("html",))
    assert part is not None
    return str(part.get_content())


# ---- send_email with sealed secrets (the path every user workflow takes) ----

SEALED_CASES: dict[str, tuple[str, dict[str, Any], dict[str, str], list[str]]] = {
    "user_invitation internal": ("user_invitation", {**PERSON, "user_type": "internal"},
                                 {"temporary_password": PASSWORD},
                                 ["Sign in at: {app}", f"Temporary Password: {PASSWORD}"]),
    "user_invitation client": ("user_invitation", {**PERSON, "user_type": "client"},
                               {"temporary_password": PASSWORD},
                               ["Sign in at: {app_root}" + DEFAULT_CLIENT_PORTAL_PATH,
                                f"Temporary Password: {PASSWORD}"]),
    "password_reset": ("password_reset", PERSON, {"temporary_password": PASSWORD},
                       ["Sign in at: {app}", f"Temporary Password: {PASSWORD}", "previous password no longer works"]),
    "tenant_welcome with portal": ("tenant_welcome", {**PERSON, "client_name": "Acme Holdings"},
                                   {"temporary_password": PASSWORD, "portal_temporary_password": PORTAL_PASSWORD},
                                   [f"Temporary Password: {PASSWORD}",
                                    f"Client portal temporary password: {PORTAL_PASSWORD}",
                                    "Sign in at: {app_root}" + DEFAULT_CLIENT_PORTAL_PATH]),
    "portal_access": ("portal_access", PERSON, {"portal_temporary_password": PORTAL_PASSWORD},
                      [f"Client portal temporary password: {PORTAL_PASSWORD}"]),
}


@pytest.mark.parametrize("case", list(SEALED_CASES))
async def test_send_email_opens_sealed_secrets_and_sends_one_message(client: Client, settings: Settings,
                                                                     outbox, caplog: pytest.LogCaptureFixture,
                                                                     case: str) -> None:
    caplog.set_level(logging.INFO, logger="alga_worker")
    template, variables, secrets, facts = SEALED_CASES[case]
    email = unique_email("mail")
    binding = f"probe/{uuid.uuid4()}/password"
    req = SendEmailRequest(template=EmailTemplate(template), to=[email], variables={**variables, "email": email},
                           sealed=sealed(binding, **secrets), seal_binding=binding,
                           idempotency_key=f"test/{uuid.uuid4()}/{case}", tags={"case": "sealed"})
    async with probe_worker(client, settings) as queue:
        result, handle = await probe(client, queue, req)
    assert result.email_sent and result.provider == "outbox" and result.template.value == template
    [msg] = outbox_messages(outbox)
    assert str(msg["To"]) == email
    assert msg["X-Alga-Tag-email_type"] == template and msg["X-Alga-Tag-workflow"] == "emailProbeWorkflow"
    app = str(settings.application_url)
    text = text_body(msg)
    for fact in facts:
        fact = fact.format(app=app, app_root=app.rstrip("/"))
        assert fact in text, fact
    assert f"Email: {email}" in text or f"Client portal email: {email}" in text
    recorded = await history_bytes(handle)
    for secret in secrets.values():
        assert secret.encode() not in recorded
        assert secret not in result.model_dump_json()
    # One log line for the send: the recipient's domain only, never the address or a secret.
    [sent] = [r for r in caplog.records if r.getMessage() == f"{template} email sent"]
    assert sent.__dict__["recipient_domains"] == [email.rpartition("@")[2]]
    for record in caplog.records:
        logged = record.getMessage() + repr(record.__dict__)
        assert email not in logged
        assert all(secret not in logged for secret in secrets.values())


async def test_a_secret_in_clear_or_a_missing_one_is_refused_in_one_attempt(client: Client, settings: Settings,
                                                                            outbox) -> None:
    email = unique_email("mail")
    base = {**PERSON, "email": email}
    async with probe_worker(client, settings) as queue:
        in_clear = SendEmailRequest(template=EmailTemplate.PASSWORD_RESET, to=[email],
                                    variables={**base, "temporary_password": PASSWORD},
                                    idempotency_key=f"test/{uuid.uuid4()}")
        handle = await client.start_workflow(EmailProbeWorkflow.run, in_clear, id=f"email-probe-{uuid.uuid4()}",
                                             task_queue=queue)
        error = await failure(handle)
        assert error.type == "ValidationError" and error.non_retryable
        assert "variables.temporary_password" in str(error) and PASSWORD not in str(error)
        assert await activity_attempts(handle) == [1]

        missing = SendEmailRequest(template=EmailTemplate.PASSWORD_RESET, to=[email], variables=base,
                                   idempotency_key=f"test/{uuid.uuid4()}")
        handle = await client.start_workflow(EmailProbeWorkflow.run, missing, id=f"email-probe-{uuid.uuid4()}",
                                             task_queue=queue)
        error = await failure(handle)
        assert error.type == "ValidationError" and "sealed.temporary_password: is required" in str(error)
        assert await activity_attempts(handle) == [1]
    assert outbox_messages(outbox) == []


async def test_the_same_key_twice_is_one_message_in_the_outbox(client: Client, settings: Settings, outbox) -> None:
    email = unique_email("mail")
    key = f"test/{uuid.uuid4()}/once"
    async with probe_worker(client, settings) as queue:
        results = []
        for _ in range(2):  # a fresh sealing each time, as a retried workflow step would not even need
            binding = f"probe/{uuid.uuid4()}/password"
            req = SendEmailRequest(template=EmailTemplate.USER_INVITATION, to=[email],
                                   variables={**PERSON, "email": email},
                                   sealed=sealed(binding, temporary_password=PASSWORD), seal_binding=binding,
                                   idempotency_key=key)
            results.append((await probe(client, queue, req))[0])
    assert len(outbox_messages(outbox)) == 1
    assert results[0].message_id == results[1].message_id
    assert [r.duplicate for r in results] == [False, True]


async def test_the_same_key_twice_is_one_message_at_resend(client: Client, worker_env: dict[str, str]) -> None:
    email = unique_email("mail")
    key = f"test/{uuid.uuid4()}/once"
    with FakeResendServer() as resend:
        settings = load_settings({**worker_env, "EMAIL_PROVIDER": "resend", "RESEND_API_URL": resend.url,
                                  "RESEND_API_KEY": resend.api_key})
        async with probe_worker(client, settings) as queue:
            results = []
            for _ in range(2):
                binding = f"probe/{uuid.uuid4()}/password"
                req = SendEmailRequest(template=EmailTemplate.TENANT_WELCOME, to=[email],
                                       variables={**PERSON, "email": email},
                                       sealed=sealed(binding, temporary_password=PASSWORD), seal_binding=binding,
                                       idempotency_key=key)
                results.append((await probe(client, queue, req))[0])
        assert len(resend.emails) == 1
        assert len(resend.requests) == 2
        assert {r.get("idempotency-key") for r in resend.requests} == {key}
        tags = {t["name"]: t["value"] for t in resend.emails[0].body["tags"]}
        assert tags["email_type"] == "tenant_welcome" and tags["workflow"] == "emailProbeWorkflow"
    assert results[0].message_id == results[1].message_id and results[0].provider == "resend"


# ---- sendEmailWorkflow ----


async def test_send_email_workflow_sends_a_deactivation_notice(client: Client, settings: Settings, outbox) -> None:
    email = unique_email("deact")
    async with running_worker(client, settings):
        handle = await client.start_workflow(
            "sendEmailWorkflow", {"template": "account_deactivated", "to": [email.upper()],
                                  "variables": {**PERSON, "email": email}},
            id=f"send-email-{uuid.uuid4()}", task_queue=settings.task_queue, result_type=SendEmailWorkflowResult)
        result = await handle.result()
    assert result.email_sent and result.template.value == "account_deactivated" and result.recipients == 1
    assert result.provider == "outbox" and result.message_id and result.destination
    [msg] = outbox_messages(outbox)
    assert str(msg["To"]) == email
    assert str(msg["Subject"]) == "Your Alga PSA account for Acme IT has been deactivated"
    assert msg["X-Alga-Tag-email_type"] == "account_deactivated" and msg["X-Alga-Tag-workflow"] == "sendEmailWorkflow"
    for part in (text_body(msg), html_of(msg)):
        assert "Ada Lovelace" in part and "Acme IT" in part and email in part


async def test_send_email_workflow_sends_the_operations_notice_and_marks_the_tenant(
        client: Client, worker_env: dict[str, str], outbox) -> None:
    settings = load_settings({**worker_env, "OPERATIONS_EMAIL": OPERATIONS})
    tenant_id = str(uuid.uuid4())
    variables = {"tenant_name": "Acme IT", "admin_email": "ada@acme.example", "workflow_id": "tenant-creation-x",
                 "run_id": "run-1", "failed_step": "provision_tenant", "error_type": "DuplicateError",
                 "error_message": "an internal user with this email exists", "tenant_id": tenant_id}
    async with running_worker(client, settings):
        handle = await client.start_workflow(
            "sendEmailWorkflow", {"template": "provisioning_failed", "toOperations": True, "variables": variables},
            id=f"send-email-{uuid.uuid4()}", task_queue=settings.task_queue, result_type=SendEmailWorkflowResult)
        result = await handle.result()
        description = await handle.describe()
    assert result.email_sent and result.recipients == 1
    [msg] = outbox_messages(outbox)
    assert str(msg["To"]) == OPERATIONS
    for part in (text_body(msg), html_of(msg)):
        for fact in ("Acme IT", "tenant-creation-x", "run-1", "provision_tenant", "DuplicateError", tenant_id):
            assert fact in part
    assert description.typed_search_attributes.get(search_attributes.TENANT_ID) == tenant_id


async def test_without_operations_email_the_notice_fails_with_configuration_error(client: Client, settings: Settings,
                                                                                   outbox) -> None:
    assert settings.operations_email is None
    variables = {"tenant_name": "Acme IT", "admin_email": "ada@acme.example", "workflow_id": "w", "run_id": "r",
                 "failed_step": "provision_tenant", "error_type": "X", "error_message": "boom"}
    async with running_worker(client, settings):
        handle = await client.start_workflow(
            "sendEmailWorkflow", {"template": "provisioning_failed", "toOperations": True, "variables": variables},
            id=f"send-email-{uuid.uuid4()}", task_queue=settings.task_queue)
        error = await failure(handle)
        attempts = await activity_attempts(handle)
    assert error.type == "ConfigurationError" and error.non_retryable and "OPERATIONS_EMAIL" in str(error)
    assert attempts == [1]
    assert outbox_messages(outbox) == []


@pytest.mark.parametrize("template", ["tenant_welcome", "portal_access", "user_invitation", "password_reset"])
async def test_send_email_workflow_refuses_templates_with_a_secret(client: Client, settings: Settings, outbox,
                                                                   template: str) -> None:
    async with running_worker(client, settings):
        handle = await client.start_workflow(
            "sendEmailWorkflow", {"template": template, "to": [unique_email()],
                                  "variables": {**PERSON, "email": unique_email()}},
            id=f"send-email-{uuid.uuid4()}", task_queue=settings.task_queue)
        error = await assert_refused_at_start(handle)
    assert "use" in str(error) and "instead" in str(error)
    assert outbox_messages(outbox) == []


BAD_SEND_INPUTS: dict[str, tuple[dict[str, Any], str]] = {
    "unknown template": ({"template": "newsletter", "to": ["a@example-msp.com"], "variables": {}}, "template"),
    "bad address": ({"template": "account_deactivated", "to": ["not-an-address"],
                     "variables": {**PERSON, "email": "a@example-msp.com"}}, "to.0"),
    "unknown variable": ({"template": "account_deactivated", "to": ["a@example-msp.com"],
                          "variables": {**PERSON, "email": "a@example-msp.com", "loginUrl": "https://evil.example"}},
                         "variables.loginUrl"),
    "missing variable": ({"template": "account_deactivated", "to": ["a@example-msp.com"],
                          "variables": {"tenant_name": "Acme IT", "email": "a@example-msp.com"}},
                         "variables.first_name"),
    "wrong type": ({"template": "account_deactivated", "to": ["a@example-msp.com"],
                    "variables": {**PERSON, "email": "a@example-msp.com", "first_name": 7}}, "variables.first_name"),
    "no recipient": ({"template": "account_deactivated", "variables": {**PERSON, "email": "a@example-msp.com"}}, "to"),
    "snake_case key": ({"template": "account_deactivated", "to": ["a@example-msp.com"], "to_operations": True,
                        "variables": {**PERSON, "email": "a@example-msp.com"}}, "to_operations"),
}


@pytest.mark.parametrize("case", list(BAD_SEND_INPUTS))
async def test_send_email_workflow_refuses_bad_input_at_start(client: Client, settings: Settings, outbox,
                                                              case: str) -> None:
    request, field = BAD_SEND_INPUTS[case]
    async with running_worker(client, settings):
        handle = await client.start_workflow("sendEmailWorkflow", request, id=f"send-email-{uuid.uuid4()}",
                                             task_queue=settings.task_queue)
        error = await assert_refused_at_start(handle)
    assert field in refused_fields(error)
    assert outbox_messages(outbox) == []


# ---- testEmailWorkflow ----


def smoke_request(email: str, **overrides: Any) -> dict[str, Any]:
    request: dict[str, Any] = {"tenantId": "tenant-1700000000000", "tenantName": "E2E Test Tenant",
                               "adminUser": {"userId": "user-1700000000000", "email": email, "firstName": "E2E",
                                             "lastName": "Test"},
                               "temporaryPassword": "", "clientName": "E2E Test Client"}
    request.update(overrides)
    return request


async def test_test_email_workflow_sends_the_welcome_and_keeps_the_password_out_of_history(
        client: Client, settings: Settings, outbox) -> None:
    email = unique_email("smoke")
    async with running_worker(client, settings):
        handle = await client.start_workflow("testEmailWorkflow", smoke_request(email), id=f"email-e2e-{uuid.uuid4()}",
                                             task_queue=settings.task_queue, result_type=EmailSmokeTestResult)
        result = await handle.result()
        recorded = await history_bytes(handle)
    assert result.email_result.email_sent and result.email_result.message_id
    assert result.template.value == "tenant_welcome" and result.email_result.provider == "outbox"
    [msg] = outbox_messages(outbox)
    assert str(msg["To"]) == email and str(msg["Subject"]) == "Welcome to Alga PSA - Your Account is Ready"
    assert msg["X-Alga-Tag-workflow"] == "testEmailWorkflow" and msg["X-Alga-Tag-smoke_test"] == "true"
    password = password_from_welcome(msg)
    assert len(password) >= 12
    text = text_body(msg)
    assert "E2E Test Tenant (E2E Test Client)" in text and "Hello E2E Test," in text
    assert password.encode() not in recorded
    assert password not in result.model_dump_json(by_alias=True)
    assert "temporaryPassword" not in result.model_dump_json(by_alias=True)


async def test_test_email_workflow_minimal_fields_and_concurrent_runs_get_distinct_passwords(
        client: Client, settings: Settings, outbox) -> None:
    emails = [unique_email(f"smoke{i}") for i in range(3)]
    async with running_worker(client, settings):
        handles = [await client.start_workflow(
            "testEmailWorkflow", {"tenantId": f"tenant-{i}", "tenantName": f"Concurrent {i}",
                                  "adminUser": {"userId": f"user-{i}", "email": email, "firstName": f"User{i}",
                                                "lastName": "Test"}},
            id=f"email-concurrent-{uuid.uuid4()}", task_queue=settings.task_queue, result_type=EmailSmokeTestResult)
            for i, email in enumerate(emails)]
        results = [await h.result() for h in handles]
    assert all(r.email_result.email_sent for r in results)
    messages = outbox_messages(outbox)
    assert sorted(str(m["To"]) for m in messages) == sorted(emails)
    assert len({password_from_welcome(m) for m in messages}) == 3


@pytest.mark.parametrize("overrides,field", [
    ({"adminUser": {"userId": "u", "email": "invalid-email-format", "firstName": "I", "lastName": "T"}},
     "adminUser.email"),
    ({"adminUser": {"userId": "u", "email": "", "firstName": "I", "lastName": "T"}}, "adminUser.email"),
    ({"temporaryPassword": "chosen-by-caller"}, "temporaryPassword"),
    ({"tenantName": 5}, "tenantName"),
    ({"extra": True}, "extra"),
], ids=["invalid address", "empty address", "caller password", "wrong type", "unknown field"])
async def test_test_email_workflow_refuses_bad_input_at_start(client: Client, settings: Settings, outbox,
                                                              overrides: dict[str, Any], field: str) -> None:
    async with running_worker(client, settings):
        handle = await client.start_workflow("testEmailWorkflow", smoke_request(unique_email(), **overrides),
                                             id=f"email-invalid-{uuid.uuid4()}", task_queue=settings.task_queue)
        error = await assert_refused_at_start(handle)
    assert field in refused_fields(error)
    assert "chosen-by-caller" not in str(error) and "chosen-by-caller" not in repr(error.details)
    assert outbox_messages(outbox) == []


# ---- malformed starts (the shared mechanisms hold for these workflows too) ----


def _raw(data: bytes, encoding: bytes = b"json/plain") -> RawValue:
    return RawValue(Payload(metadata={"encoding": encoding}, data=data))


@pytest.mark.parametrize("workflow_type", ["sendEmailWorkflow", "testEmailWorkflow"])
@pytest.mark.parametrize("args", [
    [_raw(b'{"template": "account_deac')],
    [_raw(b'{"template": "account_\xff"}')],
    [_raw(b"\x00\x01", b"binary/x-evil")],
    [_raw(b"[1, 2]")],
    [],
], ids=["truncated JSON", "invalid UTF-8", "unknown encoding", "not an object", "no argument"])
async def test_malformed_starts_end_with_validation_error(client: Client, settings: Settings, outbox,
                                                          workflow_type: str, args: list[Any]) -> None:
    async with running_worker(client, settings):
        handle = await client.start_workflow(workflow_type, args=args, id=f"malformed-{uuid.uuid4()}",
                                             task_queue=settings.task_queue)
        await assert_refused_at_start(handle)
    assert outbox_messages(outbox) == []

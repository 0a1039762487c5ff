"""The five user workflows end to end, on a real Temporal dev server and PostgreSQL, with the outbox (or
the local Resend fake) as the mail provider.

What is proven here:

- ``createUserWorkflow`` writes the user and its roles, emails an invitation whose password verifies
  against the stored hash by an independent PBKDF2, audits, and sets ``TenantId``/``UserId``;
  duplicates (case and whitespace variants, another tenant's internal address), an unknown tenant and
  unknown roles fail in the activity's first attempt with nothing written and nothing sent;
- the licence limit holds under five concurrent creations (exactly the free licences are used), and
  ``force`` goes beyond it;
- an invitation the provider rejects, or a cancel before the provider accepted it, removes the user,
  so a corrected retry succeeds; a cancel after acceptance keeps the user;
- ``resendWelcomeEmailWorkflow`` (first MSP admin or a given user) and ``resetUserPasswordWorkflow``
  replace the hash: the new emailed password verifies, the previous one does not; a failed resend is
  audited as failed, then fails typed;
- ``deactivateUserWorkflow``/``reactivateUserWorkflow``: the last-admin guard and the licence check,
  nothing changed on refusal; a deactivation notice that cannot be delivered does not undo it;
- no temporary password in any history (raw bytes, JSON, base64), result or log record;
- every malformed start ends with ``ValidationError`` after one workflow task.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.common import RawValue
from temporalio.exceptions import ApplicationError, CancelledError
from tests.fakes.resend_server import FakeResendServer
from tests.support.data import unique_email
from tests.support.users import (
    activity_attempts,
    alga_hash_matches,
    assert_secret_absent,
    audit_rows,
    emailed_password,
    failure_of,
    history_haystacks,
    messages_to,
    one_message,
    provision_tenant,
    role_names,
    scheduled_activities,
    user_row,
    users_with_email,
)
from tests.support.visibility import workflow_ids_matching
from tests.support.workers import (
    Activities,
    Gate,
    activities_for,
    outbox_messages,
    running_worker,
    text_body,
)

from alga_worker import errors
from alga_worker.config import Settings, load_settings
from alga_worker.models import CreateUserResult, ResendWelcomeEmailResult, UserActionResult

MGMT = uuid.UUID("00000000-0000-4000-8000-000000000001")  # 0002_management_tenant.sql; the audit tenant here



# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture
def user_env(worker_env: dict[str, str]) -> dict[str, str]:
    return dict(worker_env, MANAGEMENT_TENANT_ID=str(MGMT))


@pytest.fixture
def user_settings(user_env: dict[str, str]) -> Settings:
    return load_settings(user_env)


@pytest.fixture
async def acts(user_settings: Settings) -> AsyncIterator[Activities]:
    async with activities_for(user_settings) as found:
        yield found


RESULT_TYPES: dict[str, type[Any]] = {
    "createUserWorkflow": CreateUserResult, "resendWelcomeEmailWorkflow": ResendWelcomeEmailResult,
    "resetUserPasswordWorkflow": UserActionResult, "deactivateUserWorkflow": UserActionResult,
    "reactivateUserWorkflow": UserActionResult,
}


async def start(client: Client, settings: Settings, workflow_type: str, request: Any) -> WorkflowHandle[Any, Any]:
    return await client.start_workflow(
        workflow_type, request, id=f"{workflow_type}-test-{uuid.uuid4()}", task_queue=settings.task_queue,
        result_type=RESULT_TYPES[workflow_type], execution_timeout=timedelta(minutes=3))


async def run(client: Client, settings: Settings, workflow_type: str,
              request: Any) -> tuple[WorkflowHandle[Any, Any], Any]:
    handle = await start(client, settings, workflow_type, request)
    return handle, await handle.result()


def create_request(tenant_id: Any, **overrides: Any) -> dict[str, Any]:
    request: dict[str, Any] = {"tenantId": str(tenant_id), "email": unique_email("new.user"), "firstName": "Nia",
                               "lastName": "Newcomer", "roles": ["Technician"], "triggeredBy": "ops-tester",
                               "triggeredByEmail": "ops@nineminds.example"}
    request.update(overrides)
    return request


async def stored_hash(db: Any, tenant_id: Any, user_id: Any) -> str:
    row = await user_row(db, tenant_id, user_id)
    assert row is not None
    return str(row["hashed_password"])


async def internal_active(db: Any, tenant_id: Any) -> int:
    cur = await db.execute("SELECT count(*) AS n FROM users WHERE tenant = %s AND user_type = 'internal'"
                           " AND NOT coalesce(is_inactive, false)", (str(tenant_id),))
    row = await cur.fetchone()
    return int(row["n"])


async def tenant_users(db: Any, tenant_id: Any) -> list[dict[str, Any]]:
    cur = await db.execute("SELECT user_id, email, is_inactive, hashed_password FROM users WHERE tenant = %s"
                           " ORDER BY user_id", (str(tenant_id),))
    return [dict(r) for r in await cur.fetchall()]


async def user_role_rows(db: Any, tenant_id: Any) -> int:
    cur = await db.execute("SELECT count(*) AS n FROM user_roles WHERE tenant = %s", (str(tenant_id),))
    row = await cur.fetchone()
    return int(row["n"])


async def assert_no_password_anywhere(handle: WorkflowHandle[Any, Any], result: Any, password: str,
                                      caplog: pytest.LogCaptureFixture | None = None) -> None:
    assert_secret_absent(password, await history_haystacks(handle), "the workflow history")
    assert_secret_absent(password, [json.dumps(result.model_dump(mode="json", by_alias=True))], "the result")
    if caplog is not None:
        lines = [r.getMessage() + " " + json.dumps({k: str(v) for k, v in r.__dict__.items()}) for r in caplog.records]
        assert lines, "expected the worker to log"
        assert_secret_absent(password, lines, "a log record")


# ---------------------------------------------------------------- createUserWorkflow


async def test_create_user_writes_the_user_invites_it_and_the_emailed_password_verifies(
        client, user_settings, acts, db, outbox: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    tenant, _ = await provision_tenant(acts, user_settings, license_count=5)
    address = f"Nia.Newcomer.{uuid.uuid4().hex[:6]}@Example-MSP.com"
    async with running_worker(client, user_settings):
        handle, result = await run(client, user_settings, "createUserWorkflow", create_request(
            tenant.tenant_id, email=address, roles=["technician", "DISPATCHER"]))

    assert isinstance(result, CreateUserResult)
    assert result.success and result.invitation_sent and not result.forced
    assert (result.tenant_id, result.email, result.user_type.value) == \
        (str(tenant.tenant_id), address.lower(), "internal")
    assert sorted(result.roles) == ["Dispatcher", "Technician"]
    assert result.email_provider == "outbox"

    row = await user_row(db, tenant.tenant_id, result.user_id)
    assert row is not None
    assert (row["email"], row["username"], row["first_name"], row["last_name"], row["user_type"], row["is_inactive"]) \
        == (address.lower(), address.lower(), "Nia", "Newcomer", "internal", False)
    assert await role_names(db, tenant.tenant_id, result.user_id) == ["Dispatcher", "Technician"]

    [invitation] = messages_to(outbox, address)
    password = emailed_password(invitation)
    assert alga_hash_matches(password, row["hashed_password"], user_settings)
    assert not alga_hash_matches(password + "x", row["hashed_password"], user_settings)
    assert tenant.tenant_name in text_body(invitation)
    await assert_no_password_anywhere(handle, result, password, caplog)

    [audit] = await audit_rows(db, handle.id)
    assert (audit["tenant"], audit["event_type"], audit["status"], audit["resource_id"]) == \
        (MGMT, "tenant.user.created", "completed", result.user_id)
    assert audit["user_email"] == "ops@nineminds.example"
    assert audit["details"]["targetTenantId"] == str(tenant.tenant_id)
    assert audit["details"]["triggeredBy"] == "ops-tester"
    assert address.lower() not in json.dumps(audit["details"])  # the domain only

    # Search attributes: ids, findable in visibility.
    assert await workflow_ids_matching(client, f'UserId = "{result.user_id}"', {handle.id}) == {handle.id}
    assert handle.id in await workflow_ids_matching(client, f'TenantId = "{tenant.tenant_id}"', {handle.id})
    description = await handle.describe()
    assert address.lower() not in handle.id and address.lower() not in str(description.typed_search_attributes)


async def test_a_client_portal_user_holds_no_licence_and_is_sent_to_the_portal(
        client, user_settings, acts, db, outbox: Path) -> None:
    tenant, _ = await provision_tenant(acts, user_settings, license_count=1)  # the admin uses the only licence
    async with running_worker(client, user_settings):
        _, result = await run(client, user_settings, "createUserWorkflow", create_request(
            tenant.tenant_id, userType="client", roles=["user"]))
    assert result.user_type.value == "client" and result.roles == ["User"] and not result.forced
    row = await user_row(db, tenant.tenant_id, result.user_id)
    assert row is not None and row["user_type"] == "client"
    [invitation] = messages_to(outbox, result.email)
    assert "/auth/client-portal/signin" in text_body(invitation)
    assert alga_hash_matches(emailed_password(invitation), row["hashed_password"], user_settings)


async def test_duplicate_addresses_are_refused_in_one_attempt_and_write_nothing(
        client, user_settings, acts, db, outbox: Path) -> None:
    tenant_a, _ = await provision_tenant(acts, user_settings)
    tenant_b, _ = await provision_tenant(acts, user_settings)
    admin_a = tenant_a.admin.email
    async with running_worker(client, user_settings):
        _, first = await run(client, user_settings, "createUserWorkflow", create_request(tenant_a.tenant_id))
        before_a, before_b = await tenant_users(db, tenant_a.tenant_id), await tenant_users(db, tenant_b.tenant_id)
        emails_before = len(outbox_messages(outbox))
        variants = {
            "the admin, upper-cased": (tenant_a.tenant_id, admin_a.upper()),
            "a created user, mixed case with spaces": (tenant_a.tenant_id, "  " + first.email.title() + " "),
            "another tenant's internal address": (tenant_b.tenant_id, admin_a),
            "another tenant's created user, upper-cased": (tenant_b.tenant_id, first.email.upper()),
        }
        for what, (tenant_id, address) in variants.items():
            handle = await start(client, user_settings, "createUserWorkflow",
                                 create_request(tenant_id, email=address))
            failure = await failure_of(handle)
            assert failure.type == errors.DUPLICATE_ERROR, what
            assert failure.non_retryable
            assert await activity_attempts(handle, "create_user") == [1], what
            assert "remove_user" not in await scheduled_activities(handle), what
            # The refusal never names the other tenant.
            assert str(tenant_a.tenant_id) not in str(failure) or tenant_id == tenant_a.tenant_id, what
    assert await tenant_users(db, tenant_a.tenant_id) == before_a
    assert await tenant_users(db, tenant_b.tenant_id) == before_b
    assert len(outbox_messages(outbox)) == emails_before
    assert len(await users_with_email(db, admin_a)) == 1


async def test_unknown_tenant_and_unknown_roles_are_typed_refusals(client, user_settings, acts, db,
                                                                   outbox: Path) -> None:
    tenant, _ = await provision_tenant(acts, user_settings)
    before = await tenant_users(db, tenant.tenant_id)
    cases = {
        "unknown tenant": (create_request(uuid.uuid4()), errors.TENANT_NOT_FOUND, None),
        "unknown role": (create_request(tenant.tenant_id, roles=["Technician", "Wizard"]), errors.UNKNOWN_ROLE,
                         "Wizard"),
        "a client-portal role for an internal user": (create_request(tenant.tenant_id, roles=["User"]),
                                                      errors.UNKNOWN_ROLE, "User"),
    }
    async with running_worker(client, user_settings):
        for what, (request, error_type, named) in cases.items():
            handle = await start(client, user_settings, "createUserWorkflow", request)
            failure = await failure_of(handle)
            assert failure.type == error_type and failure.non_retryable, what
            assert await activity_attempts(handle, "create_user") == [1], what
            if named:
                assert named in str(failure) and "Technician" in str(failure), what  # the available roles listed
    assert await tenant_users(db, tenant.tenant_id) == before
    assert outbox_messages(outbox) == []


async def test_five_concurrent_creations_at_the_limit_use_exactly_the_free_licences_then_force(
        client, user_settings, acts, db, outbox: Path) -> None:
    tenant, _ = await provision_tenant(acts, user_settings, license_count=3)  # the admin holds one: two free
    async with running_worker(client, user_settings):
        handles = await asyncio.gather(*(
            start(client, user_settings, "createUserWorkflow", create_request(tenant.tenant_id)) for _ in range(5)))
        outcomes = await asyncio.gather(*(h.result() for h in handles), return_exceptions=True)
        created = [o for o in outcomes if isinstance(o, CreateUserResult)]
        refused = [o for o in outcomes if not isinstance(o, CreateUserResult)]
        assert len(created) == 2 and len(refused) == 3, outcomes
        for handle, outcome in zip(handles, outcomes, strict=True):
            if not isinstance(outcome, CreateUserResult):
                failure = await failure_of(handle)
                assert failure.type == errors.LICENSE_LIMIT
                assert failure.details and failure.details[0] == {"limit": 3, "used": 3}
                assert await activity_attempts(handle, "create_user") == [1]
        assert await internal_active(db, tenant.tenant_id) == 3
        assert sorted(m["To"] for m in outbox_messages(outbox)) == sorted(c.email for c in created)

        _, forced = await run(client, user_settings, "createUserWorkflow",
                              create_request(tenant.tenant_id, force=True))
    assert forced.forced and forced.invitation_sent
    assert await internal_active(db, tenant.tenant_id) == 4


async def test_a_rejected_invitation_removes_the_user_so_a_corrected_retry_succeeds(
        client, user_env, acts, db) -> None:
    with FakeResendServer() as resend:
        settings = load_settings({**user_env, "EMAIL_PROVIDER": "resend", "RESEND_API_URL": resend.url,
                                  "RESEND_API_KEY": resend.api_key})
        tenant, _ = await provision_tenant(acts, settings)
        before = await tenant_users(db, tenant.tenant_id)
        roles_before = await user_role_rows(db, tenant.tenant_id)
        request = create_request(tenant.tenant_id)
        resend.fail_next(1, status=422, name="validation_error", message="The `to` field is invalid.")
        async with running_worker(client, settings):
            handle = await start(client, settings, "createUserWorkflow", request)
            failure = await failure_of(handle)
            assert failure.type == errors.EMAIL_REJECTED
            assert await scheduled_activities(handle) == ["create_user", "send_email", "remove_user"]
            assert await tenant_users(db, tenant.tenant_id) == before
            assert await user_role_rows(db, tenant.tenant_id) == roles_before
            assert resend.emails == []

            _, result = await run(client, settings, "createUserWorkflow", request)  # the same address again
        assert result.invitation_sent and result.email_provider == "resend"
        [sent] = resend.emails
        assert sent.body["to"] == [request["email"]]


@pytest.mark.parametrize("how", ["while the email activity waits", "during the email's retry backoff"])
async def test_a_cancel_before_the_provider_accepted_removes_the_user_and_sends_nothing(
        client, user_env, acts, db, outbox: Path, how: str) -> None:
    with FakeResendServer() as resend:
        settings = load_settings({**user_env, "EMAIL_PROVIDER": "resend", "RESEND_API_URL": resend.url,
                                  "RESEND_API_KEY": resend.api_key})
        tenant, _ = await provision_tenant(acts, settings)
        before = await tenant_users(db, tenant.tenant_id)
        gate = Gate()
        gates = {"send_email": gate} if how == "while the email activity waits" else {}
        if not gates:
            resend.fail_next(1_000, status=503)
        async with running_worker(client, settings, gates=gates):
            handle = await start(client, settings, "createUserWorkflow", create_request(tenant.tenant_id))
            if gates:
                await asyncio.wait_for(gate.entered.wait(), 30)
            else:
                await _until(lambda: len(resend.requests) >= 1)
            assert len(await tenant_users(db, tenant.tenant_id)) == len(before) + 1  # the user exists now
            await handle.cancel()
            with pytest.raises(WorkflowFailureError) as ended:
                await handle.result()
            assert isinstance(ended.value.cause, CancelledError)
        assert resend.emails == []
        assert await tenant_users(db, tenant.tenant_id) == before
        assert "remove_user" in await scheduled_activities(handle)


async def test_a_cancel_after_the_provider_accepted_keeps_the_user(client, user_settings, acts, db,
                                                                   outbox: Path) -> None:
    tenant, _ = await provision_tenant(acts, user_settings)
    gate = Gate(after=True)  # the email is accepted; Temporal has not heard yet
    async with running_worker(client, user_settings, gates={"send_email": gate}):
        handle = await start(client, user_settings, "createUserWorkflow", create_request(tenant.tenant_id))
        await asyncio.wait_for(gate.entered.wait(), 30)
        await handle.cancel()
        await _until_cancel_recorded(handle)
        gate.release.set()
        result = await handle.result()
    assert result.invitation_sent
    row = await user_row(db, tenant.tenant_id, result.user_id)
    assert row is not None
    [invitation] = messages_to(outbox, result.email)
    assert alga_hash_matches(emailed_password(invitation), row["hashed_password"], user_settings)
    assert "remove_user" not in await scheduled_activities(handle)


async def _until(predicate: Any, attempts: int = 400) -> None:
    for _ in range(attempts):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition never held")


async def _until_cancel_recorded(handle: WorkflowHandle[Any, Any], attempts: int = 400) -> None:
    for _ in range(attempts):
        history = await handle.fetch_history()
        if any(e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED for e in history.events):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the cancel request never reached the history")


# ---------------------------------------------------------------- resendWelcomeEmailWorkflow


async def test_resend_welcome_to_the_first_admin_replaces_the_password(
        client, user_settings, acts, db, outbox: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    tenant, old_password = await provision_tenant(acts, user_settings)
    assert alga_hash_matches(old_password, await stored_hash(db, tenant.tenant_id, tenant.admin_user_id),
                             user_settings)
    async with running_worker(client, user_settings):
        handle, result = await run(client, user_settings, "resendWelcomeEmailWorkflow", {
            "tenantId": str(tenant.tenant_id), "triggeredBy": "ops-tester",
            "triggeredByEmail": "ops@nineminds.example"})
    assert isinstance(result, ResendWelcomeEmailResult)
    assert (result.success, result.email, result.tenant_name, result.user_id) == \
        (True, tenant.admin.email, tenant.tenant_name, str(tenant.admin_user_id))
    [welcome] = messages_to(outbox, tenant.admin.email)
    new_password = emailed_password(welcome)
    stored = await stored_hash(db, tenant.tenant_id, tenant.admin_user_id)
    assert alga_hash_matches(new_password, stored, user_settings)
    assert not alga_hash_matches(old_password, stored, user_settings)
    assert tenant.tenant_name in text_body(welcome)
    await assert_no_password_anywhere(handle, result, new_password, caplog)

    [audit] = await audit_rows(db, handle.id)
    assert (audit["event_type"], audit["status"], str(audit["log_id"])) == \
        ("tenant.welcome.email.resent", "completed", result.audit_log_id)
    assert audit["details"]["targetTenantId"] == str(tenant.tenant_id)
    assert audit["details"]["recipientDomain"] == tenant.admin.email.rpartition("@")[2]
    assert await workflow_ids_matching(client, f'UserId = "{tenant.admin_user_id}"', {handle.id}) >= {handle.id}


async def test_resend_welcome_to_a_given_user(client, user_settings, acts, db, outbox: Path) -> None:
    tenant, _ = await provision_tenant(acts, user_settings)
    async with running_worker(client, user_settings):
        _, created = await run(client, user_settings, "createUserWorkflow", create_request(tenant.tenant_id))
        invitation_password = emailed_password(one_message(outbox, created.email, "invited"))
        _, result = await run(client, user_settings, "resendWelcomeEmailWorkflow", {
            "tenantId": str(tenant.tenant_id), "userId": created.user_id, "triggeredBy": "ops-tester",
            "triggeredByEmail": "ops@nineminds.example"})
    assert result.user_id == created.user_id and result.email == created.email
    welcome = one_message(outbox, created.email, "Welcome to Alga PSA")
    stored = await stored_hash(db, tenant.tenant_id, created.user_id)
    assert alga_hash_matches(emailed_password(welcome), stored, user_settings)
    assert not alga_hash_matches(invitation_password, stored, user_settings)


async def test_a_failed_resend_is_audited_then_fails_typed(client, user_settings, acts, db, outbox: Path) -> None:
    tenant, _ = await provision_tenant(acts, user_settings)
    cases = {
        "unknown user": ({"tenantId": str(tenant.tenant_id), "userId": str(uuid.uuid4())}, errors.USER_NOT_FOUND),
        "unknown tenant": ({"tenantId": str(uuid.uuid4())}, errors.TENANT_NOT_FOUND),
    }
    async with running_worker(client, user_settings):
        for what, (request, error_type) in cases.items():
            handle = await start(client, user_settings, "resendWelcomeEmailWorkflow", {
                **request, "triggeredBy": "ops-tester", "triggeredByEmail": "ops@nineminds.example"})
            failure = await failure_of(handle)
            assert failure.type == error_type, what
            [audit] = await audit_rows(db, handle.id)
            assert (audit["event_type"], audit["status"]) == ("tenant.welcome.email.resend.failed", "failed"), what
            assert error_type in audit["error_message"], what
    assert outbox_messages(outbox) == []


# ---------------------------------------------------------------- resetUserPasswordWorkflow


async def test_reset_password_emails_a_new_password_and_the_old_one_stops_working(
        client, user_settings, acts, db, outbox: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    tenant, _ = await provision_tenant(acts, user_settings)
    async with running_worker(client, user_settings):
        _, created = await run(client, user_settings, "createUserWorkflow", create_request(tenant.tenant_id))
        old_password = emailed_password(one_message(outbox, created.email, "invited"))
        handle, result = await run(client, user_settings, "resetUserPasswordWorkflow", {
            "tenantId": str(tenant.tenant_id), "userId": created.user_id, "triggeredBy": "ops-tester"})
    assert isinstance(result, UserActionResult)
    assert (result.user_id, result.email, result.changed, result.email_sent, result.is_inactive) == \
        (created.user_id, created.email, True, True, False)
    assert len(messages_to(outbox, created.email)) == 2
    reset = one_message(outbox, created.email, "has been reset")
    new_password = emailed_password(reset)
    stored = await stored_hash(db, tenant.tenant_id, created.user_id)
    assert alga_hash_matches(new_password, stored, user_settings)
    assert not alga_hash_matches(old_password, stored, user_settings)
    await assert_no_password_anywhere(handle, result, new_password, caplog)
    [audit] = await audit_rows(db, handle.id)
    assert (audit["event_type"], audit["resource_id"]) == ("tenant.user.password.reset", created.user_id)
    assert handle.id in await workflow_ids_matching(client, f'UserId = "{created.user_id}"', {handle.id})
    assert handle.id in await workflow_ids_matching(client, f'TenantId = "{tenant.tenant_id}"', {handle.id})


async def test_reset_refuses_an_unknown_or_deactivated_user(client, user_settings, acts, db, outbox: Path) -> None:
    tenant, _ = await provision_tenant(acts, user_settings)
    async with running_worker(client, user_settings):
        _, created = await run(client, user_settings, "createUserWorkflow", create_request(tenant.tenant_id))
        await run(client, user_settings, "deactivateUserWorkflow",
                  {"tenantId": str(tenant.tenant_id), "userId": created.user_id})
        hash_before = await stored_hash(db, tenant.tenant_id, created.user_id)
        emails_before = len(outbox_messages(outbox))
        cases = ((created.user_id, errors.USER_INACTIVE), (str(uuid.uuid4()), errors.USER_NOT_FOUND))
        for user_id, error_type in cases:
            handle = await start(client, user_settings, "resetUserPasswordWorkflow",
                                 {"tenantId": str(tenant.tenant_id), "userId": user_id})
            failure = await failure_of(handle)
            assert failure.type == error_type and failure.non_retryable
            assert await activity_attempts(handle, "set_temporary_password") == [1]
    assert await stored_hash(db, tenant.tenant_id, created.user_id) == hash_before
    assert len(outbox_messages(outbox)) == emails_before


# ---------------------------------------------------------------- deactivate / reactivate


async def test_deactivate_and_reactivate_with_the_last_admin_guard(client, user_settings, acts, db,
                                                                   outbox: Path) -> None:
    tenant, admin_password = await provision_tenant(acts, user_settings)
    ids = {"tenantId": str(tenant.tenant_id)}
    async with running_worker(client, user_settings):
        # The only admin: refused, nothing changed.
        before = await tenant_users(db, tenant.tenant_id)
        handle = await start(client, user_settings, "deactivateUserWorkflow",
                             {**ids, "userId": str(tenant.admin_user_id)})
        failure = await failure_of(handle)
        assert failure.type == errors.LAST_ADMIN and failure.non_retryable
        assert await activity_attempts(handle, "set_user_active") == [1]
        assert await tenant_users(db, tenant.tenant_id) == before

        # A second admin: now the first can go, and then the second is the last.
        _, second = await run(client, user_settings, "createUserWorkflow", create_request(tenant.tenant_id,
                                                                                          roles=["Admin"]))
        handle, first_off = await run(client, user_settings, "deactivateUserWorkflow",
                                      {**ids, "userId": str(tenant.admin_user_id), "triggeredBy": "ops-tester"})
        assert (first_off.changed, first_off.is_inactive, first_off.email_sent) == (True, True, True)
        [notice] = messages_to(outbox, tenant.admin.email)
        assert "deactivated" in (str(notice["Subject"]) + text_body(notice)).lower()
        assert "Temporary password" not in text_body(notice)
        [audit] = await audit_rows(db, handle.id)
        assert audit["event_type"] == "tenant.user.deactivated"
        failure = await failure_of(await start(client, user_settings, "deactivateUserWorkflow",
                                               {**ids, "userId": second.user_id}))
        assert failure.type == errors.LAST_ADMIN

        # Again: no change, no second notice.
        _, again = await run(client, user_settings, "deactivateUserWorkflow",
                             {**ids, "userId": str(tenant.admin_user_id)})
        assert (again.changed, again.is_inactive, again.email_sent) == (False, True, False)
        assert len(messages_to(outbox, tenant.admin.email)) == 1

        handle, back = await run(client, user_settings, "reactivateUserWorkflow",
                                 {**ids, "userId": str(tenant.admin_user_id)})
        assert (back.changed, back.is_inactive, back.email_sent, back.forced) == (True, False, False, False)
        [audit] = await audit_rows(db, handle.id)
        assert audit["event_type"] == "tenant.user.reactivated"
    row = await user_row(db, tenant.tenant_id, tenant.admin_user_id)
    assert row is not None and row["is_inactive"] is False
    # No email on reactivation: the user signs in with the password they had.
    assert len(messages_to(outbox, tenant.admin.email)) == 1
    assert alga_hash_matches(admin_password, row["hashed_password"], user_settings)


async def test_reactivation_at_the_licence_limit_needs_force(client, user_settings, acts, db, outbox: Path) -> None:
    tenant, _ = await provision_tenant(acts, user_settings, license_count=2)
    ids = {"tenantId": str(tenant.tenant_id)}
    async with running_worker(client, user_settings):
        _, tech = await run(client, user_settings, "createUserWorkflow", create_request(tenant.tenant_id))
        await run(client, user_settings, "deactivateUserWorkflow", {**ids, "userId": tech.user_id})
        await run(client, user_settings, "createUserWorkflow", create_request(tenant.tenant_id))  # the free licence
        handle = await start(client, user_settings, "reactivateUserWorkflow", {**ids, "userId": tech.user_id})
        failure = await failure_of(handle)
        assert failure.type == errors.LICENSE_LIMIT
        row = await user_row(db, tenant.tenant_id, tech.user_id)
        assert row is not None and row["is_inactive"] is True
        _, forced = await run(client, user_settings, "reactivateUserWorkflow",
                              {**ids, "userId": tech.user_id, "force": True})
    assert (forced.changed, forced.forced, forced.is_inactive) == (True, True, False)
    assert await internal_active(db, tenant.tenant_id) == 3


async def test_a_deactivation_notice_that_cannot_be_delivered_does_not_undo_it(client, user_env, acts, db) -> None:
    with FakeResendServer() as resend:
        settings = load_settings({**user_env, "EMAIL_PROVIDER": "resend", "RESEND_API_URL": resend.url,
                                  "RESEND_API_KEY": resend.api_key})
        tenant, _ = await provision_tenant(acts, settings)
        async with running_worker(client, settings):
            _, tech = await run(client, settings, "createUserWorkflow", create_request(tenant.tenant_id))
            resend.fail_next(1, status=422, name="validation_error", message="The `to` field is invalid.")
            handle, result = await run(client, settings, "deactivateUserWorkflow",
                                       {"tenantId": str(tenant.tenant_id), "userId": tech.user_id})
    assert (result.changed, result.is_inactive, result.email_sent) == (True, True, False)
    row = await user_row(db, tenant.tenant_id, tech.user_id)
    assert row is not None and row["is_inactive"] is True
    [audit] = await audit_rows(db, handle.id)
    assert audit["details"]["noticeSent"] == "false"


# ---------------------------------------------------------------- malformed starts


def _json(data: bytes) -> RawValue:
    return RawValue(Payload(metadata={"encoding": b"json/plain"}, data=data))


MALFORMED: dict[str, list[Any]] = {
    "empty object": [_json(b"{}")],
    "snake_case keys": [_json(json.dumps({"tenant_id": str(uuid.uuid4()), "user_id": str(uuid.uuid4())}).encode())],
    "tenantId not a uuid": [_json(b'{"tenantId": "acme", "userId": "x"}')],
    "truncated JSON": [_json(b'{"tenantId": ')],
    "two arguments": [_json(b"{}"), _json(b"{}")],
}


@pytest.mark.parametrize("workflow_type", list(RESULT_TYPES))
async def test_malformed_starts_fail_validation_after_one_workflow_task(client, user_settings, db, outbox: Path,
                                                                       workflow_type: str) -> None:
    cur = await db.execute("SELECT count(*) AS n FROM users")
    users_before = (await cur.fetchone())["n"]
    async with running_worker(client, user_settings):
        for what, args in MALFORMED.items():
            handle = await client.start_workflow(workflow_type, args=args, id=f"malformed-{uuid.uuid4()}",
                                                 task_queue=user_settings.task_queue)
            with pytest.raises(WorkflowFailureError) as caught:
                await handle.result()
            cause = caught.value.cause
            assert isinstance(cause, ApplicationError) and cause.type == errors.VALIDATION_ERROR, what
            types = [e.event_type for e in (await handle.fetch_history()).events]
            assert EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED not in types, what
            assert types.count(EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED) == 1, what
            assert EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED not in types, what
    cur = await db.execute("SELECT count(*) AS n FROM users")
    assert (await cur.fetchone())["n"] == users_before
    assert outbox_messages(outbox) == []

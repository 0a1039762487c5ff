"""Customer tracking in the management tenant, on real PostgreSQL and a real Temporal dev server.

What is proven here, row by row:

- ``track_customer`` run again (the same minted ids: a retry after COMMIT) or anew (other ids: a second
  run) leaves one client, one contact, one tag mapping and one portal user; a retry replaces the hash
  and its sealed password is the valid one, a second run makes no new credentials;
- a collision (a client with the same name that does not record this tenant, the email on another
  client's contact or portal user) is a non-retryable ``AmbiguousCustomerError`` in one attempt, with
  nothing written; an unset ``MANAGEMENT_TENANT_ID`` is a ``ConfigurationError`` naming it;
- the portal user's password is its own, verifies against its stored hash (Alga's PBKDF2, recomputed
  here independently) and never appears in workflow history or results;
- ``customerTrackingWorkflow`` and ``alga-worker customer track`` end to end, through the real worker;
- the welcome email shows the portal section only with a portal password;
- the SQL runs on a database reduced to exactly the schema contract.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.testing import ActivityEnvironment
from tests.support.data import TEST_PEPPER, unique_email
from tests.support.history import payloads_of
from tests.support.processes import cli
from tests.support.visibility import workflow_ids_matching
from tests.support.workers import Activities, activities_for, outbox_messages, running_worker, text_body

from alga_worker import errors
from alga_worker.config import Settings, load_settings
from alga_worker.db.migrate import migrate
from alga_worker.db.schema_contract import CONTRACT, verify_schema
from alga_worker.models import (
    AdminUserInput,
    CustomerFactsInput,
    CustomerRecordsInput,
    CustomerTrackingInput,
    CustomerTrackingOutput,
    CustomerTrackingResult,
    OutcomeStatus,
    ProvisionTenantInput,
    ProvisionTenantOutput,
    WelcomeEmailInput,
)
from alga_worker.security import CredentialSealer

MGMT = uuid.UUID("00000000-0000-4000-8000-000000000001")  # 0002_management_tenant.sql
PORTAL_URL = "https://support.nineminds.test/auth/client-portal/signin"
PORTAL_PASSWORD_LINE = re.compile(r"Client portal temporary password:\s*(\S+)")



# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture
def tracking_env(worker_env: dict[str, str]) -> dict[str, str]:
    return dict(worker_env, MANAGEMENT_TENANT_ID=str(MGMT), CLIENT_PORTAL_URL=PORTAL_URL)


@pytest.fixture
def tracking_settings(tracking_env: dict[str, str]) -> Settings:
    return load_settings(tracking_env)


@pytest.fixture
async def acts(tracking_settings: Settings) -> AsyncIterator[Activities]:
    async with activities_for(tracking_settings) as found:
        yield found


SEALER = CredentialSealer(TEST_PEPPER)


def alga_hash_matches(password: str, stored: str) -> bool:
    """Alga's verify written from its spec, not from our code: PBKDF2-SHA512, salt = pepper + salt hex."""
    salt_hex, _, derived_hex = stored.partition(":")
    derived = hashlib.pbkdf2_hmac("sha512", password.encode(), (TEST_PEPPER + salt_hex).encode(), 10_000, 64)
    return derived.hex() == derived_hex


async def provision(acts: Activities, name: str | None = None) -> tuple[ProvisionTenantInput, str]:
    """A real customer tenant (the provisioning activity), and its admin's temporary password."""
    suffix = uuid.uuid4().hex[:8]
    req = ProvisionTenantInput(
        tenant_id=uuid.uuid4(), client_id=uuid.uuid4(), location_id=uuid.uuid4(), admin_user_id=uuid.uuid4(),
        tenant_name=name or f"Tracked MSP {suffix}", client_name=f"Tracked MSP {suffix} LLC",
        admin=AdminUserInput(first_name="Tara", last_name="Tracked", email=unique_email("tracked")),
        seal_binding=f"wf-{suffix}/run/provision",
    )
    out: ProvisionTenantOutput = await ActivityEnvironment().run(acts["provision_tenant"], req)
    return req, SEALER.open(out.sealed_password, binding=req.seal_binding)


def tracking_input(tenant: ProvisionTenantInput, **overrides: Any) -> CustomerTrackingInput:
    """What tenantCreationWorkflow passes, with ids freshly minted (a new run) unless overridden."""
    fields: dict[str, Any] = {
        "tenant_id": tenant.tenant_id, "tenant_name": tenant.tenant_name, "client_name": tenant.client_name,
        "admin": tenant.admin, "customer_client_id": uuid.uuid4(), "contact_id": uuid.uuid4(),
        "portal_user_id": uuid.uuid4(), "seal_binding": f"wf-{uuid.uuid4().hex[:8]}/run/{tenant.tenant_id}",
    }
    fields.update(overrides)
    return CustomerTrackingInput(**fields)


async def one(db: psycopg.AsyncConnection[Any], sql: str, *params: Any) -> Any:
    row = await (await db.execute(sql, params)).fetchone()
    assert row is not None
    return row


async def management_records(db: psycopg.AsyncConnection[Any], tenant_id: uuid.UUID, email: str) -> dict[str, int]:
    """How many of each record the management tenant holds for this customer (the ground truth)."""
    cur = await db.execute("""
        SELECT
          (SELECT count(*) FROM clients WHERE tenant = %(m)s AND properties->>'alga_tenant_id' = %(t)s) AS clients,
          (SELECT count(*) FROM contacts WHERE tenant = %(m)s AND lower(email) = %(e)s) AS contacts,
          (SELECT count(*) FROM tag_mappings tm JOIN tag_definitions td ON td.tenant = tm.tenant
             AND td.tag_id = tm.tag_id JOIN clients c ON c.tenant = tm.tenant AND c.client_id = tm.tagged_id
           WHERE tm.tenant = %(m)s AND td.tag_text = 'PSA Customer'
             AND c.properties->>'alga_tenant_id' = %(t)s) AS tag_mappings,
          (SELECT count(*) FROM users WHERE tenant = %(m)s AND user_type = 'client'
             AND lower(email) = %(e)s) AS portal_users,
          (SELECT count(*) FROM user_roles ur JOIN users u ON u.tenant = ur.tenant AND u.user_id = ur.user_id
           WHERE ur.tenant = %(m)s AND u.user_type = 'client' AND lower(u.email) = %(e)s) AS portal_roles
        """, {"m": MGMT, "t": str(tenant_id), "e": email.lower()})
    row = await cur.fetchone()
    assert row is not None
    return {k: int(v) for k, v in row.items()}


NOTHING = {"clients": 0, "contacts": 0, "tag_mappings": 0, "portal_users": 0, "portal_roles": 0}
ONE_OF_EACH = {"clients": 1, "contacts": 1, "tag_mappings": 1, "portal_users": 1, "portal_roles": 1}


async def stored_hash(db: psycopg.AsyncConnection[Any], user_id: Any) -> str:
    return str((await one(db, "SELECT hashed_password FROM users WHERE tenant = %s AND user_id = %s",
                          MGMT, user_id))["hashed_password"])


def status_and_detail(out: CustomerTrackingOutput | CustomerTrackingResult) -> dict[str, tuple[str, str | None]]:
    return {name: (o.status.value, o.detail) for name, o in out.outcomes.items()}


async def history_text(handle: WorkflowHandle[Any, Any]) -> str:
    """The whole history as JSON plus every payload decoded (payload data is base64 in the JSON)."""
    history = await handle.fetch_history()
    decoded = [p.data.decode("utf-8", "replace") for event in history.events for p in payloads_of(event)]
    assert decoded, "expected payloads in history"
    return history.to_json() + "\n".join(decoded)


async def start_tracking(client: Client, settings: Settings, request: dict[str, Any]) -> WorkflowHandle[Any, Any]:
    return await client.start_workflow(
        "customerTrackingWorkflow", request, id=f"customer-tracking-test-{uuid.uuid4()}",
        task_queue=settings.task_queue, result_type=CustomerTrackingResult,
        execution_timeout=timedelta(minutes=2),
    )


# ---------------------------------------------------------------- the activity: idempotent, exact


async def test_track_customer_writes_alga_rows_and_converges_on_one_of_each(acts, db) -> None:
    tenant, admin_password = await provision(acts)
    first_input = tracking_input(tenant)
    env = ActivityEnvironment()

    first: CustomerTrackingOutput = await env.run(acts["track_customer"], first_input)
    assert status_and_detail(first) == {
        "customer_client": ("done", None), "customer_contact": ("done", None), "customer_tag": ("done", None),
        "portal_user": ("done", None)}
    assert (first.customer_client_id, first.contact_id, first.portal_user_id) == (
        first_input.customer_client_id, first_input.contact_id, first_input.portal_user_id)
    assert await management_records(db, tenant.tenant_id, tenant.admin.email) == ONE_OF_EACH

    # What Alga's web app reads, column by column.
    client_row = await one(db, "SELECT * FROM clients WHERE tenant = %s AND client_id = %s", MGMT,
                           first.customer_client_id)
    assert client_row["client_name"] == tenant.client_name
    assert client_row["properties"] == {"alga_tenant_id": str(tenant.tenant_id), "tenant_id": str(tenant.tenant_id),
                                        "tenant_name": tenant.tenant_name,
                                        "subscription_type": "psa"}
    assert (client_row["client_type"], client_row["is_inactive"]) == ("company", False)
    contact = await one(db, "SELECT * FROM contacts WHERE tenant = %s AND contact_name_id = %s", MGMT,
                        first.contact_id)
    assert (contact["client_id"], contact["full_name"], contact["email"], contact["role"], contact["notes"],
            contact["is_inactive"], contact["is_client_admin"]) == (
        first.customer_client_id, "Tara Tracked", tenant.admin.email.lower(), "Admin",
        "Primary admin for PSA tenant", False, True)
    tag = await one(db, "SELECT * FROM tag_definitions WHERE tenant = %s AND tag_id = %s", MGMT, first.tag_id)
    assert (tag["tag_text"], tag["tagged_type"], tag["text_color"]) == ("PSA Customer", "client", "#2C3E50")
    assert re.fullmatch(r"#[0-9A-F]{6}", tag["background_color"])
    mapping = await one(db, "SELECT * FROM tag_mappings WHERE tenant = %s AND tagged_id = %s", MGMT,
                        first.customer_client_id)
    assert (mapping["tag_id"], mapping["tagged_type"], mapping["created_by"]) == (first.tag_id, "client", None)
    user = await one(db, "SELECT * FROM users WHERE tenant = %s AND user_id = %s", MGMT, first.portal_user_id)
    assert (user["user_type"], user["contact_id"], user["email"], user["username"], user["first_name"],
            user["last_name"], user["is_inactive"]) == (
        "client", first.contact_id, tenant.admin.email.lower(), tenant.admin.email.lower(), "Tara", "Tracked", False)
    role = await one(db, "SELECT r.role_name, r.msp, r.client FROM user_roles ur JOIN roles r"
                         " ON r.tenant = ur.tenant AND r.role_id = ur.role_id WHERE ur.tenant = %s AND ur.user_id = %s",
                     MGMT, first.portal_user_id)
    assert (role["role_name"], role["msp"], role["client"]) == ("Admin", False, True)

    # The portal user's own password: sealed to this run, valid, not the admin's.
    assert first.sealed_portal_password is not None
    portal_password = SEALER.open(first.sealed_portal_password, binding=first_input.seal_binding)
    assert portal_password != admin_password
    assert alga_hash_matches(portal_password, user["hashed_password"])
    assert not alga_hash_matches(admin_password, user["hashed_password"])
    assert portal_password not in first.model_dump_json()

    # A retry after COMMIT (same minted ids): everything found; the hash replaced, the new password valid.
    retried: CustomerTrackingOutput = await env.run(acts["track_customer"], first_input)
    assert status_and_detail(retried) == {
        "customer_client": ("done", "already present"), "customer_contact": ("done", "already present"),
        "customer_tag": ("done", "already present"),
        "portal_user": ("done", "already present (resumed): its temporary password was replaced")}
    assert retried.sealed_portal_password is not None
    new_password = SEALER.open(retried.sealed_portal_password, binding=first_input.seal_binding)
    latest_hash = await stored_hash(db, first.portal_user_id)
    assert alga_hash_matches(new_password, latest_hash)
    assert not alga_hash_matches(portal_password, latest_hash)

    # A second run (new ids, as an operator's): converges on the same rows, makes no new credentials.
    second: CustomerTrackingOutput = await env.run(acts["track_customer"], tracking_input(tenant))
    assert {k: v[1] for k, v in status_and_detail(second).items()} == dict.fromkeys(
        ("customer_client", "customer_contact", "customer_tag", "portal_user"), "already present")
    assert (second.customer_client_id, second.contact_id, second.tag_id, second.portal_user_id) == (
        first.customer_client_id, first.contact_id, first.tag_id, first.portal_user_id)
    assert second.sealed_portal_password is None
    assert await stored_hash(db, first.portal_user_id) == latest_hash  # an existing user is left untouched
    assert await management_records(db, tenant.tenant_id, tenant.admin.email) == ONE_OF_EACH


async def test_concurrent_runs_for_one_tenant_converge(acts, db) -> None:
    """Two runs at once (say, tenant creation and an operator): the lock serialises them, one of each."""
    tenant, _ = await provision(acts)
    outs = await asyncio.gather(*(ActivityEnvironment().run(acts["track_customer"], tracking_input(tenant))
                                  for _ in range(3)))
    assert len({o.customer_client_id for o in outs}) == 1
    assert sum(o.sealed_portal_password is not None for o in outs) == 1  # only the creator has credentials
    assert await management_records(db, tenant.tenant_id, tenant.admin.email) == ONE_OF_EACH


async def test_records_only_never_creates_a_portal_user(acts, db) -> None:
    tenant, _ = await provision(acts)
    records = {k: v for k, v in tracking_input(tenant).model_dump(by_alias=False).items()
               if k not in ("portal_user_id", "seal_binding")}
    out: CustomerTrackingOutput = await ActivityEnvironment().run(acts["track_customer_records"],
                                                                  CustomerRecordsInput(**records))
    assert out.portal_user_id is None and out.sealed_portal_password is None
    assert out.outcomes["portal_user"].status is OutcomeStatus.SKIPPED
    assert "--create-portal-user" in (out.outcomes["portal_user"].detail or "")
    assert await management_records(db, tenant.tenant_id, tenant.admin.email) == dict(
        ONE_OF_EACH, portal_users=0, portal_roles=0)


# ---------------------------------------------------------------- collisions: typed, one attempt, nothing written


async def expect_refusal(env_run: Any, error_type: str) -> ApplicationError:
    with pytest.raises(ApplicationError) as caught:
        await env_run
    assert caught.value.type == error_type
    assert caught.value.non_retryable
    return caught.value


@pytest.mark.parametrize("properties", [None, {"alga_tenant_id": str(uuid.UUID(int=7))},
                                        {"tenant_id": "Some Tenant Name", "subscription_type": "psa"}])
async def test_a_client_with_the_same_name_is_ambiguous(acts, db, properties: dict[str, str] | None) -> None:
    tenant, _ = await provision(acts)
    await db.execute("INSERT INTO clients (tenant, client_id, client_name, properties) VALUES (%s, %s, %s, %s)",
                     (MGMT, uuid.uuid4(), tenant.client_name, None if properties is None else json.dumps(properties)))
    refused = await expect_refusal(ActivityEnvironment().run(acts["track_customer"], tracking_input(tenant)),
                                   errors.AMBIGUOUS_CUSTOMER)
    assert repr(tenant.client_name) in str(refused) and "operator must resolve" in str(refused)
    assert await management_records(db, tenant.tenant_id, tenant.admin.email) == NOTHING


async def test_the_admins_email_on_another_clients_contact_or_portal_user_is_ambiguous(acts, db) -> None:
    # A contact of another client with this email: refused, nothing written.
    tenant, _ = await provision(acts)
    other_client = uuid.uuid4()
    await db.execute("INSERT INTO clients (tenant, client_id, client_name) VALUES (%s, %s, %s)",
                     (MGMT, other_client, f"Other {uuid.uuid4().hex[:6]}"))
    await db.execute("INSERT INTO contacts (tenant, contact_name_id, client_id, full_name, email)"
                     " VALUES (%s, %s, %s, 'Someone', %s)", (MGMT, uuid.uuid4(), other_client,
                                                             tenant.admin.email.upper()))
    refused = await expect_refusal(ActivityEnvironment().run(acts["track_customer"], tracking_input(tenant)),
                                   errors.AMBIGUOUS_CUSTOMER)
    assert "another client" in str(refused)
    assert tenant.admin.email not in str(refused)  # ids in details, no address in history
    assert await management_records(db, tenant.tenant_id, tenant.admin.email) == dict(NOTHING, contacts=1)

    # A client-portal user with this email for another contact: refused, nothing written.
    tenant, _ = await provision(acts)
    await db.execute("INSERT INTO users (tenant, user_id, username, hashed_password, email, user_type)"
                     " VALUES (%s, %s, %s, 'x:y', %s, 'client')", (MGMT, uuid.uuid4(), tenant.admin.email,
                                                                   tenant.admin.email))
    await expect_refusal(ActivityEnvironment().run(acts["track_customer"], tracking_input(tenant)),
                         errors.AMBIGUOUS_CUSTOMER)
    assert await management_records(db, tenant.tenant_id, tenant.admin.email) == dict(NOTHING, portal_users=1)


async def test_without_management_tenant_id_tracking_is_a_configuration_error(settings, db) -> None:
    assert settings.management_tenant_id is None
    async with activities_for(settings) as plain:
        tenant, _ = await provision(plain)
        refused = await expect_refusal(ActivityEnvironment().run(plain["track_customer"], tracking_input(tenant)),
                                       errors.CONFIGURATION_ERROR)
    assert "MANAGEMENT_TENANT_ID" in str(refused)
    assert await management_records(db, tenant.tenant_id, tenant.admin.email) == NOTHING


async def test_the_management_tenant_is_never_its_own_customer(acts) -> None:
    tenant, _ = await provision(acts)
    await expect_refusal(ActivityEnvironment().run(acts["track_customer"], tracking_input(tenant, tenant_id=MGMT)),
                         errors.VALIDATION_ERROR)


# ---------------------------------------------------------------- the operator workflow, through the real worker


async def test_workflow_refuses_an_ambiguous_client_in_one_attempt(client, tracking_settings, acts, db) -> None:
    tenant, _ = await provision(acts)
    await db.execute("INSERT INTO clients (tenant, client_id, client_name) VALUES (%s, %s, %s)",
                     (MGMT, uuid.uuid4(), tenant.client_name))
    async with running_worker(client, tracking_settings):
        handle = await start_tracking(client, tracking_settings, {"tenantId": str(tenant.tenant_id)})
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
    cause = failed.value.cause
    assert isinstance(cause, ActivityError) and isinstance(cause.cause, ApplicationError)
    assert cause.cause.type == errors.AMBIGUOUS_CUSTOMER and cause.cause.non_retryable
    history = await handle.fetch_history()
    attempts = [e.activity_task_started_event_attributes.attempt for e in history.events
                if e.HasField("activity_task_started_event_attributes")]
    assert attempts == [1, 1]  # load_customer_facts, then track_customer_records: each one attempt
    assert await management_records(db, tenant.tenant_id, tenant.admin.email) == NOTHING


async def test_workflow_creates_the_portal_user_and_emails_its_own_password(
        client, tracking_settings, acts, db, outbox: Path) -> None:
    tenant, admin_password = await provision(acts)
    async with running_worker(client, tracking_settings):
        handle = await start_tracking(client, tracking_settings, {
            "tenantId": str(tenant.tenant_id), "createPortalUser": True, "workflowId": "tenant-creation-earlier"})
        result: CustomerTrackingResult = await handle.result()

        assert result.tenant_id == str(tenant.tenant_id)
        assert result.repairs_workflow_id == "tenant-creation-earlier"
        assert result.portal_email_sent and result.portal_user_id is not None
        assert {k: v[0] for k, v in status_and_detail(result).items()} == dict.fromkeys(
            ("customer_client", "customer_contact", "customer_tag", "portal_user", "portal_access_email"), "done")
        assert await management_records(db, tenant.tenant_id, tenant.admin.email) == ONE_OF_EACH
        client_row = await one(db, "SELECT client_name FROM clients WHERE tenant = %s AND client_id = %s",
                               MGMT, uuid.UUID(result.customer_client_id))
        assert client_row["client_name"] == tenant.client_name  # read from the database, not typed

        # The email: to the admin, the portal section only, the portal user's own valid password.
        [message] = outbox_messages(outbox)
        assert message["To"] == tenant.admin.email.lower()
        assert message["Subject"] == "Your Nine Minds Client Portal Access"
        body = text_body(message)
        assert f"Sign in at: {PORTAL_URL}" in body
        assert f"Client portal email: {tenant.admin.email.lower()}" in body
        assert "Temporary Password:" not in body  # the admin's password is not re-sent
        found = PORTAL_PASSWORD_LINE.search(body)
        assert found
        portal_password = found.group(1)
        assert portal_password != admin_password
        assert alga_hash_matches(portal_password, await stored_hash(db, uuid.UUID(result.portal_user_id)))

        # Never in history, never in the result (in clear).
        recorded = await history_text(handle)
        assert portal_password not in recorded and admin_password not in recorded
        assert portal_password not in result.model_dump_json()
        assert "sealedPortalPassword" not in json.dumps(result.model_dump(mode="json", by_alias=True))

        # Run again: everything is found, nothing created, nothing sent.
        again_handle = await start_tracking(
            client, tracking_settings, {"tenantId": str(tenant.tenant_id), "createPortalUser": True})
        again: CustomerTrackingResult = await again_handle.result()
    assert again.portal_user_id == result.portal_user_id and not again.portal_email_sent
    assert again.outcomes["portal_user"].detail == "already present"
    assert again.outcomes["portal_access_email"].status is OutcomeStatus.SKIPPED
    assert len(outbox_messages(outbox)) == 1
    assert await management_records(db, tenant.tenant_id, tenant.admin.email) == ONE_OF_EACH
    # Both runs carry the tenant id as a search attribute: an operator finds them by it.
    query = f'TenantId="{tenant.tenant_id}" AND WorkflowType="customerTrackingWorkflow"'
    both = {handle.id, again_handle.id}
    assert await workflow_ids_matching(client, query, both) == both


async def test_workflow_refuses_malformed_and_unknown_tenants(client, tracking_settings) -> None:
    async with running_worker(client, tracking_settings):
        for request, problem in (({"tenantId": "not-a-uuid"}, "invalid customer tracking input"),
                                 ({"tenantId": str(uuid.uuid4()), "createPortalUser": "yes"},
                                  "invalid customer tracking input"),
                                 ({"tenantId": str(uuid.uuid4())}, "does not exist"),
                                 ({"tenantId": str(MGMT)}, "never recorded as its own customer")):
            handle = await start_tracking(client, tracking_settings, request)
            with pytest.raises(WorkflowFailureError) as failed:
                await handle.result()
            cause: BaseException = failed.value.cause
            while isinstance(cause, ActivityError) and cause.cause is not None:
                cause = cause.cause
            assert isinstance(cause, ApplicationError) and cause.type == errors.VALIDATION_ERROR, request
            assert problem in str(cause)


# ---------------------------------------------------------------- the CLI



async def test_cli_customer_track(client, tracking_settings, tracking_env, acts, db, outbox: Path) -> None:
    tenant, _ = await provision(acts)
    async with running_worker(client, tracking_settings):
        code, out, err = await cli(tracking_env, "customer", "track", str(tenant.tenant_id))
        assert code == 0, err
        assert f"started customer-tracking-{tenant.tenant_id}" in out
        assert "Customer tracked" in out
        assert re.search(r"portal_user\s+.*skipped", out)
        assert await management_records(db, tenant.tenant_id, tenant.admin.email) == dict(
            ONE_OF_EACH, portal_users=0, portal_roles=0)
        assert outbox_messages(outbox) == []

        code, out, err = await cli(tracking_env, "customer", "track", str(tenant.tenant_id), "--create-portal-user",
                                   "--repairs", "tenant-creation-123")
        assert code == 0, err
        assert re.search(r"customer_client\s+.*done \(already present\)", out)
        assert re.search(r"portal_access_email\s+.*done", out)
        assert await management_records(db, tenant.tenant_id, tenant.admin.email) == ONE_OF_EACH
        assert len(outbox_messages(outbox)) == 1

        code, _, err = await cli(tracking_env, "customer", "track", str(uuid.uuid4()))
        assert code == 1 and "ValidationError" in err and "does not exist" in err

        # A collision is reported with its type, for the operator to resolve.
        other, _ = await provision(acts)
        await db.execute("INSERT INTO clients (tenant, client_id, client_name) VALUES (%s, %s, %s)",
                         (MGMT, uuid.uuid4(), other.client_name))
        code, _, err = await cli(tracking_env, "customer", "track", str(other.tenant_id))
        assert code == 1 and "AmbiguousCustomerError" in err and other.client_name in err

    code, _, err = await cli(tracking_env, "customer", "track", "not-a-uuid")
    assert code == 2 and "tenant_id" in err


# ---------------------------------------------------------------- the welcome email's portal section


async def test_welcome_email_shows_the_portal_only_with_a_portal_password(acts, outbox: Path) -> None:
    tenant, admin_password = await provision(acts)
    binding = f"wf-{uuid.uuid4().hex[:6]}/run/{tenant.tenant_id}"
    base: dict[str, Any] = {
        "tenant_id": tenant.tenant_id, "tenant_name": tenant.tenant_name, "client_name": tenant.client_name,
        "admin": tenant.admin, "sealed_password": SEALER.seal(admin_password, binding=binding),
        "seal_binding": binding}
    env = ActivityEnvironment()
    await env.run(acts["send_welcome_email"], WelcomeEmailInput(admin_user_id=uuid.uuid4(), **base))
    portal_password = "Nq7!portal#Own9"
    await env.run(acts["send_welcome_email"], WelcomeEmailInput(
        admin_user_id=uuid.uuid4(), sealed_portal_password=SEALER.seal(portal_password, binding=binding), **base))
    without, with_portal = sorted(outbox_messages(outbox), key=lambda m: "portal" in text_body(m).lower())

    for part in ("plain", "html"):
        body = without.get_body(preferencelist=(part,))
        assert body is not None and "portal" not in str(body.get_content()).lower()
    text = text_body(with_portal)
    assert f"Sign in at: {PORTAL_URL}" in text
    assert f"Client portal temporary password: {portal_password}" in text
    assert f"Temporary Password: {admin_password}" in text
    html_part = with_portal.get_body(preferencelist=("html",))
    assert html_part is not None and PORTAL_URL in str(html_part.get_content())


# ---------------------------------------------------------------- the schema contract covers this SQL


async def test_tracking_runs_on_a_database_reduced_to_the_contract(db, stack, tracking_env) -> None:
    name = f"contract_tracking_{uuid.uuid4().hex[:10]}"
    await db.execute(f'CREATE DATABASE "{name}"')
    url = make_conninfo(stack.database_url, dbname=name)
    try:
        await migrate(url)
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            for table in CONTRACT:
                cur = await conn.execute("SELECT column_name FROM information_schema.columns"
                                         " WHERE table_schema = 'public' AND table_name = %s", (table.name,))
                for (column,) in await cur.fetchall():
                    if column not in table.columns:
                        await conn.execute(f'ALTER TABLE {table.name} DROP COLUMN "{column}" CASCADE')
            assert await verify_schema(conn) == []
        async with activities_for(load_settings(dict(tracking_env, DATABASE_URL=url))) as reduced:
            tenant, _ = await provision(reduced)
            track = tracking_input(tenant)
            first: CustomerTrackingOutput = await ActivityEnvironment().run(reduced["track_customer"], track)
            again: CustomerTrackingOutput = await ActivityEnvironment().run(reduced["track_customer"], track)
            assert first.sealed_portal_password and again.sealed_portal_password
            facts = await ActivityEnvironment().run(reduced["load_customer_facts"],
                                                    CustomerFactsInput(tenant_id=tenant.tenant_id))
            assert (facts.client_name, facts.admin.email) == (tenant.client_name, tenant.admin.email)
        async with await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row) as conn:
            assert await management_records(conn, tenant.tenant_id, tenant.admin.email) == ONE_OF_EACH
    finally:
        await db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

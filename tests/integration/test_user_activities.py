"""The user activities on real PostgreSQL, run as Temporal runs them (``ActivityEnvironment``: a real SDK
activity context) on the worker's own resources (``build_resources``: the real pool, hasher, sealer).

What is proven here:

- ``create_user``: internal and client-portal users, roles by name (case-insensitive, duplicates
  collapsed; an unknown name is ``UnknownRoleError`` listing the available ones), contacts only for
  client users and only of that tenant, duplicate addresses (an internal address across all tenants,
  mixed-case rows included, and against tenant creation's admin; a client address within its tenant),
  the licence limit (with ``force``; five concurrent creations with two licences left: exactly two);
- ``set_user_active``: the last-admin guard (also with the last two admins deactivated at once) and
  the licence check on reactivation;
- ``find_user``, ``set_temporary_password`` (the previous password stops verifying), ``record_audit``
  (the row as the original wrote it; a missing table is a ``SchemaMismatchError`` on a real worker),
  ``remove_user``, ``db/users.list_users``;
- every activity executed twice gives one outcome; every refusal writes nothing; every stored hash is
  checked by an independent PBKDF2 computation against the opened sealed password; no log record holds
  a password or an email address.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.testing import ActivityEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker
from tests.support.data import TEST_PEPPER, unique_email
from tests.support.databases import scratch_database
from tests.support.workers import activity_name

from alga_worker import errors
from alga_worker.activities.users import UserActivities
from alga_worker.config import Settings, load_settings
from alga_worker.db import users as users_sql
from alga_worker.db.schema_contract import verify_schema
from alga_worker.models import (
    AdminUserInput,
    AuditRecord,
    AuditResult,
    CreatedUser,
    LicenseUsage,
    LicenseUsageInput,
    NewPassword,
    NewPasswordRequest,
    NewUser,
    ProvisionTenantInput,
    ProvisionTenantOutput,
    RemoveUserInput,
    RemoveUserOutput,
    SetUserActiveRequest,
    SetUserActiveResult,
    UserFacts,
    UserLookup,
    UserType,
)
from alga_worker.runtime.worker import WorkerResources, build_resources, build_worker
from alga_worker.security import CredentialSealer, PasswordHasher

MGMT = uuid.UUID("00000000-0000-4000-8000-000000000001")  # 0002_management_tenant.sql
MSP_ROLES = ["Admin", "Dispatcher", "Finance", "Project Manager", "Technician"]
SEALER = CredentialSealer(TEST_PEPPER)

Activities = dict[str, Callable[..., Any]]


# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture
def users_env(worker_env: dict[str, str]) -> dict[str, str]:
    # No MASTER_BILLING_TENANT_ID: audit records go to the management tenant.
    return dict(worker_env, MANAGEMENT_TENANT_ID=str(MGMT))


@pytest.fixture
def users_settings(users_env: dict[str, str]) -> Settings:
    return load_settings(users_env)


@pytest.fixture
async def resources(users_settings: Settings) -> AsyncIterator[WorkerResources]:
    built = await build_resources(users_settings)
    try:
        yield built
    finally:
        await built.aclose()


@pytest.fixture
def acts(resources: WorkerResources) -> Activities:
    return {activity_name(fn): fn for fn in resources.activities}


async def run(acts: Activities, name: str, arg: Any) -> Any:
    return await ActivityEnvironment().run(acts[name], arg)


async def refused(acts: Activities, name: str, arg: Any, kind: str) -> ApplicationError:
    with pytest.raises(ApplicationError) as caught:
        await run(acts, name, arg)
    assert caught.value.type == kind, caught.value
    assert caught.value.non_retryable
    return caught.value


def independent_hash_matches(settings: Settings, password: str, stored: str) -> bool:
    """Alga's verify written from its spec with the settings' parameters, not with PasswordHasher."""
    salt_hex, _, derived_hex = stored.partition(":")
    derived = hashlib.pbkdf2_hmac(settings.algorithm, password.encode("utf-8"),
                                  (settings.password_pepper.get_secret_value() + salt_hex).encode("utf-8"),
                                  settings.iterations, settings.key_length)
    return bool(salt_hex) and derived.hex() == derived_hex


async def one(db: psycopg.AsyncConnection[Any], sql: str, *params: Any) -> Any:
    row = await (await db.execute(sql, params)).fetchone()
    assert row is not None, sql
    return row


async def stored_hash(db: psycopg.AsyncConnection[Any], tenant: uuid.UUID, user: uuid.UUID) -> str:
    row = await one(db, "SELECT hashed_password FROM users WHERE tenant = %s AND user_id = %s", tenant, user)
    return str(row["hashed_password"])


async def provision(acts: Activities, *, license_count: int | None = None,
                    email: str | None = None) -> tuple[ProvisionTenantInput, str]:
    """A real tenant (the provisioning activity) and its admin's temporary password."""
    suffix = uuid.uuid4().hex[:8]
    req = ProvisionTenantInput(
        tenant_id=uuid.uuid4(), client_id=uuid.uuid4(), location_id=uuid.uuid4(), admin_user_id=uuid.uuid4(),
        tenant_name=f"Users MSP {suffix}", client_name=f"Users MSP {suffix} LLC",
        admin=AdminUserInput(first_name="Ada", last_name="Admin", email=email or unique_email("users-admin")),
        license_count=license_count, seal_binding=f"wf-{suffix}/run/provision",
    )
    out: ProvisionTenantOutput = await run(acts, "provision_tenant", req)
    return req, SEALER.open(out.sealed_password, binding=req.seal_binding)


def new_user(tenant: ProvisionTenantInput | uuid.UUID, **overrides: Any) -> NewUser:
    """What createUserWorkflow passes: a freshly minted id (a new run) unless overridden."""
    user_id = overrides.pop("user_id", uuid.uuid4())
    fields: dict[str, Any] = {
        "tenant_id": tenant if isinstance(tenant, uuid.UUID) else tenant.tenant_id, "user_id": user_id,
        "email": unique_email("user"), "first_name": "Tess", "last_name": "Tech",
        "user_type": UserType.INTERNAL, "roles": ["Technician"],
        "seal_binding": f"wf-{uuid.uuid4().hex[:8]}/run/{user_id}",
    }
    fields.update(overrides)
    return NewUser(**fields)


def opened(out: CreatedUser | NewPassword, binding: str) -> str:
    return SEALER.open(out.sealed_password, binding=binding)


async def add_contact(db: psycopg.AsyncConnection[Any], tenant: ProvisionTenantInput) -> uuid.UUID:
    contact = uuid.uuid4()
    await db.execute("INSERT INTO contacts (tenant, contact_name_id, client_id, full_name, email)"
                     " VALUES (%s, %s, %s, 'Carl Contact', %s)",
                     (tenant.tenant_id, contact, tenant.client_id, unique_email("contact")))
    return contact


async def snapshot(db: psycopg.AsyncConnection[Any]) -> dict[str, Any]:
    """Every user, grant and audit row of the database: a refusal must leave all of it as it was."""
    users = await (await db.execute(
        "SELECT tenant, user_id, email, hashed_password, is_inactive, updated_at FROM users"
        " ORDER BY tenant, user_id")).fetchall()
    grants = await (await db.execute("SELECT tenant, user_id, role_id FROM user_roles"
                                     " ORDER BY tenant, user_id, role_id")).fetchall()
    audit = await one(db, "SELECT count(*) AS n FROM extension_audit_logs")
    return {"users": users, "user_roles": grants, "audit": audit["n"]}


async def active_internal(db: psycopg.AsyncConnection[Any], tenant: uuid.UUID) -> int:
    row = await one(db, "SELECT count(*) AS n FROM users WHERE tenant = %s AND user_type = 'internal'"
                        " AND NOT is_inactive", tenant)
    return int(row["n"])


@contextlib.asynccontextmanager
async def tenant_row_held(stack: Any, tenant_id: uuid.UUID,
                          user_ids: tuple[uuid.UUID, ...] = ()) -> AsyncIterator[Callable[..., Any]]:
    """Hold the tenant row and ``user_ids``' rows (``FOR UPDATE``, another session) while the caller
    starts concurrent activities; ``release(tasks, n)`` waits until ``n`` worker sessions wait on a
    lock (or the tasks ended), then commits. So every activity is inside its transaction before any
    can finish, whatever the timing: without a lock of their own on the tenant row, all would run
    their checks together once released (they wait on the user rows, or on the tenant row for the
    foreign key of an insert)."""
    async with await psycopg.AsyncConnection.connect(stack.database_url) as holder, \
            await psycopg.AsyncConnection.connect(stack.database_url, autocommit=True) as watcher:
        await holder.execute("SELECT 1 FROM tenants WHERE tenant = %s FOR UPDATE", (tenant_id,))
        await holder.execute("SELECT 1 FROM users WHERE tenant = %s AND user_id = ANY(%s) FOR UPDATE",
                             (tenant_id, list(user_ids)))

        async def release(tasks: list[asyncio.Task[Any]], n: int) -> None:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30
            while loop.time() < deadline and not all(t.done() for t in tasks):
                # Its own connection: inside the holder's transaction pg_stat_activity is a frozen snapshot.
                cur = await watcher.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'alga-temporal-worker'"
                    " AND wait_event_type = 'Lock' AND datname = current_database()")
                row = await cur.fetchone()
                if row is not None and row[0] >= n:
                    break
                await asyncio.sleep(0.05)
            await holder.commit()

        yield release


# ---------------------------------------------------------------- create_user


async def test_create_an_internal_user(acts, users_settings, db) -> None:
    tenant, _ = await provision(acts)
    req = new_user(tenant, roles=["technician", "DISPATCHER", "Technician"], email=unique_email("new-tech"))
    out: CreatedUser = await run(acts, "create_user", req)

    assert (out.tenant_id, out.tenant_name, out.user_id, out.email) == (
        tenant.tenant_id, tenant.tenant_name, req.user_id, req.email)
    assert out.roles == ["Technician", "Dispatcher"]  # as stored, in request order, duplicates collapsed
    assert out.created and not out.forced and out.user_type is UserType.INTERNAL
    row = await one(db, "SELECT username, email, first_name, last_name, user_type, is_inactive, contact_id"
                        " FROM users WHERE tenant = %s AND user_id = %s", tenant.tenant_id, req.user_id)
    assert dict(row) == {"username": req.email, "email": req.email, "first_name": "Tess", "last_name": "Tech",
                         "user_type": "internal", "is_inactive": False, "contact_id": None}
    granted = await (await db.execute(
        "SELECT r.role_id, r.role_name, r.msp, r.client FROM user_roles ur JOIN roles r"
        " ON r.tenant = ur.tenant AND r.role_id = ur.role_id WHERE ur.tenant = %s AND ur.user_id = %s"
        " ORDER BY r.role_name", (tenant.tenant_id, req.user_id))).fetchall()
    assert [(g["role_name"], g["msp"], g["client"]) for g in granted] == [("Dispatcher", True, False),
                                                                          ("Technician", True, False)]
    assert sorted(out.role_ids) == sorted(g["role_id"] for g in granted)

    password = opened(out, req.seal_binding)
    assert independent_hash_matches(users_settings, password, await stored_hash(db, tenant.tenant_id, req.user_id))
    assert password not in out.model_dump_json()
    with pytest.raises(Exception, match="does not open"):  # bound to this run only
        SEALER.open(out.sealed_password, binding="another-run/binding")


async def test_create_a_client_user_for_a_contact(acts, users_settings, db) -> None:
    tenant, _ = await provision(acts)
    contact = await add_contact(db, tenant)
    req = new_user(tenant, user_type=UserType.CLIENT, roles=["user", "ADMIN"], contact_id=contact)
    out: CreatedUser = await run(acts, "create_user", req)
    assert out.roles == ["User", "Admin"] and out.user_type is UserType.CLIENT
    row = await one(db, "SELECT user_type, contact_id FROM users WHERE tenant = %s AND user_id = %s",
                    tenant.tenant_id, req.user_id)
    assert (row["user_type"], row["contact_id"]) == ("client", contact)
    kinds = await (await db.execute(
        "SELECT r.msp, r.client FROM user_roles ur JOIN roles r ON r.tenant = ur.tenant AND r.role_id = ur.role_id"
        " WHERE ur.tenant = %s AND ur.user_id = %s", (tenant.tenant_id, req.user_id))).fetchall()
    assert [(k["msp"], k["client"]) for k in kinds] == [(False, True), (False, True)]  # the portal's Admin
    assert independent_hash_matches(users_settings, opened(out, req.seal_binding),
                                    await stored_hash(db, tenant.tenant_id, req.user_id))


async def test_contact_rules(acts, db) -> None:
    tenant, _ = await provision(acts)
    other, _ = await provision(acts)
    others_contact = await add_contact(db, other)
    before = await snapshot(db)
    for contact in (others_contact, uuid.uuid4()):
        err = await refused(acts, "create_user", new_user(tenant, user_type=UserType.CLIENT, roles=["User"],
                                                          contact_id=contact), errors.VALIDATION_ERROR)
        assert f"contact {contact} is not a contact of tenant {tenant.tenant_id}" in str(err)
    err = await refused(acts, "create_user", new_user(tenant, contact_id=await add_contact(db, tenant)),
                        errors.VALIDATION_ERROR)
    assert "only for client users" in str(err)
    after = await snapshot(db)
    assert after == before


async def test_duplicate_addresses(acts, db) -> None:
    a, _ = await provision(acts)
    b, _ = await provision(acts)
    c, _ = await provision(acts)
    # Tenant B's admin stored in mixed case, as an old row may be.
    shared = b.admin.email
    mixed = shared[0].upper() + shared[1:-4] + shared[-4:].upper()
    await db.execute("UPDATE users SET email = %s WHERE tenant = %s AND user_id = %s",
                     (mixed, b.tenant_id, b.admin_user_id))
    before = await snapshot(db)
    err = await refused(acts, "create_user", new_user(a, email=shared), errors.DUPLICATE_ERROR)
    assert "already belongs to an internal user" in str(err)
    for secret in (str(b.tenant_id), b.tenant_name, b.client_name):  # never names the other tenant
        assert secret not in str(err) and secret not in json.dumps(err.details)
    # Tenant A's own admin (another user id): a duplicate too.
    await refused(acts, "create_user", new_user(a, email=a.admin.email), errors.DUPLICATE_ERROR)
    assert await snapshot(db) == before

    # A client-portal user may have an internal user's address, once per tenant.
    first: CreatedUser = await run(acts, "create_user", new_user(a, email=shared, user_type=UserType.CLIENT,
                                                                 roles=["User"]))
    assert first.created
    await db.execute("UPDATE users SET email = upper(email) WHERE tenant = %s AND user_id = %s",
                     (a.tenant_id, first.user_id))
    before = await snapshot(db)
    err = await refused(acts, "create_user", new_user(a, email=shared, user_type=UserType.CLIENT, roles=["User"]),
                        errors.DUPLICATE_ERROR)
    assert "client-portal user of this tenant" in str(err)
    assert await snapshot(db) == before
    in_c: CreatedUser = await run(acts, "create_user", new_user(c, email=shared, user_type=UserType.CLIENT,
                                                                roles=["User"]))
    assert in_c.created

    # One rule for both paths: an address createUser gave an internal user cannot become a new tenant's admin.
    taken = unique_email("taken")
    await run(acts, "create_user", new_user(a, email=taken))
    with pytest.raises(ApplicationError) as caught:
        await provision(acts, email=taken)
    assert caught.value.type == errors.DUPLICATE_ERROR


async def test_an_unknown_tenant_is_refused_by_every_activity(acts, db) -> None:
    unknown = uuid.uuid4()
    before = await snapshot(db)
    for name, arg in (
        ("create_user", new_user(unknown)),
        ("find_user", UserLookup(tenant_id=unknown)),
        ("find_user", UserLookup(tenant_id=unknown, user_id=uuid.uuid4())),
        ("set_temporary_password", NewPasswordRequest(tenant_id=unknown, user_id=uuid.uuid4(), seal_binding="x")),
        ("set_user_active", SetUserActiveRequest(tenant_id=unknown, user_id=uuid.uuid4(), active=False)),
    ):
        err = await refused(acts, name, arg, errors.TENANT_NOT_FOUND)
        assert f"tenant {unknown} does not exist" in str(err)
    assert await snapshot(db) == before


async def test_unknown_roles_are_named_with_the_available_ones(acts, db) -> None:
    tenant, _ = await provision(acts)
    before = await snapshot(db)
    err = await refused(acts, "create_user", new_user(tenant, roles=["Technician", "Wizard", "wizard", "Chief"]),
                        errors.UNKNOWN_ROLE)
    assert "'Wizard', 'Chief'" in str(err)
    assert f"roles are: {', '.join(MSP_ROLES)}" in str(err)
    assert err.details[0]["unknown"] == ["Wizard", "Chief"] and err.details[0]["available"] == MSP_ROLES
    # MSP roles are not client-portal roles, and the other way round.
    err = await refused(acts, "create_user", new_user(tenant, user_type=UserType.CLIENT, roles=["Technician"]),
                        errors.UNKNOWN_ROLE)
    assert "client-portal roles are: Admin, Finance, User" in str(err)
    assert await snapshot(db) == before


# ---------------------------------------------------------------- licences


async def test_licence_limit_and_force(acts, db) -> None:
    tenant, _ = await provision(acts, license_count=3)  # the admin holds one
    for _ in range(2):
        assert not (await run(acts, "create_user", new_user(tenant))).forced
    # Neither client-portal nor inactive users hold a licence.
    portal: CreatedUser = await run(acts, "create_user", new_user(tenant, user_type=UserType.CLIENT, roles=["User"]))
    assert not portal.forced
    before = await snapshot(db)
    err = await refused(acts, "create_user", new_user(tenant), errors.LICENSE_LIMIT)
    assert err.details[0] == {"limit": 3, "used": 3}
    usage: LicenseUsage = await run(acts, "license_usage", LicenseUsageInput(tenant_id=tenant.tenant_id))
    assert (usage.limit, usage.used) == (3, 3)  # the same count as the licence usage activity
    assert await snapshot(db) == before

    forced: CreatedUser = await run(acts, "create_user", new_user(tenant, force=True))
    assert forced.created and forced.forced
    assert await active_internal(db, tenant.tenant_id) == 4


async def test_five_concurrent_creations_with_two_licences_left(acts, db, stack) -> None:
    tenant, _ = await provision(acts, license_count=3)
    await run(acts, "create_user", new_user(tenant, user_type=UserType.CLIENT, roles=["User"]))  # holds none
    reqs = [new_user(tenant) for _ in range(5)]
    async with tenant_row_held(stack, tenant.tenant_id) as release:
        tasks = [asyncio.create_task(run(acts, "create_user", r)) for r in reqs]
        await release(tasks, 5)
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    created = [o for o in outcomes if isinstance(o, CreatedUser)]
    refusals = [o for o in outcomes if isinstance(o, ApplicationError)]
    assert len(created) == 2 and len(refusals) == 3, outcomes
    assert all(r.type == errors.LICENSE_LIMIT and r.details[0] == {"limit": 3, "used": 3} for r in refusals)
    assert await active_internal(db, tenant.tenant_id) == 3
    stored = await (await db.execute("SELECT user_id FROM users WHERE tenant = %s AND user_type = 'internal'"
                                     " AND user_id <> %s", (tenant.tenant_id, tenant.admin_user_id))).fetchall()
    assert sorted(r["user_id"] for r in stored) == sorted(c.user_id for c in created)

    beyond: CreatedUser = await run(acts, "create_user", new_user(tenant, force=True))
    assert beyond.forced and await active_internal(db, tenant.tenant_id) == 4


async def test_reactivation_needs_a_licence(acts, db) -> None:
    tenant, _ = await provision(acts, license_count=2)
    tech: CreatedUser = await run(acts, "create_user", new_user(tenant))
    portal: CreatedUser = await run(acts, "create_user", new_user(tenant, user_type=UserType.CLIENT, roles=["User"]))
    for user in (tech, portal):
        off: SetUserActiveResult = await run(acts, "set_user_active", SetUserActiveRequest(
            tenant_id=tenant.tenant_id, user_id=user.user_id, active=False))
        assert off.changed and off.user.is_inactive
    await run(acts, "create_user", new_user(tenant))  # takes the freed licence: 2 of 2 used
    before = await snapshot(db)
    err = await refused(acts, "set_user_active", SetUserActiveRequest(
        tenant_id=tenant.tenant_id, user_id=tech.user_id, active=True), errors.LICENSE_LIMIT)
    assert err.details[0] == {"limit": 2, "used": 2}
    assert await snapshot(db) == before
    # A client-portal user holds no licence: reactivated at the limit.
    back: SetUserActiveResult = await run(acts, "set_user_active", SetUserActiveRequest(
        tenant_id=tenant.tenant_id, user_id=portal.user_id, active=True))
    assert back.changed and not back.forced and not back.user.is_inactive
    forced: SetUserActiveResult = await run(acts, "set_user_active", SetUserActiveRequest(
        tenant_id=tenant.tenant_id, user_id=tech.user_id, active=True, force=True))
    assert forced.changed and forced.forced and not forced.user.is_inactive
    assert await active_internal(db, tenant.tenant_id) == 3


# ---------------------------------------------------------------- the last-admin guard


async def test_the_last_active_msp_admin_cannot_be_deactivated(acts, db) -> None:
    tenant, _ = await provision(acts)
    deactivate = SetUserActiveRequest(tenant_id=tenant.tenant_id, user_id=tenant.admin_user_id, active=False)
    before = await snapshot(db)
    err = await refused(acts, "set_user_active", deactivate, errors.LAST_ADMIN)
    assert "last active MSP admin" in str(err)
    assert await snapshot(db) == before

    # A technician is no admin; a client-portal Admin is no MSP admin.
    tech: CreatedUser = await run(acts, "create_user", new_user(tenant))
    portal_admin: CreatedUser = await run(acts, "create_user", new_user(tenant, user_type=UserType.CLIENT,
                                                                        roles=["Admin"]))
    for user in (tech, portal_admin):
        assert (await run(acts, "set_user_active", SetUserActiveRequest(
            tenant_id=tenant.tenant_id, user_id=user.user_id, active=False))).changed
    await refused(acts, "set_user_active", deactivate, errors.LAST_ADMIN)

    second: CreatedUser = await run(acts, "create_user", new_user(tenant, roles=["admin"]))
    done: SetUserActiveResult = await run(acts, "set_user_active", deactivate)
    assert done.changed and done.user.is_inactive and done.user.user_id == tenant.admin_user_id
    again: SetUserActiveResult = await run(acts, "set_user_active", deactivate)
    assert not again.changed and again.user.is_inactive
    await refused(acts, "set_user_active", SetUserActiveRequest(
        tenant_id=tenant.tenant_id, user_id=second.user_id, active=False), errors.LAST_ADMIN)


async def test_concurrent_deactivation_of_the_last_two_admins(acts, db, stack) -> None:
    tenant, _ = await provision(acts)
    second: CreatedUser = await run(acts, "create_user", new_user(tenant, roles=["Admin"]))
    admins = (tenant.admin_user_id, second.user_id)
    async with tenant_row_held(stack, tenant.tenant_id, admins) as release:
        tasks = [asyncio.create_task(run(acts, "set_user_active", SetUserActiveRequest(
            tenant_id=tenant.tenant_id, user_id=user, active=False)))
            for user in admins]
        await release(tasks, 2)
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    changed = [o for o in outcomes if isinstance(o, SetUserActiveResult)]
    refusals = [o for o in outcomes if isinstance(o, ApplicationError)]
    assert len(changed) == 1 and changed[0].changed, outcomes
    assert len(refusals) == 1 and refusals[0].type == errors.LAST_ADMIN
    assert await active_internal(db, tenant.tenant_id) == 1
    remaining: UserFacts = await run(acts, "find_user", UserLookup(tenant_id=tenant.tenant_id))
    assert remaining.user_id != changed[0].user.user_id and not remaining.is_inactive


# ---------------------------------------------------------------- find_user and set_temporary_password


async def test_find_user(acts, db) -> None:
    tenant, _ = await provision(acts)
    other, _ = await provision(acts)
    later_admin: CreatedUser = await run(acts, "create_user", new_user(tenant, roles=["Admin"]))
    first: UserFacts = await run(acts, "find_user", UserLookup(tenant_id=tenant.tenant_id))
    assert first == UserFacts(tenant_id=tenant.tenant_id, tenant_name=tenant.tenant_name,
                              user_id=tenant.admin_user_id, email=tenant.admin.email, first_name="Ada",
                              last_name="Admin", user_type=UserType.INTERNAL, is_inactive=False)
    by_id: UserFacts = await run(acts, "find_user", UserLookup(tenant_id=tenant.tenant_id,
                                                                user_id=later_admin.user_id))
    assert (by_id.user_id, by_id.email) == (later_admin.user_id, later_admin.email)
    # Another tenant's user is not this tenant's.
    await refused(acts, "find_user", UserLookup(tenant_id=tenant.tenant_id, user_id=other.admin_user_id),
                  errors.USER_NOT_FOUND)
    # With the first admin deactivated, the next active one.
    await run(acts, "set_user_active", SetUserActiveRequest(tenant_id=tenant.tenant_id,
                                                            user_id=tenant.admin_user_id, active=False))
    assert (await run(acts, "find_user", UserLookup(tenant_id=tenant.tenant_id))).user_id == later_admin.user_id
    inactive: UserFacts = await run(acts, "find_user", UserLookup(tenant_id=tenant.tenant_id,
                                                                   user_id=tenant.admin_user_id))
    assert inactive.is_inactive
    # A tenant without any active MSP admin.
    bare = uuid.uuid4()
    await db.execute("INSERT INTO tenants (tenant, client_name, email, created_at) VALUES (%s, %s, %s, now())",
                     (bare, f"Bare MSP {bare.hex[:8]}", unique_email("bare")))
    err = await refused(acts, "find_user", UserLookup(tenant_id=bare), errors.USER_NOT_FOUND)
    assert "no active MSP admin" in str(err)


async def test_a_new_temporary_password_replaces_the_old_one(acts, users_settings, db) -> None:
    tenant, admin_password = await provision(acts)
    key = (tenant.tenant_id, tenant.admin_user_id)
    assert independent_hash_matches(users_settings, admin_password, await stored_hash(db, *key))
    req = NewPasswordRequest(tenant_id=tenant.tenant_id, user_id=tenant.admin_user_id,
                             seal_binding=f"wf-{uuid.uuid4().hex[:6]}/run/reset")
    first: NewPassword = await run(acts, "set_temporary_password", req)
    assert first.user.user_id == tenant.admin_user_id and first.user.tenant_name == tenant.tenant_name
    first_password = opened(first, req.seal_binding)
    assert first_password != admin_password
    assert independent_hash_matches(users_settings, first_password, await stored_hash(db, *key))
    assert not independent_hash_matches(users_settings, admin_password, await stored_hash(db, *key))

    # Executed again (a retry): replaced again; the last sealed password is the valid one.
    second: NewPassword = await run(acts, "set_temporary_password", req)
    second_password = opened(second, req.seal_binding)
    stored = await stored_hash(db, *key)
    assert independent_hash_matches(users_settings, second_password, stored)
    assert not independent_hash_matches(users_settings, first_password, stored)
    assert await one(db, "SELECT count(*) AS n FROM users WHERE tenant = %s", tenant.tenant_id) == {"n": 1}


async def test_no_new_password_for_a_missing_or_inactive_user(acts, db) -> None:
    tenant, _ = await provision(acts)
    tech: CreatedUser = await run(acts, "create_user", new_user(tenant))
    await run(acts, "set_user_active", SetUserActiveRequest(tenant_id=tenant.tenant_id, user_id=tech.user_id,
                                                            active=False))
    before = await snapshot(db)
    err = await refused(acts, "set_temporary_password", NewPasswordRequest(
        tenant_id=tenant.tenant_id, user_id=tech.user_id, seal_binding="b"), errors.USER_INACTIVE)
    assert "reactivate" in str(err)
    await refused(acts, "set_temporary_password", NewPasswordRequest(
        tenant_id=tenant.tenant_id, user_id=uuid.uuid4(), seal_binding="b"), errors.USER_NOT_FOUND)
    await refused(acts, "set_user_active", SetUserActiveRequest(
        tenant_id=tenant.tenant_id, user_id=uuid.uuid4(), active=True), errors.USER_NOT_FOUND)
    assert await snapshot(db) == before


# ---------------------------------------------------------------- executed twice: one outcome


async def test_each_activity_executed_twice_gives_one_outcome(acts, users_settings, db) -> None:
    tenant, _ = await provision(acts, license_count=2)
    req = new_user(tenant, roles=["Technician", "Finance"])
    first: CreatedUser = await run(acts, "create_user", req)
    # The retry: the tenant is now at its limit, but the row is this run's own, so neither a duplicate
    # nor a licence more.
    again: CreatedUser = await run(acts, "create_user", req)
    assert first.created and not again.created and not again.forced
    assert (again.user_id, again.roles, sorted(again.role_ids)) == (first.user_id, first.roles,
                                                                     sorted(first.role_ids))
    assert await one(db, "SELECT count(*) AS n FROM users WHERE tenant = %s AND user_id = %s",
                     tenant.tenant_id, req.user_id) == {"n": 1}
    assert await one(db, "SELECT count(*) AS n FROM user_roles WHERE tenant = %s AND user_id = %s",
                     tenant.tenant_id, req.user_id) == {"n": 2}
    stored = await stored_hash(db, tenant.tenant_id, req.user_id)
    assert independent_hash_matches(users_settings, opened(again, req.seal_binding), stored)
    assert not independent_hash_matches(users_settings, opened(first, req.seal_binding), stored)

    off = SetUserActiveRequest(tenant_id=tenant.tenant_id, user_id=req.user_id, active=False)
    assert (await run(acts, "set_user_active", off)).changed
    after_first = await snapshot(db)
    assert not (await run(acts, "set_user_active", off)).changed
    assert await snapshot(db) == after_first  # nothing written, updated_at included

    look = UserLookup(tenant_id=tenant.tenant_id, user_id=req.user_id)
    assert await run(acts, "find_user", look) == await run(acts, "find_user", look)

    record = audit_record(tenant.tenant_id)
    results = [await run(acts, "record_audit", record) for _ in range(2)]
    assert results == [AuditResult(log_id=record.log_id, recorded=True)] * 2
    assert await one(db, "SELECT count(*) AS n FROM extension_audit_logs WHERE log_id = %s",
                     record.log_id) == {"n": 1}

    removal = RemoveUserInput(tenant_id=tenant.tenant_id, user_id=req.user_id)
    removed: list[RemoveUserOutput] = [await run(acts, "remove_user", removal) for _ in range(2)]
    assert [r.removed for r in removed] == [True, False]


# ---------------------------------------------------------------- remove_user and list_users


async def test_remove_user_deletes_only_the_minted_user(acts, db) -> None:
    tenant, _ = await provision(acts)
    keep: CreatedUser = await run(acts, "create_user", new_user(tenant))
    gone: CreatedUser = await run(acts, "create_user", new_user(tenant, roles=["Technician", "Dispatcher"]))
    other, _ = await provision(acts)
    # The id in another tenant removes nothing there.
    assert not (await run(acts, "remove_user", RemoveUserInput(tenant_id=other.tenant_id,
                                                               user_id=gone.user_id))).removed
    out: RemoveUserOutput = await run(acts, "remove_user", RemoveUserInput(tenant_id=tenant.tenant_id,
                                                                           user_id=gone.user_id))
    assert out.removed
    left = await (await db.execute("SELECT user_id FROM users WHERE tenant = %s ORDER BY user_id",
                                   (tenant.tenant_id,))).fetchall()
    assert sorted(r["user_id"] for r in left) == sorted([tenant.admin_user_id, keep.user_id])
    assert await one(db, "SELECT count(*) AS n FROM user_roles WHERE tenant = %s AND user_id = %s",
                     tenant.tenant_id, gone.user_id) == {"n": 0}


async def test_list_users(acts, resources, db) -> None:
    tenant, _ = await provision(acts)
    tech: CreatedUser = await run(acts, "create_user", new_user(tenant, roles=["Technician", "Dispatcher"]))
    portal: CreatedUser = await run(acts, "create_user", new_user(tenant, user_type=UserType.CLIENT,
                                                                  roles=["User"]))
    await run(acts, "set_user_active", SetUserActiveRequest(tenant_id=tenant.tenant_id, user_id=tech.user_id,
                                                            active=False))
    async with resources.pool.connection() as conn:
        everyone = await users_sql.list_users(conn, tenant.tenant_id)
        active = await users_sql.list_users(conn, tenant.tenant_id, include_inactive=False)
        missing = await users_sql.list_users(conn, uuid.uuid4())
    assert missing is None
    assert everyone is not None and active is not None
    assert [(u.user_id, u.user_type, u.is_inactive, u.roles) for u in everyone] == [
        (tenant.admin_user_id, UserType.INTERNAL, False, ["Admin"]),
        (tech.user_id, UserType.INTERNAL, True, ["Dispatcher", "Technician"]),
        (portal.user_id, UserType.CLIENT, False, ["User"]),
    ]
    assert everyone[0].email == tenant.admin.email and everyone[0].created_at is not None
    assert [u.user_id for u in active] == [tenant.admin_user_id, portal.user_id]


# ---------------------------------------------------------------- record_audit


def audit_record(tenant_id: uuid.UUID, **overrides: Any) -> AuditRecord:
    fields: dict[str, Any] = {
        "log_id": uuid.uuid4(), "tenant_id": tenant_id, "action": "WELCOME_EMAIL_RESENT", "resource_type": "user",
        "resource_id": str(uuid.uuid4()), "triggered_by": str(uuid.uuid4()),
        "triggered_by_email": "operator@nineminds.test", "workflow_id": f"resend-welcome-{uuid.uuid4()}",
        "status": "completed", "details": {"userEmail": "someone@example-msp.com"},
    }
    fields.update(overrides)
    return AuditRecord(**fields)


async def test_record_audit_writes_the_original_row(acts, db) -> None:
    tenant = uuid.uuid4()
    by_user = audit_record(tenant)
    assert await run(acts, "record_audit", by_user) == AuditResult(log_id=by_user.log_id, recorded=True)
    row = await one(db, "SELECT * FROM extension_audit_logs WHERE tenant = %s AND log_id = %s", MGMT, by_user.log_id)
    assert {k: row[k] for k in ("event_type", "user_id", "user_email", "resource_type", "resource_id",
                                "workflow_id", "status", "error_message", "details")} == {
        "event_type": "tenant.welcome.email.resent", "user_id": uuid.UUID(by_user.triggered_by or ""),
        "user_email": "operator@nineminds.test", "resource_type": "user", "resource_id": by_user.resource_id,
        "workflow_id": by_user.workflow_id, "status": "completed", "error_message": None,
        "details": {"userEmail": "someone@example-msp.com", "targetTenantId": str(tenant)},
    }
    assert row["created_at"] is not None

    # An operator's name (from the CLI) is no user id: kept in details.
    by_operator = audit_record(tenant, action="USER_DEACTIVATED", triggered_by="ops-alice", status="failed",
                               error="LastAdminError: the last active MSP admin", details={})
    await run(acts, "record_audit", by_operator)
    row = await one(db, "SELECT event_type, user_id, status, error_message, details FROM extension_audit_logs"
                        " WHERE tenant = %s AND log_id = %s", MGMT, by_operator.log_id)
    assert dict(row) == {"event_type": "tenant.user.deactivated", "user_id": None, "status": "failed",
                         "error_message": "LastAdminError: the last active MSP admin",
                         "details": {"triggeredBy": "ops-alice", "targetTenantId": str(tenant)}}


async def test_without_an_audit_tenant_nothing_is_recorded(resources, users_settings, db, caplog) -> None:
    hasher = PasswordHasher(pepper=TEST_PEPPER)
    unconfigured = UserActivities(resources.pool, hasher, SEALER, audit_tenant_id=None)
    before = await one(db, "SELECT count(*) AS n FROM extension_audit_logs")
    with caplog.at_level(logging.INFO, logger="alga_worker.activities.users"):
        result: AuditResult = await ActivityEnvironment().run(unconfigured.record_audit, audit_record(uuid.uuid4()))
    assert result == AuditResult(log_id=None, recorded=False)
    assert await one(db, "SELECT count(*) AS n FROM extension_audit_logs") == before
    warnings = [r for r in caplog.records if r.name == "alga_worker.activities.users"]
    assert [r.levelno for r in warnings] == [logging.WARNING]
    assert "no audit tenant configured" in warnings[0].getMessage()


@workflow.defn(name="userActivitiesAuditProbeWorkflow", sandboxed=False)
class AuditProbeWorkflow:
    @workflow.run
    async def run(self, record: AuditRecord, activity_queue: str) -> AuditResult:
        result: AuditResult = await workflow.execute_activity(
            "record_audit", record, task_queue=activity_queue, result_type=AuditResult,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=100), maximum_attempts=3))
        return result


@contextlib.asynccontextmanager
async def database_without_audit_table(db: psycopg.AsyncConnection[Any], database_url: str) -> AsyncIterator[str]:
    async with scratch_database(db, database_url, "DROP TABLE extension_audit_logs") as url:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            assert await verify_schema(conn) == []  # the worker starts on it: auditing is not contracted
        yield url


async def test_a_missing_audit_table_is_a_schema_mismatch(client: Client, stack, db, users_env) -> None:
    async with database_without_audit_table(db, stack.database_url) as url:
        settings = load_settings(dict(users_env, DATABASE_URL=url))
        built = await build_resources(settings)
        found = {activity_name(fn): fn for fn in built.activities}
        # The worker production assembles (build_worker: its interceptors), serving the real activity.
        activity_worker = build_worker(client, settings, [found["record_audit"]])
        workflow_queue = f"{settings.task_queue}-wf"
        probe_worker = Worker(client, task_queue=workflow_queue, workflows=[AuditProbeWorkflow],
                              workflow_runner=UnsandboxedWorkflowRunner())
        try:
            async with activity_worker, probe_worker:
                handle = await client.start_workflow(
                    AuditProbeWorkflow.run, args=[audit_record(uuid.uuid4()), settings.task_queue],
                    id=f"audit-probe-{uuid.uuid4()}", task_queue=workflow_queue,
                    execution_timeout=timedelta(seconds=60))
                with pytest.raises(WorkflowFailureError) as failed:
                    await handle.result()
                history = await handle.fetch_history()
        finally:
            await built.aclose()
    cause = failed.value.cause
    assert isinstance(cause, ActivityError) and isinstance(cause.cause, ApplicationError)
    assert cause.cause.type == errors.SCHEMA_MISMATCH and cause.cause.non_retryable
    assert 'relation "extension_audit_logs" does not exist' in cause.cause.message
    assert [e.activity_task_started_event_attributes.attempt for e in history.events
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED] == [1]


# ---------------------------------------------------------------- logs


async def test_no_log_record_holds_a_password_or_an_email_address(acts, db, caplog) -> None:
    secrets: list[str] = []
    with caplog.at_level(logging.DEBUG):
        tenant, admin_password = await provision(acts, license_count=2)
        secrets += [admin_password, tenant.admin.email]
        req = new_user(tenant, email=unique_email("logged"))
        created: CreatedUser = await run(acts, "create_user", req)
        await run(acts, "create_user", req)
        secrets += [req.email, opened(created, req.seal_binding)]
        reset_req = NewPasswordRequest(tenant_id=tenant.tenant_id, user_id=req.user_id, seal_binding="wf/run/reset")
        secrets.append(opened(await run(acts, "set_temporary_password", reset_req), "wf/run/reset"))
        await run(acts, "find_user", UserLookup(tenant_id=tenant.tenant_id))
        await run(acts, "set_user_active", SetUserActiveRequest(tenant_id=tenant.tenant_id, user_id=req.user_id,
                                                                active=False))
        await run(acts, "set_user_active", SetUserActiveRequest(tenant_id=tenant.tenant_id, user_id=req.user_id,
                                                                active=True))
        record = audit_record(tenant.tenant_id, triggered_by="ops-bob")
        secrets += ["operator@nineminds.test", "someone@example-msp.com"]
        await run(acts, "record_audit", record)
        for refusal, kind in ((new_user(tenant, email=req.email), errors.DUPLICATE_ERROR),
                              (new_user(tenant), errors.LICENSE_LIMIT)):
            await refused(acts, "create_user", refusal, kind)
        await run(acts, "remove_user", RemoveUserInput(tenant_id=tenant.tenant_id, user_id=req.user_id))
    said = {r.getMessage() for r in caplog.records if r.name == "alga_worker.activities.users"}
    assert {"user created", "user already created by an earlier attempt: hash replaced", "temporary password replaced",
            "user deactivated", "user reactivated", "audit record written", "user removed"} <= said
    for record_ in caplog.records:
        text = record_.getMessage() + " " + " ".join(str(v) for v in vars(record_).values())
        for secret in secrets:
            assert secret.lower() not in text.lower(), (record_.name, record_.getMessage())


async def test_a_client_user_waits_for_customer_trackings_email_lock(acts, db, stack) -> None:
    """create_user (client) and customer tracking's portal user are serialised on one address.

    Another session plays customer tracking: it holds tracking's email lock and, inside that
    transaction, inserts a portal user with the address (its foreign key takes KEY SHARE on the tenant
    row, which create_user's NO KEY UPDATE lets through: with FOR UPDATE the two would deadlock). Once
    it commits, create_user goes on, sees that row and refuses: one portal user per address."""
    tenant, _ = await provision(acts)
    address = unique_email("portal")
    req = new_user(tenant, user_type=UserType.CLIENT, roles=["User"], email=address)
    before = await snapshot(db)
    async with await psycopg.AsyncConnection.connect(stack.database_url) as tracking, \
            await psycopg.AsyncConnection.connect(stack.database_url, autocommit=True) as watcher:
        await tracking.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 7))",
                               (f"customer-tracking/email:{address}",))
        creating = asyncio.create_task(run(acts, "create_user", req))
        for _ in range(300):  # until create_user's transaction waits on that lock
            row = await (await watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'alga-temporal-worker'"
                " AND wait_event_type = 'Lock' AND datname = current_database()")).fetchone()
            if (row is not None and row[0] >= 1) or creating.done():
                break
            await asyncio.sleep(0.05)
        assert not creating.done(), "create_user did not wait for customer tracking's email lock"
        await tracking.execute(
            "INSERT INTO users (tenant, user_id, username, hashed_password, email, user_type)"
            " VALUES (%s, %s, %s, 'x', %s, 'client')", (tenant.tenant_id, uuid.uuid4(), address, address))
        await tracking.commit()
        with pytest.raises(ApplicationError) as refused_by:
            await creating
    assert refused_by.value.type == errors.DUPLICATE_ERROR
    after = await snapshot(db)
    assert len(after["users"]) == len(before["users"]) + 1  # tracking's row only

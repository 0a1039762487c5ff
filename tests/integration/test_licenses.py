"""Licence count and usage (reference 3.10) on real PostgreSQL and a real Temporal dev server.

What is proven here:

- ``updateTenantLicenseCountWorkflow`` through the real worker sets the count, and ``license_usage``
  then reports it against the tenant's active internal users (client-portal and inactive users hold
  no licence);
- a repeat of the stored ``eventId`` writes nothing (``changed`` false, ``last_license_update`` as it
  was); a new ``eventId`` writes;
- an unknown tenant is a non-retryable ``TenantNotFoundError`` in one attempt; the management tenant
  and malformed starts are ``ValidationError``;
- each activity executed twice (a retry after COMMIT) leaves one outcome;
- ``alga-worker tenant licenses`` with and without ``--set``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment
from tests.support.processes import cells, cli
from tests.support.users import activity_attempts, failure_of
from tests.support.visibility import workflow_ids_matching
from tests.support.workers import Activities, activities_for, running_worker

from alga_worker import errors
from alga_worker.config import Settings, load_settings
from alga_worker.models import LicenseCountResult, LicenseUsage, LicenseUsageInput, UpdateLicenseCountRequest

MGMT = uuid.UUID("00000000-0000-4000-8000-000000000001")  # 0002_management_tenant.sql



# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture
def license_env(worker_env: dict[str, str]) -> dict[str, str]:
    return dict(worker_env, MANAGEMENT_TENANT_ID=str(MGMT))


@pytest.fixture
def license_settings(license_env: dict[str, str]) -> Settings:
    return load_settings(license_env)


@pytest.fixture
async def acts(license_settings: Settings) -> AsyncIterator[Activities]:
    async with activities_for(license_settings) as found:
        yield found


async def new_tenant(db: Any, *, internal: int = 0, inactive: int = 0, portal: int = 0) -> uuid.UUID:
    """A tenant row with the given users: only active internal users should count as used licences."""
    tenant = uuid.uuid4()
    await db.execute("INSERT INTO tenants (tenant, client_name, email, created_at) VALUES (%s, %s, %s, now())",
                     (tenant, f"Licensed MSP {tenant.hex[:8]}", f"licences-{tenant.hex[:8]}@example.com"))
    for kind, is_inactive, n in (("internal", False, internal), ("internal", True, inactive),
                                 ("client", False, portal)):
        for i in range(n):
            await db.execute(
                "INSERT INTO users (tenant, username, hashed_password, email, user_type, is_inactive)"
                " VALUES (%s, %s, 'x', %s, %s, %s)",
                (tenant, f"{kind}-{is_inactive}-{i}", f"{kind}-{is_inactive}-{i}@example.com", kind, is_inactive))
    return tenant


async def tenant_row(db: Any, tenant: uuid.UUID) -> dict[str, Any]:
    cur = await db.execute("SELECT licensed_user_count, last_license_update, stripe_event_id, updated_at"
                           " FROM tenants WHERE tenant = %s", (tenant,))
    row = await cur.fetchone()
    assert row is not None
    return dict(row)


async def start(client: Client, settings: Settings, request: dict[str, Any]) -> WorkflowHandle[Any, Any]:
    return await client.start_workflow(
        "updateTenantLicenseCountWorkflow", request, id=f"license-count-test-{uuid.uuid4()}",
        task_queue=settings.task_queue, result_type=LicenseCountResult, execution_timeout=timedelta(minutes=2),
    )


# ---------------------------------------------------------------- the workflow


async def test_set_then_usage(client, license_settings, acts, db) -> None:
    tenant = await new_tenant(db, internal=3, inactive=2, portal=4)
    usage: LicenseUsage = await ActivityEnvironment().run(acts["license_usage"], LicenseUsageInput(tenant_id=tenant))
    assert (usage.limit, usage.used, usage.remaining) == (None, 3, None)  # no limit yet: nothing remains to count

    async with running_worker(client, license_settings):
        result: LicenseCountResult = await (await start(
            client, license_settings, {"tenantId": str(tenant), "licenseCount": 5, "eventId": "evt_first"})).result()
    assert result == LicenseCountResult(tenant_id=tenant, license_count=5, previous_license_count=None,
                                        changed=True, event_id="evt_first")
    row = await tenant_row(db, tenant)
    assert row["licensed_user_count"] == 5 and row["stripe_event_id"] == "evt_first"
    assert row["last_license_update"] is not None

    usage = await ActivityEnvironment().run(acts["license_usage"], LicenseUsageInput(tenant_id=tenant))
    assert usage == LicenseUsage(tenant_id=tenant, limit=5, used=3, remaining=2)

    # Over the limit: none remaining, never a negative number.
    await db.execute("UPDATE tenants SET licensed_user_count = 2 WHERE tenant = %s", (tenant,))
    usage = await ActivityEnvironment().run(acts["license_usage"], LicenseUsageInput(tenant_id=tenant))
    assert (usage.limit, usage.used, usage.remaining) == (2, 3, 0)


async def test_the_run_carries_the_tenant_id_search_attribute(client, license_settings, db) -> None:
    tenant = await new_tenant(db)
    async with running_worker(client, license_settings):
        handle = await start(client, license_settings, {"tenantId": str(tenant), "licenseCount": 3})
        await handle.result()
    query = f'TenantId="{tenant}" AND WorkflowType="updateTenantLicenseCountWorkflow"'
    assert await workflow_ids_matching(client, query, {handle.id}) == {handle.id}


async def test_a_repeated_event_changes_nothing_and_a_new_one_does(client, license_settings, db) -> None:
    tenant = await new_tenant(db)
    async with running_worker(client, license_settings):
        first: LicenseCountResult = await (await start(
            client, license_settings, {"tenantId": str(tenant), "licenseCount": 5, "eventId": "evt_a"})).result()
        after_first = await tenant_row(db, tenant)

        # The same event again, even with another count (a replayed or tampered delivery): nothing written.
        repeat: LicenseCountResult = await (await start(
            client, license_settings, {"tenantId": str(tenant), "licenseCount": 9, "eventId": "evt_a"})).result()
        assert not repeat.changed and repeat.previous_license_count == 5
        assert await tenant_row(db, tenant) == after_first

        newer: LicenseCountResult = await (await start(
            client, license_settings, {"tenantId": str(tenant), "licenseCount": 7, "eventId": "evt_b"})).result()
    assert first.changed and newer.changed and newer.previous_license_count == 5
    after_newer = await tenant_row(db, tenant)
    assert after_newer["licensed_user_count"] == 7 and after_newer["stripe_event_id"] == "evt_b"
    assert after_newer["last_license_update"] >= after_first["last_license_update"]


async def test_an_unknown_tenant_fails_in_one_attempt(client, license_settings) -> None:
    async with running_worker(client, license_settings):
        handle = await start(client, license_settings, {"tenantId": str(uuid.uuid4()), "licenseCount": 5})
        refused = await failure_of(handle)
    assert refused.type == errors.TENANT_NOT_FOUND and refused.non_retryable
    assert "does not exist" in str(refused)
    assert await activity_attempts(handle) == [1]


async def test_the_management_tenant_is_refused(client, license_settings, db) -> None:
    before = await tenant_row(db, MGMT)
    async with running_worker(client, license_settings):
        handle = await start(client, license_settings, {"tenantId": str(MGMT), "licenseCount": 5})
        refused = await failure_of(handle)
    assert refused.type == errors.VALIDATION_ERROR and refused.non_retryable
    assert "management tenant" in str(refused)
    assert await activity_attempts(handle) == [1]
    assert await tenant_row(db, MGMT) == before


@pytest.mark.parametrize("request_body", [
    {"tenantId": "TENANT", "licenseCount": "5"},
    {"tenantId": "TENANT", "licenseCount": 0},
    {"tenantId": "TENANT", "licenseCount": 100_001},
    {"tenantId": "TENANT", "licenseCount": 5.0},
    {"licenseCount": 5},
    {"tenantId": "TENANT", "licenseCount": 5, "eventId": "not-a-stripe-event"},
    {"tenantId": "TENANT", "license_count": 5},
])
async def test_malformed_input_is_a_validation_error(client, license_settings, db,
                                                     request_body: dict[str, Any]) -> None:
    tenant = await new_tenant(db)
    body = {k: str(tenant) if v == "TENANT" else v for k, v in request_body.items()}
    async with running_worker(client, license_settings):
        handle = await start(client, license_settings, body)
        refused = await failure_of(handle)
    assert refused.type == errors.VALIDATION_ERROR and refused.non_retryable
    assert "invalid licence count input" in str(refused)
    assert await activity_attempts(handle) == []  # refused before any activity ran
    assert (await tenant_row(db, tenant))["licensed_user_count"] is None


# ---------------------------------------------------------------- activities executed twice


@pytest.mark.parametrize("event_id", ["evt_twice", None])
async def test_update_executed_twice_gives_one_outcome(acts, db, event_id: str | None) -> None:
    tenant = await new_tenant(db, internal=1)
    req = UpdateLicenseCountRequest(tenant_id=tenant, license_count=4, event_id=event_id)
    first: LicenseCountResult = await ActivityEnvironment().run(acts["update_license_count"], req)
    after_first = await tenant_row(db, tenant)
    second: LicenseCountResult = await ActivityEnvironment().run(acts["update_license_count"], req)
    after_second = await tenant_row(db, tenant)
    assert first.changed and first.previous_license_count is None
    assert after_second["licensed_user_count"] == after_first["licensed_user_count"] == 4
    assert after_second["stripe_event_id"] == after_first["stripe_event_id"] == event_id
    if event_id is not None:  # the retry is recognised: nothing rewritten
        assert not second.changed and after_second == after_first
    else:  # no key to recognise it by: the same values written again
        assert second.changed and second.previous_license_count == 4


async def test_usage_executed_twice_gives_one_outcome(acts, db) -> None:
    tenant = await new_tenant(db, internal=2)
    await db.execute("UPDATE tenants SET licensed_user_count = 3 WHERE tenant = %s", (tenant,))
    req = LicenseUsageInput(tenant_id=tenant)
    first = await ActivityEnvironment().run(acts["license_usage"], req)
    second = await ActivityEnvironment().run(acts["license_usage"], req)
    assert first == second == LicenseUsage(tenant_id=tenant, limit=3, used=2, remaining=1)


async def test_activities_refuse_an_unknown_tenant(acts) -> None:
    unknown = uuid.uuid4()
    for name, req in (("update_license_count", UpdateLicenseCountRequest(tenant_id=unknown, license_count=1)),
                      ("license_usage", LicenseUsageInput(tenant_id=unknown))):
        with pytest.raises(ApplicationError) as caught:
            await ActivityEnvironment().run(acts[name], req)
        assert caught.value.type == errors.TENANT_NOT_FOUND and caught.value.non_retryable


# ---------------------------------------------------------------- the CLI



async def test_cli_usage_and_set(client, license_settings, license_env, db) -> None:
    tenant = await new_tenant(db, internal=2, portal=1)
    code, out, err = await cli(license_env, "tenant", "licenses", str(tenant))
    assert code == 0, err
    assert cells(out) | {"tenant id": ""} == {"tenant id": "", "limit": "unlimited", "used": "2",
                                              "remaining": "unlimited"}

    async with running_worker(client, license_settings):
        code, out, err = await cli(license_env, "tenant", "licenses", str(tenant), "--set", "5",
                                   "--event-id", "evt_cli")
        assert code == 0, err
        assert re.search(r"started license-count-\S+-evt_cli", out), out
        shown = cells(out)
        assert (shown["licence count"], shown["previous licence count"], shown["changed"], shown["event id"]) \
            == ("5", "unlimited", "yes", "evt_cli")

        code, out, err = await cli(license_env, "tenant", "licenses", str(tenant), "--set", "6",
                                   "--event-id", "evt_cli")
        assert code == 0, err
        assert cells(out)["changed"] == "no"

        code, _, err = await cli(license_env, "tenant", "licenses", str(uuid.uuid4()), "--set", "5")
        assert code == 1 and "TenantNotFoundError" in err

    code, out, err = await cli(license_env, "tenant", "licenses", str(tenant))
    assert code == 0, err
    assert {k: cells(out)[k] for k in ("limit", "used", "remaining")} == {"limit": "5", "used": "2",
                                                                           "remaining": "3"}


async def test_cli_refuses_bad_arguments_and_unknown_tenants(license_env) -> None:
    for args, code_wanted, text in ((("not-a-uuid",), 2, "invalid input"),
                                    ((str(uuid.uuid4()), "--set", "0"), 2, "invalid input"),
                                    ((str(uuid.uuid4()), "--set", "5", "--event-id", "nope"), 2, "invalid input"),
                                    ((str(uuid.uuid4()), "--event-id", "evt_x"), 2, "--event-id needs --set"),
                                    ((str(uuid.uuid4()),), 6, "does not exist")):
        code, _, err = await cli(license_env, "tenant", "licenses", *args)
        assert code == code_wanted, (args, err)
        assert text in err, (args, err)



"""End to end: tenantCreationWorkflow on a real dev server and PostgreSQL, checked row by row."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path
from typing import Any

from temporalio.client import Client
from tests.support.data import TEST_PEPPER, tenant_request, tenant_row_counts
from tests.support.history import payloads_of
from tests.support.workers import outbox_messages, password_from_welcome, running_worker, text_body

from alga_worker.config import Settings
from alga_worker.db import onboarding_catalog as catalog
from alga_worker.models import TenantCreationResult

# The reference's measured S-OCT provisioning: 465 rows in 13 tables.
EXPECTED_ROWS = {
    "tenants": 1, "clients": 1, "client_locations": 1, "tenant_companies": 1, "tenant_settings": 1,
    "tenant_email_settings": 1, "roles": 8, "permissions": 134, "role_permissions": 313, "tax_regions": 1,
    "tax_rates": 1, "users": 1, "user_roles": 1,
    "contacts": 0, "tag_definitions": 0, "tag_mappings": 0,
    # no checkout in this start: no Stripe rows
    "stripe_customers": 0, "stripe_subscriptions": 0, "stripe_prices": 0, "stripe_products": 0,
}


def independent_alga_hash_matches(password: str, stored: str, pepper: str) -> bool:
    """Alga's verify, written from its spec (not our code): PBKDF2-SHA512, salt = pepper + salt hex."""
    salt_hex, derived_hex = stored.split(":")
    derived = hashlib.pbkdf2_hmac("sha512", password.encode(), (pepper + salt_hex).encode(), 10_000, 64)
    return derived.hex() == derived_hex


async def run_creation(client: Client, settings: Settings, request: dict[str, Any]) -> tuple[Any, TenantCreationResult]:
    async with running_worker(client, settings):
        handle = await client.start_workflow(
            "tenantCreationWorkflow", request, id=f"tenant-creation-{uuid.uuid4()}",
            task_queue=settings.task_queue, result_type=TenantCreationResult,
        )
        result = await handle.result()
    return handle, result


async def test_every_row_written_with_alga_values_and_a_working_password(client, settings, db, outbox: Path) -> None:
    request = tenant_request(tenantName="Northwind IT", licenseCount=25,
                             adminUser={"firstName": "Grace", "lastName": "Hopper",
                                        "email": f"Grace.Hopper.{uuid.uuid4().hex[:6]}@Northwind.example"})
    _, result = await run_creation(client, settings, request)
    email_addr = request["adminUser"]["email"].lower()

    assert result.success and result.email_sent
    assert result.admin_email == email_addr
    assert await tenant_row_counts(db, result.tenant_id) == EXPECTED_ROWS

    tenant = await (await db.execute("SELECT * FROM tenants WHERE tenant = %s", (result.tenant_id,))).fetchone()
    assert tenant["client_name"] == "Northwind IT"
    assert tenant["email"] == email_addr
    assert tenant["licensed_user_count"] == 25
    assert tenant["last_license_update"] is not None

    client_row = await (await db.execute("SELECT * FROM clients WHERE tenant = %s", (result.tenant_id,))).fetchone()
    assert str(client_row["client_id"]) == result.client_id == result.company_id
    assert client_row["client_name"] == request["clientName"]
    assert client_row["client_type"] == "company"
    assert client_row["is_inactive"] is False
    assert client_row["properties"] == {"type": "msp", "is_system_client": True, "created_by": "tenant_setup"}

    location = await (await db.execute("SELECT * FROM client_locations WHERE tenant = %s",
                                       (result.tenant_id,))).fetchone()
    assert str(location["client_id"]) == result.client_id
    assert (location["location_name"], location["email"], location["phone"], location["address_line1"],
            location["city"], location["country_code"], location["country_name"]) == (
        "Main Office", email_addr, "", "N/A", "N/A", "XX", "Unknown")
    assert location["is_default"] is True and location["is_active"] is True

    link = await (await db.execute("SELECT * FROM tenant_companies WHERE tenant = %s", (result.tenant_id,))).fetchone()
    assert str(link["client_id"]) == result.client_id and link["is_default"] is True

    ts = await (await db.execute("SELECT * FROM tenant_settings WHERE tenant = %s", (result.tenant_id,))).fetchone()
    assert ts["onboarding_completed"] is False and ts["onboarding_skipped"] is False
    es = await (await db.execute("SELECT * FROM tenant_email_settings WHERE tenant = %s",
                                 (result.tenant_id,))).fetchone()
    assert (es["email_provider"], es["fallback_enabled"], es["tracking_enabled"]) == ("resend", True, False)

    roles = await (await db.execute("SELECT role_name, msp, client FROM roles WHERE tenant = %s",
                                    (result.tenant_id,))).fetchall()
    assert {(r["role_name"], r["msp"], r["client"]) for r in roles} == {
        (r.name, r.msp, r.client) for r in catalog.ROLES}
    perms = await (await db.execute("SELECT resource, action, msp, client FROM permissions WHERE tenant = %s",
                                    (result.tenant_id,))).fetchall()
    assert {(p["resource"], p["action"], p["msp"], p["client"]) for p in perms} == {
        (p.resource, p.action, p.msp, p.client) for p in catalog.PERMISSIONS}
    grants = await (await db.execute(
        "SELECT r.role_name, r.msp, r.client, p.resource, p.action FROM role_permissions rp"
        " JOIN roles r ON r.tenant = rp.tenant AND r.role_id = rp.role_id"
        " JOIN permissions p ON p.tenant = rp.tenant AND p.permission_id = rp.permission_id WHERE rp.tenant = %s",
        (result.tenant_id,))).fetchall()
    assert {(g["role_name"], g["msp"], g["client"], g["resource"], g["action"]) for g in grants} == {
        (gr.role.name, gr.role.msp, gr.role.client, res, act) for gr in catalog.ROLE_GRANTS
        for res, act in gr.permissions}

    region = await (await db.execute("SELECT * FROM tax_regions WHERE tenant = %s", (result.tenant_id,))).fetchone()
    assert (region["region_code"], region["region_name"], region["is_active"]) == (
        "DEFAULT", "Default Tax Region", True)
    rate = await (await db.execute("SELECT * FROM tax_rates WHERE tenant = %s", (result.tenant_id,))).fetchone()
    assert (float(rate["tax_percentage"]), rate["description"], rate["region_code"], rate["is_active"]) == (
        0.0, "Non-taxable", "DEFAULT", True)

    user = await (await db.execute("SELECT * FROM users WHERE tenant = %s", (result.tenant_id,))).fetchone()
    assert str(user["user_id"]) == result.admin_user_id
    assert (user["first_name"], user["last_name"], user["email"], user["username"], user["user_type"],
            user["is_inactive"]) == ("Grace", "Hopper", email_addr, email_addr, "internal", False)
    admin_role = await (await db.execute(
        "SELECT r.role_name, r.msp, r.client FROM user_roles ur JOIN roles r"
        " ON r.tenant = ur.tenant AND r.role_id = ur.role_id WHERE ur.tenant = %s AND ur.user_id = %s",
        (result.tenant_id, result.admin_user_id))).fetchall()
    assert [(r["role_name"], r["msp"], r["client"]) for r in admin_role] == [("Admin", True, False)]

    # The password that reached the email is the one the web app will accept.
    messages = outbox_messages(outbox)
    assert len(messages) == 1
    welcome = messages[0]
    assert welcome["To"] == email_addr
    assert welcome["Subject"] == "Welcome to Alga PSA - Your Account is Ready"
    password = password_from_welcome(welcome)
    stored = user["hashed_password"]
    assert len(stored.split(":")[0]) == 24 and len(stored) == 153
    assert independent_alga_hash_matches(password, stored, TEST_PEPPER)
    assert not independent_alga_hash_matches(password, stored, TEST_PEPPER + "x")
    # No client-portal user was created, so the email must not promise one (the 2026 incident).
    assert "client portal" not in text_body(welcome).lower()


async def test_history_and_result_never_hold_the_temporary_password(client, settings, outbox: Path) -> None:
    handle, result = await run_creation(client, settings, tenant_request())
    password = password_from_welcome(outbox_messages(outbox)[0])
    history = await handle.fetch_history()
    history_json = history.to_json()
    result_json = json.dumps(result.model_dump(mode="json", by_alias=True))
    assert password not in history_json
    assert password not in result_json
    assert "temporaryPassword" not in result_json
    # Payloads are base64 in the proto JSON: check the decoded payload data too.
    decoded = " ".join(
        p.data.decode("utf-8", "replace")
        for event in history.events
        for p in payloads_of(event)
    )
    assert decoded, "expected payloads in history"
    assert password not in decoded




async def test_get_state_reports_progress_and_outcomes(client, settings) -> None:
    async with running_worker(client, settings):  # queries are answered by a worker
        handle = await client.start_workflow(
            "tenantCreationWorkflow", tenant_request(), id=f"tenant-creation-{uuid.uuid4()}",
            task_queue=settings.task_queue, result_type=TenantCreationResult,
        )
        result = await handle.result()
        state = await handle.query("getState")
    assert state["step"] == "completed" and state["progress"] == 100
    assert state["tenantId"] == result.tenant_id and state["adminUserId"] == result.admin_user_id
    assert state["emailSent"] is True
    assert {k: v["status"] for k, v in state["outcomes"].items()} == {
        "validation": "done", "tenant": "done", "onboarding_seeds": "done", "admin_user": "done",
        "tenant_settings": "done", "welcome_email": "done"}
    assert state["outcomes"]["onboarding_seeds"]["rows"]["permissions"] == 134

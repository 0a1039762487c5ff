"""Workflow inputs and outputs: the camelCase wire shape callers already send, validated strictly."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pytest
from pydantic import ValidationError

from alga_worker.models import (
    AdminUserInput,
    StepOutcome,
    TenantCreationInput,
    TenantCreationResult,
    dump_wire,
)

TENANT_ID = "6f1c2b9e-3d4a-4f5b-8c7d-9e0f1a2b3c4d"


def wire(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "tenantName": "Acme Managed Services",
        "adminUser": {"firstName": "Ada", "lastName": "Lovelace", "email": "ada@acme.example"},
    }
    doc.update(overrides)
    return doc


def admin(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"firstName": "Ada", "lastName": "Lovelace", "email": "ada@acme.example"}
    doc.update(overrides)
    return doc


def rejected(doc: dict[str, Any]) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        TenantCreationInput.model_validate(doc)
    return info.value


def error_locs(err: ValidationError) -> set[tuple[str | int, ...]]:
    return {tuple(e["loc"]) for e in err.errors()}


# ---------------------------------------------------------------- accepted shapes


def test_full_wire_shape_is_accepted() -> None:
    model = TenantCreationInput.model_validate(wire(
        companyName="Acme Company",
        clientName="Acme Client",
        licenseCount=25,
        checkoutSessionId="cs_test_a1B2c3-D4",
        billingPlan="pro",
        contractLine="monthly",
        tenantId=TENANT_ID,
    ))
    assert model.tenant_name == "Acme Managed Services"
    assert model.admin_user.first_name == "Ada"
    assert model.admin_user.last_name == "Lovelace"
    assert model.admin_user.email == "ada@acme.example"
    assert model.company_name == "Acme Company"
    assert model.client_name == "Acme Client"
    assert model.license_count == 25
    assert model.checkout_session_id == "cs_test_a1B2c3-D4"
    assert model.billing_plan == "pro"
    assert model.contract_line == "monthly"
    assert model.tenant_id == UUID(TENANT_ID)


def test_minimal_wire_shape_defaults() -> None:
    model = TenantCreationInput.model_validate(wire())
    assert model.client_name is None
    assert model.company_name is None
    assert model.license_count is None
    assert model.checkout_session_id is None
    assert model.tenant_id is None


def test_wire_round_trip_is_camel_case() -> None:
    model = TenantCreationInput.model_validate(wire(licenseCount=3, tenantId=TENANT_ID))
    doc = dump_wire(model)
    assert doc == {
        "tenantName": "Acme Managed Services",
        "adminUser": {"firstName": "Ada", "lastName": "Lovelace", "email": "ada@acme.example"},
        "licenseCount": 3,
        "tenantId": TENANT_ID,
    }
    assert TenantCreationInput.model_validate(doc) == model


def test_email_is_trimmed_and_lower_cased() -> None:
    model = TenantCreationInput.model_validate(wire(adminUser=admin(email="  Ada.Lovelace+Ops@ACME.Example \n")))
    assert model.admin_user.email == "ada.lovelace+ops@acme.example"


def test_names_are_trimmed() -> None:
    model = TenantCreationInput.model_validate(wire(tenantName="  Acme  ", adminUser=admin(firstName=" Ada ")))
    assert model.tenant_name == "Acme"
    assert model.admin_user.first_name == "Ada"


def test_unicode_names_are_fine() -> None:
    model = TenantCreationInput.model_validate(wire(tenantName="Müller & Söhne GmbH — 東京"))
    assert model.tenant_name == "Müller & Söhne GmbH — 東京"


def test_tenant_name_of_255_characters_is_accepted() -> None:
    assert len(TenantCreationInput.model_validate(wire(tenantName="a" * 255)).tenant_name) == 255


def test_models_are_frozen() -> None:
    model = TenantCreationInput.model_validate(wire())
    with pytest.raises(ValidationError):
        model.tenant_name = "other"  # type: ignore[misc]


# ---------------------------------------------------------------- rejected shapes


@pytest.mark.parametrize("extra", [{"licenceCount": 5}, {"temporaryPassword": "x"}, {"tenant": "x"}])
def test_unknown_fields_are_rejected(extra: dict[str, Any]) -> None:
    err = rejected(wire(**extra))
    assert error_locs(err) == {(next(iter(extra)),)}
    assert err.errors()[0]["type"] == "extra_forbidden"


def test_unknown_admin_fields_are_rejected() -> None:
    err = rejected(wire(adminUser=admin(password="hunter2")))
    assert error_locs(err) == {("adminUser", "password")}


@pytest.mark.parametrize("name", ["", " ", "   \t ", "a" * 256, " " + "b" * 256 + " "])
def test_bad_tenant_names_are_rejected(name: str) -> None:
    err = rejected(wire(tenantName=name))
    assert error_locs(err) == {("tenantName",)}


@pytest.mark.parametrize("name", ["Acme\x00Corp", "Acme\nCorp", "Acme\rCorp", "Acme\tCorp", "Acme\x1bCorp",
                                  "Acme\u200bCorp", "Acme\x7fCorp"])
def test_control_characters_are_rejected(name: str) -> None:
    assert error_locs(rejected(wire(tenantName=name))) == {("tenantName",)}
    assert error_locs(rejected(wire(adminUser=admin(lastName=name)))) == {("adminUser", "lastName")}


@pytest.mark.parametrize("field", ["firstName", "lastName"])
@pytest.mark.parametrize("value", ["", "  ", "x" * 101])
def test_bad_admin_names_are_rejected(field: str, value: str) -> None:
    assert error_locs(rejected(wire(adminUser=admin(**{field: value})))) == {("adminUser", field)}


@pytest.mark.parametrize("email", [
    "",
    "plainaddress",
    "no-at.example.com",
    "a@b",
    "user@localhost",
    "us er@example.com",
    "user@exa mple.com",
    "user@@example.com",
    "user@example..com",
    "user..name@example.com",
    "user@.example.com",
    "user@example.com.",
    "user@-example.com",
    "@example.com",
    "user@",
    "user@example.com\nBcc: x@evil.example",
    "a" * 250 + "@example.com",
])
def test_malformed_emails_are_rejected(email: str) -> None:
    assert error_locs(rejected(wire(adminUser=admin(email=email)))) == {("adminUser", "email")}


@pytest.mark.parametrize("email", [".user@example.com", "user.@example.com"])
def test_local_part_must_not_start_or_end_with_a_dot(email: str) -> None:
    """RFC 5322 dot-atom: no leading or trailing dot (providers such as Resend refuse such addresses)."""
    assert error_locs(rejected(wire(adminUser=admin(email=email)))) == {("adminUser", "email")}


@pytest.mark.parametrize("email", ["a@b.co", "first.last@sub.domain.example", "o'brien+tag@example.org",
                                   "x_y-z@x-y.example"])
def test_valid_emails_are_accepted(email: str) -> None:
    assert TenantCreationInput.model_validate(wire(adminUser=admin(email=email))).admin_user.email == email


@pytest.mark.parametrize("count", [0, -1, -100, 100_001])
def test_bad_license_counts_are_rejected(count: int) -> None:
    assert error_locs(rejected(wire(licenseCount=count))) == {("licenseCount",)}


def test_license_count_of_one_is_accepted() -> None:
    assert TenantCreationInput.model_validate(wire(licenseCount=1)).license_count == 1


@pytest.mark.parametrize("session", ["", "cs test", "cs/../x", "x" * 256])
def test_bad_checkout_session_ids_are_rejected(session: str) -> None:
    assert error_locs(rejected(wire(checkoutSessionId=session))) == {("checkoutSessionId",)}


def test_bad_tenant_id_is_rejected() -> None:
    assert error_locs(rejected(wire(tenantId="not-a-uuid"))) == {("tenantId",)}


def test_missing_required_fields_are_reported() -> None:
    err = rejected({"adminUser": {"firstName": "Ada"}})
    assert error_locs(err) == {("tenantName",), ("adminUser", "lastName"), ("adminUser", "email")}


# ---------------------------------------------------------------- client name


def test_effective_client_name_order() -> None:
    both = TenantCreationInput.model_validate(wire(clientName="Client", companyName="Company"))
    assert both.effective_client_name == "Client"
    company = TenantCreationInput.model_validate(wire(companyName="Company"))
    assert company.effective_client_name == "Company"
    neither = TenantCreationInput.model_validate(wire())
    assert neither.effective_client_name == "Acme Managed Services"


# ---------------------------------------------------------------- result


def _result() -> TenantCreationResult:
    return TenantCreationResult(
        success=True,
        tenant_id=TENANT_ID,
        client_id="c-1",
        company_id="c-1",
        admin_user_id="u-1",
        admin_email="ada@acme.example",
        email_sent=True,
        email_provider="outbox",
        created_at=datetime(2025, 10, 1, 12, 0, tzinfo=UTC),
        outcomes={"createTenant": StepOutcome(status="done", rows={"tenants": 1})},
    )


def test_result_has_no_password_like_field() -> None:
    for name, field in TenantCreationResult.model_fields.items():
        for label in (name, field.alias or ""):
            lowered = label.lower()
            assert "password" not in lowered, label
            assert "secret" not in lowered, label
            assert "sealed" not in lowered, label
    with pytest.raises(ValidationError):
        TenantCreationResult.model_validate({**dump_wire(_result()), "temporaryPassword": "x"})


def test_result_serialises_camel_case() -> None:
    doc = _result().model_dump(by_alias=True)
    assert {"success", "tenantId", "clientId", "companyId", "adminUserId", "adminEmail", "emailSent",
            "emailProvider", "emailDestination", "createdAt", "outcomes"} == set(doc)
    assert not any("_" in key for key in doc)

    wire_doc = dump_wire(_result())
    assert wire_doc["tenantId"] == TENANT_ID
    assert wire_doc["createdAt"] == "2025-10-01T12:00:00Z"
    assert wire_doc["outcomes"] == {"createTenant": {"status": "done", "rows": {"tenants": 1}}}
    assert "emailDestination" not in wire_doc  # None is left out on the wire
    assert TenantCreationResult.model_validate(wire_doc) == _result()


def test_admin_user_input_alone() -> None:
    user = AdminUserInput.model_validate({"first_name": "Ada", "last_name": "L", "email": "A@B.CO"})
    assert user.email == "a@b.co"
    assert user.model_dump(by_alias=True) == {"firstName": "Ada", "lastName": "L", "email": "a@b.co"}

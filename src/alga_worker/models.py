"""Inputs and outputs shared by workflows, activities and the CLI.

Wire names are camelCase because the callers (nm-store, the Alga web app, the TypeScript client
helper) already send ``tenantName``, ``adminUser.firstName`` and so on; Python code uses snake_case.
Unknown fields are rejected: a caller that misspells ``licenceCount`` should hear about it instead
of getting a tenant without a licence limit.

Nothing here may hold a plaintext password: these objects end up in workflow history.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

WORKFLOW_TYPE_TENANT_CREATION = "tenantCreationWorkflow"
WORKFLOW_TYPE_HEALTH_CHECK = "healthCheckWorkflow"

# Pragmatic address check: an RFC 5321 local part of printable atoms, a dotted domain with a TLD.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
# Local part: atoms joined by single dots (no leading, trailing or double dot); domain: labels + TLD.
_EMAIL_RE = re.compile(rf"^{_ATOM}+(?:\.{_ATOM}+)*@{_LABEL}(?:\.{_LABEL})+$")


def _clean_text(value: str) -> str:
    """Trim, and refuse control characters (they break emails, logs and CSV exports alike)."""
    value = value.strip()
    if any(unicodedata.category(c).startswith("C") for c in value):
        raise ValueError("must not contain control characters")
    return value


def _email(value: str) -> str:
    value = value.strip().lower()
    if len(value) > 254 or not _EMAIL_RE.match(value) or ".." in value:
        raise ValueError("is not a valid email address")
    return value


CleanName = Annotated[str, AfterValidator(_clean_text), Field(min_length=1, max_length=100)]
TenantName = Annotated[str, AfterValidator(_clean_text), Field(min_length=1, max_length=255)]
Email = Annotated[str, AfterValidator(_email)]


class WireModel(BaseModel):
    """camelCase on the wire, snake_case in Python, unknown fields rejected, immutable."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="forbid",
        frozen=True,
        str_strip_whitespace=False,
    )


class AdminUserInput(WireModel):
    first_name: CleanName
    last_name: CleanName
    email: Email


class TenantCreationInput(WireModel):
    """What callers send to ``tenantCreationWorkflow`` (reference section 2.1, S-OCT and S-DEC)."""

    tenant_name: TenantName
    admin_user: AdminUserInput
    client_name: TenantName | None = None
    company_name: TenantName | None = Field(default=None, description="Pre-rename alias of clientName.")
    license_count: int | None = Field(default=None, ge=1, le=100_000)
    checkout_session_id: str | None = Field(default=None, min_length=1, max_length=255,
                                            pattern=r"^[A-Za-z0-9_\-]+$")
    billing_plan: str | None = Field(default=None, max_length=255,
                                     description="Accepted for compatibility; unused, as before.")
    contract_line: str | None = Field(default=None, max_length=255,
                                      description="Accepted for compatibility; unused, as before.")
    tenant_id: UUID | None = Field(default=None, description="Adopt this tenant id instead of minting.")

    @property
    def effective_client_name(self) -> str:
        return self.client_name or self.company_name or self.tenant_name


class Step(StrEnum):
    """Where a tenant creation is. Order matters: progress only moves forward along it."""

    INITIALIZING = "initializing"
    VALIDATING = "validating"
    CREATING_TENANT = "creating_tenant"
    SENDING_WELCOME_EMAIL = "sending_welcome_email"
    REMOVING_TENANT = "removing_tenant"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"


class OutcomeStatus(StrEnum):
    PENDING = "pending"
    DONE = "done"
    SKIPPED = "skipped"
    FAILED = "failed"
    REMOVED = "removed"


class StepOutcome(WireModel):
    status: OutcomeStatus = OutcomeStatus.PENDING
    detail: str | None = None
    rows: dict[str, int] = Field(default_factory=dict)


class TenantCreationState(WireModel):
    """Answer of the ``getState`` query."""

    model_config = ConfigDict(frozen=False)

    step: Step = Step.INITIALIZING
    progress: int = Field(default=0, ge=0, le=100)
    tenant_id: str | None = None
    client_id: str | None = None
    company_id: str | None = None
    admin_user_id: str | None = None
    email_sent: bool | None = None
    cancel_requested: bool = False
    error: str | None = None
    outcomes: dict[str, StepOutcome] = Field(default_factory=dict)


class TenantCreationResult(WireModel):
    """Workflow result. Deliberately has no ``temporaryPassword`` (the original's B7 flaw)."""

    success: bool
    tenant_id: str
    client_id: str
    company_id: str = Field(description="Same as clientId; kept for pre-rename callers.")
    admin_user_id: str
    admin_email: str
    email_sent: bool
    email_provider: str | None = None
    email_destination: str | None = None
    created_at: datetime
    outcomes: dict[str, StepOutcome]


class CancelRequest(WireModel):
    reason: str = Field(default="cancelled by operator", max_length=500)
    cancelled_by: str = Field(default="unknown", max_length=200)


# ---- activity inputs/outputs (internal, but still in history: no secrets in clear) ----


class ProvisionTenantInput(WireModel):
    tenant_id: UUID
    client_id: UUID
    location_id: UUID
    admin_user_id: UUID
    tenant_name: str
    client_name: str
    admin: AdminUserInput
    license_count: int | None = None
    seal_binding: str = Field(description="Binds the sealed password to this workflow run.")


class ProvisionTenantOutput(WireModel):
    tenant_id: UUID
    client_id: UUID
    admin_user_id: UUID
    admin_role_id: UUID
    sealed_password: str = Field(description="AES-GCM sealed temporary password; never plaintext.")
    rows: dict[str, int]
    created: bool = Field(description="False when an earlier attempt had already committed.")


class WelcomeEmailInput(WireModel):
    tenant_id: UUID
    admin_user_id: UUID
    tenant_name: str
    client_name: str
    admin: AdminUserInput
    sealed_password: str
    seal_binding: str


class WelcomeEmailOutput(WireModel):
    email_sent: bool
    provider: str
    message_id: str
    destination: str
    duplicate: bool = False


class RemoveTenantInput(WireModel):
    tenant_id: UUID


class RemoveTenantOutput(WireModel):
    rows_deleted: dict[str, int]


class HealthCheckResult(WireModel):
    status: str
    build_id: str
    timestamp: datetime


def dump_wire(model: BaseModel) -> dict[str, Any]:
    """JSON-ready camelCase dict, for the CLI and non-Python callers."""
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)

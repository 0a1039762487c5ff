"""Inputs and outputs shared by workflows, activities and the CLI.

Wire names are camelCase because the callers (nm-store, the Alga web app, the TypeScript client
helper) already send ``tenantName``, ``adminUser.firstName`` and so on; Python code uses snake_case.

What validation guarantees (a hostile-caller review set the bar):

- **Strict types, no coercion.** Every model validates in pydantic strict mode: ``licenseCount`` as
  ``"5"``, ``true`` or ``5.0`` is refused, not converted. JSON still carries a UUID as a string and a
  timestamp as an ISO string (that is the type's JSON form, not a coercion), and UUID fields also take
  a UUID string from Python code. Validate a JSON document from its text (:func:`parse_wire`), not as
  a decoded dict: strict Python mode wants real ``datetime`` and enum members.
- **camelCase only on the wire.** :func:`parse_wire` is how a caller's raw payload is decoded: strict,
  aliases only, so ``tenant_name`` is an unknown field there, and unknown fields are rejected (a
  caller that misspells ``licenceCount`` should hear about it instead of getting a tenant without a
  licence limit). Python code still builds models by field name.
- **Email addresses** are checked by ``email-validator`` (syntax only, no DNS): no quoted local parts,
  no address literals or bare IPs, a real (non-numeric, non-special-use) TLD, at most 64 octets
  before the ``@`` and 254 in all. The address must be plain ASCII, **internationalised domains
  included**: they are accepted in their ``xn--`` (punycode) A-label form, checked by IDNA 2008, and
  refused in Unicode form. That way the stored address is always the one the caller sent, with
  ASCII letters lower-cased and nothing else changed: no character (the Kelvin sign, a fullwidth
  letter, a ligature, a dotted capital I) can be silently mapped by NFC/NFKC or UTS-46 onto another
  letter, and one mailbox has exactly one stored spelling, which is what duplicate detection compares.
- **Free text** (tenant, client and person names, ``billingPlan``, ``contractLine``, the cancel
  reason) is trimmed of surrounding whitespace, must not be empty after that, has a maximum length,
  and refuses every control (Cc), format (Cf), surrogate (Cs), private-use (Co), unassigned (Cn),
  line-separator (Zl) and paragraph-separator (Zp) character wherever it stands.
- Every refusal is a pydantic ``ValidationError`` whose location names the field; the messages never
  repeat the refused value, and ``str()`` of the error leaves the input out too.

Nothing here may hold a plaintext password: these objects end up in workflow history.
"""

from __future__ import annotations

import string
import unicodedata
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, TypeVar
from uuid import UUID

from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

WORKFLOW_TYPE_TENANT_CREATION = "tenantCreationWorkflow"
WORKFLOW_TYPE_HEALTH_CHECK = "healthCheckWorkflow"

M = TypeVar("M", bound=BaseModel)

# ---- free text ----

# Unicode general categories no name or free-text field may contain, with a word for the message.
FORBIDDEN_TEXT_CATEGORIES: dict[str, str] = {
    "Cc": "control",
    "Cf": "format",
    "Cs": "surrogate",
    "Co": "private-use",
    "Cn": "unassigned",
    "Zl": "line-separator",
    "Zp": "paragraph-separator",
}


def _text(max_length: int) -> Callable[[str], str]:
    """Validator for one free-text field: refuse forbidden characters, trim, then check the length."""

    def check(value: str) -> str:
        found = {unicodedata.category(c) for c in value} & FORBIDDEN_TEXT_CATEGORIES.keys()
        if found:
            raise PydanticCustomError(
                "text_forbidden_character",
                "must not contain {kinds} characters",
                {"kinds": ", ".join(FORBIDDEN_TEXT_CATEGORIES[c] for c in sorted(found))},
            )
        value = value.strip()
        if not value:
            raise PydanticCustomError("text_empty", "must not be empty or only whitespace")
        if len(value) > max_length:
            raise PydanticCustomError("text_too_long", "must be at most {max_length} characters",
                                      {"max_length": max_length})
        return value

    return check


# ---- email ----

EMAIL_MAX_LENGTH = 254
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def _ascii_lower(value: str) -> str:
    """Lower-case ASCII letters only: ``str.lower`` would also map e.g. U+212A (Kelvin) to ``k``."""
    return value.translate(_ASCII_LOWER)


def _reason(err: EmailNotValidError) -> str:
    """email-validator's explanation without the part that quotes characters of the address."""
    text = str(err)
    for cut in (": ", " ("):
        text = text.split(cut, 1)[0]
    text = text.rstrip(".").strip()
    return text[:1].lower() + text[1:] if text else "it is malformed"


def _email(value: str) -> str:
    """Validate with email-validator and return the stored form: the address as sent, ASCII lower-cased."""
    value = value.strip(string.whitespace)
    if len(value) > EMAIL_MAX_LENGTH:
        raise PydanticCustomError("email_too_long", "is not a valid email address: it is longer than {max_length} "
                                  "characters", {"max_length": EMAIL_MAX_LENGTH})
    if not value.isascii():
        raise PydanticCustomError(
            "email_not_ascii",
            "is not a valid email address: it must be plain ASCII (write an internationalised domain in its "
            "xn-- punycode form)",
        )
    try:
        info = validate_email(
            value,
            check_deliverability=False,
            allow_smtputf8=False,
            allow_quoted_local=False,
            allow_domain_literal=False,
            allow_display_name=False,
            allow_empty_local=False,
            globally_deliverable=True,
            test_environment=False,
            strict=True,  # enforces the 64-octet local-part limit
        )
    except EmailNotValidError as err:
        raise PydanticCustomError("email_invalid", "is not a valid email address: {reason}",
                                  {"reason": _reason(err)}) from None
    stored = _ascii_lower(info.ascii_email or "")
    if stored != _ascii_lower(value):
        # Cannot happen for ASCII input today; the guard keeps "stored == sent, up to ASCII case" true
        # even if a future email-validator normalises more.
        raise PydanticCustomError("email_not_canonical",
                                  "is not a valid email address: it is not in its normal form")
    return stored


# Field types. Lengths count characters after trimming; names keep the limits the schema columns set.
PersonName = Annotated[str, AfterValidator(_text(100))]
TenantName = Annotated[str, AfterValidator(_text(255))]
FreeText = Annotated[str, AfterValidator(_text(255))]
Email = Annotated[str, AfterValidator(_email)]
# Strict JSON takes a UUID as a string anyway; Python code may pass one as a string too.
WireUUID = Annotated[UUID, Field(strict=False)]


class WireModel(BaseModel):
    """camelCase on the wire, snake_case in Python, strict types, unknown fields rejected, immutable."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="forbid",
        frozen=True,
        strict=True,
        str_strip_whitespace=False,
        hide_input_in_errors=True,
    )


def parse_wire(model: type[M], data: bytes) -> M:
    """Decode a caller's raw JSON payload: strict types, camelCase names only, unknown fields refused.

    Raises ``pydantic.ValidationError`` for anything else, undecodable bytes and malformed JSON included.
    """
    return model.model_validate_json(data, strict=True, by_alias=True, by_name=False)


class AdminUserInput(WireModel):
    first_name: PersonName
    last_name: PersonName
    email: Email


def _stripe_id(prefix: str) -> Any:
    """A Stripe object id: its documented prefix, then letters, digits and underscores."""
    return Field(pattern=rf"^{prefix}_[A-Za-z0-9_]{{1,250}}$", max_length=255)


StripeCustomerId = Annotated[str, _stripe_id("cus")]
StripeSubscriptionId = Annotated[str, _stripe_id("sub")]
StripeSubscriptionItemId = Annotated[str, _stripe_id("si")]
StripePriceId = Annotated[str, _stripe_id("price")]


class TenantCreationInput(WireModel):
    """What callers send to ``tenantCreationWorkflow`` (reference section 2.1, S-OCT and S-DEC)."""

    tenant_name: TenantName
    admin_user: AdminUserInput
    client_name: TenantName | None = None
    company_name: TenantName | None = Field(default=None, description="Pre-rename alias of clientName.")
    license_count: int | None = Field(default=None, ge=1, le=100_000)
    checkout_session_id: str | None = Field(default=None, min_length=1, max_length=255,
                                            pattern=r"^[A-Za-z0-9_\-]+$")
    billing_plan: FreeText | None = Field(default=None,
                                          description="Accepted for compatibility; unused, as before.")
    contract_line: FreeText | None = Field(default=None,
                                           description="Accepted for compatibility; unused, as before.")
    tenant_id: WireUUID | None = Field(default=None, description="Adopt this tenant id instead of minting.")
    # S-DEC: Stripe details nm-store may already know; without stripeCustomerId the worker fetches them.
    stripe_customer_id: StripeCustomerId | None = None
    stripe_subscription_id: StripeSubscriptionId | None = None
    stripe_subscription_item_id: StripeSubscriptionItemId | None = None
    stripe_price_id: StripePriceId | None = None

    @property
    def effective_client_name(self) -> str:
        return self.client_name or self.company_name or self.tenant_name


class Step(StrEnum):
    """Where a tenant creation is. Order matters: progress only moves forward along it."""

    INITIALIZING = "initializing"
    VALIDATING = "validating"
    FETCHING_STRIPE_DETAILS = "fetching_stripe_details"
    CREATING_TENANT = "creating_tenant"
    CREATING_CUSTOMER_TRACKING = "creating_customer_tracking"
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
    cancel_too_late: bool = Field(default=False, description="A cancel arrived after the welcome email was "
                                  "accepted by the provider: the tenant was kept.")
    error: str | None = None
    outcomes: dict[str, StepOutcome] = Field(default_factory=dict)
    checkout: CheckoutState | None = None
    stripe_customer_id: str | None = None
    customer_client_id: str | None = None
    portal_user_id: str | None = None


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
    cancel_too_late: bool = Field(default=False, description="A cancel came after the credentials went out.")


class CancelRequest(WireModel):
    reason: Annotated[str, AfterValidator(_text(500))] = "cancelled by operator"
    cancelled_by: Annotated[str, AfterValidator(_text(200))] = "unknown"


# ---- activity inputs/outputs (internal, but still in history: no secrets in clear) ----


class ProvisionTenantInput(WireModel):
    tenant_id: WireUUID
    client_id: WireUUID
    location_id: WireUUID
    admin_user_id: WireUUID
    tenant_name: str
    client_name: str
    admin: AdminUserInput
    license_count: int | None = None
    seal_binding: str = Field(description="Binds the sealed password to this workflow run.")
    stripe: StripeDetails | None = Field(default=None, description="Written to stripe_customers and, "
                                         "when the price is known, stripe_subscriptions, in this transaction.")


class ProvisionTenantOutput(WireModel):
    tenant_id: WireUUID
    client_id: WireUUID
    admin_user_id: WireUUID
    admin_role_id: WireUUID
    sealed_password: str = Field(description="AES-GCM sealed temporary password; never plaintext.")
    rows: dict[str, int]
    created: bool = Field(description="False when an earlier attempt had already committed.")


class WelcomeEmailInput(WireModel):
    tenant_id: WireUUID
    admin_user_id: WireUUID
    tenant_name: str
    client_name: str
    admin: AdminUserInput
    sealed_password: str
    seal_binding: str
    sealed_portal_password: str | None = Field(
        default=None, description="The client-portal user's own sealed password; the email mentions the "
        "portal only when this is set.")


class WelcomeEmailOutput(WireModel):
    email_sent: bool
    provider: str
    message_id: str
    destination: str
    duplicate: bool = False


class RemoveTenantInput(WireModel):
    tenant_id: WireUUID
    client_id: WireUUID = Field(description="The default client minted by the run: its proof of ownership.")


class RemoveTenantOutput(WireModel):
    rows_deleted: dict[str, int]
    not_owned: bool = Field(default=False, description="The tenant exists but this run did not create it: "
                            "nothing was removed.")


class HealthCheckResult(WireModel):
    status: str
    build_id: str
    timestamp: datetime


def dump_wire(model: BaseModel) -> dict[str, Any]:
    """JSON-ready camelCase dict, for the CLI and non-Python callers."""
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


# ---- checkout processing: nm-store reports, Stripe details, customer tracking ----


class CheckoutStatus(StrEnum):
    """What the worker reports to nm-store (its type also has pending/started, which nm-store sets)."""

    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"


class CheckoutStatusReport(WireModel):
    """Input of ``report_checkout_status``: the body nm-store's internal API takes, plus nothing else."""

    checkout_session_id: str
    workflow_status: CheckoutStatus
    workflow_id: str
    workflow_completed_at: datetime | None = None
    error: str | None = Field(default=None, max_length=1000)


class NmStoreCallback(WireModel):
    """Input of ``send_nm_store_callback``. The signed body is ``{sessionId, algaTenantId, status,
    error?}``; ``workflow_id`` only derives the idempotency key."""

    session_id: str
    alga_tenant_id: str | None = None
    status: CheckoutStatus
    error: str | None = Field(default=None, max_length=1000)
    workflow_id: str


class NmStoreDelivery(WireModel):
    """What one delivered nm-store call returned (kept in state for ``alga-worker checkout status``)."""

    kind: str = Field(description="status or callback")
    status: CheckoutStatus
    http_status: int
    idempotency_key: str
    delivered_at: datetime


class StripeDetailsInput(WireModel):
    checkout_session_id: str


class StripeDetails(WireModel):
    """What a checkout session tells about the customer (reference 3.11), never card data."""

    stripe_customer_id: StripeCustomerId
    stripe_subscription_id: StripeSubscriptionId | None = None
    stripe_subscription_item_id: StripeSubscriptionItemId | None = None
    stripe_price_id: StripePriceId | None = None
    license_count: int | None = Field(default=None, ge=1, le=100_000)
    customer_email: str | None = None
    customer_name: str | None = None
    currency: str | None = None
    status: str | None = Field(default=None, description="Subscription status (active, trialing ...).")
    current_period_start: datetime | None = None
    current_period_end: datetime | None = None
    cancel_at_period_end: bool = False
    metadata: dict[str, str] = Field(default_factory=dict)


class TagStripeSubscriptionInput(WireModel):
    stripe_subscription_id: StripeSubscriptionId
    tenant_id: WireUUID


class CustomerTrackingInput(WireModel):
    """Input of ``track_customer``: the customer's records in the management tenant, ids minted by
    the workflow so a retry finds its own rows."""

    tenant_id: WireUUID
    tenant_name: str
    client_name: str
    admin: AdminUserInput
    customer_client_id: WireUUID
    contact_id: WireUUID
    portal_user_id: WireUUID
    seal_binding: str = Field(description="Binds the sealed portal password to this workflow run.")


class CustomerTrackingOutput(WireModel):
    customer_client_id: WireUUID
    contact_id: WireUUID
    tag_id: WireUUID
    portal_user_id: WireUUID | None = None
    sealed_portal_password: str | None = Field(
        default=None, description="AES-GCM sealed; only when this run created the portal user.")
    outcomes: dict[str, StepOutcome] = Field(
        default_factory=dict, description="customer_client, customer_contact, customer_tag, portal_user")


class CheckoutState(WireModel):
    """The checkout part of ``getState``: what was last reported to nm-store and how it went."""

    model_config = ConfigDict(frozen=False)

    checkout_session_id: str
    last_status: CheckoutStatus | None = None
    status_delivery: NmStoreDelivery | None = None
    callback_delivery: NmStoreDelivery | None = None
    last_error: str | None = None


class WorkerCapabilities(WireModel):
    """What this worker's configuration enables, asked once per run (workflows cannot read settings)."""

    missing_checkout_settings: list[str] = Field(default_factory=list)
    stripe_enabled: bool = False
    customer_tracking_enabled: bool = False
    search_attributes: list[str] = Field(default_factory=list, description="Registered in the namespace.")
    operations_notices: bool = Field(default=False, description="OPERATIONS_EMAIL is set: a failed provisioning "
                                     "is reported to operators by email.")


# ---- customer tracking: the operator's retry (customerTrackingWorkflow) ----

WORKFLOW_TYPE_CUSTOMER_TRACKING = "customerTrackingWorkflow"


class CustomerTrackingRequest(WireModel):
    """What ``alga-worker customer track`` sends to ``customerTrackingWorkflow``: only the tenant id.

    Everything else (names, the admin) is read from the database by the workflow, so an operator
    repairing a failed tracking cannot record the customer under a mistyped name or address.
    """

    tenant_id: WireUUID
    workflow_id: FreeText | None = Field(
        default=None, description="The tenantCreationWorkflow whose customer tracking this repairs, when "
        "known: echoed in the result for the audit trail, nothing else.")
    create_portal_user: bool = Field(
        default=False, description="Also create the client-portal user when it is missing, and email its "
        "own temporary password to the admin. Off by default: without it nothing is sent and no credential "
        "is made that nobody would receive.")


class CustomerFactsInput(WireModel):
    tenant_id: WireUUID


class CustomerFacts(WireModel):
    """What ``load_customer_facts`` reads about an existing tenant: what tracking records, no secret."""

    tenant_id: WireUUID
    tenant_name: str
    client_name: str = Field(description="The tenant's default client, else the tenant name.")
    admin_user_id: WireUUID = Field(description="The tenant's first active MSP admin.")
    admin: AdminUserInput


class CustomerRecordsInput(WireModel):
    """Input of ``track_customer_records``: client, contact and tag as ``track_customer`` writes them;
    the portal user is only looked up, never created (no credential without a way to deliver it)."""

    tenant_id: WireUUID
    tenant_name: str
    client_name: str
    admin: AdminUserInput
    customer_client_id: WireUUID
    contact_id: WireUUID


class PortalAccessEmailInput(WireModel):
    """Input of ``send_portal_access_email``: the portal user's own sealed password, never in clear."""

    tenant_id: WireUUID
    portal_user_id: WireUUID
    tenant_name: str
    admin: AdminUserInput
    sealed_portal_password: str
    seal_binding: str


class CustomerTrackingResult(WireModel):
    """Result of ``customerTrackingWorkflow``. Ids and outcomes only: no password, sealed or not."""

    tenant_id: str
    customer_client_id: str
    contact_id: str
    tag_id: str
    portal_user_id: str | None = None
    portal_email_sent: bool = False
    repairs_workflow_id: str | None = None
    outcomes: dict[str, StepOutcome]


# ---- licence count (updateTenantLicenseCountWorkflow, reference 3.10) ----

WORKFLOW_TYPE_UPDATE_LICENSE_COUNT = "updateTenantLicenseCountWorkflow"

# A Stripe event id (``evt_...``): the idempotency key of a licence change that came from a webhook.
StripeEventId = Annotated[str, _stripe_id("evt")]


class UpdateLicenseCountRequest(WireModel):
    """What callers send to ``updateTenantLicenseCountWorkflow``: one tenant's new licence limit.

    ``eventId`` makes a redelivered Stripe event a no-op: the tenant remembers the last event applied.
    """

    tenant_id: WireUUID
    license_count: int = Field(ge=1, le=100_000)
    event_id: StripeEventId | None = None


class LicenseCountResult(WireModel):
    """Result of ``update_license_count`` and of the workflow: before and after, and whether it wrote."""

    tenant_id: WireUUID
    license_count: int
    previous_license_count: int | None = None
    changed: bool = Field(description="False when eventId had already been applied (a repeat): nothing written.")
    event_id: str | None = None


class LicenseUsageInput(WireModel):
    tenant_id: WireUUID


class LicenseUsage(WireModel):
    """One tenant's licences: ``limit`` None means unlimited, and then ``remaining`` is None too."""

    tenant_id: WireUUID
    limit: int | None = None
    used: int
    remaining: int | None = None


# ---- user management (issue 9): createUser, resendWelcomeEmail, resetUserPassword, (de|re)activateUser ----

WORKFLOW_TYPE_CREATE_USER = "createUserWorkflow"
WORKFLOW_TYPE_RESEND_WELCOME_EMAIL = "resendWelcomeEmailWorkflow"
WORKFLOW_TYPE_RESET_USER_PASSWORD = "resetUserPasswordWorkflow"  # noqa: S105 (a type name)
WORKFLOW_TYPE_DEACTIVATE_USER = "deactivateUserWorkflow"
WORKFLOW_TYPE_REACTIVATE_USER = "reactivateUserWorkflow"

RoleName = Annotated[str, AfterValidator(_text(100))]
# Who asked (an Alga user id, or an operator's name from the CLI): recorded in the audit log.
Actor = Annotated[str, AfterValidator(_text(255))]


class UserType(StrEnum):
    """Alga's ``users.user_type``: MSP staff (``internal``, hold a licence) or client-portal users."""

    INTERNAL = "internal"
    CLIENT = "client"


class CreateUserRequest(WireModel):
    """What callers send to ``createUserWorkflow``: one user in an existing tenant.

    ``roles`` are role *names* of the tenant (MSP roles for internal users, client-portal roles for
    client users), matched case-insensitively; an unknown name fails the run (``UnknownRoleError``).
    ``force`` creates an internal user even when the tenant's licences are all used.
    """

    tenant_id: WireUUID
    email: Email
    first_name: PersonName
    last_name: PersonName
    user_type: UserType = UserType.INTERNAL
    roles: list[RoleName] = Field(min_length=1, max_length=20)
    contact_id: WireUUID | None = Field(default=None, description="Client users: the contact they act for.")
    force: bool = Field(default=False, description="Create beyond the licence limit (internal users).")
    triggered_by: Actor | None = None
    triggered_by_email: Email | None = None


class CreateUserResult(WireModel):
    """Result of ``createUserWorkflow``: ids and what happened, never the password (sealed or not)."""

    success: bool = True
    tenant_id: str
    user_id: str
    email: str
    user_type: UserType
    roles: list[str]
    invitation_sent: bool
    email_provider: str | None = None
    forced: bool = Field(default=False, description="The licence limit was exceeded on purpose (force).")


class ResendWelcomeEmailRequest(WireModel):
    """``resendWelcomeEmailWorkflow`` input, as the original's later version: without ``userId`` the
    tenant's first active MSP admin gets the email."""

    tenant_id: WireUUID
    user_id: WireUUID | None = None
    triggered_by: Actor
    triggered_by_email: Email


class ResendWelcomeEmailResult(WireModel):
    """As the original's (``success``, ``email``, ``tenantName``) plus the user and the audit record."""

    success: bool = True
    email: str
    tenant_name: str
    user_id: str
    email_provider: str | None = None
    audit_log_id: str | None = Field(default=None, description="extension_audit_logs row; None if not recorded.")


class UserActionRequest(WireModel):
    """Input of ``resetUserPasswordWorkflow``, ``deactivateUserWorkflow`` and ``reactivateUserWorkflow``.

    ``force`` matters only to reactivation (beyond the licence limit)."""

    tenant_id: WireUUID
    user_id: WireUUID
    force: bool = False
    triggered_by: Actor | None = None
    triggered_by_email: Email | None = None


class UserActionResult(WireModel):
    """Result of a reset, deactivation or reactivation."""

    success: bool = True
    tenant_id: str
    user_id: str
    email: str
    is_inactive: bool
    changed: bool = Field(description="False when the user was already in the requested state.")
    email_sent: bool
    email_provider: str | None = None
    forced: bool = False
    audit_log_id: str | None = None


# -- user activities (internal; in history: no secret in clear) --


class NewUser(WireModel):
    """Input of ``create_user``: the request plus the id the workflow minted (a retry finds its row)."""

    tenant_id: WireUUID
    user_id: WireUUID
    email: str
    first_name: str
    last_name: str
    user_type: UserType
    roles: list[str]
    contact_id: WireUUID | None = None
    force: bool = False
    seal_binding: str = Field(description="Binds the sealed password to this workflow run.")


class CreatedUser(WireModel):
    """What ``create_user`` did: the row, its roles, and the sealed temporary password."""

    tenant_id: WireUUID
    tenant_name: str
    user_id: WireUUID
    email: str
    first_name: str
    last_name: str
    user_type: UserType
    roles: list[str] = Field(description="Role names as stored in the tenant.")
    role_ids: list[WireUUID]
    sealed_password: str = Field(description="AES-GCM sealed temporary password; never plaintext.")
    created: bool = Field(description="False when an earlier attempt of this run had committed the row.")
    forced: bool = False


class UserLookup(WireModel):
    """Input of ``find_user``: a user of a tenant, or (``user_id`` None) its first active MSP admin."""

    tenant_id: WireUUID
    user_id: WireUUID | None = None


class UserFacts(WireModel):
    """One user as the workflows need it (names and addresses for the email; no hash)."""

    tenant_id: WireUUID
    tenant_name: str
    user_id: WireUUID
    email: str
    first_name: str
    last_name: str
    user_type: UserType
    is_inactive: bool


class NewPasswordRequest(WireModel):
    """Input of ``set_temporary_password``: replace one active user's hash with a new temporary one."""

    tenant_id: WireUUID
    user_id: WireUUID
    seal_binding: str


class NewPassword(WireModel):
    user: UserFacts
    sealed_password: str = Field(description="AES-GCM sealed; opened only by send_email.")


class SetUserActiveRequest(WireModel):
    """Input of ``set_user_active``: deactivate (last-admin guard) or reactivate (licence check)."""

    tenant_id: WireUUID
    user_id: WireUUID
    active: bool
    force: bool = False


class SetUserActiveResult(WireModel):
    user: UserFacts = Field(description="After the change.")
    changed: bool
    forced: bool = False


class AuditRecord(WireModel):
    """Input of ``record_audit``: one ``extension_audit_logs`` row, keyed by the id the workflow minted.

    ``action`` is the original's upper-case verb (``WELCOME_EMAIL_RESENT``); the row's ``event_type``
    is ``tenant.`` + its lower-case, dotted form, as the original wrote it."""

    log_id: WireUUID
    tenant_id: WireUUID = Field(description="The tenant acted on (recorded in details.targetTenantId).")
    action: str = Field(pattern=r"^[A-Z][A-Z_]{1,60}$")
    resource_type: str = Field(max_length=50)
    resource_id: str = Field(max_length=255)
    triggered_by: str | None = None
    triggered_by_email: str | None = None
    workflow_id: str
    status: str = Field(pattern=r"^(completed|failed)$")
    error: str | None = Field(default=None, max_length=2000)
    details: dict[str, str] = Field(default_factory=dict)


class AuditResult(WireModel):
    log_id: WireUUID | None = Field(default=None, description="None: no audit tenant configured, not recorded.")
    recorded: bool


class UserListInput(WireModel):
    tenant_id: WireUUID
    include_inactive: bool = True


# ---- email (issue 9): one activity for every email, sendEmailWorkflow, testEmailWorkflow ----

WORKFLOW_TYPE_SEND_EMAIL = "sendEmailWorkflow"
WORKFLOW_TYPE_TEST_EMAIL = "testEmailWorkflow"


class EmailTemplate(StrEnum):
    """Every email the worker sends. Templates in ``email/templates/<value>.{html,txt}.j2``."""

    TENANT_WELCOME = "tenant_welcome"
    PORTAL_ACCESS = "portal_access"
    USER_INVITATION = "user_invitation"
    PASSWORD_RESET = "password_reset"  # noqa: S105 (a template name)
    ACCOUNT_DEACTIVATED = "account_deactivated"
    PROVISIONING_FAILED = "provisioning_failed"
    TENANT_CANCELLED = "tenant_cancelled"


TemplateValue = str | int | bool | None


class SendEmailRequest(WireModel):
    """Input of ``send_email``, the one activity every workflow sends through.

    ``variables`` are the template's non-secret values (checked by the template's own model);
    ``sealed`` holds secrets (a temporary password) sealed by the activity that made them and opened
    only here, with ``seal_binding``. Recipients: ``to``, or ``to_operations`` for OPERATIONS_EMAIL.
    ``idempotency_key`` is per workflow run and purpose: a retried send is deduplicated by the provider.
    """

    template: EmailTemplate
    to: list[Email] = Field(default_factory=list, max_length=50)
    to_operations: bool = False
    variables: dict[str, TemplateValue] = Field(default_factory=dict)
    sealed: dict[str, str] = Field(default_factory=dict)
    seal_binding: str | None = None
    idempotency_key: str = Field(min_length=1, max_length=256)
    tags: dict[str, str] = Field(default_factory=dict)


class SendEmailResult(WireModel):
    template: EmailTemplate
    email_sent: bool
    provider: str
    message_id: str
    destination: str
    duplicate: bool = False


class RemoveUserInput(WireModel):
    """Input of ``remove_user``: delete the user whose id this run minted (compensation)."""

    tenant_id: WireUUID
    user_id: WireUUID


class RemoveUserOutput(WireModel):
    removed: bool = Field(description="False when there was no such user (never created, or removed before).")


# ---- email workflows (issue 9): sendEmailWorkflow and testEmailWorkflow ----


class SendEmailWorkflowRequest(WireModel):
    """``sendEmailWorkflow`` input: a template, recipients and the template's variables.

    Recipients: ``to``, or ``toOperations`` for the worker's OPERATIONS_EMAIL (either or both; at least
    one). Templates that carry a secret (a temporary password) are refused: the password would sit in
    this input, in workflow history. Links in the email come from the worker's settings, never from
    ``variables``.
    """

    template: EmailTemplate
    to: list[Email] = Field(default_factory=list, max_length=50)
    to_operations: bool = False
    variables: dict[str, TemplateValue] = Field(default_factory=dict, max_length=50)


class SendEmailWorkflowResult(WireModel):
    template: EmailTemplate
    email_sent: bool
    provider: str
    message_id: str
    destination: str
    duplicate: bool = Field(default=False, description="The provider had this run's email already.")
    recipients: int


def _empty_password(value: str | None) -> str | None:
    if value:
        raise PydanticCustomError("password_not_accepted",
                                  "must be empty or absent: the worker generates the test password itself")
    return value


class SmokeTestAdminUser(WireModel):
    """The original's ``adminUser`` of ``SendWelcomeEmailActivityInput``; ``userId`` is any label."""

    user_id: FreeText
    first_name: PersonName
    last_name: PersonName
    email: Email


class EmailSmokeTestRequest(WireModel):
    """``testEmailWorkflow`` input: the original's ``SendWelcomeEmailActivityInput`` shape.

    ``tenantId`` and ``adminUser.userId`` are labels (the original's tests sent ``tenant-<ms>``);
    ``temporaryPassword`` is accepted only empty (its callers sent ``''``): the worker generates the
    throwaway password. ``productCode`` and ``portalStatus`` are accepted and unused.
    """

    tenant_id: FreeText
    tenant_name: TenantName
    admin_user: SmokeTestAdminUser
    temporary_password: Annotated[str | None, AfterValidator(_empty_password)] = None
    client_name: FreeText | None = None
    company_name: FreeText | None = None
    product_code: FreeText | None = None
    portal_status: FreeText | None = None


class EmailSmokeTestOutcome(WireModel):
    """The original's ``emailResult`` (``emailSent``, ``messageId``) plus where it went."""

    email_sent: bool
    message_id: str
    provider: str
    destination: str
    duplicate: bool = False


class EmailSmokeTestResult(WireModel):
    """``testEmailWorkflow`` result. Unlike the original's, no ``temporaryPassword``: it stays in the email."""

    template: EmailTemplate
    email_result: EmailSmokeTestOutcome


# ---- tenant suspension (issue 13): suspendTenantWorkflow, resumeTenantWorkflow ----

WORKFLOW_TYPE_SUSPEND_TENANT = "suspendTenantWorkflow"
WORKFLOW_TYPE_RESUME_TENANT = "resumeTenantWorkflow"


class SuspensionReasonCode(StrEnum):
    """Alga's ``tenants.suspended_reason``: a code its CHECK constraint allows, not free text.

    Alga's migration (``20260724120000_add_suspension_to_tenants``) allows only ``tenant_cancelled`` so
    far; a resume clears only a suspension with the code it names (as Alga's ``resumeTenant``), so a
    suspension for another reason, once Alga adds one, survives a cancellation's rollback."""

    TENANT_CANCELLED = "tenant_cancelled"


# Why, in words (recorded in the audit log, never in the tenants row).
SuspensionReasonText = Annotated[str, AfterValidator(_text(500))]


class SuspendTenantRequest(WireModel):
    """What callers send to ``suspendTenantWorkflow``: the tenant, why, and who asks."""

    tenant_id: WireUUID
    reason: SuspensionReasonText
    reason_code: SuspensionReasonCode = SuspensionReasonCode.TENANT_CANCELLED
    triggered_by: Actor | None = None
    triggered_by_email: Email | None = None


class ResumeTenantRequest(WireModel):
    """What callers send to ``resumeTenantWorkflow``: only a suspension with ``reasonCode`` is cleared."""

    tenant_id: WireUUID
    reason: SuspensionReasonText | None = None
    reason_code: SuspensionReasonCode = SuspensionReasonCode.TENANT_CANCELLED
    triggered_by: Actor | None = None
    triggered_by_email: Email | None = None


class TenantSuspensionChange(WireModel):
    """Input of the ``suspend_tenant``/``resume_tenant`` activities (also for the deletion workflow).

    ``log_id`` is minted by the calling run: the audit row written with the change carries it, so a
    retry after COMMIT recognises its own change (``changed`` stays true) instead of reporting "nothing
    to do"."""

    tenant_id: WireUUID
    reason_code: SuspensionReasonCode = SuspensionReasonCode.TENANT_CANCELLED
    reason: SuspensionReasonText | None = None
    triggered_by: Actor | None = None
    triggered_by_email: Email | None = None
    log_id: WireUUID
    workflow_id: str = Field(min_length=1, max_length=1000)


class TenantSuspensionResult(WireModel):
    """Result of both activities and both workflows: the tenant's suspension after the call."""

    success: bool = True
    tenant_id: WireUUID
    suspended: bool = Field(description="Whether the tenant is suspended now (tenants.suspended_at set).")
    changed: bool = Field(description="False when it already was in the requested state: nothing written.")
    suspended_at: datetime | None = Field(default=None, description="When the current suspension began.")
    reason_code: str | None = Field(default=None, description="The stored tenants.suspended_reason, if suspended.")
    reason: str | None = Field(default=None, description="This request's reason, in words.")
    triggered_by: str | None = None
    audit_log_id: str | None = Field(default=None, description="extension_audit_logs row; None if not recorded.")


# ---- tenant export (issue 13): tenantExportWorkflow ----

WORKFLOW_TYPE_TENANT_EXPORT = "tenantExportWorkflow"


class TenantExportRequest(WireModel):
    """``tenantExportWorkflow`` input, as the original's (``tenantId``, ``requestedBy``, ``reason``,
    ``urlExpiresIn``) plus ``exportId`` (the run mints one when absent). ``urlExpiresIn`` is accepted for
    the original's callers and unused: the export stays in the bucket, no presigned URL is made."""

    tenant_id: WireUUID
    requested_by: Actor | None = None
    reason: Annotated[str, AfterValidator(_text(500))] | None = None
    export_id: WireUUID | None = None
    url_expires_in: int | None = Field(default=None, ge=1, le=604_800)


class TenantExportInput(WireModel):
    """``export_tenant_data`` activity input (the deletion workflow calls the activity with it too)."""

    tenant_id: WireUUID
    export_id: WireUUID
    requested_by: str | None = None
    reason: str | None = None
    requested_at: datetime | None = Field(default=None, description="The run's start: the manifest's createdAt.")


class ExportDestination(StrEnum):
    S3 = "s3"
    LOCAL = "local"


class ExportedTable(WireModel):
    """One table of an export: its object, row count, compressed size and SHA-256 (hex) of the object."""

    table: str
    key: str
    rows: int
    bytes: int
    sha256: str
    excluded_columns: list[str] = Field(default_factory=list)


class TenantExportOutcome(WireModel):
    """What ``export_tenant_data`` wrote and where: ``location`` is ``s3://bucket/<exportKey>/`` or the
    folder; ``manifestKey`` the manifest's object key (``<exportKey>/manifest.json``)."""

    export_id: WireUUID
    tenant_id: WireUUID
    tenant_name: str | None = None
    destination: ExportDestination
    bucket: str | None = None
    location: str
    export_key: str
    manifest_key: str
    schema_version: str | None = None
    created_at: datetime
    file_size_bytes: int
    table_count: int
    record_count: int
    tables: list[ExportedTable]


class TenantExportStep(StrEnum):
    INITIALIZING = "initializing"
    COLLECTING_DATA = "collecting_data"
    COMPLETED = "completed"
    FAILED = "failed"


class TenantExportStatus(StrEnum):
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"


class TenantExportState(WireModel):
    """``getState`` (and the original's ``getExportState``): the step, and once written, where and what.
    Live per-table progress is in the export activity's heartbeat details (``alga-worker tenant export``
    shows it)."""

    step: TenantExportStep
    status: TenantExportStatus
    export_id: WireUUID
    tenant_id: WireUUID
    tenant_name: str | None = None
    bucket: str | None = None
    s3_key: str | None = None
    location: str | None = None
    file_size_bytes: int | None = None
    table_count: int | None = None
    record_count: int | None = None
    tables: list[ExportedTable] = Field(default_factory=list)
    error: str | None = None
    error_type: str | None = None
    started_at: datetime
    completed_at: datetime | None = None


class TenantExportResult(TenantExportOutcome):
    """The workflow's result: the original's fields (``success``, ``status``, ``s3Key`` = the manifest's
    key, ``fileSizeBytes``, ``tableCount``, ``recordCount``) plus where each table went. A failure fails
    the run with a typed error instead of returning ``success: false``."""

    success: bool = True
    status: TenantExportStatus = TenantExportStatus.COMPLETED
    s3_key: str


# ---- tenant deletion (issue 13): tenantDeletionWorkflow ----

WORKFLOW_TYPE_TENANT_DELETION = "tenantDeletionWorkflow"
DEFAULT_DELETION_GRACE_SECONDS = 30 * 24 * 3600  # 30 days between cancellation and the earliest deletion
MAX_DELETION_GRACE_SECONDS = 400 * 24 * 3600


class DeletionTriggerSource(StrEnum):
    STRIPE_WEBHOOK = "stripe_webhook"
    APPLE_IAP_WEBHOOK = "apple_iap_webhook"
    NINEMINDS_EXTENSION = "nineminds_extension"
    MANUAL = "manual"


class TenantDeletionStatus(StrEnum):
    PENDING = "pending"
    AWAITING_CONFIRMATION = "awaiting_confirmation"
    CONFIRMED = "confirmed"
    DELETING = "deleting"
    DELETED = "deleted"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"


class TenantDeletionStep(StrEnum):
    """The original's step values (those this worker passes through; the others are never reported)."""

    INITIALIZING = "initializing"
    VALIDATING_TENANT = "validating_tenant"
    EXPORTING_DATA = "exporting_data"
    RECORDING_PENDING_DELETION = "recording_pending_deletion"
    DEACTIVATING_USERS = "deactivating_users"
    SUSPENDING_TENANT_ACTIVITY = "suspending_tenant_activity"
    TAGGING_CLIENT = "tagging_client"
    CANCELING_STRIPE_SUBSCRIPTION = "canceling_stripe_subscription"
    SENDING_CANCELLATION_EMAIL = "sending_cancellation_email"
    COLLECTING_STATS = "collecting_stats"
    AWAITING_CONFIRMATION = "awaiting_confirmation"
    WAITING_FOR_DELETION_DATE = "waiting_for_deletion_date"
    ROLLING_BACK = "rolling_back"
    DELETING_TENANT_DATA = "deleting_tenant_data"
    COMPLETED = "completed"
    FAILED = "failed"


class ConfirmationType(StrEnum):
    """``confirmDeletion``'s ``type``: ``immediate`` deletes once the grace period has passed; ``30_days``
    and ``90_days`` put the deletion that long after the confirmation (never before the grace period ends)."""

    IMMEDIATE = "immediate"
    DAYS_30 = "30_days"
    DAYS_90 = "90_days"


class TenantDeletionRequest(WireModel):
    """``tenantDeletionWorkflow`` input: the original's fields plus ``gracePeriodSeconds`` (the time from
    the pending record to the earliest deletion; default 30 days)."""

    tenant_id: WireUUID
    trigger_source: DeletionTriggerSource
    triggered_by: Actor | None = None
    subscription_external_id: Annotated[str, AfterValidator(_text(255))] | None = None
    reason: Annotated[str, AfterValidator(_text(500))] | None = None
    grace_period_seconds: int | None = Field(default=None, ge=0, le=MAX_DELETION_GRACE_SECONDS)


class ConfirmDeletionSignal(WireModel):
    type: ConfirmationType = ConfirmationType.IMMEDIATE
    confirmed_by: Actor


class RollbackDeletionSignal(WireModel):
    reason: Annotated[str, AfterValidator(_text(500))] = "rollback requested"
    rolled_back_by: Actor = "unknown"


class DeletionTarget(WireModel):
    """Input of the deletion activities that act on one tenant for one deletion run."""

    tenant_id: WireUUID
    deletion_id: WireUUID
    workflow_id: str = Field(default="", max_length=1000)


class TenantDeletionCheck(WireModel):
    tenant_id: WireUUID
    tenant_name: str | None = None
    tenant_email: str | None = Field(default=None, description="tenants.email: where the cancellation email goes.")


# The deletion's side steps (non-fatal; each outcome in state ``outcomes`` under these names).
DELETION_SIDE_STEPS = ("client_tag", "stripe_subscription", "cancellation_email")


class CancelledTagInput(WireModel):
    """``tag_client_cancelled`` / ``untag_client_cancelled``: the customer's client in the management
    tenant tagged ``Canceled``; ``mapping_id`` is minted by the run, so its rollback removes exactly the
    mapping this run added (a ``Canceled`` tag that was there before is not this run's)."""

    tenant_id: WireUUID
    deletion_id: WireUUID
    mapping_id: WireUUID


class CancelledTagResult(WireModel):
    outcome: StepOutcome
    client_id: WireUUID | None = None
    added: bool = Field(default=False, description="This run's mapping is the one on the client.")


class SubscriptionCancellationInput(WireModel):
    """``cancel_subscription_for_deletion`` / ``restore_subscription_after_rollback``."""

    tenant_id: WireUUID
    deletion_id: WireUUID
    stripe_subscription_id: Annotated[str, AfterValidator(_text(255))]


class SubscriptionCancellationResult(WireModel):
    outcome: StepOutcome
    changed: bool = Field(default=False, description="This deletion set cancel_at_period_end (rollback undoes it).")
    cancel_at: datetime | None = None


class PendingDeletionRecord(WireModel):
    """``record_pending_deletion`` input: one ``pending_tenant_deletions`` row (status ``pending``)."""

    deletion_id: WireUUID
    tenant_id: WireUUID
    trigger_source: DeletionTriggerSource
    triggered_by: str | None = None
    subscription_external_id: str | None = None
    workflow_id: str
    workflow_run_id: str
    scheduled_deletion_date: datetime
    export: dict[str, Any] | None = None


class DeletionStatusUpdate(WireModel):
    """``update_deletion_status`` input (the original's ``UpdateDeletionStatusInput``)."""

    deletion_id: WireUUID
    status: TenantDeletionStatus | None = None
    confirmation_type: str | None = None
    confirmed_by: str | None = None
    deletion_scheduled_for: datetime | None = None
    rollback_reason: str | None = None
    rolled_back_by: str | None = None
    error: str | None = None
    stats: dict[str, Any] | None = None


class UsersDeactivation(WireModel):
    """Which users this deletion deactivated (those active before it): exactly these are reactivated on rollback."""

    user_ids: list[WireUUID]
    reactivated_count: int = 0


class TenantRowStats(WireModel):
    """Rows per table of the tenant (only tables with rows), users and active users, when collected."""

    tables: dict[str, int]
    record_count: int
    user_count: int
    active_user_count: int
    collected_at: datetime


class TenantDataDeletion(WireModel):
    """What ``delete_tenant_data`` did: the tables in the order they were emptied, the keys broken first.
    The same whatever attempt finishes it (rows deleted per attempt are in the heartbeats and logs)."""

    tenant_id: WireUUID
    deletion_id: WireUUID
    tables: list[str]
    broken_keys: list[str] = Field(default_factory=list)
    remaining_rows: int = 0
    audit_log_id: str | None = None


class TenantDeletionState(WireModel):
    """``getState`` (also the original's ``getDeletionState``)."""

    step: TenantDeletionStep
    status: TenantDeletionStatus
    deletion_id: WireUUID
    tenant_id: WireUUID
    tenant_name: str | None = None
    trigger_source: DeletionTriggerSource | None = None
    stats: TenantRowStats | None = None
    confirmation_type: ConfirmationType | None = None
    confirmed_by: str | None = None
    confirmed_at: datetime | None = None
    grace_period_ends_at: datetime | None = None
    deletion_scheduled_for: datetime | None = None
    waiting_for: list[str] = Field(default_factory=list,
                                   description="What the run waits for: 'confirmation', 'grace_period'.")
    rollback_reason: str | None = None
    rolled_back_by: str | None = None
    deactivated_user_count: int | None = None
    outcomes: dict[str, StepOutcome] = Field(
        default_factory=dict, description="The non-fatal side steps: client_tag, stripe_subscription, "
        "cancellation_email (pending, done, skipped, failed; removed after a rollback undid it).")
    export_id: WireUUID | None = None
    export_bucket: str | None = None
    export_s3_key: str | None = None
    export_location: str | None = None
    export_file_size_bytes: int | None = None
    deleted_tables: list[str] = Field(default_factory=list)
    ignored_signals: int = 0
    error: str | None = None
    error_type: str | None = None


class TenantDeletionResult(WireModel):
    """The original's result: ``{success, deletionId, tenantId, status, deletedAt?, error?}``."""

    success: bool
    deletion_id: WireUUID
    tenant_id: WireUUID
    status: TenantDeletionStatus
    deleted_at: datetime | None = None
    error: str | None = None

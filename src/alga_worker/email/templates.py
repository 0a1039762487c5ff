"""The template registry: every email the worker sends, its variables, its secrets, one render function.

Why a registry instead of one render function per email: the ``send_email`` activity, the
``sendEmailWorkflow`` and the ``alga-worker email`` commands must all agree on what a template needs.
Each :class:`TemplateSpec` says it once:

* a **context model** (pydantic, ``extra="forbid"``, strict): an unknown, missing or mistyped variable
  is refused, naming the field and never the value (``hide_input_in_errors``). Free text refuses
  control and format characters, so a name cannot add a line to the plain-text part;
* which fields are **secrets** (``SecretStr``: a temporary password). Secrets never travel in a
  workflow's variables: workflows pass them sealed and only ``send_email`` opens them;
* a fixed one-line **subject** (it may name the tenant).

Links are never variables: sign-in URLs come from the worker's settings (``APPLICATION_URL``,
``CLIENT_PORTAL_URL``) through :class:`Links`, so a caller of ``sendEmailWorkflow`` cannot make the
worker mail a link of its choosing.

Templates are Jinja2 files ``templates/<template>.{html,txt}.j2``: HTML autoescaped, both parts with
``StrictUndefined`` (a placeholder without a value raises instead of rendering as nothing). Both parts
carry the same facts; the unit tests check that for every template. Importing this module touches no
file: the Jinja environment is built on first render.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, ValidationError
from pydantic_core import PydanticCustomError

from alga_worker.email.message import Address
from alga_worker.models import FORBIDDEN_TEXT_CATEGORIES, EmailTemplate, WireUUID

if TYPE_CHECKING:
    import jinja2

# The original's client-portal sign-in path (reference 6): where a tenant's client users sign in.
DEFAULT_CLIENT_PORTAL_PATH = "/auth/client-portal/signin"
# What ``alga-worker email preview`` shows for a secret it was not given: obviously not a password.
SAMPLE_SECRET = "[sample-temporary-password]"  # noqa: S105 (a placeholder, not a secret)
ERROR_MESSAGE_MAX = 4000


# ---- field types ----


def _text(max_length: int, *, allow_empty: bool = False, multiline: bool = False) -> Callable[[str], str]:
    """Trimmed one-line text without control/format characters (``multiline``: newlines and tabs kept)."""

    def check(value: str) -> str:
        if multiline:
            value = value.replace("\r\n", "\n").replace("\r", "\n")
        kept = {"\n", "\t"} if multiline else set()
        found = {unicodedata.category(c) for c in value if c not in kept} & FORBIDDEN_TEXT_CATEGORIES.keys()
        if found:
            raise PydanticCustomError("text_forbidden_character", "must not contain {kinds} characters",
                                      {"kinds": ", ".join(FORBIDDEN_TEXT_CATEGORIES[c] for c in sorted(found))})
        value = value.strip()
        if not value and not allow_empty:
            raise PydanticCustomError("text_empty", "must not be empty or only whitespace")
        if len(value) > max_length:
            raise PydanticCustomError("text_too_long", "must be at most {max_length} characters",
                                      {"max_length": max_length})
        return value

    return check


def _truncate(max_length: int) -> Callable[[Any], Any]:
    """Cut an over-long error message instead of refusing it: a notice must not fail on its payload."""

    def cut(value: Any) -> Any:
        if isinstance(value, str) and len(value) > max_length:
            return value[: max_length - 1] + "…"
        return value

    return cut


Name = Annotated[str, AfterValidator(_text(255))]
OptionalName = Annotated[str, AfterValidator(_text(255, allow_empty=True))]  # last names may be empty
Identifier = Annotated[str, AfterValidator(_text(1000))]
ErrorMessage = Annotated[str, BeforeValidator(_truncate(ERROR_MESSAGE_MAX)),
                         AfterValidator(_text(ERROR_MESSAGE_MAX, multiline=True))]
Secret = Annotated[SecretStr, Field(min_length=1, max_length=256)]
# The address shown in the body (the sign-in name): lower-cased, header-safe. Recipients are checked
# separately and more strictly (``models.Email``); this one only has to be a sane address to print.
ShownAddress = Address
UserKind = Literal["internal", "client"]


class TemplateContext(BaseModel):
    """Base of every context model: strict, closed, immutable, values kept out of error messages."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, hide_input_in_errors=True)


# ---- context models: what each template needs (secrets are SecretStr) ----


class TenantWelcomeContext(TemplateContext):
    """The welcome email of a new tenant's first admin; the client-portal section appears only when the
    portal user's own password is given (a portal user was really created)."""

    tenant_name: Name
    client_name: Name | None = None
    first_name: Name
    last_name: OptionalName = ""
    email: ShownAddress
    temporary_password: Secret
    portal_temporary_password: Secret | None = None


class PortalAccessContext(TemplateContext):
    """The client-portal section alone: a portal user created after the welcome email."""

    tenant_name: Name
    first_name: Name
    last_name: OptionalName = ""
    email: ShownAddress
    portal_temporary_password: Secret


class _UserContext(TemplateContext):
    """One user of a tenant, addressed by name: what every user email shows."""

    tenant_name: Name
    first_name: Name
    last_name: OptionalName = ""
    email: ShownAddress


class _CredentialContext(_UserContext):
    """A user email that carries a temporary password and where to sign in with it (by ``user_type``)."""

    user_type: UserKind = "internal"
    temporary_password: Secret


class UserInvitationContext(_CredentialContext):
    """A user was created in a tenant: where to sign in, the email, the password."""


class PasswordResetContext(_CredentialContext):
    """A new temporary password replaced the user's password."""


class AccountDeactivatedContext(_UserContext):
    """The user's account was deactivated. No secret, no sign-in link (it would not work)."""


class TenantCancelledContext(TemplateContext):
    """To the tenant's registered address (``tenants.email``) when its deletion is recorded: the account
    is cancelled, its users deactivated, its data kept until ``data_retained_until`` (an ISO date, shown
    as given) and then deleted. No secret; the only link is the Nine Minds support portal."""

    tenant_name: Name
    data_retained_until: Name | None = None


class ProvisioningFailedContext(TemplateContext):
    """To operations (OPERATIONS_EMAIL): a valid tenant request did not become a tenant.

    ``admin_email`` is shown as text, not checked as an address: a notice must not be refused because
    of the very data that may have made provisioning fail."""

    tenant_name: Name
    admin_email: Name
    workflow_id: Identifier
    run_id: Identifier
    failed_step: Name
    error_type: Name
    error_message: ErrorMessage
    checkout_session_id: Identifier | None = None
    tenant_id: WireUUID | None = None


# ---- links (from settings, never from callers) ----


def http_url(value: str) -> str:
    """Links in the email must be http(s): a ``javascript:`` URL would survive HTML escaping."""
    url = value.strip()
    if not url.lower().startswith(("https://", "http://")) or any(c.isspace() for c in url):
        raise ValueError("must be an http(s) URL without spaces")
    return url


@dataclass(frozen=True)
class Links:
    """Where emails send people: ``APPLICATION_URL`` and the management tenant's ``CLIENT_PORTAL_URL``."""

    application_url: str
    client_portal_url: str | None = None

    def __post_init__(self) -> None:
        http_url(self.application_url)
        if self.client_portal_url is not None:
            http_url(self.client_portal_url)

    @property
    def tenant_client_portal(self) -> str:
        """A tenant's own client portal (its client users sign in there): APPLICATION_URL + the path."""
        return self.application_url.rstrip("/") + DEFAULT_CLIENT_PORTAL_PATH

    @property
    def nine_minds_portal(self) -> str:
        """The management tenant's client portal (support): CLIENT_PORTAL_URL, else the default path."""
        return self.client_portal_url or self.tenant_client_portal

    def sign_in(self, user_type: str) -> str:
        return self.tenant_client_portal if user_type == "client" else self.application_url


# ---- what the Jinja templates see ----

Values = dict[str, Any]


def _full_name(ctx: Any) -> str:
    return f"{ctx.first_name} {ctx.last_name}".strip()


def _reveal(secret: SecretStr | None) -> str | None:
    return None if secret is None else secret.get_secret_value()


def _portal(url: str | None, email: str | None, password: SecretStr | None) -> Values:
    """The shared portal section (``_client_portal.*.j2``); all None without a portal."""
    if url is None or password is None:
        return {"client_portal_url": None, "portal_email": None, "portal_temporary_password": None}
    return {"client_portal_url": url, "portal_email": email, "portal_temporary_password": _reveal(password)}


def _welcome_values(ctx: TenantWelcomeContext, links: Links) -> Values:
    has_portal = ctx.portal_temporary_password is not None
    return {
        "tenant_name": ctx.tenant_name, "client_name": ctx.client_name, "full_name": _full_name(ctx),
        "email": ctx.email, "temporary_password": _reveal(ctx.temporary_password),
        "login_url": links.application_url, "has_client_portal": has_portal,
        **_portal(links.nine_minds_portal if has_portal else None, ctx.email, ctx.portal_temporary_password),
    }


def _portal_access_values(ctx: PortalAccessContext, links: Links) -> Values:
    return {"tenant_name": ctx.tenant_name, "full_name": _full_name(ctx),
            **_portal(links.nine_minds_portal, ctx.email, ctx.portal_temporary_password)}


def _credentials_values(ctx: UserInvitationContext | PasswordResetContext, links: Links) -> Values:
    return {"tenant_name": ctx.tenant_name, "full_name": _full_name(ctx), "email": ctx.email,
            "is_client_user": ctx.user_type == "client", "sign_in_url": links.sign_in(ctx.user_type),
            "temporary_password": _reveal(ctx.temporary_password)}


def _deactivated_values(ctx: AccountDeactivatedContext, links: Links) -> Values:
    return {"tenant_name": ctx.tenant_name, "full_name": _full_name(ctx), "email": ctx.email}


def _cancelled_values(ctx: TenantCancelledContext, links: Links) -> Values:
    return {"tenant_name": ctx.tenant_name, "data_retained_until": ctx.data_retained_until,
            "support_url": links.nine_minds_portal}


def _failure_values(ctx: ProvisioningFailedContext, links: Links) -> Values:
    return {**ctx.model_dump(), "tenant_id": None if ctx.tenant_id is None else str(ctx.tenant_id)}


# ---- the registry ----


@dataclass(frozen=True)
class TemplateSpec:
    """One template: its context model, which of its fields are secrets, its subject and samples."""

    template: EmailTemplate
    context: type[TemplateContext]
    secrets: frozenset[str]
    subject: str  # str.format over the context's (non-secret) fields
    description: str
    values: Callable[[Any, Links], Values]
    samples: Mapping[str, Any] = field(default_factory=dict)

    @property
    def fields(self) -> dict[str, bool]:
        """Every field name -> required."""
        return {name: info.is_required() for name, info in self.context.model_fields.items()}

    @property
    def variables(self) -> dict[str, bool]:
        """Non-secret fields (what workflows pass in clear) -> required."""
        return {name: required for name, required in self.fields.items() if name not in self.secrets}

    @property
    def secret_fields(self) -> dict[str, bool]:
        """Secret fields (what workflows pass sealed) -> required."""
        return {name: required for name, required in self.fields.items() if name in self.secrets}

    def render_subject(self, ctx: TemplateContext) -> str:
        return self.subject.format(**{k: v for k, v in ctx if k not in self.secrets})


_PERSON = {"tenant_name": "Acme IT", "first_name": "Ada", "last_name": "Lovelace", "email": "ada@acme.example"}

SPECS: dict[EmailTemplate, TemplateSpec] = {
    spec.template: spec
    for spec in (
        TemplateSpec(
            EmailTemplate.TENANT_WELCOME, TenantWelcomeContext,
            frozenset({"temporary_password", "portal_temporary_password"}),
            "Welcome to Alga PSA - Your Account is Ready",
            "A new tenant's first admin: Alga PSA sign-in, email and temporary password; the Nine Minds "
            "client-portal section only when portal_temporary_password is given.",
            _welcome_values, {**_PERSON, "client_name": "Acme IT Ltd"}),
        TemplateSpec(
            EmailTemplate.PORTAL_ACCESS, PortalAccessContext, frozenset({"portal_temporary_password"}),
            "Your Nine Minds Client Portal Access",
            "The Nine Minds client-portal section alone, for a portal user created after the welcome email.",
            _portal_access_values, _PERSON),
        TemplateSpec(
            EmailTemplate.USER_INVITATION, UserInvitationContext, frozenset({"temporary_password"}),
            "You have been invited to {tenant_name} on Alga PSA",
            "A user was created in a tenant: sign-in URL (Alga PSA for internal users, the tenant's client "
            "portal for client users), email and temporary password.",
            _credentials_values, {**_PERSON, "user_type": "internal"}),
        TemplateSpec(
            EmailTemplate.PASSWORD_RESET, PasswordResetContext, frozenset({"temporary_password"}),
            "Your Alga PSA password for {tenant_name} has been reset",
            "A new temporary password replaced the user's password: sign-in URL, email, the password.",
            _credentials_values, {**_PERSON, "user_type": "internal"}),
        TemplateSpec(
            EmailTemplate.ACCOUNT_DEACTIVATED, AccountDeactivatedContext, frozenset(),
            "Your Alga PSA account for {tenant_name} has been deactivated",
            "The user's account in the tenant was deactivated. No secret and no sign-in link.",
            _deactivated_values, _PERSON),
        TemplateSpec(
            EmailTemplate.TENANT_CANCELLED, TenantCancelledContext, frozenset(),
            "Your Alga PSA account {tenant_name} has been cancelled",
            "To the tenant's registered address when its deletion is recorded: account cancelled, users "
            "deactivated, data kept until data_retained_until, then deleted; support portal link "
            "(CLIENT_PORTAL_URL). No secret.",
            _cancelled_values, {"tenant_name": "Acme IT", "data_retained_until": "2031-06-01"}),
        TemplateSpec(
            EmailTemplate.PROVISIONING_FAILED, ProvisioningFailedContext, frozenset(),
            "Tenant provisioning failed: {tenant_name} ({error_type})",
            "To operations (OPERATIONS_EMAIL): tenant name, admin email, workflow and run id, failed step, "
            "error type and message, checkout session id and tenant id when known.",
            _failure_values,
            {"tenant_name": "Acme IT", "admin_email": "ada@acme.example",
             "workflow_id": "tenant-creation-0b5c1f7e", "run_id": "8a1e2f3c-4d5e-4f60-8a7b-9c0d1e2f3a4b",
             "failed_step": "provision_tenant", "error_type": "DuplicateError",
             "error_message": "an internal user with this email already exists",
             "checkout_session_id": "cs_test_a1B2c3D4", "tenant_id": "0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f"}),
    )
}


def spec_of(template: EmailTemplate | str) -> TemplateSpec:
    """The spec of ``template`` (a member or its value); ``KeyError`` for an unknown name."""
    try:
        return SPECS[EmailTemplate(template)]
    except ValueError:
        raise KeyError(template) from None


# ---- validation (problems name fields, never values) ----

Problem = dict[str, str]


def problems_of(err: ValidationError, prefix: str = "variables") -> list[Problem]:
    return [{"field": ".".join([prefix, *map(str, e["loc"])]), "problem": e["msg"]}
            for e in err.errors(include_input=False, include_url=False, include_context=False)]


def name_problems(template: EmailTemplate, variables: Mapping[str, Any],
                  sealed: Mapping[str, Any]) -> list[Problem]:
    """What is wrong with the *names* given: a secret in clear, a sealed value that is no secret of the
    template, a required secret missing. Checked before anything is opened or rendered."""
    spec = spec_of(template)
    problems = [{"field": f"variables.{name}", "problem": "is a secret: pass it sealed, never in clear"}
                for name in sorted(variables) if name in spec.secrets]
    problems += [{"field": f"sealed.{name}", "problem": "is not a secret field of this template"}
                 for name in sorted(sealed) if name not in spec.secrets]
    problems += [{"field": f"sealed.{name}", "problem": "is required"}
                 for name, required in sorted(spec.secret_fields.items()) if required and name not in sealed]
    return problems


def variable_problems(template: EmailTemplate, variables: Mapping[str, Any]) -> list[Problem]:
    """Problems of the non-secret ``variables`` alone (secrets stood in by a placeholder). Pure and
    deterministic: workflows call it to refuse bad input before any activity runs."""
    spec = spec_of(template)
    stand_in = {name: SAMPLE_SECRET for name, required in spec.secret_fields.items() if required}
    problems = name_problems(template, variables, stand_in)
    try:
        spec.context.model_validate({**variables, **stand_in})
    except ValidationError as err:
        problems += problems_of(err)
    return problems


def context_of(template: EmailTemplate, values: Mapping[str, Any]) -> TemplateContext:
    """Validate ``values`` (variables and secrets in clear) against the template's context model.
    Raises ``pydantic.ValidationError`` naming the fields."""
    return spec_of(template).context.model_validate(dict(values))


# ---- rendering ----


@functools.cache
def environment() -> jinja2.Environment:
    """Built on first use, not at import: workflow code imports this module for validation only."""
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("alga_worker.email", "templates"),
        undefined=jinja2.StrictUndefined,
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default=False),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render(template: EmailTemplate | str, values: Mapping[str, Any] | TemplateContext, *, links: Links,
           now: datetime | None = None) -> tuple[str, str, str]:
    """``(subject, html, text)`` of ``template`` for ``values`` (validated by its context model;
    secrets in clear or as ``SecretStr``). ``now`` fixes the footer year in tests.

    Raises ``pydantic.ValidationError`` for an unknown, missing or mistyped value and
    ``jinja2.UndefinedError`` if a template used a name its builder does not provide."""
    spec = spec_of(template)
    ctx = values if isinstance(values, spec.context) else context_of(spec.template, dict(values))
    page = {**spec.values(ctx, links), "year": (now or datetime.now(UTC)).year}
    env = environment()
    html = env.get_template(f"{spec.template.value}.html.j2").render(page)
    text = env.get_template(f"{spec.template.value}.txt.j2").render(page)
    return spec.render_subject(ctx), html, text


def sample_values(template: EmailTemplate | str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Values for a preview: the spec's samples, ``overrides`` on top, secrets as :data:`SAMPLE_SECRET`.
    An optional secret (the welcome's portal password) is shown only when named in ``overrides``."""
    spec = spec_of(template)
    values: dict[str, Any] = dict(spec.samples)
    values.update({name: SAMPLE_SECRET for name, required in spec.secret_fields.items() if required})
    values.update(overrides or {})
    return values

"""Customer emails: the tenant welcome email and the client-portal access email, from Jinja2 templates.

The welcome email follows the original worker's content, with corrections:

* the client portal is mentioned only when a client-portal user was really created for this customer,
  that is when its *own* temporary password is given (``portal_temporary_password``): then a portal
  section (login URL, the portal user's email, its password) appears in both the HTML and the text
  part; otherwise neither part mentions a portal at all. The original promised portal access
  unconditionally, which misled customers in the 2026 incident (B8), and told them to use the admin's
  password there (the portal user reused it, B7);
* nothing claims the password "expires in 24 hours" (the S-JUL text did; nothing enforced it).

The portal access email carries the same portal section (one partial template for both) and is sent
when an operator run creates a portal user for an existing customer.

Passwords are ``SecretStr``: they reach the rendered bodies and nothing else (not ``repr``, not
``model_dump_json``), so a context that ends up in a log line or a traceback leaks nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import UTC, datetime

import jinja2
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from alga_worker.email.message import normalize_address

WELCOME_SUBJECT = "Welcome to Alga PSA - Your Account is Ready"
PORTAL_ACCESS_SUBJECT = "Your Nine Minds Client Portal Access"


def _http_url(value: str) -> str:
    """Links in the email must be http(s): a ``javascript:`` URL would survive HTML escaping."""
    url = value.strip()
    if not url.lower().startswith(("https://", "http://")) or any(c.isspace() for c in url):
        raise ValueError("must be an http(s) URL without spaces")
    return url


class WelcomeEmailContext(BaseModel):
    """Everything the welcome email shows; built by the activity that sends it.

    ``client_portal_url`` and ``portal_temporary_password`` come together or not at all: a portal
    section needs both a place to sign in and the portal user's own password.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    tenant_name: str = Field(min_length=1, max_length=255)
    first_name: str = Field(min_length=1, max_length=255)
    last_name: str = Field(max_length=255)
    email: str
    temporary_password: SecretStr = Field(min_length=1)
    login_url: str
    client_portal_url: str | None = None
    portal_temporary_password: SecretStr | None = Field(default=None, min_length=1)
    client_name: str | None = None

    @field_validator("email")
    @classmethod
    def _check_email(cls, value: str) -> str:
        return normalize_address(value)

    @field_validator("login_url", "client_portal_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        return None if value is None else _http_url(value)

    @model_validator(mode="after")
    def _portal_complete(self) -> WelcomeEmailContext:
        if (self.client_portal_url is None) != (self.portal_temporary_password is None):
            raise ValueError("client_portal_url and portal_temporary_password go together")
        return self

    @property
    def has_client_portal(self) -> bool:
        return self.portal_temporary_password is not None


class PortalAccessEmailContext(BaseModel):
    """The client-portal access email: sent alone when a portal user is created after the welcome."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tenant_name: str = Field(min_length=1, max_length=255)
    first_name: str = Field(min_length=1, max_length=255)
    last_name: str = Field(max_length=255)
    email: str
    client_portal_url: str
    portal_temporary_password: SecretStr = Field(min_length=1)

    @field_validator("email")
    @classmethod
    def _check_email(cls, value: str) -> str:
        return normalize_address(value)

    @field_validator("client_portal_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return _http_url(value)


@functools.cache
def _environment() -> jinja2.Environment:
    """Built on first use, not at import: importing the package (e.g. from a workflow module that only
    needs the models) must not touch the file system."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader("alga_worker.email", "templates"),
        undefined=jinja2.StrictUndefined,
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default=False),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_welcome_email(ctx: WelcomeEmailContext, *, now: datetime | None = None) -> tuple[str, str, str]:
    """Return ``(subject, html, text)`` for ``ctx``; ``now`` fixes the footer year in tests."""
    values = {
        "tenant_name": ctx.tenant_name,
        "client_name": ctx.client_name,
        "full_name": f"{ctx.first_name} {ctx.last_name}".strip(),
        "email": ctx.email,
        "temporary_password": ctx.temporary_password.get_secret_value(),
        "login_url": ctx.login_url,
        "has_client_portal": ctx.has_client_portal,
        **_portal_values(ctx.client_portal_url, ctx.email, ctx.portal_temporary_password),
        "year": (now or datetime.now(UTC)).year,
    }
    return WELCOME_SUBJECT, *_render("welcome", values)


def render_portal_access_email(ctx: PortalAccessEmailContext, *,
                               now: datetime | None = None) -> tuple[str, str, str]:
    """Return ``(subject, html, text)`` of the client-portal access email."""
    values = {
        "tenant_name": ctx.tenant_name,
        "full_name": f"{ctx.first_name} {ctx.last_name}".strip(),
        **_portal_values(ctx.client_portal_url, ctx.email, ctx.portal_temporary_password),
        "year": (now or datetime.now(UTC)).year,
    }
    return PORTAL_ACCESS_SUBJECT, *_render("portal_access", values)


def _portal_values(url: str | None, email: str, password: SecretStr | None) -> dict[str, str | None]:
    """What the shared portal section (``_client_portal.*.j2``) shows; all None without a portal."""
    if url is None or password is None:
        return {"client_portal_url": None, "portal_email": None, "portal_temporary_password": None}
    return {"client_portal_url": url, "portal_email": email,
            "portal_temporary_password": password.get_secret_value()}


def _render(name: str, values: Mapping[str, object]) -> tuple[str, str]:
    env = _environment()
    return env.get_template(f"{name}.html.j2").render(values), env.get_template(f"{name}.txt.j2").render(values)

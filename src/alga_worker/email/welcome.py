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

Rendering goes through the template registry (:mod:`alga_worker.email.templates`), as every email
does; these contexts stay for callers that hold the links themselves (tests, older code paths).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from alga_worker.email.message import normalize_address
from alga_worker.email.templates import SPECS, Links, render
from alga_worker.email.templates import http_url as _http_url
from alga_worker.models import EmailTemplate

WELCOME_SUBJECT = SPECS[EmailTemplate.TENANT_WELCOME].subject
PORTAL_ACCESS_SUBJECT = SPECS[EmailTemplate.PORTAL_ACCESS].subject


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


def _links(login_url: str, client_portal_url: str | None) -> Links:
    return Links(application_url=login_url, client_portal_url=client_portal_url)


def render_welcome_email(ctx: WelcomeEmailContext, *, now: datetime | None = None) -> tuple[str, str, str]:
    """Return ``(subject, html, text)`` for ``ctx``; ``now`` fixes the footer year in tests."""
    values = ctx.model_dump(exclude={"login_url", "client_portal_url"})
    return render(EmailTemplate.TENANT_WELCOME, values, links=_links(ctx.login_url, ctx.client_portal_url), now=now)


def render_portal_access_email(ctx: PortalAccessEmailContext, *,
                               now: datetime | None = None) -> tuple[str, str, str]:
    """Return ``(subject, html, text)`` of the client-portal access email."""
    values = ctx.model_dump(exclude={"client_portal_url"})
    # The portal section links to Links.nine_minds_portal: the given URL here.
    return render(EmailTemplate.PORTAL_ACCESS, values, links=_links(ctx.client_portal_url, ctx.client_portal_url),
                  now=now)

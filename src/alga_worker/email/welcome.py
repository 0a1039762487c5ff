"""The tenant welcome email (subject, HTML and text), rendered from Jinja2 templates.

Content follows the original worker's welcome email, with two corrections:

* the client-portal card, button and "two portals" wording appear only when a client-portal user was
  really created (``client_portal_url`` set). The original promised portal access unconditionally,
  which misled customers in the 2026 incident (B8);
* nothing claims the password "expires in 24 hours" (the S-JUL text did; nothing enforced it).

The temporary password is a ``SecretStr``: it reaches the rendered bodies and nothing else (not
``repr``, not ``model_dump_json``), so a context that ends up in a log line or a traceback leaks nothing.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime

import jinja2
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from alga_worker.email.message import normalize_address

WELCOME_SUBJECT = "Welcome to Alga PSA - Your Account is Ready"


def _http_url(value: str) -> str:
    """Links in the email must be http(s): a ``javascript:`` URL would survive HTML escaping."""
    url = value.strip()
    if not url.lower().startswith(("https://", "http://")) or any(c.isspace() for c in url):
        raise ValueError("must be an http(s) URL without spaces")
    return url


class WelcomeEmailContext(BaseModel):
    """Everything the welcome email shows; built by the activity that created the admin user."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tenant_name: str = Field(min_length=1, max_length=255)
    first_name: str = Field(min_length=1, max_length=255)
    last_name: str = Field(max_length=255)
    email: str
    temporary_password: SecretStr = Field(min_length=1)
    login_url: str
    client_portal_url: str | None = None
    client_name: str | None = None

    @field_validator("email")
    @classmethod
    def _check_email(cls, value: str) -> str:
        return normalize_address(value)

    @field_validator("login_url", "client_portal_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        return None if value is None else _http_url(value)


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
    year = (now or datetime.now(UTC)).year
    values = {
        "tenant_name": ctx.tenant_name,
        "client_name": ctx.client_name,
        "first_name": ctx.first_name,
        "last_name": ctx.last_name,
        "full_name": f"{ctx.first_name} {ctx.last_name}".strip(),
        "email": ctx.email,
        "temporary_password": ctx.temporary_password.get_secret_value(),
        "login_url": ctx.login_url,
        "client_portal_url": ctx.client_portal_url,
        "has_client_portal": ctx.client_portal_url is not None,
        "year": year,
    }
    env = _environment()
    html = env.get_template("welcome.html.j2").render(values)
    text = env.get_template("welcome.txt.j2").render(values)
    return WELCOME_SUBJECT, html, text

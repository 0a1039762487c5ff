"""Welcome email: content gated on what was set up, escaping, and a password kept out of repr."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from alga_worker.email import WELCOME_SUBJECT, WelcomeEmailContext, render_welcome_email

PASSWORD = "Xy7#kQ2!pLm9"


def _ctx(**overrides: object) -> WelcomeEmailContext:
    fields: dict[str, object] = {
        "tenant_name": "Acme IT",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "email": "Ada@Acme.test",
        "temporary_password": PASSWORD,
        "login_url": "https://psa.example.com/",
    }
    fields.update(overrides)
    return WelcomeEmailContext.model_validate(fields)


def test_subject_greeting_credentials_and_footer() -> None:
    subject, html, text = render_welcome_email(_ctx(), now=datetime(2031, 5, 1, tzinfo=UTC))
    assert subject == WELCOME_SUBJECT == "Welcome to Alga PSA - Your Account is Ready"
    for body in (html, text):
        assert "Hello Ada Lovelace," in body
        assert "Acme IT" in body
        assert "https://psa.example.com/" in body
        assert "ada@acme.test" in body
        assert PASSWORD in body
        assert "set a new password at first sign-in" in body
        assert "What's Next?" in body
        assert "2031 Nine Minds" in body
        assert "24 hours" not in body
    assert "#8a4dea" in html and "#40cff9" in html
    assert '<table role="presentation"' in html


def test_client_portal_only_when_created() -> None:
    _, html, text = render_welcome_email(_ctx())
    for body in (html, text):
        assert "client portal" not in body.lower()
        assert "two portal" not in body.lower()
        assert "/auth/client-portal" not in body

    portal = "https://psa.example.com/auth/client-portal/signin"
    _, html, text = render_welcome_email(_ctx(client_portal_url=portal))
    for body in (html, text):
        assert portal in body
        assert "two portal" in body.lower()
    assert "Open the Client Portal" in html
    assert "(Same for Both Portals)" in text


def test_html_escapes_user_supplied_text() -> None:
    _, html, text = render_welcome_email(
        _ctx(tenant_name="<script>alert(1)</script>", first_name='"Bob" & <i>', client_name="<b>Corp</b>"))
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&#34;Bob&#34; &amp; &lt;i&gt;" in html
    assert "&lt;b&gt;Corp&lt;/b&gt;" in html
    assert "<script>alert(1)</script>" in text  # plain text is not HTML: shown as typed


def test_password_not_in_repr_or_dump() -> None:
    ctx = _ctx()
    assert PASSWORD not in repr(ctx)
    assert PASSWORD not in str(ctx)
    assert PASSWORD not in ctx.model_dump_json()
    assert ctx.temporary_password.get_secret_value() == PASSWORD


def test_rejects_non_http_links_and_bad_address() -> None:
    with pytest.raises(ValidationError):
        _ctx(login_url="javascript:alert(1)")
    with pytest.raises(ValidationError):
        _ctx(client_portal_url="data:text/html,hi")
    with pytest.raises(ValidationError):
        _ctx(email="not an address")

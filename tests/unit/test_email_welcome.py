"""Welcome email: content gated on what was set up, escaping, and passwords kept out of repr."""

from __future__ import annotations

import html as html_lib
import re
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from alga_worker.email import WELCOME_SUBJECT, WelcomeEmailContext, render_welcome_email
from alga_worker.email.welcome import PORTAL_ACCESS_SUBJECT, PortalAccessEmailContext, render_portal_access_email
from alga_worker.security import generate_temporary_password

PASSWORD = "Xy7#kQ2!pLm9"
PORTAL_PASSWORD = "Pq4&Rt8*wZn3"  # '&' must be escaped in HTML and shown as typed in text
PORTAL_URL = "https://support.nineminds.example/auth/client-portal/signin?tenant=nm"


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


def _visible_text(html: str) -> str:
    """What a reader of the HTML part sees: tags removed, entities decoded, whitespace collapsed."""
    return " ".join(html_lib.unescape(re.sub(r"<[^>]+>", " ", html)).split())


def test_without_a_portal_password_no_portal_is_mentioned() -> None:
    _, html, text = render_welcome_email(_ctx())
    for body in (html, text):
        assert "portal" not in body.lower()
        assert "/auth/client-portal" not in body
        assert "two accounts" not in body.lower()
        assert "Client portal temporary password" not in body


def test_portal_section_carries_its_own_login_email_and_password() -> None:
    _, html, text = render_welcome_email(_ctx(client_portal_url=PORTAL_URL,
                                              portal_temporary_password=PORTAL_PASSWORD))
    visible = _visible_text(html)
    for body in (visible, text):
        assert "nine minds client portal access" in body.lower()
        assert f"Sign in at: {PORTAL_URL}" in body
        assert "Client portal email: ada@acme.test" in body
        assert f"Client portal temporary password: {PORTAL_PASSWORD}" in body
        assert "its own temporary password" in body
        # The admin's credentials are still there, separately: never "same for both portals".
        assert f"Temporary Password: {PASSWORD}" in body
        assert "same for both" not in body.lower()
    assert f'href="{html_lib.escape(PORTAL_URL)}"' in html
    assert "Open the Client Portal" in html


def test_the_admins_password_comes_first_in_the_text_part() -> None:
    """Support scripts and the tests read the first 'Temporary password:' line as the admin's."""
    _, _, text = render_welcome_email(_ctx(client_portal_url=PORTAL_URL, portal_temporary_password=PORTAL_PASSWORD))
    first = re.search(r"Temporary password:\s*(\S+)", text, re.IGNORECASE)
    portal = re.search(r"Client portal temporary password:\s*(\S+)", text)
    assert first and first.group(1) == PASSWORD
    assert portal and portal.group(1) == PORTAL_PASSWORD
    assert first.start() < portal.start()


def test_html_and_text_carry_the_same_facts() -> None:
    """Every fact the reader needs is in both parts, for every generated password."""
    for _ in range(20):
        admin_password, portal_password = generate_temporary_password(), generate_temporary_password()
        _, html, text = render_welcome_email(_ctx(temporary_password=admin_password, client_portal_url=PORTAL_URL,
                                                  portal_temporary_password=portal_password))
        visible = _visible_text(html)
        facts = ["Acme IT", "Hello Ada Lovelace,", "https://psa.example.com/", "Email: ada@acme.test",
                 f"Temporary Password: {admin_password}", f"Sign in at: {PORTAL_URL}",
                 "Client portal email: ada@acme.test", f"Client portal temporary password: {portal_password}"]
        for fact in facts:
            assert fact in visible, fact
            assert fact in text, fact


def test_portal_url_and_password_come_together() -> None:
    with pytest.raises(ValidationError, match="go together"):
        _ctx(client_portal_url=PORTAL_URL)
    with pytest.raises(ValidationError, match="go together"):
        _ctx(portal_temporary_password=PORTAL_PASSWORD)


def test_html_escapes_the_portal_section() -> None:
    _, html, text = render_welcome_email(_ctx(client_portal_url=PORTAL_URL + '&x="y"',
                                              portal_temporary_password=PORTAL_PASSWORD))
    assert PORTAL_PASSWORD not in html
    assert html_lib.escape(PORTAL_PASSWORD, quote=False) in html  # Pq4&amp;Rt8*wZn3
    assert '&x="y"' not in html and "&amp;x=&#34;y&#34;" in html
    assert PORTAL_PASSWORD in text and '&x="y"' in text  # plain text is shown as typed


def test_portal_access_email_has_the_same_portal_section() -> None:
    ctx = PortalAccessEmailContext(tenant_name="Acme <IT>", first_name="Ada", last_name="Lovelace",
                                   email="Ada@Acme.test", client_portal_url=PORTAL_URL,
                                   portal_temporary_password=PORTAL_PASSWORD)
    subject, html, text = render_portal_access_email(ctx, now=datetime(2031, 5, 1, tzinfo=UTC))
    assert subject == PORTAL_ACCESS_SUBJECT
    assert "Acme &lt;IT&gt;" in html and "<IT>" not in html
    for body in (_visible_text(html), text):
        assert "Hello Ada Lovelace," in body
        assert f"Sign in at: {PORTAL_URL}" in body
        assert "Client portal email: ada@acme.test" in body
        assert f"Client portal temporary password: {PORTAL_PASSWORD}" in body
        assert "2031 Nine Minds" in body
        assert "Temporary Password:" not in body  # the admin's password is not re-sent
    assert PORTAL_PASSWORD not in repr(ctx) and PORTAL_PASSWORD not in ctx.model_dump_json()


def test_html_escapes_user_supplied_text() -> None:
    _, html, text = render_welcome_email(
        _ctx(tenant_name="<script>alert(1)</script>", first_name='"Bob" & <i>', client_name="<b>Corp</b>"))
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&#34;Bob&#34; &amp; &lt;i&gt;" in html
    assert "&lt;b&gt;Corp&lt;/b&gt;" in html
    assert "<script>alert(1)</script>" in text  # plain text is not HTML: shown as typed


def test_passwords_not_in_repr_or_dump() -> None:
    ctx = _ctx(client_portal_url=PORTAL_URL, portal_temporary_password=PORTAL_PASSWORD)
    for secret in (PASSWORD, PORTAL_PASSWORD):
        assert secret not in repr(ctx)
        assert secret not in str(ctx)
        assert secret not in ctx.model_dump_json()
    assert ctx.temporary_password.get_secret_value() == PASSWORD
    assert ctx.portal_temporary_password is not None
    assert ctx.portal_temporary_password.get_secret_value() == PORTAL_PASSWORD


def test_rejects_non_http_links_and_bad_address() -> None:
    with pytest.raises(ValidationError):
        _ctx(login_url="javascript:alert(1)")
    with pytest.raises(ValidationError):
        _ctx(client_portal_url="data:text/html,hi", portal_temporary_password=PORTAL_PASSWORD)
    with pytest.raises(ValidationError):
        _ctx(email="not an address")

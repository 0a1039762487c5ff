"""The template registry: every template renders both parts with the same facts, escapes HTML, leaves no
placeholder, and refuses missing, unknown or mistyped variables by field name, never by value."""

from __future__ import annotations

import html as html_lib
import re
import typing
from datetime import UTC, datetime
from typing import Any

import jinja2
import pytest
from pydantic import SecretStr, ValidationError

from alga_worker.email.templates import (
    DEFAULT_CLIENT_PORTAL_PATH,
    ERROR_MESSAGE_MAX,
    SAMPLE_SECRET,
    SPECS,
    Links,
    environment,
    name_problems,
    render,
    sample_values,
    spec_of,
    variable_problems,
)
from alga_worker.models import EmailTemplate

APP = "https://psa.example.com"
PORTAL = "https://support.nineminds.example/auth/client-portal/signin?tenant=nm"
LINKS = Links(application_url=APP, client_portal_url=PORTAL)
NOW = datetime(2031, 5, 1, tzinfo=UTC)
PASSWORD = "Xy7#kQ2!pLm9"
PORTAL_PASSWORD = "Pq4&Rt8*wZn3"  # '&' is escaped in HTML, shown as typed in text
PERSON = {"tenant_name": "Acme IT", "first_name": "Ada", "last_name": "Lovelace", "email": "Ada@Acme-IT.example.org"}

# Fixed inputs per template case, and the facts both parts must carry for it.
CASES: dict[str, tuple[EmailTemplate, dict[str, Any], list[str]]] = {
    "tenant_welcome": (EmailTemplate.TENANT_WELCOME, {**PERSON, "temporary_password": PASSWORD},
                       ["Hello Ada Lovelace,", "Acme IT", APP, "Email: ada@acme-it.example.org",
                        f"Temporary Password: {PASSWORD}"]),
    "tenant_welcome with portal": (
        EmailTemplate.TENANT_WELCOME,
        {**PERSON, "client_name": "Acme Holdings", "temporary_password": PASSWORD,
         "portal_temporary_password": PORTAL_PASSWORD},
        ["Hello Ada Lovelace,", "Acme IT (Acme Holdings)", APP, f"Temporary Password: {PASSWORD}",
         f"Sign in at: {PORTAL}", "Client portal email: ada@acme-it.example.org",
         f"Client portal temporary password: {PORTAL_PASSWORD}"]),
    "portal_access": (EmailTemplate.PORTAL_ACCESS, {**PERSON, "portal_temporary_password": PORTAL_PASSWORD},
                      ["Hello Ada Lovelace,", "Acme IT", f"Sign in at: {PORTAL}",
                       "Client portal email: ada@acme-it.example.org",
                       f"Client portal temporary password: {PORTAL_PASSWORD}"]),
    "user_invitation internal": (
        EmailTemplate.USER_INVITATION, {**PERSON, "temporary_password": PASSWORD},
        ["Hello Ada Lovelace,", "account has been created for you in Acme IT on Alga PSA", f"Sign in at: {APP}",
         "Email: ada@acme-it.example.org", f"Temporary Password: {PASSWORD}"]),
    "user_invitation client": (
        EmailTemplate.USER_INVITATION, {**PERSON, "user_type": "client", "temporary_password": PASSWORD},
        ["Hello Ada Lovelace,", "in Acme IT on its client portal", f"Sign in at: {APP}{DEFAULT_CLIENT_PORTAL_PATH}",
         "Email: ada@acme-it.example.org", f"Temporary Password: {PASSWORD}"]),
    "password_reset": (
        EmailTemplate.PASSWORD_RESET, {**PERSON, "temporary_password": PASSWORD},
        ["Hello Ada Lovelace,", "account in Acme IT", "previous password no longer works", f"Sign in at: {APP}",
         "Email: ada@acme-it.example.org", f"Temporary Password: {PASSWORD}"]),
    "password_reset client": (
        EmailTemplate.PASSWORD_RESET, {**PERSON, "user_type": "client", "temporary_password": PASSWORD},
        [f"Sign in at: {APP}{DEFAULT_CLIENT_PORTAL_PATH}", f"Temporary Password: {PASSWORD}"]),
    "account_deactivated": (
        EmailTemplate.ACCOUNT_DEACTIVATED, PERSON,
        ["Hello Ada Lovelace,", "Your account in Acme IT", "ada@acme-it.example.org",
         "has been deactivated by an administrator", "You can no longer sign in"]),
    "tenant_cancelled": (
        EmailTemplate.TENANT_CANCELLED, {"tenant_name": "Acme IT", "data_retained_until": "2031-06-01"},
        ["Your Acme IT account on Alga PSA has been cancelled", "will not be charged again",
         "All user accounts of Acme IT have been deactivated", "kept until 2031-06-01", PORTAL]),
    "tenant_cancelled without date": (
        EmailTemplate.TENANT_CANCELLED, {"tenant_name": "Acme IT"}, ["kept for a grace period", PORTAL]),
    "provisioning_failed": (
        EmailTemplate.PROVISIONING_FAILED,
        {"tenant_name": "Acme IT", "admin_email": "ada@acme-it.example.org", "workflow_id": "tenant-creation-42",
         "run_id": "0f1e2d3c-run", "failed_step": "provision_tenant", "error_type": "DuplicateError",
         "error_message": "an internal user with this email exists\nsecond line",
         "checkout_session_id": "cs_test_123", "tenant_id": "0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f"},
        ["Tenant name: Acme IT", "Admin email: ada@acme-it.example.org", "Workflow id: tenant-creation-42",
         "Run id: 0f1e2d3c-run", "Failed step: provision_tenant", "Error type: DuplicateError",
         "an internal user with this email exists", "second line", "Checkout session id: cs_test_123",
         "Tenant id: 0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f"]),
}


def visible(html: str) -> str:
    """What a reader of the HTML part sees: tags removed, entities decoded, whitespace collapsed."""
    return " ".join(html_lib.unescape(re.sub(r"<[^>]+>", " ", html)).split())


def flat(text: str) -> str:
    return " ".join(text.split())


def _mentions_secret(annotation: Any) -> bool:
    return annotation is SecretStr or any(_mentions_secret(arg) for arg in typing.get_args(annotation))


def test_every_template_has_a_spec_both_files_and_its_secrets_are_exactly_the_secret_fields() -> None:
    assert set(SPECS) == set(EmailTemplate)
    names = set(environment().list_templates())
    for template, spec in SPECS.items():
        assert {f"{template.value}.html.j2", f"{template.value}.txt.j2"} <= names
        secret_typed = {name for name, info in spec.context.model_fields.items() if _mentions_secret(info.annotation)}
        assert spec.secrets == secret_typed, template
        assert spec.context.model_config.get("extra") == "forbid" and spec.context.model_config.get("strict")


@pytest.mark.parametrize("case", list(CASES))
def test_both_parts_carry_the_same_facts_and_no_placeholder(case: str) -> None:
    template, values, facts = CASES[case]
    subject, html, text = render(template, values, links=LINKS, now=NOW)
    assert "\n" not in subject and subject.strip() == subject and subject
    for part in (visible(html), flat(text)):
        for fact in facts:
            assert flat(fact) in part, (case, fact)
        assert "2031 Nine Minds" in part
        for marker in ("{{", "}}", "{%", "%}", "{#", "#}"):
            assert marker not in part
    assert html.lstrip().startswith("<!DOCTYPE html>") and "</html>" in html


def test_subjects_are_fixed_and_may_name_the_tenant() -> None:
    subjects = {case: render(t, v, links=LINKS)[0] for case, (t, v, _) in CASES.items()}
    assert subjects["tenant_welcome"] == "Welcome to Alga PSA - Your Account is Ready"
    assert subjects["portal_access"] == "Your Nine Minds Client Portal Access"
    assert subjects["user_invitation internal"] == "You have been invited to Acme IT on Alga PSA"
    assert subjects["password_reset"] == "Your Alga PSA password for Acme IT has been reset"
    assert subjects["account_deactivated"] == "Your Alga PSA account for Acme IT has been deactivated"
    assert subjects["tenant_cancelled"] == "Your Alga PSA account Acme IT has been cancelled"
    assert subjects["provisioning_failed"] == "Tenant provisioning failed: Acme IT (DuplicateError)"


def test_the_welcome_mentions_a_portal_only_with_a_portal_password() -> None:
    _, html, text = render(EmailTemplate.TENANT_WELCOME, CASES["tenant_welcome"][1], links=LINKS)
    for part in (html, text):
        assert "portal" not in part.lower() and PORTAL not in part


def test_deactivation_and_operations_notice_carry_no_link_and_no_secret() -> None:
    for case in ("account_deactivated", "provisioning_failed"):
        template, values, _ = CASES[case]
        _, html, text = render(template, values, links=LINKS)
        assert not spec_of(template).secrets
        for part in (html, text):
            assert APP not in part and PORTAL not in part and "password:" not in part.lower()


def test_provisioning_failed_without_optional_ids_and_with_a_huge_message() -> None:
    values = {**CASES["provisioning_failed"][1], "checkout_session_id": None, "tenant_id": None,
              "error_message": "x" * (ERROR_MESSAGE_MAX * 3)}
    _, html, text = render(EmailTemplate.PROVISIONING_FAILED, values, links=LINKS)
    for part in (visible(html), flat(text)):
        assert "Checkout session id: (none)" in part and "Tenant id: (unknown)" in part
    assert "x" * (ERROR_MESSAGE_MAX - 1) + "…" in text and "x" * ERROR_MESSAGE_MAX not in text


@pytest.mark.parametrize("case", list(CASES))
def test_html_escapes_what_callers_give_and_text_shows_it_as_typed(case: str) -> None:
    template, values, _ = CASES[case]
    hostile = "<script>alert(1)</script>"
    values = {**values, "tenant_name": hostile}
    if "first_name" in values:
        values["first_name"] = '"Bob" & <i>'
    subject, html, text = render(template, values, links=LINKS)
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert hostile in text
    assert "&lt;" not in subject  # a header is plain text, never HTML-escaped
    if "first_name" in values:
        assert "&#34;Bob&#34; &amp; &lt;i&gt;" in html and '"Bob" & <i>' in text


def test_html_escapes_passwords_and_portal_links() -> None:
    _, html, text = render(EmailTemplate.TENANT_WELCOME, CASES["tenant_welcome with portal"][1],
                           links=Links(application_url=APP, client_portal_url=PORTAL + '&x="y"'))
    assert PORTAL_PASSWORD not in html and html_lib.escape(PORTAL_PASSWORD, quote=False) in html
    assert '&x="y"' not in html and "&amp;x=&#34;y&#34;" in html
    assert PORTAL_PASSWORD in text and '&x="y"' in text


@pytest.mark.parametrize("case", list(CASES))
def test_a_missing_required_variable_raises_naming_it(case: str) -> None:
    template, values, _ = CASES[case]
    for name, required in spec_of(template).fields.items():
        if not required:
            continue
        with pytest.raises(ValidationError) as caught:
            render(template, {k: v for k, v in values.items() if k != name}, links=LINKS)
        assert [e["loc"] for e in caught.value.errors()] == [(name,)]


@pytest.mark.parametrize("template", list(EmailTemplate))
def test_unknown_and_mistyped_variables_and_links_as_variables_are_refused(template: EmailTemplate) -> None:
    values = sample_values(template)
    for extra in ({"nickname": "x"}, {"login_url": "https://evil.example"}, {"sign_in_url": "https://evil.example"},
                  {"client_portal_url": "https://evil.example"}):
        with pytest.raises(ValidationError) as caught:
            render(template, {**values, **extra}, links=LINKS)
        assert caught.value.errors()[0]["type"] == "extra_forbidden"
    with pytest.raises(ValidationError) as caught:
        render(template, {**values, "tenant_name": 42}, links=LINKS)
    assert caught.value.errors()[0]["loc"] == ("tenant_name",)


def test_refusals_name_fields_never_values() -> None:
    secret_looking = "hunter2-SUPERSECRET"
    values = {**CASES["user_invitation internal"][1], "email": secret_looking, "first_name": secret_looking + "\n"}
    with pytest.raises(ValidationError) as caught:
        render(EmailTemplate.USER_INVITATION, values, links=LINKS)
    assert {e["loc"] for e in caught.value.errors()} == {("email",), ("first_name",)}
    assert secret_looking not in str(caught.value)
    problems = variable_problems(EmailTemplate.USER_INVITATION, {**PERSON, "email": secret_looking})
    assert problems and secret_looking not in repr(problems)


def test_control_characters_cannot_add_lines_to_the_text_part() -> None:
    for bad in ("Ada\nBcc: x@evil.example", "Ada\u2028x", "Ada\u202ex"):
        with pytest.raises(ValidationError):
            render(EmailTemplate.ACCOUNT_DEACTIVATED, {**PERSON, "first_name": bad}, links=LINKS)


def test_names_and_secrets_are_checked_before_anything_is_opened() -> None:
    assert name_problems(EmailTemplate.USER_INVITATION, {**PERSON, "temporary_password": "x"}, {}) == [
        {"field": "variables.temporary_password", "problem": "is a secret: pass it sealed, never in clear"},
        {"field": "sealed.temporary_password", "problem": "is required"}]
    assert name_problems(EmailTemplate.ACCOUNT_DEACTIVATED, PERSON, {"temporary_password": "v1.x"}) == [
        {"field": "sealed.temporary_password", "problem": "is not a secret field of this template"}]
    # The welcome's portal password is optional; the admin's is not.
    assert name_problems(EmailTemplate.TENANT_WELCOME, PERSON, {"temporary_password": "v1.x"}) == []
    assert variable_problems(EmailTemplate.TENANT_WELCOME, PERSON) == []
    assert [p["field"] for p in variable_problems(EmailTemplate.ACCOUNT_DEACTIVATED, {"tenant_name": "X"})] == [
        "variables.first_name", "variables.email"]


def test_secrets_stay_out_of_repr_and_dumps() -> None:
    ctx = spec_of(EmailTemplate.TENANT_WELCOME).context.model_validate(CASES["tenant_welcome with portal"][1])
    for secret in (PASSWORD, PORTAL_PASSWORD):
        assert secret not in repr(ctx) and secret not in ctx.model_dump_json()
    # A context model is accepted by render as is.
    assert PASSWORD in render(EmailTemplate.TENANT_WELCOME, ctx, links=LINKS)[2]


def test_links_must_be_http_and_client_users_sign_in_at_the_tenant_portal() -> None:
    for bad in ("javascript:alert(1)", "data:text/html,hi", "https://a b.example"):
        with pytest.raises(ValueError, match="http"):
            Links(application_url=bad)
        with pytest.raises(ValueError, match="http"):
            Links(application_url=APP, client_portal_url=bad)
    links = Links(application_url=APP + "/")
    assert links.sign_in("internal") == APP + "/"
    assert links.sign_in("client") == APP + DEFAULT_CLIENT_PORTAL_PATH
    assert links.nine_minds_portal == APP + DEFAULT_CLIENT_PORTAL_PATH  # CLIENT_PORTAL_URL unset
    assert LINKS.nine_minds_portal == PORTAL


def test_strict_undefined_raises_instead_of_rendering_nothing() -> None:
    with pytest.raises(jinja2.UndefinedError):
        environment().from_string("Hello {{ nobody }}").render()


@pytest.mark.parametrize("template", list(EmailTemplate))
def test_preview_samples_render_every_template_with_a_visible_secret_placeholder(template: EmailTemplate) -> None:
    _, html, text = render(template, sample_values(template), links=LINKS)
    if spec_of(template).secrets:
        assert SAMPLE_SECRET in text and html_lib.escape(SAMPLE_SECRET) in html
    assert "{{" not in html + text

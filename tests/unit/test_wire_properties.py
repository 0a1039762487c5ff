"""Property tests of the wire models against generated hostile input.

Whatever a caller sends, decoding it with :func:`alga_worker.models.parse_wire` either gives a model
that satisfies the documented invariants (text trimmed and free of forbidden characters, the email
exactly the sent address with ASCII letters lower-cased, ``licenseCount`` a real JSON integer in range,
only documented camelCase keys) or raises a pydantic ``ValidationError``: never any other exception.
Python code validating the decoded document agrees with the wire path.

Reproducible in CI: ``derandomize=True`` and no example database; about 1,800 generated inputs a run.
"""

from __future__ import annotations

import json
import re
import string
import unicodedata
from typing import Any
from uuid import UUID

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from alga_worker.models import CancelRequest, TenantCreationInput, dump_wire, parse_wire


def profile(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


# ---------------------------------------------------------------- the contract

# Control, format, surrogate, private-use, unassigned, line and paragraph separator (spelt out here,
# independently of the implementation's own table).
FORBIDDEN_TEXT_CATEGORIES = ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")

TEXT_LIMITS = {"tenantName": 255, "clientName": 255, "companyName": 255, "billingPlan": 255, "contractLine": 255}
ADMIN_TEXT_LIMITS = {"firstName": 100, "lastName": 100}
TOP_KEYS = {*TEXT_LIMITS, "adminUser", "licenseCount", "checkoutSessionId", "tenantId"}
ADMIN_KEYS = {*ADMIN_TEXT_LIMITS, "email"}
SNAKE = {"tenantName": "tenant_name", "adminUser": "admin_user", "clientName": "client_name",
         "companyName": "company_name", "licenseCount": "license_count", "checkoutSessionId": "checkout_session_id",
         "billingPlan": "billing_plan", "contractLine": "contract_line", "tenantId": "tenant_id",
         "firstName": "first_name", "lastName": "last_name", "email": "email"}
ATTR = SNAKE  # the Python attribute of each wire name
SESSION_ID = re.compile(r"[A-Za-z0-9_\-]{1,255}")
SPECIAL_USE = {"arpa", "invalid", "local", "localhost", "onion", "test"}


def ascii_lower(value: str) -> str:
    return value.translate(str.maketrans(string.ascii_uppercase, string.ascii_lowercase))


def clean_text(value: Any, sent: Any, limit: int) -> None:
    assert isinstance(sent, str)
    assert isinstance(value, str)
    # Refused wherever it stands, even where trimming would have removed it.
    assert not [c for c in sent if unicodedata.category(c) in FORBIDDEN_TEXT_CATEGORIES]
    assert value == sent.strip()
    assert value == value.strip()
    assert 1 <= len(value) <= limit
    assert not [c for c in value if unicodedata.category(c) in FORBIDDEN_TEXT_CATEGORIES]


def check_email(stored: str, sent: Any) -> None:
    assert isinstance(sent, str)
    assert stored == ascii_lower(sent.strip(string.whitespace))  # the sent address, nothing mapped
    assert stored.isascii()
    assert stored == stored.lower()
    assert len(stored) <= 254
    local, _, domain = stored.rpartition("@")
    assert local and len(local) <= 64
    assert '"' not in local and "@" not in local
    assert not domain.startswith("[")
    tld = domain.rsplit(".", 1)[-1]
    assert "." in domain and tld[-1].isalpha()
    assert tld not in SPECIAL_USE


def check_accepted(model: TenantCreationInput, sent: Any) -> None:
    """Everything the docstring of ``alga_worker.models`` promises about an accepted input."""
    assert isinstance(sent, dict)
    assert set(sent) <= TOP_KEYS  # unknown and snake_case keys never get through
    admin = sent["adminUser"]
    assert isinstance(admin, dict) and set(admin) <= ADMIN_KEYS
    for key, limit in TEXT_LIMITS.items():
        value = getattr(model, ATTR[key])
        if sent.get(key) is None:
            assert value is None
        else:
            clean_text(value, sent[key], limit)
    for key, limit in ADMIN_TEXT_LIMITS.items():
        clean_text(getattr(model.admin_user, ATTR[key]), admin[key], limit)
    check_email(model.admin_user.email, admin["email"])
    count = sent.get("licenseCount")
    if count is None:
        assert model.license_count is None
    else:
        assert type(count) is int and type(model.license_count) is int  # bool is an int subclass: not here
        assert model.license_count == count and 1 <= count <= 100_000
    session = sent.get("checkoutSessionId")
    assert model.checkout_session_id == session
    if session is not None:
        assert SESSION_ID.fullmatch(session)
    tenant_id = sent.get("tenantId")
    if tenant_id is None:
        assert model.tenant_id is None
    else:
        assert isinstance(tenant_id, str) and isinstance(model.tenant_id, UUID)
        assert UUID(tenant_id) == model.tenant_id
    # What the workflow stores and sends on is itself valid wire input, and decodes to the same model.
    assert parse_wire(TenantCreationInput, json.dumps(dump_wire(model)).encode()) == model


def check_refused(err: ValidationError) -> None:
    problems = err.errors(include_url=False)
    assert problems
    assert "input_value" not in str(err)  # hide_input_in_errors: the string form never repeats input
    for problem in problems:
        sent = problem.get("input")
        if problem["type"].startswith(("text_", "email_")) and isinstance(sent, str) and len(sent.strip()) >= 6:
            assert sent.strip() not in problem["msg"]


def has_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    if isinstance(value, list):
        return any(has_surrogate(v) for v in value)
    if isinstance(value, dict):
        return any(has_surrogate(k) or has_surrogate(v) for k, v in value.items())
    return False


def decode(model: type[BaseModel], data: bytes) -> BaseModel | None:
    """The model, or None after checking the refusal. Any other exception fails the test."""
    try:
        return parse_wire(model, data)
    except ValidationError as err:
        check_refused(err)
        return None


def verdict(doc: Any) -> TenantCreationInput | None:
    """Decode one generated document the way the workflow does, and check whichever way it went."""
    model = decode(TenantCreationInput, json.dumps(doc).encode())
    event("accepted" if model is not None else "refused")
    if model is not None:
        assert isinstance(model, TenantCreationInput)
        check_accepted(model, doc)
    # Python code validating the decoded document agrees. (A JSON text escapes surrogates, and two of
    # them in a row are one real character there: only surrogate-free documents compare.)
    if not has_surrogate(doc):
        try:
            python = TenantCreationInput.model_validate(doc, by_alias=True, by_name=False)
        except ValidationError:
            python = None
        assert python == model
    return model


# ---------------------------------------------------------------- generators

# The category first, so that the one-character categories (Zl, Zp) come up as often as the others.
FORBIDDEN_CHAR = st.sampled_from(FORBIDDEN_TEXT_CATEGORIES).flatmap(
    lambda category: st.characters(categories=[category], codec=None)  # type: ignore[list-item]
)
# Characters that NFC, NFKC or UTS-46 map to (other) ASCII letters, plus a combining mark.
MAPPING_CHAR = st.sampled_from(["\u212a", "\u212b", "\u0130", "\u0131", "\u017f", "\uff41", "\uff2b", "\ufb01",
                                "\ufb00", "\u2160", "\U0001d41a", "\u00b2", "\u24d0", "\u0301", "\uff20", "\u3002"])
ANY_TEXT = st.one_of(
    st.text(max_size=20),
    st.text(st.characters(codec=None, min_codepoint=0, max_codepoint=0x10FFFF), max_size=20),  # surrogates too
    st.text(st.characters(max_codepoint=0x7F), max_size=20),
    st.text(FORBIDDEN_CHAR, max_size=5),
)
NAME_CHAR = st.characters(exclude_categories=list(FORBIDDEN_TEXT_CATEGORIES))  # type: ignore[arg-type]
PADDING = st.text(st.sampled_from(" \u00a0\u2003\u3000"), max_size=3)


@st.composite
def names(draw: st.DrawFn, limit: int = 60) -> str:
    core = draw(st.text(NAME_CHAR, min_size=1, max_size=min(limit, 60)).filter(lambda s: bool(s.strip())))
    return draw(PADDING) + core.strip() + draw(PADDING)


@st.composite
def inserted(draw: st.DrawFn, base: st.SearchStrategy[str], char: st.SearchStrategy[str], inside: bool = False) -> str:
    """``base`` with one ``char`` put anywhere (or, with ``inside``, neither first nor last)."""
    value, extra = draw(base), draw(char)
    at = draw(st.integers(1, max(1, len(value) - 1)) if inside else st.integers(0, len(value)))
    return value[:at] + extra + value[at:]


ATEXT = string.ascii_letters + string.digits + "!#$%&'*+/=?^_`{|}~-"
LABEL = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9-]{0,8}[A-Za-z0-9])?", fullmatch=True).filter(lambda s: "--" not in s)
TLD = st.one_of(st.sampled_from(["com", "org", "example", "DE", "Co", "uk", "museum"]),
                st.text(st.sampled_from(string.ascii_letters), min_size=2, max_size=6)
                .filter(lambda t: t.lower() not in SPECIAL_USE))


@st.composite
def emails(draw: st.DrawFn) -> str:
    local = ".".join(draw(st.lists(st.text(st.sampled_from(ATEXT), min_size=1, max_size=10), min_size=1,
                                   max_size=3)))
    if draw(st.booleans()):
        domain = ".".join([*draw(st.lists(LABEL, min_size=1, max_size=3)), draw(TLD)])
    else:
        domain = draw(st.sampled_from(["xn--mnchen-3ya.de", "XN--MNCHEN-3YA.DE", "mail.xn--bcher-kva.example",
                                       "xn--80ak6aa92e.com"]))
    pad = st.text(st.sampled_from(" \t\r\n"), max_size=2)
    return draw(pad) + f"{local}@{domain}" + draw(pad)


@st.composite
def valid_documents(draw: st.DrawFn) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "tenantName": draw(names(255)),
        "adminUser": {"firstName": draw(names(100)), "lastName": draw(names(100)), "email": draw(emails())},
    }
    optional: dict[str, st.SearchStrategy[Any]] = {
        "clientName": names(255), "companyName": names(255), "billingPlan": names(255),
        "contractLine": names(255), "licenseCount": st.integers(1, 100_000),
        "checkoutSessionId": st.from_regex(r"[A-Za-z0-9_\-]{1,40}", fullmatch=True),
        "tenantId": st.uuids().flatmap(lambda u: st.sampled_from([str(u), str(u).upper()])),
    }
    for key, strategy in optional.items():
        choice = draw(st.integers(0, 3))
        if choice == 1:
            doc[key] = None
        elif choice >= 2:
            doc[key] = draw(strategy)
    return doc


JSON_SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-(10**30), 10**30), st.floats(), ANY_TEXT)
JSON_VALUE = st.recursive(
    JSON_SCALAR,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(ANY_TEXT, inner, max_size=4)),
    max_leaves=12,
)
KEY = st.one_of(st.sampled_from(sorted({*TOP_KEYS, *ADMIN_KEYS, *SNAKE.values()})), ANY_TEXT,
                st.sampled_from(sorted(TOP_KEYS)).map(str.upper), st.sampled_from(sorted(TOP_KEYS)).map(str.lower))
# Values a lenient validator would coerce, and values that look right but are not.
LOOKALIKE: st.SearchStrategy[Any] = st.sampled_from([
    "5", "true", True, False, 5.0, 1e3, -1, 0, 100_001, 2**63, "", " ", None, [], {},
    "6f1c2b9e-3d4a-4f5b-8c7d-9e0f1a2b3c4d", "ada@acme.example", "a" * 65 + "@acme.example",
    "ada@1.2.3.4", "ada@[1.2.3.4]", "ada@example.123", '"ada"@acme.example', "ada@acme.test", "x" * 256,
])


NOT_A_STRING = st.sampled_from([5, 0, True, False, 5.0, None, [], ["Acme"], {}, {"value": "Acme"}])


@st.composite
def bad_emails(draw: st.DrawFn) -> str:
    """Addresses of the refused shapes, built around a valid one."""
    local, _, domain = draw(emails()).strip().rpartition("@")
    shape = draw(st.integers(0, 7))
    if shape == 0:
        return "a" * draw(st.integers(65, 80)) + "@" + domain  # local part over 64 octets
    if shape == 1:
        return local + "@" + ".".join(str(draw(st.integers(0, 255))) for _ in range(4))  # bare IP
    if shape == 2:
        return local + "@[" + draw(st.sampled_from(["1.2.3.4", "IPv6:2001:db8::1", "127.0.0.1"])) + "]"
    if shape == 3:
        return local + "@" + domain + "." + str(draw(st.integers(0, 999)))  # numeric TLD
    if shape == 4:
        return '"' + local + draw(st.sampled_from(["", " ", "@", "\\\""])) + '"@' + domain  # quoted
    if shape == 5:
        return local + "@" + domain.rsplit(".", 1)[0] + "." + draw(st.sampled_from(sorted(SPECIAL_USE)))
    if shape == 6:
        return f"Ada <{local}@{domain}>"
    # Inside: an ASCII space or control character at either end is trimmed, which is fine.
    return draw(inserted(st.just(local + "@" + domain),
                         st.one_of(MAPPING_CHAR, FORBIDDEN_CHAR,
                                   st.sampled_from(['"', "@", "[", "]", " ", "\\", "(", ",", ";", "<", ".."])),
                         inside=True))


TEXT_HOSTILE = st.one_of(
    inserted(names(), FORBIDDEN_CHAR),
    st.sampled_from(["", " ", "\u00a0\u3000", "x" * 256, "y" * 101, " " + "z" * 100 + " "]),
    NOT_A_STRING,
)
FIELD_HOSTILE: dict[str, st.SearchStrategy[Any]] = {
    **dict.fromkeys([*TEXT_LIMITS, *ADMIN_TEXT_LIMITS], TEXT_HOSTILE),
    "email": st.one_of(bad_emails(), NOT_A_STRING),
    "licenseCount": st.one_of(
        st.sampled_from(["5", "5.0", "true", "", True, False, 5.0, 1e3, 0, -1, 100_001, 2**63, [5], {"n": 5}]),
        st.integers(-(10**6), 10**6), st.floats()),
    "checkoutSessionId": st.one_of(
        inserted(st.from_regex(r"[A-Za-z0-9_\-]{1,20}", fullmatch=True),
                 st.one_of(FORBIDDEN_CHAR, st.sampled_from([" ", "/", ".", "\n", "\u0661", "\uff41"]))),
        st.sampled_from(["", "x" * 256]), NOT_A_STRING),
    "tenantId": st.uuids().flatmap(lambda u: st.sampled_from([
        str(u)[:-1], str(u) + "0", str(u) + "\n", " " + str(u), "not-a-uuid", "", str(u).replace("-", "_"),
        u.int, u.int % 2**53, True, [str(u)], {"id": str(u)},
    ])),
    "adminUser": st.one_of(NOT_A_STRING, st.sampled_from(["ada@acme.example", "Ada"]), JSON_VALUE),
}


@st.composite
def hostile_values(draw: st.DrawFn, key: str) -> Any:
    """Mostly what would break this field in particular; sometimes any JSON value at all."""
    return draw(st.one_of(FIELD_HOSTILE[key], FIELD_HOSTILE[key], LOOKALIKE, JSON_VALUE))


@st.composite
def mutated_documents(draw: st.DrawFn) -> dict[str, Any]:
    """A valid document with one thing changed: a value replaced or removed, a key renamed or added."""
    doc = draw(valid_documents())
    admin_field = draw(st.booleans())
    target = doc["adminUser"] if admin_field else doc
    keys = sorted(ADMIN_KEYS) if admin_field else sorted(TOP_KEYS)
    key = draw(st.sampled_from(keys))
    action = draw(st.sampled_from(["replace"] * 6 + ["delete", "rename", "add"]))
    if action == "replace":
        target[key] = draw(hostile_values(key))
    elif action == "delete":
        target.pop(key, None)
    elif action == "rename" and key in target:
        target[draw(st.sampled_from([SNAKE[key], key.lower(), key.upper(), key + " "]))] = target.pop(key)
    else:
        target[draw(KEY)] = draw(JSON_VALUE)
    return doc


# ---------------------------------------------------------------- properties


@profile(200)
@given(valid_documents())
def test_valid_documents_are_accepted_as_sent(doc: dict[str, Any]) -> None:
    assert verdict(doc) is not None


@profile(400)
@given(mutated_documents())
def test_mutated_documents_are_refused_or_still_valid(doc: dict[str, Any]) -> None:
    verdict(doc)


@profile(250)
@given(st.one_of(st.dictionaries(KEY, JSON_VALUE, max_size=8), JSON_VALUE))
def test_arbitrary_json_is_refused_or_valid(doc: Any) -> None:
    verdict(doc)


def refused_at(doc: dict[str, Any], loc: tuple[str, ...]) -> None:
    """The wire and Python paths both refuse ``doc``, and the wire path names exactly ``loc``."""
    with pytest.raises(ValidationError) as info:
        parse_wire(TenantCreationInput, json.dumps(doc).encode())
    check_refused(info.value)
    if has_surrogate(doc):  # JSON text cannot carry a lone surrogate: the parser refuses the document,
        assert [e["type"] for e in info.value.errors()] == ["json_invalid"]
        with pytest.raises(ValidationError) as python:  # and Python code refuses the field
            TenantCreationInput.model_validate(doc, by_alias=True, by_name=False)
        assert {tuple(e["loc"]) for e in python.value.errors()} == {loc}
    else:
        assert {tuple(e["loc"]) for e in info.value.errors()} == {loc}
        with pytest.raises(ValidationError):
            TenantCreationInput.model_validate(doc, by_alias=True, by_name=False)


def place(doc: dict[str, Any], key: str, value: Any) -> tuple[str, ...]:
    if key in ADMIN_KEYS:
        doc["adminUser"][key] = value
        return ("adminUser", key)
    doc[key] = value
    return (key,)


TEXT_KEYS = sorted([*TEXT_LIMITS, *ADMIN_TEXT_LIMITS])


@profile(200)
@given(valid_documents(), st.sampled_from(TEXT_KEYS), inserted(names(), FORBIDDEN_CHAR))
def test_a_forbidden_character_anywhere_in_text_is_refused(doc: dict[str, Any], key: str, text: str) -> None:
    refused_at(doc, place(doc, key, text))


# Right value, wrong JSON type: what a lenient validator would quietly convert.
WRONG_TYPE: dict[str, st.SearchStrategy[Any]] = {
    **dict.fromkeys(TEXT_KEYS, st.one_of(st.integers(), st.floats(), st.booleans(), st.lists(names(), max_size=2))),
    "email": st.one_of(st.integers(), st.booleans(), st.lists(emails(), min_size=1, max_size=2)),
    "licenseCount": st.one_of(st.integers(1, 100_000).map(str), st.integers(1, 100_000).map(float),
                              st.booleans(), st.integers(1, 100_000).map(lambda n: [n])),
    "checkoutSessionId": st.one_of(st.integers(), st.booleans(), st.floats()),
    "tenantId": st.one_of(st.uuids().map(lambda u: u.int), st.booleans(), st.uuids().map(lambda u: [str(u)])),
}


@profile(150)
@given(valid_documents(), st.sampled_from(sorted(WRONG_TYPE)).flatmap(
    lambda key: st.tuples(st.just(key), WRONG_TYPE[key])))
def test_values_of_the_wrong_json_type_are_refused(doc: dict[str, Any], wrong: tuple[str, Any]) -> None:
    key, value = wrong
    refused_at(doc, place(doc, key, value))


@profile(150)
@given(valid_documents(), bad_emails())
def test_refused_address_shapes_are_refused(doc: dict[str, Any], email: str) -> None:
    refused_at(doc, place(doc, "email", email))


@profile(100)
@given(valid_documents(), st.sampled_from(sorted(k for k in SNAKE if SNAKE[k] != k)), st.data())
def test_other_spellings_of_a_key_are_unknown(doc: dict[str, Any], key: str, data: st.DataObject) -> None:
    target = doc["adminUser"] if key in ADMIN_KEYS else doc
    spelling = data.draw(st.sampled_from([SNAKE[key], key.lower(), key.upper(), key[0].upper() + key[1:]]))
    target[spelling] = target.pop(key, "Acme")
    with pytest.raises(ValidationError) as info:
        parse_wire(TenantCreationInput, json.dumps(doc).encode())
    where = ("adminUser", spelling) if key in ADMIN_KEYS else (spelling,)
    assert where in {tuple(e["loc"]) for e in info.value.errors() if e["type"] == "extra_forbidden"}


@profile(100)
@given(st.one_of(st.dictionaries(st.sampled_from(["reason", "cancelledBy", "cancelled_by", "x"]),
                                 st.one_of(names(), inserted(names(), FORBIDDEN_CHAR), JSON_VALUE), max_size=3),
                 JSON_VALUE))
def test_cancel_requests(doc: Any) -> None:
    model = decode(CancelRequest, json.dumps(doc).encode())
    if model is not None:
        assert isinstance(model, CancelRequest) and isinstance(doc, dict) and set(doc) <= {"reason", "cancelledBy"}
        clean_text(model.reason, doc.get("reason", "cancelled by operator"), 500)
        clean_text(model.cancelled_by, doc.get("cancelledBy", "unknown"), 200)


VALID_BYTES = json.dumps({"tenantName": "Acme", "licenseCount": 5, "adminUser": {
    "firstName": "Ada", "lastName": "L\u00f6velace", "email": "Ada@Acme.Example"}}, ensure_ascii=False).encode()
BAD_UTF8 = [b"\xff", b"\xc3", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x80", b"\x80"]


@st.composite
def raw_payloads(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 4))
    if kind == 0:
        return draw(st.binary(max_size=300))
    if kind == 1:  # truncated
        return VALID_BYTES[: draw(st.integers(0, len(VALID_BYTES) - 1))]
    if kind == 2:  # invalid UTF-8 somewhere
        at = draw(st.integers(0, len(VALID_BYTES)))
        return VALID_BYTES[:at] + draw(st.sampled_from(BAD_UTF8)) + VALID_BYTES[at:]
    if kind == 3:  # one byte changed
        at = draw(st.integers(0, len(VALID_BYTES) - 1))
        return VALID_BYTES[:at] + bytes([draw(st.integers(0, 255))]) + VALID_BYTES[at + 1:]
    depth = draw(st.integers(1, 20_000))  # deep nesting, closed or not, at the top or in a field
    opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}")]))
    body = opener * depth + b"1" + (closer * depth if draw(st.booleans()) else b"")
    return b'{"tenantName": ' + body + b"}" if draw(st.booleans()) else body


@profile(250)
@given(raw_payloads())
def test_raw_bytes_are_refused_with_validation_error_only(data: bytes) -> None:
    model = decode(TenantCreationInput, data)
    event("accepted" if model is not None else "refused")
    if model is not None:  # only an intact document (or a harmless byte change) gets through
        assert isinstance(model, TenantCreationInput)
        check_accepted(model, json.loads(data))


@pytest.mark.parametrize("data", [
    b"[" * 10_000 + b"]" * 10_000,
    b"[" * 10_000,
    b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
    b'{"tenantName": ' + b"[" * 10_000 + b"]" * 10_000 + b"}",
    b'{"adminUser": ' + b'{"email":' * 10_000 + b'"a@b.co"' + b"}" * 10_001,
    b"",
    b"   ",
    b"\xef\xbb\xbf{}",
    b"null",
    b'{"tenantName": "\\ud800"}',
    b'{"licenseCount": 1' + b"0" * 5000 + b"}",
    b'{"licenseCount": 1e400}',
    b'{"licenseCount": NaN}',
    *[VALID_BYTES.replace(b"Acme", b"Ac" + bad + b"me") for bad in BAD_UTF8],
    *[VALID_BYTES[:n] for n in range(len(VALID_BYTES))],
])
def test_malformed_payloads_are_validation_errors(data: bytes) -> None:
    with pytest.raises(ValidationError) as info:
        parse_wire(TenantCreationInput, data)
    check_refused(info.value)


def test_the_intact_payload_is_accepted() -> None:
    model = parse_wire(TenantCreationInput, VALID_BYTES)
    assert model.admin_user.email == "ada@acme.example"
    assert model.admin_user.last_name == "L\u00f6velace"

"""docs/configuration.md lists exactly the variables alga_worker.config declares, with their defaults and flags."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from alga_worker.config import CODEC_SERVER_VARIABLES, OTEL_VARIABLES, TEMPORAL_VARIABLES, VARIABLES, Variable

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
HEADER = ["Variable", "Default", "Secret", "Meaning"]
UNSET = "—"
NAME_RE = re.compile(r"^`([A-Z][A-Z0-9_]*)`$")
ALL_VARIABLES: tuple[Variable, ...] = (*VARIABLES, *TEMPORAL_VARIABLES, *OTEL_VARIABLES, *CODEC_SERVER_VARIABLES)

# Group heading (a word in it) -> names that must be documented under it.
GROUPS: dict[str, set[str]] = {
    "Temporal": {"TEMPORAL_TASK_QUEUE", "TEMPORAL_WORKER_DEPLOYMENT_NAME"} | {v.name for v in TEMPORAL_VARIABLES},
    "Database": {v.name for v in VARIABLES if v.name.startswith("DB_")} | {"DATABASE_URL"},
    "Passwords": {"ALGA_AUTH_KEY", "PASSWORD_PEPPER_VARIABLE", "SALT_BYTES", "ITERATIONS", "KEY_LENGTH",
                  "ALGORITHM"},
    "Email": {v.name for v in VARIABLES if v.name.startswith(("EMAIL_", "RESEND_", "SMTP_"))} | {"OPERATIONS_EMAIL"},
    "nm-store": {"INTERNAL_API_SHARED_SECRET", "NMSTORE_BASE_URL", "NM_STORE_URL", "TEMPORAL_WEBHOOK_SECRET",
                 "APPLICATION_URL"},
    "Stripe": {"STRIPE_SECRET_KEY", "STRIPE_API_BASE", "MASTER_BILLING_TENANT_ID", "MANAGEMENT_TENANT_ID",
               "CLIENT_PORTAL_URL"},
    "tuning": {"MAX_CONCURRENT_ACTIVITIES", "MAX_CONCURRENT_WORKFLOWS", "MAX_CACHED_WORKFLOWS",
               "WORKFLOW_TASK_POLLERS", "ACTIVITY_TASK_POLLERS", "GRACEFUL_SHUTDOWN_TIMEOUT"},
    "Health": {"ENABLE_HEALTH_CHECK", "HEALTH_CHECK_PORT", "HEALTH_CHECK_HOST", "METRICS_HOST", "METRICS_PORT",
               "LOG_LEVEL", "LOG_FORMAT", "NODE_ENV", "BUILD_ID"},
    "Secrets": {"SECRETS_DIR", "SECRETS_PRECEDENCE"},
    "Tracing": {v.name for v in OTEL_VARIABLES},
    "Tenant exports": {v.name for v in VARIABLES if v.name.startswith(("EXPORT_", "TENANT_DELETION_"))},
    "Payload encryption": {"PAYLOAD_KEYS", "PAYLOAD_ACTIVE_KEY_ID", "PAYLOAD_ENCRYPTION"},
    "Codec server": {v.name for v in CODEC_SERVER_VARIABLES},
}


@dataclass(frozen=True)
class Row:
    heading: str
    name: str
    default: str
    secret: str
    meaning: str


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _tables(text: str) -> list[tuple[str, list[str], list[list[str]]]]:
    """(heading, header cells, body rows) for every markdown table."""
    tables: list[tuple[str, list[str], list[list[str]]]] = []
    heading = ""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        if line.startswith("|") and i + 1 < len(lines) and re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", lines[i + 1]):
            header = _cells(line)
            body: list[list[str]] = []
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                body.append(_cells(lines[i]))
                i += 1
            tables.append((heading, header, body))
            continue
        i += 1
    return tables


@pytest.fixture(scope="module")
def text() -> str:
    return DOC.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def rows(text: str) -> list[Row]:
    found: list[Row] = []
    for heading, header, body in _tables(text):
        if header != HEADER:
            continue
        for cells in body:
            assert len(cells) == 4, f"{heading}: malformed row {cells}"
            match = NAME_RE.match(cells[0])
            assert match, f"{heading}: first cell is not a `VARIABLE`: {cells[0]!r}"
            found.append(Row(heading, match.group(1), cells[1], cells[2], cells[3]))
    return found


def _expected_default(var: Variable) -> str:
    return UNSET if var.default is None else f"`{var.default}`"


def test_the_doc_has_one_variable_table_per_group(text: str) -> None:
    headings = [heading for heading, header, _ in _tables(text) if header == HEADER]
    assert len(headings) == len(GROUPS) == len(set(headings))
    for group in GROUPS:
        assert sum(group.lower() in h.lower() for h in headings) == 1, group


@pytest.mark.parametrize("var", ALL_VARIABLES, ids=lambda v: v.name)
def test_every_declared_variable_has_one_row_with_its_default_and_secret_flag(rows: list[Row],
                                                                              var: Variable) -> None:
    matching = [row for row in rows if row.name == var.name]
    assert len(matching) == 1, f"{var.name} documented {len(matching)} times"
    row = matching[0]
    assert row.default == _expected_default(var), f"{var.name}: doc says {row.default}"
    assert row.secret == ("yes" if var.secret else "no"), f"{var.name}: doc says secret={row.secret}"
    assert len(row.meaning) > 10


def test_no_undeclared_variable_in_any_table(text: str, rows: list[Row]) -> None:
    declared = {v.name for v in ALL_VARIABLES}
    assert {row.name for row in rows} <= declared
    # Any other table whose first column names a variable must name a declared one too.
    for heading, _, body in _tables(text):
        for cells in body:
            match = NAME_RE.match(cells[0])
            if match:
                assert match.group(1) in declared, f"{heading}: {match.group(1)} is not declared in config.py"


def test_variables_are_in_their_group(rows: list[Row]) -> None:
    for group, names in GROUPS.items():
        documented = {row.name for row in rows if group.lower() in row.heading.lower()}
        assert documented == names, group
    grouped = set().union(*GROUPS.values())
    assert grouped == {v.name for v in ALL_VARIABLES}


def test_sources_precedence_and_file_format_are_documented(text: str) -> None:
    for phrase in ("SECRETS_DIR", "SECRETS_PRECEDENCE", "/vault/secrets", "export NAME=", "`files`", "`env`",
                   "file-name order", "shlex"):
        assert phrase in text, phrase


def test_exit_code_and_no_values_in_errors_are_documented(text: str) -> None:
    assert re.search(r"exits? with \*\*code 2\*\*", text)
    assert "never the value" in text


def test_pepper_variable_and_nextauth_switch_are_documented(text: str) -> None:
    assert "PASSWORD_PEPPER_VARIABLE=NEXTAUTH_SECRET" in text
    assert "PASSWORD_PEPPER_VARIABLE: NEXTAUTH_SECRET" in text
    assert "2025-07-30" in text
    assert "X-Internal-Secret" in text
    section = text[text.index("## 4."):]
    assert "ALGA_AUTH_KEY" in section
    assert "INTERNAL_API_SHARED_SECRET" in section


def test_documented_chart_snippet_names_only_real_secrets(text: str) -> None:
    """The Vault example must deliver only secret variables (plus the pepper's configured name)."""
    secrets = {v.name for v in ALL_VARIABLES if v.secret} | {"NEXTAUTH_SECRET"}
    snippet = text[text.index("```yaml"):]
    snippet = snippet[:snippet.index("```", 3)]
    for name in re.findall(r"^\s+([A-Z][A-Z0-9_]+): [a-z_]+$", snippet, flags=re.MULTILINE):
        assert name in secrets, name

"""JSON log lines, and redaction of every configured secret wherever it appears in a record."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from alga_worker.runtime.logging import (
    REDACTED,
    ConsoleFormatter,
    JsonFormatter,
    Redactor,
    configure_logging,
    redactor,
)

SECRET = "s3cret-pepper-VALUE-9f2e"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """configure_logging replaces the root handlers; put everything back after the test."""
    root = logging.getLogger()
    handlers = list(root.handlers)
    level = root.level
    pool_level = logging.getLogger("psycopg.pool").level
    shared = redactor()
    known = list(shared._secrets)  # the process-wide redactor only grows; restore its list too
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("psycopg.pool").setLevel(pool_level)
    shared._secrets = known


def _record(msg: str, *args: object, exc_info: Any = None, **extra: Any) -> logging.LogRecord:
    record = logging.LogRecord("alga.test", logging.WARNING, __file__, 10, msg, args or None, exc_info)
    record.__dict__.update(extra)
    return record


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


# ---------------------------------------------------------------- Redactor


def test_redactor_replaces_every_occurrence() -> None:
    redact = Redactor([SECRET])
    assert redact(f"a {SECRET} b {SECRET}") == f"a {REDACTED} b {REDACTED}"
    assert redact("nothing here") == "nothing here"


def test_redactor_longest_secret_first() -> None:
    redact = Redactor(["abcd", "abcdefgh"])
    assert redact("x abcdefgh y") == f"x {REDACTED} y"
    redact = Redactor(["abcdefgh", "abcd"])
    assert redact("x abcdefgh y abcd") == f"x {REDACTED} y {REDACTED}"


def test_redactor_ignores_short_secrets() -> None:
    redact = Redactor(["", "a", "ab", "abc"])
    assert redact("a cab abc") == "a cab abc"
    redact.add(["abcd"])
    assert redact("abcd abc") == f"{REDACTED} abc"


def test_redactor_add_merges_and_deduplicates() -> None:
    redact = Redactor(["first-secret"])
    redact.add(["second-secret", "first-secret"])
    assert redact("first-secret second-secret") == f"{REDACTED} {REDACTED}"


# ---------------------------------------------------------------- JsonFormatter


def test_json_line_has_standard_fields_and_extras() -> None:
    formatter = JsonFormatter(Redactor(), static={"service": "alga-worker", "build_id": "abc123"})
    line = formatter.format(_record("created %s for %d users", "tenant", 3, tenant_id="t-1", rows={"users": 1}))
    assert "\n" not in line
    doc = json.loads(line)
    assert doc["level"] == "warning"
    assert doc["logger"] == "alga.test"
    assert doc["message"] == "created tenant for 3 users"
    assert doc["tenant_id"] == "t-1"
    assert doc["rows"] == {"users": 1}
    assert doc["service"] == "alga-worker"
    assert doc["build_id"] == "abc123"
    assert doc["ts"].endswith("+00:00")
    assert "T" in doc["ts"]
    for internal in ("args", "msg", "levelno", "pathname", "exc_info", "thread"):
        assert internal not in doc


def test_temporal_context_is_flattened() -> None:
    formatter = JsonFormatter(Redactor())
    line = formatter.format(_record("activity log", temporal_activity={
        "workflow_id": "tenant-creation-1", "run_id": "r-1", "activity_id": "3",
        "activity_type": "provision_tenant", "attempt": 2, "heartbeat_details": "not copied",
    }))
    doc = json.loads(line)
    assert doc["workflow_id"] == "tenant-creation-1"
    assert doc["activity_type"] == "provision_tenant"
    assert doc["attempt"] == 2
    assert "temporal_activity" not in doc
    assert "heartbeat_details" not in doc


def test_non_json_values_are_stringified() -> None:
    class Thing:
        def __str__(self) -> str:
            return "thing-as-text"

    doc = json.loads(JsonFormatter(Redactor()).format(_record("x", obj=Thing())))
    assert doc["obj"] == "thing-as-text"


def test_secret_in_message_is_redacted() -> None:
    formatter = JsonFormatter(Redactor([SECRET]))
    line = formatter.format(_record("pepper is %s", SECRET))
    assert SECRET not in line
    assert json.loads(line)["message"] == f"pepper is {REDACTED}"


def test_secret_in_extra_field_is_redacted() -> None:
    formatter = JsonFormatter(Redactor([SECRET]))
    line = formatter.format(_record("connecting", dsn=f"postgresql://u:{SECRET}@h/db", nested={"k": SECRET}))
    assert SECRET not in line
    doc = json.loads(line)
    assert doc["dsn"] == f"postgresql://u:{REDACTED}@h/db"
    assert doc["nested"] == {"k": REDACTED}


def test_secret_in_exception_traceback_is_redacted() -> None:
    formatter = JsonFormatter(Redactor([SECRET]))
    try:
        raise RuntimeError(f"could not authenticate with {SECRET}")
    except RuntimeError:
        line = formatter.format(_record("failed", exc_info=sys.exc_info()))
    assert SECRET not in line
    doc = json.loads(line)
    assert "RuntimeError" in doc["exception"]
    assert "Traceback" in doc["exception"]
    assert REDACTED in doc["exception"]


@pytest.mark.parametrize("secret", ['pa"ss-word-1', "back\\slash-secret", "tab\tsecret-x", 'both"and\\here'])
def test_secrets_with_json_escaped_characters_are_redacted(secret: str) -> None:
    """Redaction must see the secret as written, not only its JSON-escaped form (``"`` → ``\\"``).

    Randomly generated database passwords and peppers do contain ``"`` and ``\\``.
    """
    formatter = JsonFormatter(Redactor([secret]))
    line = formatter.format(_record("value %s", secret, extra_field=secret))
    doc = json.loads(line)
    assert secret not in doc["message"]
    assert secret not in doc["extra_field"]
    assert secret not in json.dumps(doc)


def test_console_formatter_redacts() -> None:
    formatter = ConsoleFormatter(Redactor([SECRET]))
    line = formatter.format(_record("pepper %s", SECRET))
    assert SECRET not in line
    assert REDACTED in line
    assert "alga.test" in line


# ---------------------------------------------------------------- configure_logging


@pytest.mark.usefixtures("restore_logging")
def test_configure_logging_routes_everything_through_redaction() -> None:
    stream = io.StringIO()
    configure_logging("info", "json", secrets=[SECRET], static={"environment": "test"}, stream=stream)

    logging.getLogger("alga_worker.something").info("hello %s", SECRET, extra={"token": SECRET})
    logging.getLogger("temporalio.worker").warning("sdk says %s", SECRET)
    logging.getLogger("alga_worker.something").debug("debug is below the level")
    try:
        raise ValueError(SECRET)
    except ValueError:
        logging.getLogger("alga_worker.other").exception("boom")

    output = stream.getvalue()
    assert SECRET not in output
    docs = _lines(stream)
    assert [d["message"] for d in docs] == [f"hello {REDACTED}", f"sdk says {REDACTED}", "boom"]
    assert docs[0]["token"] == REDACTED
    assert docs[0]["environment"] == "test"
    assert docs[1]["logger"] == "temporalio.worker"
    assert docs[2]["level"] == "error"
    assert REDACTED in docs[2]["exception"]


@pytest.mark.usefixtures("restore_logging")
def test_configure_logging_replaces_existing_handlers() -> None:
    old_stream = io.StringIO()
    logging.getLogger().addHandler(logging.StreamHandler(old_stream))
    stream = io.StringIO()
    configure_logging("warning", "json", stream=stream)

    root = logging.getLogger()
    assert len(root.handlers) == 1
    assert root.level == logging.WARNING
    logging.getLogger("x").info("dropped")
    logging.getLogger("x").warning("kept")
    assert old_stream.getvalue() == ""
    assert [d["message"] for d in _lines(stream)] == ["kept"]
    assert logging.getLogger("psycopg.pool").level == logging.WARNING


@pytest.mark.usefixtures("restore_logging")
def test_secrets_added_later_are_redacted_too() -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream=stream)
    redactor().add(["late-added-secret-42"])
    logging.getLogger("x").info("value late-added-secret-42")
    assert "late-added-secret-42" not in stream.getvalue()


@pytest.mark.usefixtures("restore_logging")
def test_console_format_is_redacted() -> None:
    stream = io.StringIO()
    configure_logging("debug", "console", secrets=[SECRET], stream=stream)
    logging.getLogger("alga_worker.x").debug("secret=%s", SECRET)
    output = stream.getvalue()
    assert SECRET not in output
    assert f"secret={REDACTED}" in output

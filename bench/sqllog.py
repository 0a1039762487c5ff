"""Statements and round trips to PostgreSQL, counted by the server: its duration log, on for the probe.

Why the server's log and not only the worker's SQL spans: psycopg sends ``BEGIN`` and ``COMMIT``
(``conn.transaction()``) and the pool's connection check (psycopg_pool's ``check_connection``, an
empty query on every checkout) outside the instrumented cursor, so spans miss them, and the worker
drops statement-less spans. With ``log_min_duration_statement = 0`` PostgreSQL logs every message that
executes something, after it ran, with its duration, prefixed here with the backend's pid and
``application_name`` (the worker's pool connects as ``alga-temporal-worker``; the readiness probe and
the bench under other names, so they are not counted):

- ``duration: … ms  statement: SQL`` for a simple-protocol query: one round trip each (``BEGIN``,
  ``COMMIT``, statements without parameters, and the empty connection check);
- ``duration: … ms  parse …`` / ``bind …`` / ``execute …: SQL`` for a statement with parameters: psycopg
  sends the three messages together, so only ``execute`` counts, as one round trip.

Without pipelining (the worker does not pipeline) that is exactly one round trip per counted line; a
pipelined batch would be several lines in one round trip. Bound values are never logged
(``log_parameter_max_length = 0``), and the log lives in the ephemeral stack's pgdata, deleted with it.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import psycopg

POOL_APPLICATION_NAME = "alga-temporal-worker"
_PREFIX = "BENCH|"
_ENTRY = re.compile(r"^BENCH\|(?P<pid>\d+)\|(?P<app>[^|]*)\|LOG:\s+duration: (?P<ms>[\d.]+) ms\s+"
                    r"(?P<kind>statement|parse|bind|execute)[^:]*: ?(?P<sql>.*)$")
_SETTINGS = {"log_min_duration_statement": "0", "log_line_prefix": _PREFIX + "%p|%a|",
             "log_parameter_max_length": "0"}
_CONTROL = {"BEGIN": "begin", "START": "begin", "COMMIT": "commit", "END": "commit", "ROLLBACK": "rollback",
            "ABORT": "rollback", "SAVEPOINT": "savepoint", "RELEASE": "savepoint"}


@dataclass(frozen=True)
class StatementCounts:
    """What the pool's connections sent in a window."""

    statements: int  # SQL other than transaction control, either protocol
    control: dict[str, int]  # BEGIN / COMMIT / ROLLBACK / SAVEPOINT
    checks: int  # empty queries: the pool's connection check on each checkout
    server_ms: float  # the statements' own durations, as the server measured them
    kinds: dict[str, int]  # statements by their first three words ("INSERT INTO tenants")

    @property
    def round_trips(self) -> int:
        return self.statements + sum(self.control.values()) + self.checks

    def as_dict(self) -> dict[str, object]:
        return {"statements": self.statements, "transaction_control": self.control, "connection_checks": self.checks,
                "round_trips": self.round_trips, "server_sql_ms": self.server_ms, "statement_kinds": self.kinds}


class StatementLog:
    """``enable()`` / ``offset()`` / ``count(start, end)`` / ``disable()`` on the stack's PostgreSQL."""

    def __init__(self, conninfo: str, log_path: Path) -> None:
        self._conninfo = conninfo
        self.path = log_path

    async def _apply(self, statements: list[str]) -> None:
        async with await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True,
                                                         application_name="bench") as conn:
            for statement in statements:
                await conn.execute(statement)  # constants of this module only, never input
            await conn.execute("SELECT pg_reload_conf()")

    async def enable(self) -> None:
        """On for every backend from its next message (a reload; open connections pick it up too)."""
        await self._apply([f"ALTER SYSTEM SET {name} = '{value}'" for name, value in _SETTINGS.items()])

    async def disable(self) -> None:
        await self._apply([f"ALTER SYSTEM RESET {name}" for name in _SETTINGS])

    def offset(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def count(self, start: int, end: int, application_name: str = POOL_APPLICATION_NAME) -> StatementCounts:
        with self.path.open("rb") as f:
            f.seek(start)
            text = f.read(end - start).decode(errors="replace")
        control: Counter[str] = Counter()
        kinds: Counter[str] = Counter()
        statements = checks = 0
        server_ms = 0.0
        for entry in _entries(text):
            match = _ENTRY.match(entry[0])
            if match is None or match["app"] != application_name or match["kind"] in ("parse", "bind"):
                continue
            sql = " ".join([match["sql"], *entry[1:]]).strip()
            first = sql.split(None, 1)[0].rstrip(";").upper() if sql else ""
            server_ms += float(match["ms"])
            if not sql:
                checks += 1
            elif first in _CONTROL:
                control[_CONTROL[first]] += 1
            else:
                statements += 1
                kinds[" ".join(sql.split()[:3])[:48]] += 1
        return StatementCounts(statements=statements, control=dict(sorted(control.items())), checks=checks,
                               server_ms=server_ms, kinds=dict(sorted(kinds.items())))


def _entries(text: str) -> list[list[str]]:
    """Log entries: a prefixed line and the lines of a multi-line statement that follow it."""
    entries: list[list[str]] = []
    for line in text.splitlines():
        if line.startswith(_PREFIX) or not entries:
            entries.append([line])
        else:
            entries[-1].append(line)
    return entries

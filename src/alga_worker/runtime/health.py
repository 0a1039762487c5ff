"""``/healthz`` and ``/readyz`` that report real state (the original's answered 200 unconditionally).

Served from a thread with the stdlib HTTP server, so a blocked event loop cannot hide behind a
responsive probe: a loop-side task must keep refreshing ``last_loop_tick``, and liveness fails when it
stops.

- live:    only what a restart fixes: the worker's run task has not died and the event loop turns.
           Temporal and the database are deliberately not part of liveness: a restart fixes neither
           outage, and restarting every pod during one only adds a crash loop on top of it.
- ready:   the worker's run task is running (polling), Temporal and the database answered the last
           check (the database on the probe's own connection, never the activities' pool), the
           schema contract holds, and no SIGTERM has arrived. ``detail`` says what is missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import DictRow, dict_row

from alga_worker.db import schema_contract

LOOP_STALL_SECONDS = 30.0
CHECK_TIMEOUT_SECONDS = 3.0  # one database or Temporal check
SCHEMA_TIMEOUT_SECONDS = 15.0  # one schema-contract check (reads information_schema)
PROBE_APPLICATION_NAME = "alga-temporal-worker-probe"  # tells the probe apart in pg_stat_activity


@dataclass
class HealthState:
    """Mutable worker state, written by the event loop, read by the probe thread."""

    build_id: str = "dev"
    task_queue: str = ""
    worker_running: bool = False
    run_task_died: bool = False
    draining: bool = False
    temporal_ok: bool = False
    db_ok: bool = False
    schema_ok: bool = False
    # Consecutive failed checks, and why the last one failed (safe text: never a secret or a DSN).
    temporal_failures: int = 0
    db_failures: int = 0
    temporal_error: str | None = None
    db_error: str | None = None
    schema_problems: tuple[str, ...] = ()
    waiting_for: str | None = None  # start-up: the dependency the worker is waiting for
    last_loop_tick: float = field(default_factory=time.monotonic)
    detail: str | None = None  # why the run task ended
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # Called after every update (outside the lock): the readiness gauges follow the state at once, so
    # a scrape never contradicts /readyz.
    _on_change: Callable[[HealthState], None] | None = field(default=None, repr=False)

    def update(self, **changes: Any) -> None:
        with self._lock:
            for key, value in changes.items():
                if not hasattr(self, key) or key.startswith("_"):
                    raise AttributeError(key)
                setattr(self, key, value)
        if self._on_change is not None and set(changes) != {"last_loop_tick"}:
            self._on_change(self)

    def watch(self, callback: Callable[[HealthState], None] | None) -> None:
        """Call ``callback`` after every update but the loop tick (None: stop)."""
        self._on_change = callback

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        with self._lock:
            checks = {
                "worker_polling": self.worker_running and not self.run_task_died,
                "not_draining": not self.draining,
                "temporal": self.temporal_ok,
                "database": self.db_ok,
                "schema": self.schema_ok,
            }
            parts = [self.waiting_for, self.detail]
            if not self.temporal_ok and self.temporal_error:
                parts.append(f"Temporal: {self.temporal_error}")
            if not self.db_ok and self.db_error:
                parts.append(f"database: {self.db_error}")
            if self.schema_problems:
                parts.append("schema: " + "; ".join(self.schema_problems))
            doc = self._doc(checks, "; ".join(p for p in parts if p))
            doc["failures"] = {"temporal": self.temporal_failures, "database": self.db_failures}
            return all(checks.values()), doc

    def liveness(self) -> tuple[bool, dict[str, Any]]:
        with self._lock:
            stalled = time.monotonic() - self.last_loop_tick
            checks = {
                "run_task_alive": not self.run_task_died,
                "event_loop": stalled < LOOP_STALL_SECONDS,
            }
            detail = self.detail if self.run_task_died else None
            if not checks["event_loop"]:
                detail = f"event loop has not turned for {stalled:.0f} s"
            return all(checks.values()), self._doc(checks, detail)

    def _doc(self, checks: dict[str, bool], detail: str | None) -> dict[str, Any]:
        doc: dict[str, Any] = {"status": "ok" if all(checks.values()) else "unavailable", "checks": checks,
                               "build_id": self.build_id, "task_queue": self.task_queue,
                               "draining": self.draining}
        if detail:
            doc["detail"] = detail
        return doc


def describe_database(conninfo: str) -> str:
    """``host:port/dbname`` of a libpq conninfo: enough to say what is awaited, never the password."""
    try:
        params = conninfo_to_dict(conninfo)
    except Exception:
        return "the database"
    host = str(params.get("host") or "localhost")
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{params.get('port') or 5432}/{params.get('dbname') or params.get('user') or ''}"


def describe_db_error(err: BaseException) -> str:
    """A database failure as safe text: the error class and SQLSTATE, never a message that could
    quote a connection string."""
    if isinstance(err, TimeoutError):
        return "timed out"
    if isinstance(err, psycopg.Error) and err.sqlstate:
        return f"{type(err).__name__} (SQLSTATE {err.sqlstate})"
    if isinstance(err, psycopg.OperationalError):
        return f"{type(err).__name__} (cannot connect, or the connection was lost)"
    return type(err).__name__


class DatabaseProbe:
    """The readiness probe's own database connection, so a busy activity pool never reads as "down".

    Opened lazily, reused between checks, replaced after any failure; every check is bounded by a
    timeout. One connection, one check at a time.
    """

    def __init__(self, conninfo: str, *, timeout: float = CHECK_TIMEOUT_SECONDS,
                 schema_timeout: float = SCHEMA_TIMEOUT_SECONDS) -> None:
        self._conninfo = conninfo
        self._timeout = timeout
        self._schema_timeout = schema_timeout
        self._conn: AsyncConnection[DictRow] | None = None
        self._lock = asyncio.Lock()
        self.target = describe_database(conninfo)

    async def ping(self) -> None:
        """``SELECT 1``; raises on failure. A connection that broke since the last check (a database
        restart) is replaced once within the same check instead of failing it."""
        async with self._lock:
            try:
                async with asyncio.timeout(self._timeout):
                    reused = self._conn is not None
                    try:
                        await (await self._connection()).execute("SELECT 1")
                    except psycopg.Error:
                        if not reused:
                            raise
                        await self._discard()
                        await (await self._connection()).execute("SELECT 1")
            except BaseException:
                await self._discard()
                raise

    async def schema_problems(self) -> list[str]:
        """The schema contract's problems on this connection (empty: compatible); raises when the
        database cannot be asked."""
        async with self._lock:
            try:
                async with asyncio.timeout(self._schema_timeout):
                    conn = await self._connection()
                    # Transaction-local: behind PgBouncer in transaction mode a session-level SET
                    # would stay on a server connection that other clients get next.
                    async with conn.transaction():
                        await conn.execute(f"SET LOCAL statement_timeout = '{int(self._schema_timeout * 1000)}ms'")
                        return list(await schema_contract.verify_schema(conn))
            except BaseException:
                await self._discard()
                raise

    async def aclose(self) -> None:
        async with self._lock:
            await self._discard()

    async def _connection(self) -> AsyncConnection[DictRow]:
        if self._conn is None or self._conn.closed:
            conn = await AsyncConnection.connect(
                self._conninfo, autocommit=True, row_factory=dict_row,
                connect_timeout=max(2, int(self._timeout)), application_name=PROBE_APPLICATION_NAME)
            self._conn = conn
        return self._conn

    async def _discard(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # a broken connection may fail to close; dropped anyway
                await conn.close()


class HealthServer:
    """A tiny threaded HTTP server for kubelet probes (IPv4 or IPv6 bind address)."""

    def __init__(self, state: HealthState, host: str, port: int) -> None:
        self.state = state
        handler = _make_handler(state)
        host = host.strip("[]")
        server_class = _ThreadingHTTPServerV6 if ":" in host else ThreadingHTTPServer
        self._server = server_class((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="health-server", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _ThreadingHTTPServerV6(ThreadingHTTPServer):
    address_family = socket.AF_INET6


def _make_handler(state: HealthState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path in ("/healthz", "/health", "/livez"):
                ok, doc = state.liveness()
            elif path in ("/readyz", "/ready"):
                ok, doc = state.readiness()
            else:
                self._send(404, {"status": "not found"})
                return
            self._send(200 if ok else 503, doc)

        def _send(self, code: int, doc: dict[str, Any]) -> None:
            body = json.dumps(doc).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # probes every few seconds: no log spam
            return

    return Handler

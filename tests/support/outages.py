"""Dependency outages for chaos tests: a file-backed Temporal dev server of a test's own, a recorder of
a worker's probes, a batch of provisionings and the exact-once checks made after it.

Everything here is real: the dev server is the `temporal` binary DevStack uses, started as a process
the test can SIGTERM or SIGKILL and start again on the same database file and port; the probes are
HTTP requests to the worker process; the counts are SQL on the shared PostgreSQL and files in the
outbox. Waits poll a condition with a bound and fail saying what was awaited.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from psycopg.rows import dict_row
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client, WorkflowHandle
from tests.support.data import all_row_counts, tenant_request, tenant_row_counts
from tests.support.metrics import Scrape, scrape
from tests.support.processes import WorkerProcess
from tests.support.workers import outbox_messages

from alga_worker import search_attributes
from alga_worker.converter import DATA_CONVERTER
from alga_worker.models import TenantCreationResult
from alga_worker.runtime.devstack import dev_server_dynamic_config_flags, find_binary

T = TypeVar("T")

WORKER_APPLICATION_NAME = "alga-temporal-worker"  # db/pool.py: the activities' connections


async def wait_for(what: str, check: Callable[[], Awaitable[T | None]], timeout: float,
                   interval: float = 0.1) -> T:
    """Poll ``check`` until it returns something other than None/False; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        await asyncio.sleep(interval)


# ---------------------------------------------------------------- probes


@dataclass(frozen=True)
class ProbeSample:
    at: float  # time.monotonic()
    live: int  # /healthz status (0: no answer)
    ready: int  # /readyz status
    ready_body: dict[str, Any]


@dataclass
class ProbeRecorder:
    """Samples a worker's /healthz and /readyz every ``interval`` s in the background, for the whole
    test: liveness must hold at every sample, not only at the moments the test happens to look."""

    worker: WorkerProcess
    interval: float = 0.2
    samples: list[ProbeSample] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            live, _ = await asyncio.to_thread(self.worker.probe, "/healthz")
            ready, body = await asyncio.to_thread(self.worker.probe, "/readyz")
            self.samples.append(ProbeSample(time.monotonic(), live, ready, body))
            await asyncio.sleep(self.interval)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[ProbeRecorder]:
        self._task = asyncio.create_task(self._run(), name="probe-recorder")
        try:
            yield self
        finally:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def live_codes(self) -> collections.Counter[int]:
        return collections.Counter(s.live for s in self.samples)

    def between(self, start: float, end: float) -> list[ProbeSample]:
        return [s for s in self.samples if start <= s.at <= end]

    async def first(self, what: str, match: Callable[[ProbeSample], bool], timeout: float) -> ProbeSample:
        """The first sample (already taken or to come) that ``match``es, within ``timeout`` s."""
        seen = 0

        async def look() -> ProbeSample | None:
            nonlocal seen
            if self.worker.proc.poll() is not None:
                raise AssertionError(f"worker exited {self.worker.proc.returncode}:\n{self.worker.output()}")
            found = next((s for s in self.samples[seen:] if match(s)), None)
            seen = len(self.samples)
            return found

        return await wait_for(f"{what} (last /readyz: {self.samples[-1].ready_body if self.samples else None})",
                              look, timeout)


def readiness_lost(dependency: str) -> Callable[[ProbeSample], bool]:
    return lambda s: s.ready == 503 and s.ready_body.get("checks", {}).get(dependency) is False


def fully_ready(s: ProbeSample) -> bool:
    return s.ready == 200 and all(s.ready_body.get("checks", {}).values())


async def metrics_until(port: int, what: str, match: Callable[[Scrape], bool], timeout: float) -> Scrape:
    """Scrape the worker's /metrics (prometheus_client's parser) until ``match``; the matching scrape."""
    async def look() -> Scrape | None:
        got = await asyncio.to_thread(scrape, port)
        return got if match(got) else None

    return await wait_for(f"/metrics: {what}", look, timeout, interval=0.2)


def dependency_gauges(dependency: str, up: int) -> Callable[[Scrape], bool]:
    """alga_worker_ready and alga_dependency_up{dependency=...} both at ``up`` (0 or 1)."""
    return lambda m: (m.value("alga_worker_ready") == up
                      and m.value("alga_dependency_up", dependency=dependency) == up)


# ---------------------------------------------------------------- PostgreSQL


async def blocked_worker_transactions(database_url: str) -> int:
    """Worker backends waiting on a lock right now (provisionings held inside their transaction)."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cur = await conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
                                 " AND wait_event_type = 'Lock'", (WORKER_APPLICATION_NAME,))
        row = await cur.fetchone()
        return int(row[0]) if row else 0


@contextlib.asynccontextmanager
async def admin_emails_locked(database_url: str, emails: Sequence[str]) -> AsyncIterator[None]:
    """Hold, from a session of our own, the advisory lock provision_tenant takes first for each admin
    email (db/provisioning.py ``lock_email``): those provisionings wait inside their transaction until
    we let go. The session may die with the server (an outage): closing it then is best effort."""
    conn = await psycopg.AsyncConnection.connect(database_url, autocommit=True)
    try:
        for email in emails:
            await conn.execute("SELECT pg_advisory_lock(hashtextextended(%s, 7))", ("admin-email:" + email.lower(),))
        yield
    finally:
        with contextlib.suppress(psycopg.Error):
            await conn.close()


# ---------------------------------------------------------------- Temporal


def search_attribute_flags() -> list[str]:
    """``--search-attribute Name=Type`` for every attribute the worker sets (as DevStack registers them)."""
    flags: list[str] = []
    for key in search_attributes.ALL:
        kind = key.indexed_value_type.name.title().replace("_", "")  # KEYWORD_LIST -> KeywordList
        flags += ["--search-attribute", f"{key.name}={kind}"]
    return flags


def restartable_port() -> int:
    """A free loopback port below the kernel's ephemeral range (32768-60999 by default).

    Why: a server that is stopped and started again on the same ports leaves them free in between, and a
    port from the ephemeral range (what ``free_port`` gets from the kernel) can be taken meanwhile as the
    local port of any outgoing connection on the machine; the restart then fails with "address already
    in use". Nothing takes a port below that range unless it asks for that number.
    """
    low, _ = (int(v) for v in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    candidates = list(range(10_000, max(low, 10_001)))
    random.shuffle(candidates)
    for port in candidates:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


@dataclass
class FileBackedTemporal:
    """`temporal server start-dev` on a SQLite file, as a process of its own: unlike the session's
    server (in-memory, owned by the SDK), it can be signalled and started again with its state."""

    root: Path
    # Kept across restarts, so out of the ephemeral range (restartable_port says why).
    port: int = field(default_factory=restartable_port)
    http_port: int = field(default_factory=restartable_port)
    metrics_port: int = field(default_factory=restartable_port)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.root / "temporal.log"

    def command(self) -> list[str]:
        # The flags DevStack's server gets (through the SDK), on the same ports at every start.
        return [find_binary("temporal"), "server", "start-dev", "--db-filename", str(self.root / "temporal.db"),
                "--ip", "127.0.0.1", "--port", str(self.port), "--http-port", str(self.http_port),
                "--metrics-port", str(self.metrics_port), "--headless", "--namespace", "default",
                "--log-level", "warn", "--dynamic-config-value", "frontend.enableServerVersionCheck=false",
                *dev_server_dynamic_config_flags(), *search_attribute_flags()]

    async def start(self, timeout: float = 30) -> None:
        """Start the server and wait (bounded) until its default namespace answers."""
        self.root.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        self.starts += 1
        await wait_for(f"Temporal dev server on {self.address} (log {self.log_path})", self._serving, timeout,
                       interval=0.1)

    async def _serving(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"temporal exited {self.proc.returncode}:\n{self.log_path.read_text()[-3000:]}")
        try:
            client = await asyncio.wait_for(Client.connect(self.address, data_converter=DATA_CONVERTER), 2)
            await asyncio.wait_for(client.workflow_service.describe_namespace(
                DescribeNamespaceRequest(namespace="default")), 2)
            return True
        except Exception:
            return False

    async def kill(self, sig: signal.Signals, timeout: float = 30) -> int:
        """Send ``sig`` and wait for the process to exit; its exit code."""
        assert self.proc is not None and self.proc.poll() is None, "the server is not running"
        self.proc.send_signal(sig)
        return await asyncio.wait_for(asyncio.to_thread(self.proc.wait), timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ---------------------------------------------------------------- provisionings


@dataclass
class Provisioning:
    request: dict[str, Any]
    handle: WorkflowHandle[Any, TenantCreationResult]

    @property
    def email(self) -> str:
        return str(self.request["adminUser"]["email"]).lower()


def provisioning_requests(n: int) -> list[dict[str, Any]]:
    return [tenant_request(tenantName=f"Outage MSP {uuid.uuid4().hex[:10]}") for _ in range(n)]


async def start_provisionings(client: Client, task_queue: str,
                              requests: Sequence[dict[str, Any]]) -> list[Provisioning]:
    async def one(request: dict[str, Any]) -> Provisioning:
        handle = await client.start_workflow(
            "tenantCreationWorkflow", request, id=f"tenant-creation-outage-{uuid.uuid4()}",
            task_queue=task_queue, result_type=TenantCreationResult)
        return Provisioning(request, handle)

    return list(await asyncio.gather(*(one(r) for r in requests)))


def welcome_emails(outbox: Path) -> int:
    return len(outbox_messages(outbox))


async def results(runs: Sequence[Provisioning], timeout: float) -> list[TenantCreationResult]:
    """Every run's result, within ``timeout`` s in all (a failed run raises WorkflowFailureError)."""
    return list(await asyncio.wait_for(asyncio.gather(*(r.handle.result() for r in runs)), timeout))


async def assert_provisioned_exactly_once(database_url: str, outbox: Path, runs: Sequence[Provisioning],
                                          outcomes: Sequence[TenantCreationResult],
                                          before: dict[str, int], context: str) -> None:
    """Exactly one tenant, one admin user with one Admin role and one welcome email per run; every tenant
    has the same rows; and the tables grew by exactly those rows (nothing orphaned or doubled)."""
    n = len(runs)
    assert all(o.success and o.email_sent for o in outcomes), f"{context}: {outcomes}"
    expected = {r.request["tenantName"]: o.tenant_id for r, o in zip(runs, outcomes, strict=True)}
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        cur = await conn.execute("SELECT client_name, tenant::text AS tenant FROM tenants WHERE client_name = ANY(%s)",
                                 (list(expected),))
        tenants = [(row["client_name"], row["tenant"]) for row in await cur.fetchall()]
        assert sorted(tenants) == sorted(expected.items()), f"{context}: one tenant per run"
        cur = await conn.execute(
            "SELECT u.email, u.tenant::text AS tenant,"
            " (SELECT count(*) FROM user_roles ur JOIN roles r ON r.tenant = ur.tenant AND r.role_id = ur.role_id"
            "   WHERE ur.tenant = u.tenant AND ur.user_id = u.user_id AND r.role_name = 'Admin' AND r.msp) AS admin"
            " FROM users u WHERE u.email = ANY(%s)", ([r.email for r in runs],))
        admins = sorted((row["email"], row["tenant"], row["admin"]) for row in await cur.fetchall())
        assert admins == sorted((r.email, o.tenant_id, 1) for r, o in zip(runs, outcomes, strict=True)), \
            f"{context}: one admin with one Admin role per tenant"
        per_tenant = [await tenant_row_counts(conn, o.tenant_id) for o in outcomes]
        assert all(c == per_tenant[0] for c in per_tenant), f"{context}: every tenant has the same rows"
        after = await all_row_counts(conn)
    grown = {table: after[table] - before[table] for table in after}
    assert grown == {table: count * n for table, count in per_tenant[0].items()}, \
        f"{context}: the tables grew by exactly {n} tenants' rows"
    recipients = collections.Counter(str(m["To"]).lower() for m in outbox_messages(outbox))
    assert recipients == collections.Counter(r.email for r in runs), f"{context}: one welcome email per admin"


async def row_counts(database_url: str) -> dict[str, int]:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        return await all_row_counts(conn)

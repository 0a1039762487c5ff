"""Probes that a restart would fix, and only those: the real `alga-worker run` under dependency faults.

- A Temporal outage (a TCP proxy between the worker and the dev server, paused) fails readiness,
  never liveness, however long it lasts; the worker recovers by itself when Temporal returns.
- Start-up with Temporal unreachable: the process stays up, live and not ready, retrying with
  backoff; SIGTERM while it waits exits 0.
- An exhausted activity pool (DB_POOL_MAX=1, its connection blocked on a lock the test holds) is not
  "database down": readiness checks on its own connection, which also survives being killed.
- Metrics bind METRICS_HOST.

Waits poll observable conditions (probe bodies, pg_stat_activity, the proxy's counters) with bounds;
the only fixed duration is the monitor's own interval, used to bound those waits.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from tests.fakes.tcp_proxy import TcpProxy
from tests.support.data import tenant_request
from tests.support.processes import WorkerProcess, start_worker, wait_for_worker_blocked_on_lock

from alga_worker.db.migrate import migrate
from alga_worker.db.schema_contract import verify_schema
from alga_worker.models import WORKFLOW_TYPE_HEALTH_CHECK, HealthCheckResult, TenantCreationResult
from alga_worker.runtime.devstack import free_port
from alga_worker.runtime.health import PROBE_APPLICATION_NAME
from alga_worker.runtime.worker import MONITOR_INTERVAL_SECONDS

pytestmark = pytest.mark.chaos

OLD_LIVENESS_FAILURES = 3  # the previous rule: /healthz failed after three failed Temporal checks
CHECK_BOUND = MONITOR_INTERVAL_SECONDS * 2 + 5  # one monitor check is due within this


async def sample_until(worker: WorkerProcess, done: Callable[[int, dict[str, Any]], bool], timeout: float,
                       ) -> tuple[list[int], dict[str, Any]]:
    """Probe /healthz and /readyz every 0.2 s until ``done(ready_code, ready_body)``; return every
    /healthz code seen and the last /readyz body. Fails after ``timeout`` seconds."""
    live_codes: list[int] = []
    deadline = time.monotonic() + timeout
    while True:
        live_codes.append((await asyncio.to_thread(worker.probe, "/healthz"))[0])
        code, body = await asyncio.to_thread(worker.probe, "/readyz")
        if done(code, body):
            return live_codes, body
        if worker.proc.poll() is not None:
            raise AssertionError(f"worker exited {worker.proc.returncode}:\n{worker.output()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in {timeout} s; last /readyz {code} {body}\n{worker.output()}")
        await asyncio.sleep(0.2)


def temporal_failures_at_least(n: int) -> Callable[[int, dict[str, Any]], bool]:
    return lambda code, body: code == 503 and body.get("failures", {}).get("temporal", 0) >= n


@pytest.fixture
def temporal_proxy(stack) -> Any:
    with TcpProxy.to(stack.temporal_address) as proxy:
        yield proxy


async def test_temporal_outage_fails_readiness_never_liveness_and_heals_by_itself(
        client, worker_env, temporal_proxy: TcpProxy, tmp_path: Path) -> None:
    worker = start_worker(dict(worker_env, TEMPORAL_ADDRESS=temporal_proxy.address), tmp_path / "worker.log")
    try:
        await worker.wait_until("/readyz", 200)
        temporal_proxy.pause()
        # Longer than the old liveness threshold: three failed Temporal checks in a row.
        live_codes, body = await sample_until(worker, temporal_failures_at_least(OLD_LIVENESS_FAILURES),
                                              timeout=CHECK_BOUND * OLD_LIVENESS_FAILURES)
        assert set(live_codes) == {200}, live_codes
        assert body["checks"]["temporal"] is False
        assert body["checks"]["database"] is True
        assert body["detail"].startswith("Temporal: ")
        assert worker.probe("/healthz")[0] == 200

        temporal_proxy.resume()
        live_codes, _ = await sample_until(worker, lambda code, _: code == 200, timeout=CHECK_BOUND * 2)
        assert set(live_codes) == {200}
        result = await client.execute_workflow(
            WORKFLOW_TYPE_HEALTH_CHECK, id=f"health-check-{uuid.uuid4()}",
            task_queue=worker_env["TEMPORAL_TASK_QUEUE"], result_type=HealthCheckResult)
        assert result.status == "healthy"
        assert result.build_id == "test-build"
    finally:
        worker.stop()
    assert worker.proc.returncode == -signal.SIGKILL, "the worker must have stayed up until the test ended"
    assert "dependency check failing" in worker.output()
    assert "dependency check passing again" in worker.output()


async def test_start_up_waits_for_temporal_live_and_not_ready_then_becomes_ready(
        worker_env, temporal_proxy: TcpProxy, tmp_path: Path) -> None:
    temporal_proxy.pause()
    worker = start_worker(dict(worker_env, TEMPORAL_ADDRESS=temporal_proxy.address), tmp_path / "worker.log")
    try:
        # Two failed attempts, with backoff between them, and the process still up.
        live_codes, body = await sample_until(
            worker, lambda code, body: code == 503 and "(attempt 2," in body.get("detail", ""), timeout=20)
        assert set(live_codes) - {0} == {200}, live_codes  # 0: before the health server listened
        assert body["detail"].startswith(f"waiting for Temporal at {temporal_proxy.address}: ")
        assert body["checks"]["worker_polling"] is False
        assert temporal_proxy.refused >= 2
        temporal_proxy.resume()
        live_codes, _ = await sample_until(worker, lambda code, _: code == 200, timeout=30)
        assert set(live_codes) == {200}
        worker.signal(signal.SIGTERM)
        assert await worker.wait_exit(timeout=30) == 0
    finally:
        worker.stop()
    records = [json.loads(line) for line in worker.output().splitlines() if line.startswith("{")]
    attempts = [r["attempt"] for r in records if r["message"] == "waiting for a dependency"]
    assert attempts == list(range(1, len(attempts) + 1)), "one log line per failed attempt"
    assert 2 <= len(attempts) <= temporal_proxy.refused


async def test_sigterm_while_waiting_for_temporal_exits_0_promptly(
        worker_env, temporal_proxy: TcpProxy, tmp_path: Path) -> None:
    temporal_proxy.pause()
    worker = start_worker(dict(worker_env, TEMPORAL_ADDRESS=temporal_proxy.address), tmp_path / "worker.log")
    try:
        await sample_until(worker, lambda code, body: "waiting for Temporal" in body.get("detail", ""),
                           timeout=20)
        sent = time.monotonic()
        worker.signal(signal.SIGTERM)
        assert await worker.wait_exit(timeout=10) == 0
        assert time.monotonic() - sent < 5
    finally:
        worker.stop()
    assert "shutdown requested while waiting for dependencies" in worker.output()


@asynccontextmanager
async def advisory_lock_on_email(database_url: str, email: str) -> AsyncIterator[None]:
    """Hold the lock provision_tenant takes first (db/provisioning.py lock_email), from our own session."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute("SELECT pg_advisory_lock(hashtextextended(%s, 7))", ("admin-email:" + email,))
        yield
        await conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 7))", ("admin-email:" + email,))


async def probe_backends(db: psycopg.AsyncConnection[Any]) -> list[dict[str, Any]]:
    cur = await db.execute("SELECT pid, query_start FROM pg_stat_activity WHERE application_name = %s",
                           (PROBE_APPLICATION_NAME,))
    return list(await cur.fetchall())


async def wait_for_probe_query(worker: WorkerProcess, db: psycopg.AsyncConnection[Any],
                               ran: Callable[[dict[str, Any]], bool]) -> list[int]:
    """Sample the probes until the worker's probe connection ran a query satisfying ``ran`` (seen in
    pg_stat_activity); return every /readyz code seen meanwhile."""
    ready_codes: list[int] = []
    deadline = time.monotonic() + CHECK_BOUND
    while True:
        ready_codes.append((await asyncio.to_thread(worker.probe, "/readyz"))[0])
        if any(ran(b) for b in await probe_backends(db)):
            ready_codes.append((await asyncio.to_thread(worker.probe, "/readyz"))[0])
            return ready_codes
        assert time.monotonic() < deadline, f"no probe query in {CHECK_BOUND} s:\n{worker.output()}"
        await asyncio.sleep(0.2)


async def test_an_exhausted_activity_pool_is_not_database_down(
        stack, client, worker_env, db, tmp_path: Path) -> None:
    worker = start_worker(dict(worker_env, DB_POOL_MIN="1", DB_POOL_MAX="1"), tmp_path / "worker.log")
    request = tenant_request()
    try:
        await worker.wait_until("/readyz", 200)
        async with advisory_lock_on_email(stack.database_url, request["adminUser"]["email"]):
            handle = await client.start_workflow(
                "tenantCreationWorkflow", request, id=f"tenant-creation-{uuid.uuid4()}",
                task_queue=worker_env["TEMPORAL_TASK_QUEUE"], result_type=TenantCreationResult)
            # The pool's only connection now waits on our lock, inside provision_tenant.
            await wait_for_worker_blocked_on_lock(db)
            cur = await db.execute("SELECT clock_timestamp() AS now")
            exhausted_at = (await cur.fetchone())["now"]
            ready_codes = await wait_for_probe_query(worker, db, lambda b: b["query_start"] > exhausted_at)
            assert set(ready_codes) == {200}, ready_codes
            cur = await db.execute("SELECT count(*) AS n, count(*) FILTER (WHERE wait_event_type = 'Lock') AS w"
                                   " FROM pg_stat_activity WHERE application_name = 'alga-temporal-worker'")
            row = await cur.fetchone()
            assert (row["n"], row["w"]) == (1, 1), "the pool must have been exhausted throughout"
        result = await handle.result()
    finally:
        worker.stop()
    assert result.success


async def test_the_probe_replaces_a_killed_connection_without_going_unready(
        worker_env, db, tmp_path: Path) -> None:
    worker = start_worker(worker_env, tmp_path / "worker.log")
    try:
        await worker.wait_until("/readyz", 200)
        (old,) = await probe_backends(db)
        await db.execute("SELECT pg_terminate_backend(%s)", (old["pid"],))
        ready_codes = await wait_for_probe_query(worker, db, lambda b: b["pid"] != old["pid"])
        assert set(ready_codes) == {200}, ready_codes
        assert len(await probe_backends(db)) == 1, "one probe connection, reused"
    finally:
        worker.stop()


@asynccontextmanager
async def empty_database(db: psycopg.AsyncConnection[Any], database_url: str) -> AsyncIterator[str]:
    """A new, empty database on the test server: a live database that fails the schema contract."""
    name = f"empty_{uuid.uuid4().hex[:10]}"
    await db.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_conninfo(database_url, dbname=name)
    finally:
        await db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def pollers(client, task_queue: str) -> int:
    request = DescribeTaskQueueRequest(namespace=client.namespace, task_queue=TaskQueue(name=task_queue),
                                       task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY)
    return len((await client.workflow_service.describe_task_queue(request)).pollers)


async def test_an_incompatible_schema_gets_no_polling_until_the_contract_holds(
        stack, client, worker_env, db, tmp_path: Path) -> None:
    """A database of Alga's schema missing one contracted column: the worker names it, stays not ready
    and never polls (so no activity attempt ever meets it); once the column is back it starts."""
    async with empty_database(db, stack.database_url) as url:
        await migrate(url)
        async with await psycopg.AsyncConnection.connect(url, row_factory=dict_row, autocommit=True) as conn:
            await conn.execute("ALTER TABLE users DROP COLUMN hashed_password")
            assert any("users.hashed_password" in p for p in await verify_schema(conn))
        worker = start_worker(dict(worker_env, DATABASE_URL=url), tmp_path / "worker.log")
        try:
            _, body = await sample_until(
                worker, lambda code, body: code == 503 and "(attempt 1," in body.get("detail", ""), timeout=20)
            assert body["detail"].startswith("waiting for a compatible database schema: ")
            assert "users.hashed_password" in body["detail"]
            assert body["checks"]["schema"] is False and body["checks"]["worker_polling"] is False
            assert await pollers(client, worker_env["TEMPORAL_TASK_QUEUE"]) == 0, "it must not poll"
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                await conn.execute("ALTER TABLE users ADD COLUMN hashed_password text")
            live_codes, body = await sample_until(worker, lambda code, _: code == 200, timeout=40)
            assert set(live_codes) == {200}
            assert body["checks"]["schema"] is True
            assert await pollers(client, worker_env["TEMPORAL_TASK_QUEUE"]) > 0
        finally:
            worker.stop()


def listening_addresses(port: int) -> set[str]:
    """Local addresses of LISTEN sockets on ``port`` (Linux /proc/net/tcp and tcp6)."""
    found: set[str] = set()
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.partition(":")
            if state != "0A" or int(hex_port, 16) != port:
                continue
            raw = bytes.fromhex(address)
            # /proc prints each 32-bit word in host (little-endian) order.
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            found.add(socket.inet_ntop(family, raw))
    return found


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
async def test_metrics_bind_metrics_host(worker_env, tmp_path: Path, host: str) -> None:
    # Linux (reads /proc/net) with an IPv6 loopback: the CI machine's kind; a missing one fails loudly.
    assert Path("/proc/net/tcp").exists() and ipv6_loopback()
    port = free_port()
    worker = start_worker(dict(worker_env, METRICS_HOST=host, METRICS_PORT=str(port)), tmp_path / "worker.log")
    url_host = f"[{host}]" if ":" in host else host
    try:
        await worker.wait_until("/readyz", 200)
        with urllib.request.urlopen(f"http://{url_host}:{port}/metrics", timeout=5) as response:
            assert response.status == 200
            assert b"temporal_" in response.read()
        assert listening_addresses(port) == {host}
    finally:
        worker.stop()

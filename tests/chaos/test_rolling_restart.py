"""Rolling restart: two worker processes, each SIGTERMed and replaced in turn while 30 provisionings run.

What Kubernetes does in a rollout: the old pod gets SIGTERM, drops readiness, finishes what it holds
within GRACEFUL_SHUTDOWN_TIMEOUT and exits 0 while its replacement comes up. The test proves that this
costs nothing: every run succeeds, no step ran twice (no activity or local activity attempt above 1, no
workflow task failed or timed out while running, no tenant provisioned twice, no email found already
sent), and the exact counts of the kill storm hold (30 whole tenants, admins, Admin grants, welcome
emails; no orphan rows).

Each SIGTERM lands while the worker has a provisioning transaction open, made certain without sleeps:
the test holds a table the transaction must write (``users`` for worker A, ``tenants`` for worker B),
so the transaction waits, open, and cannot finish before the lock goes; the worker's own gauge of
database connections in use, sampled after the lock was granted, shows it holds one. Between the two
phases the ``tenants`` lock is queued behind the transactions in flight before the ``users`` lock is
released (:func:`tests.support.chaos.handover`), so those finish and later ones wait for phase B.
Each worker may run 3 workflow tasks and 3 activities at once, so the phase-A trap holds at most 9
provisionings and phase B still has work to catch. Worker A is signalled once ``k_a`` (seeded) tenants
are committed, worker B once phase A's are too: some, never all, are complete at each SIGTERM.
"""

from __future__ import annotations

import json
import random
import signal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from temporalio.client import Client
from tests.support.chaos import (
    TableTrap,
    admins_committed,
    assert_exactly_provisioned,
    chaos_seed,
    handover,
    poll_until,
    pool_in_use,
    second_attempts,
    snapshot,
    start_provisionings,
    trapped,
    worker_transactions,
)
from tests.support.processes import WorkerProcess, start_worker

from alga_worker.runtime.devstack import DevStack, free_port

pytestmark = pytest.mark.chaos

SLOTS = 3  # workflow tasks and activities per worker: bounds what one trap can hold


def log_records(worker: WorkerProcess) -> list[dict[str, object]]:
    return [json.loads(line) for line in worker.output().splitlines() if line.startswith("{")]


def finished_while_draining(worker: WorkerProcess) -> int:
    """Provisionings the worker finished after its SIGTERM: the work it drained."""
    messages = [record["message"] for record in log_records(worker)]
    if "shutdown requested, draining" not in messages:
        return 0
    return messages[messages.index("shutdown requested, draining"):].count("tenant provisioned")


async def test_rolling_restart_of_two_workers_fails_nothing_and_repeats_nothing(
        stack: DevStack, client: Client, worker_env: dict[str, str], db: psycopg.AsyncConnection[Any],
        outbox: Path, tmp_path: Path) -> None:
    seed = chaos_seed()
    k_a = random.Random(seed).randint(2, 8)
    steps = [f"seed {seed}: worker A signalled after {k_a} tenants"]  # what happened, for failure messages

    def note() -> str:
        return "; ".join(steps)

    env = {**worker_env, "MAX_CONCURRENT_ACTIVITIES": str(SLOTS), "MAX_CONCURRENT_WORKFLOWS": str(SLOTS),
           "METRICS_HOST": "127.0.0.1", "GRACEFUL_SHUTDOWN_TIMEOUT": "30"}
    workers: dict[str, tuple[WorkerProcess, int]] = {}

    async def spawn(name: str) -> WorkerProcess:
        """A worker process; a replacement has its predecessor's settings (its own ports, as a new pod)."""
        metrics_port = free_port()
        worker = start_worker({**env, "BUILD_ID": f"rolling-{name[0]}", "METRICS_PORT": str(metrics_port)},
                              tmp_path / f"worker-{name}.log")
        workers[name] = (worker, metrics_port)
        await worker.wait_until("/readyz", 200)
        return worker

    async def holds_a_transaction(name: str, trap: TableTrap) -> bool:
        worker, port = workers[name]
        assert worker.proc.poll() is None, worker.output()
        return trap.sampled_since_granted() and await pool_in_use(port) >= 1

    async def sigterm_and_replace(name: str, trap: TableTrap) -> None:
        """SIGTERM ``name`` while it holds a transaction the trap keeps open; start its replacement."""
        await poll_until(lambda: holds_a_transaction(name, trap), f"worker {name} to hold a transaction ({note()})",
                         timeout=15)
        done = await admins_committed(db, batch.emails)
        assert 0 < done < len(batch.handles), f"{note()}: {done} tenants complete at the SIGTERM of {name}"
        open_tx, waiting = await worker_transactions(db)
        steps.append(f"SIGTERM {name} at {done} tenants, {waiting} of {open_tx} worker transactions waiting")
        worker = workers[name][0]
        worker.signal(signal.SIGTERM)
        await worker.wait_until("/readyz", 503)
        await spawn(name + "2")
        assert worker.proc.poll() is None, f"{note()}: {name} exited before its transaction could finish"

    try:
        await spawn("a")
        await spawn("b")
        before = await snapshot(db)
        batch = await start_provisionings(client, env["TEMPORAL_TASK_QUEUE"], "rolling")

        async def committed_at_least(n: int) -> bool:
            return await admins_committed(db, batch.emails) >= n

        await poll_until(lambda: committed_at_least(k_a), f"{k_a} tenants ({note()})")
        async with trapped(stack.database_url, "users") as users_trap:
            await sigterm_and_replace("a", users_trap)

            async def all_waiting() -> bool:  # every open transaction is past its tenants row
                open_tx, waiting = await worker_transactions(db)
                return open_tx == waiting

            await poll_until(all_waiting, f"the transactions in flight to wait on users ({note()})", timeout=10)
            tenants_trap = await handover(db, users_trap, "tenants")
        try:
            assert await workers["a"][0].wait_exit(timeout=30) == 0, note()
            await sigterm_and_replace("b", tenants_trap)
        finally:
            await tenants_trap.release()
        assert await workers["b"][0].wait_exit(timeout=30) == 0, note()
        results = await batch.results(timeout=30)
        reruns = [found for handle in batch.handles for found in await second_attempts(handle)]
        for name in ("a2", "b2"):  # the replacements stop as cleanly (and their logs are complete)
            workers[name][0].signal(signal.SIGTERM)
            assert await workers[name][0].wait_exit(timeout=30) == 0, note()
    finally:
        for worker, _ in workers.values():
            worker.stop()

    print(note())
    assert not reruns, f"{note()}: steps that ran more than once: {reruns}"
    for name in ("a", "b"):
        assert finished_while_draining(workers[name][0]) >= 1, f"{note()}: {name} drained no provisioning"
        assert "worker drained" in workers[name][0].output()
    records = [r for worker, _ in workers.values() for r in log_records(worker)]
    provisioned = [r for r in records if r["message"] == "tenant provisioned"]
    assert len(provisioned) == len(batch.handles), f"{note()}: {len(provisioned)} provisionings logged"
    assert all(r["tenant_created"] is True for r in provisioned), f"{note()}: a provisioning ran again"
    assert not [r for r in records if r["message"] == "email already in outbox"], f"{note()}: an email was sent again"
    await assert_exactly_provisioned(db, outbox, batch, results, before, note())

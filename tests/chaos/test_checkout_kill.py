"""SIGKILL during an nm-store report: the run still completes, nm-store ends at ``completed``, and a
repeated report carries the same idempotency key (so nm-store can de-duplicate it).

Real processes throughout: the worker is ``alga-worker run``; nm-store is the local fake, which holds
the ``completed`` report unanswered while the test kills the worker that sent it. The order is forced
without sleeps: the test holds the ``users`` table lock so provisioning waits (``in_progress`` is
delivered meanwhile), then arms the hold, then lets provisioning finish.
"""

from __future__ import annotations

import asyncio
import signal
import uuid
from pathlib import Path

import pytest
from tests.chaos.test_worker_process import users_insert_blocked
from tests.fakes.nmstore_server import FakeNmStoreServer
from tests.support.data import tenant_request
from tests.support.processes import start_worker, wait_for_worker_blocked_on_lock

pytestmark = pytest.mark.chaos


async def test_sigkill_during_the_completed_report_then_restart_completes_with_one_key(
        stack, client, worker_env, db, tmp_path: Path) -> None:
    session = f"cs_test_{uuid.uuid4().hex[:16]}"
    with FakeNmStoreServer() as nmstore:
        env = {**worker_env, "NMSTORE_BASE_URL": nmstore.url, "INTERNAL_API_SHARED_SECRET": nmstore.internal_secret,
               "TEMPORAL_WEBHOOK_SECRET": nmstore.webhook_secret}
        worker_a = start_worker(env, tmp_path / "worker-a.log")
        worker_b = None
        try:
            await worker_a.wait_until("/readyz", 200)
            async with users_insert_blocked(stack.database_url):
                handle = await client.start_workflow(
                    "tenantCreationWorkflow", tenant_request(checkoutSessionId=session),
                    id=f"signup-kill-{uuid.uuid4()}", task_queue=worker_env["TEMPORAL_TASK_QUEUE"])
                await wait_for_worker_blocked_on_lock(db)
                for _ in range(400):  # in_progress arrives while provisioning waits on the lock
                    if nmstore.status_history(session) == ["in_progress"]:
                        break
                    await asyncio.sleep(0.05)
                assert nmstore.status_history(session) == ["in_progress"]
                nmstore.hold_next(1)  # the next request is the final status report
            assert await asyncio.to_thread(nmstore.wait_until_held, 30.0), "the completed report never came"
            worker_a.signal(signal.SIGKILL)
            assert await worker_a.wait_exit() == -signal.SIGKILL
            nmstore.release()  # the held request is answered to a dead worker: Temporal never heard of it
            worker_b = start_worker(env, tmp_path / "worker-b.log")
            result = await handle.result()
        finally:
            worker_a.stop()
            if worker_b is not None:
                worker_b.stop()
        assert result["success"] is True
        assert nmstore.last_status(session) == "completed"
        completed = [c for c in nmstore.status_calls if c.json and c.json.get("workflowStatus") == "completed"]
        assert len(completed) >= 2, "the killed attempt's report must have been repeated"
        assert len({c.idempotency_key for c in completed}) == 1
        assert any(c.duplicate for c in completed[1:])
        assert [c["status"] for c in nmstore.callbacks_for(session)] == ["completed"]

"""Every metric name the alert rules and the dashboard use is exposed by a real worker, or is a
documented kube-state-metrics / cAdvisor / Prometheus name (tests/deploy/monitoring_support.py).

Why a real scrape: a misspelt name in a rule or a panel is not an error anywhere: the alert simply
never fires and the panel stays empty. The worker here is `alga-worker run` in its own process, as in
production; it provisions a tenant, refuses a bad request (a failed workflow) and meets a rejected
welcome email (a failed activity), so the families that appear only with a failure exist too.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowFailureError
from tests.deploy.monitoring_support import EXTERNAL_METRICS, referenced_metric_names
from tests.fakes.resend_server import FakeResendServer
from tests.support.data import tenant_request
from tests.support.metrics import Scrape, scrape
from tests.support.processes import WorkerProcess, start_worker

from alga_worker.runtime.devstack import free_port

WORKFLOW_TYPE = "tenantCreationWorkflow"
# Families that exist only once something failed in the process (Temporal SDK); the runs below make
# each of them appear.
FAILURE_FAMILIES = ("temporal_workflow_failed_total", "temporal_activity_execution_failed_total")


@pytest.fixture
def resend() -> Iterator[FakeResendServer]:
    with FakeResendServer() as server:
        yield server


@pytest.fixture
async def worker(worker_env: dict[str, str], resend: FakeResendServer,
                 tmp_path: Path) -> AsyncIterator[tuple[WorkerProcess, int]]:
    port = free_port()
    env = {**worker_env, "METRICS_PORT": str(port), "METRICS_HOST": "127.0.0.1",
           "EMAIL_PROVIDER": "resend", "RESEND_API_KEY": resend.api_key, "RESEND_API_URL": resend.url}
    process = start_worker(env, tmp_path / "worker.log")
    try:
        await process.wait_until("/readyz", 200)
        yield process, port
    finally:
        process.stop()


async def _run(client: Client, task_queue: str, request: Any) -> dict[str, Any]:
    handle = await client.start_workflow(WORKFLOW_TYPE, request, id=f"metric-names-{uuid.uuid4()}",
                                         task_queue=task_queue)
    result: dict[str, Any] = await handle.result()
    return result


async def _scrape_with(port: int, families: tuple[str, ...], attempts: int = 100) -> Scrape:
    """A scrape once ``families`` are exposed (the SDK records a run's end as it reports it, so the
    client can see the result a moment before the scrape shows it)."""
    got = await asyncio.to_thread(scrape, port)
    for _ in range(attempts):
        if all(family in got.families for family in families):
            return got
        await asyncio.sleep(0.05)
        got = await asyncio.to_thread(scrape, port)
    missing = [family for family in families if family not in got.families]
    raise AssertionError(f"never exposed: {missing}")


def exposed_names(got: Scrape) -> set[str]:
    """Every name a query can select: sample names (name_total, name_bucket, name_sum, name_count,
    gauges) and family names (a histogram's base name)."""
    return {name for name, _ in got.samples} | set(got.families)


async def test_every_metric_name_used_by_alerts_and_dashboard_is_exposed(
        worker: tuple[WorkerProcess, int], client: Client, task_queue: str, resend: FakeResendServer) -> None:
    process, port = worker
    provisioned = await _run(client, task_queue, tenant_request())
    assert provisioned["success"] is True and provisioned["emailSent"] is True
    with pytest.raises(WorkflowFailureError):
        await _run(client, task_queue, {"tenantName": "", "adminUser": {"email": "not-an-address"}})
    resend.fail_next(1, status=422, name="validation_error", message="The `to` field is invalid.")
    unwelcomed = await _run(client, task_queue, tenant_request())
    assert unwelcomed["success"] is True and unwelcomed["emailSent"] is False

    got = await _scrape_with(port, FAILURE_FAMILIES)
    exposed = exposed_names(got)
    used = referenced_metric_names()
    missing = {name: sorted(places) for name, places in used.items()
               if name not in exposed and name not in EXTERNAL_METRICS}
    assert missing == {}, f"used but neither exposed by the worker nor documented elsewhere: {missing}"
    # The allow-list does not hide a name of the worker's own.
    assert set(EXTERNAL_METRICS) & exposed == set()
    # The series carry the labels the alerts group by and the dashboard filters on.
    for name in ("alga_worker_ready", "temporal_num_pollers", "temporal_workflow_failed_total"):
        labels = {label for (sample, series), _ in got.samples.items() if sample == name for label, _ in series}
        assert {"namespace", "task_queue"} <= labels, (name, labels)
    assert got.value("temporal_workflow_failed_total", workflow_type=WORKFLOW_TYPE) >= 1
    assert process.proc.poll() is None, process.output()

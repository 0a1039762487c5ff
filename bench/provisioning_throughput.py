"""Provisioning throughput and latency on the embedded stack (one worker, one dev server, this box).

    make bench            # or: .venv/bin/python -m bench.provisioning_throughput --tenants 200

Measures what reference §12 measured for the TypeScript worker, the same way: a backlog of N tenant
creations started first, then drained by one worker (tenants/s); then tenants one after another
(median latency); plus history events and activities per tenant.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from temporalio.client import Client

from alga_worker.config import load_settings
from alga_worker.converter import DATA_CONVERTER
from alga_worker.runtime.devstack import DevStack
from alga_worker.runtime.worker import build_resources, build_worker


def request(i: int) -> dict[str, object]:
    tag = uuid.uuid4().hex[:8]
    return {"tenantName": f"Bench MSP {i} {tag}", "clientName": f"Bench {i}",
            "adminUser": {"firstName": "Bench", "lastName": f"User{i}", "email": f"bench.{tag}@bench.example"}}


async def main(tenants: int, sequential: int) -> None:
    with tempfile.TemporaryDirectory() as root:
        Path(root).chmod(0o755)
        async with DevStack(Path(root) / "stack", ephemeral=True) as stack:
            queue = "bench"
            settings = load_settings(stack.worker_environment(
                ALGA_AUTH_KEY="bench-pepper-not-secret", TEMPORAL_TASK_QUEUE=queue,
                EMAIL_OUTBOX_DIR=str(Path(root) / "outbox"), SECRETS_DIR=str(Path(root) / "secrets"),
                LOG_LEVEL="warning"))
            client = await Client.connect(stack.temporal_address, data_converter=DATA_CONVERTER)
            resources = await build_resources(settings)
            worker = build_worker(client, settings, resources.activities)

            started = time.perf_counter()
            handles = await asyncio.gather(*(
                client.start_workflow("tenantCreationWorkflow", request(i), id=f"bench-{i}-{uuid.uuid4().hex[:6]}",
                                      task_queue=queue) for i in range(tenants)))
            print(f"started {tenants} workflows in {time.perf_counter() - started:.2f} s")
            async with worker:
                drain_start = time.perf_counter()
                await asyncio.gather(*(h.result() for h in handles))
                drain = time.perf_counter() - drain_start
                print(f"backlog drain: {tenants} tenants in {drain:.2f} s = {tenants / drain:.1f} tenants/s")

                latencies = []
                for i in range(sequential):
                    t = time.perf_counter()
                    await client.execute_workflow("tenantCreationWorkflow", request(10_000 + i),
                                                  id=f"bench-seq-{i}-{uuid.uuid4().hex[:6]}", task_queue=queue)
                    latencies.append(time.perf_counter() - t)
                print(f"sequential: {sequential} tenants, median {statistics.median(latencies) * 1000:.0f} ms, "
                      f"p90 {sorted(latencies)[int(0.9 * (len(latencies) - 1))] * 1000:.0f} ms")

            history = await handles[0].fetch_history()
            activities = sum(1 for e in history.events if e.HasField("activity_task_scheduled_event_attributes"))
            print(f"per tenant: {len(history.events)} history events, {activities} activities")
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(f"peak RSS of this process (worker + client): {rss:.0f} MiB")
            await resources.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tenants", type=int, default=200)
    parser.add_argument("--sequential", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(main(args.tenants, args.sequential))

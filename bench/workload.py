"""What the bench starts: tenant creations (plain and checkout) and the no-op workflows."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

from temporalio.client import Client, WorkflowHandle

from bench.noop import NOOP_WORKFLOW

TENANT_WORKFLOW = "tenantCreationWorkflow"


def plain_request(i: int) -> dict[str, Any]:
    """A tenant creation as `alga-worker tenant create` sends it (no checkout)."""
    tag = uuid.uuid4().hex[:8]
    return {"tenantName": f"Bench MSP {i} {tag}", "clientName": f"Bench {i}",
            "adminUser": {"firstName": "Bench", "lastName": f"User{i}", "email": f"bench.{tag}@bench.example"}}


def checkout_request(session_id: str) -> dict[str, Any]:
    """The shape nm-store sends after a paid checkout (companyName, billingPlan, checkoutSessionId)."""
    tag = uuid.uuid4().hex[:8]
    return {"tenantName": f"Bench Signup {tag}", "companyName": f"Bench Signup Co {tag}", "billingPlan": "psa-pro",
            "checkoutSessionId": session_id,
            "adminUser": {"firstName": "Bench", "lastName": "Signup", "email": f"signup.{tag}@bench.example"}}


async def start_many(client: Client, queue: str, workflow: str, args: Callable[[int], Any] | None,
                     n: int, prefix: str) -> list[WorkflowHandle[Any, Any]]:
    """Start ``n`` runs (a backlog for a worker that is not yet running)."""
    run = uuid.uuid4().hex[:6]
    return list(await asyncio.gather(*(
        client.start_workflow(workflow, *([] if args is None else [args(i)]), id=f"{prefix}-{run}-{i}",
                              task_queue=queue)
        for i in range(n))))


async def start_noops(client: Client, queue: str, n: int) -> list[WorkflowHandle[Any, Any]]:
    return await start_many(client, queue, NOOP_WORKFLOW, None, n, "bench-noop")


async def start_tenants(client: Client, queue: str, n: int) -> list[WorkflowHandle[Any, Any]]:
    return await start_many(client, queue, TENANT_WORKFLOW, plain_request, n, "bench-drain")


async def one_at_a_time(client: Client, queue: str, n: int, prefix: str = "bench-seq", *,
                        workflow: str = TENANT_WORKFLOW, args: Callable[[int], Any] | None = plain_request,
                        ) -> tuple[list[float], list[WorkflowHandle[Any, Any]]]:
    """``n`` runs one after another (provisionings unless told): seconds from the start call to the
    result, each."""
    latencies = []
    handles = []
    run = uuid.uuid4().hex[:6]
    for i in range(n):
        started = time.perf_counter()
        handle = await client.start_workflow(workflow, *([] if args is None else [args(100_000 + i)]),
                                             id=f"{prefix}-{run}-{i}", task_queue=queue)
        await handle.result()
        latencies.append(time.perf_counter() - started)
        handles.append(handle)
    return latencies, handles


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100): a value that was measured, never an interpolation."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n * q / 100)
    return ordered[int(rank) - 1]

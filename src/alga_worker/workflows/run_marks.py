"""Search attributes on a run: the ids an operator finds it by, set only when the namespace has them.

Why a helper: every workflow that acts on a tenant or a user carries ``TenantId`` (and ``UserId``), so
``TenantId = "..."`` in the Web UI or ``alga-worker`` finds every run that touched a tenant. Setting an
attribute the namespace has not registered fails the workflow task on the server, again and again, so
the run first asks the worker which ones exist (``worker_capabilities``, one local activity, cached per
process) and sets only those: a cluster without them loses searchability, never work. Values are ids,
never emails or names (search attributes are stored unencrypted). Deterministic.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from alga_worker import search_attributes
    from alga_worker.models import WorkerCapabilities

CAPABILITIES_TIMEOUT = timedelta(seconds=10)


async def worker_capabilities() -> WorkerCapabilities:
    """What this worker's settings and cluster enable (one local activity)."""
    caps: WorkerCapabilities = await workflow.execute_local_activity(
        "worker_capabilities", result_type=WorkerCapabilities, start_to_close_timeout=CAPABILITIES_TIMEOUT)
    return caps


def mark_run(caps: WorkerCapabilities, *, tenant_id: object = None, user_id: object = None) -> None:
    """Upsert ``TenantId``/``UserId`` (those given and registered)."""
    updates = []
    if tenant_id is not None and search_attributes.TENANT_ID.name in caps.search_attributes:
        updates.append(search_attributes.TENANT_ID.value_set(str(tenant_id)))
    if user_id is not None and search_attributes.USER_ID.name in caps.search_attributes:
        updates.append(search_attributes.USER_ID.value_set(str(user_id)))
    if updates:
        workflow.upsert_search_attributes(updates)

"""The deletion's ``Canceled`` tag on the customer's client in the management tenant (issue 13).

The original's ``tagClientAsCanceled`` / ``removeClientCanceledTag``, on this worker's rules: the
management tenant by id (``MANAGEMENT_TENANT_ID``; a worker without it never schedules these, and a
direct call refuses with a non-retryable ``ConfigurationError``), the client found by the tenant id it
records (not by name or e-mail guesses), and the rollback removing exactly the mapping this run added
(its minted ``mapping_id``), never a ``Canceled`` tag an operator put there before. Both idempotent:
executed twice, one outcome (SQL in ``db/tenant_cancellation.py``).
"""

from __future__ import annotations

import logging
from uuid import UUID

from temporalio import activity

from alga_worker import errors
from alga_worker.db import tenant_cancellation as sql
from alga_worker.db.pool import DbPool
from alga_worker.models import CancelledTagInput, CancelledTagResult, OutcomeStatus, StepOutcome

log = logging.getLogger(__name__)

NO_CLIENT = "no client in the management tenant records this tenant (customer tracking never ran for it)"
ALREADY_TAGGED = "already tagged Canceled before this deletion (left as it was)"


class TenantCancellationActivities:
    def __init__(self, pool: DbPool, management_tenant_id: UUID | None) -> None:
        self._pool = pool
        self._mgmt = management_tenant_id

    def _management(self, tenant_id: UUID) -> UUID:
        if self._mgmt is None:
            raise errors.configuration_error("tagging the customer needs MANAGEMENT_TENANT_ID on this worker",
                                             {"missing": ["MANAGEMENT_TENANT_ID"]})
        if tenant_id == self._mgmt:
            raise errors.validation_error("the management tenant is no customer of itself",
                                          {"tenantId": str(tenant_id)})
        return self._mgmt

    @activity.defn(name="tag_client_cancelled")
    async def tag_client_cancelled(self, req: CancelledTagInput) -> CancelledTagResult:
        """Tag the customer's client ``Canceled``. No such client: skipped; more than one: non-retryable
        ``AmbiguousCustomerError`` (an operator must merge them), nothing written."""
        mgmt = self._management(req.tenant_id)
        async with self._pool.connection() as conn, conn.transaction():
            clients = await sql.find_customer_client(conn, mgmt, req.tenant_id)
            if len(clients) > 1:
                raise errors.ambiguous_customer_error(
                    f"more than one client in the management tenant records tenant {req.tenant_id}",
                    {"tenantId": str(req.tenant_id), "clientIds": [str(c) for c in clients]})
            if not clients:
                return CancelledTagResult(outcome=StepOutcome(status=OutcomeStatus.SKIPPED, detail=NO_CLIENT))
            mapping, _rows = await sql.tag_cancelled(conn, mgmt, client_id=clients[0], mapping_id=req.mapping_id)
        added = mapping == req.mapping_id
        log.info("customer client tagged Canceled", extra={"tenant_id": str(req.tenant_id),
                                                           "client_id": str(clients[0]), "added": added})
        return CancelledTagResult(client_id=clients[0], added=added, outcome=StepOutcome(
            status=OutcomeStatus.DONE, detail=None if added else ALREADY_TAGGED,
            # The same outcome whichever attempt wrote it: the mapping row is this run's.
            rows={"tag_mappings": 1} if added else {}))

    @activity.defn(name="untag_client_cancelled")
    async def untag_client_cancelled(self, req: CancelledTagInput) -> int:
        """Rollback: remove this run's mapping (``mapping_id``) only. Returns rows removed (0: gone already)."""
        mgmt = self._management(req.tenant_id)
        async with self._pool.connection() as conn, conn.transaction():
            removed = await sql.untag_cancelled(conn, mgmt, req.mapping_id)
        log.info("Canceled tag removed", extra={"tenant_id": str(req.tenant_id), "rows": removed})
        return removed


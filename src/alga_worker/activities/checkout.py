"""Checkout activities: report a run's progress to nm-store, send the signed callback, and tell the
workflow what this worker's configuration enables.

Thin over :mod:`alga_worker.nmstore`, which owns the wire protocol and the error classification. Both
nm-store calls are safe to run twice: the body and the ``Idempotency-Key`` depend only on the input
(workflow id and status), so a retry after a lost answer is recognised by nm-store as the same request.
They are short calls bounded by the client's timeouts (connect 5 s, 15 s in all), and heartbeat so a
killed worker's attempt is retried within the heartbeat timeout.

``worker_capabilities`` exists because workflow code cannot read settings: the workflow asks once per
run, as a local activity (no task-queue round trip; the search-attribute lookup is cached per
process), and refuses a checkout run on a worker that lacks the checkout settings before anything is
written.
"""

from __future__ import annotations

import httpx
from temporalio import activity

from alga_worker.activities.heartbeat import heartbeating
from alga_worker.activities.temporal_features import SearchAttributeLookup
from alga_worker.config import Settings
from alga_worker.models import CheckoutStatusReport, NmStoreCallback, NmStoreDelivery, WorkerCapabilities
from alga_worker.nmstore import NmStoreClient


class CheckoutActivities:
    def __init__(self, settings: Settings, http_client: httpx.AsyncClient,
                 search_attribute_lookup: SearchAttributeLookup | None = None) -> None:
        self._settings = settings
        self._nmstore = NmStoreClient(settings, http_client)
        self._search_attributes = search_attribute_lookup or SearchAttributeLookup()

    @activity.defn(name="report_checkout_status")
    async def report_checkout_status(self, report: CheckoutStatusReport) -> NmStoreDelivery:
        """``POST /api/internal/checkout-session-status`` with ``X-Internal-Secret``.

        Heartbeats, like every activity that waits on the network: a killed worker's report is retried
        within the heartbeat timeout, and a stale ``in_progress`` can be cancelled while in flight."""
        async with heartbeating():
            return await self._nmstore.report_status(report)

    @activity.defn(name="send_nm_store_callback")
    async def send_nm_store_callback(self, callback: NmStoreCallback) -> NmStoreDelivery:
        """``POST /api/webhooks/temporal`` signed with ``TEMPORAL_WEBHOOK_SECRET``."""
        async with heartbeating():
            return await self._nmstore.send_callback(callback)

    @activity.defn(name="worker_capabilities")
    async def worker_capabilities(self) -> WorkerCapabilities:
        """What this worker's settings enable (variable names only, never values) and which search
        attributes the namespace has (cached per process): one local activity per run, not two."""
        settings = self._settings
        return WorkerCapabilities(
            missing_checkout_settings=settings.missing_checkout_settings(),
            stripe_enabled=settings.stripe_secret_key is not None,
            customer_tracking_enabled=settings.management_tenant_id is not None,
            search_attributes=await self._search_attributes.registered(),
            operations_notices=settings.operations_email is not None,
        )

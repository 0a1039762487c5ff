"""The tenant's Stripe rows: ``stripe_customers`` and, when Alga knows the plan's price, ``stripe_subscriptions``.

What Alga's S-DEC worker wrote inside its tenant-creation transaction (reference 2.1, 3.11), so that
Alga's billing pages and licence changes find the customer and its subscription: one customer row
per tenant and Stripe customer; one subscription row referencing the price row that the **master
billing tenant** (``MASTER_BILLING_TENANT_ID``) keeps for each Alga PSA plan. Alga's
``stripe_subscriptions.stripe_price_id`` is NOT NULL, so a price Alga has not recorded means no
subscription row: the original logged that and went on, and so does this (the customer row is still
written; the subscription can be imported later by Alga's own ``StripeService``).

Differences from the original, on purpose:

* Idempotent: both inserts are ``ON CONFLICT DO NOTHING`` on Alga's unique keys (tenant + Stripe's
  id), so an activity retried after its COMMIT inserts nothing (the original inserted a second
  customer row, or failed the whole provisioning on the duplicate).
* A missing ``MASTER_BILLING_TENANT_ID`` no longer fails the tenant creation: the subscription is
  skipped and the reason reported.
* The subscription's status, period and seats come from Stripe (``fetch_stripe_details``), not
  ``'active'``, ``now()`` and ``now() + 1 month``; what Stripe did not say stays NULL.

The caller (``provision_tenant``) runs this inside its transaction, under its tenant lock, after the
tenant row exists (the foreign keys need it). Nothing here commits.
"""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from alga_worker.models import StripeDetails

__all__ = ["CUSTOMERS", "SKIPPED_PREFIX", "SUBSCRIPTIONS", "SubscriptionSkipped", "write_stripe_records"]

log = logging.getLogger(__name__)

CUSTOMERS = "stripe_customers"
SUBSCRIPTIONS = "stripe_subscriptions"
SKIPPED_PREFIX = "stripe_subscriptions_skipped_"
"""Result keys starting with this are reasons (value 1), not row counts."""


class SubscriptionSkipped(StrEnum):
    """Why no ``stripe_subscriptions`` row could be written."""

    NO_SUBSCRIPTION = "no_subscription"  # the checkout created no subscription (a one-off payment)
    NO_PRICE = "no_price"  # the subscription has no item, so no price
    NO_MASTER_BILLING_TENANT = "no_master_billing_tenant"  # MASTER_BILLING_TENANT_ID is not set
    UNKNOWN_PRICE = "unknown_price"  # the master billing tenant has no stripe_prices row for it


_INSERT_CUSTOMER = """
INSERT INTO stripe_customers (tenant, stripe_customer_id, stripe_customer_external_id, billing_tenant, email, name,
                              created_at, updated_at)
VALUES (%(tenant)s, gen_random_uuid(), %(external_id)s, %(billing_tenant)s, %(email)s, %(name)s, now(), now())
ON CONFLICT (tenant, stripe_customer_external_id) DO NOTHING
"""

_CUSTOMER_ID = """
SELECT stripe_customer_id FROM stripe_customers
WHERE tenant = %(tenant)s AND stripe_customer_external_id = %(external_id)s
"""

# A read of the master billing tenant's rows: filtered by that tenant, so a router query to its shard.
_MASTER_PRICE_ID = """
SELECT stripe_price_id FROM stripe_prices WHERE tenant = %(master)s AND stripe_price_external_id = %(price)s
"""

_INSERT_SUBSCRIPTION = """
INSERT INTO stripe_subscriptions (tenant, stripe_subscription_id, stripe_subscription_external_id,
                                  stripe_subscription_item_id, stripe_customer_id, stripe_price_id, status, quantity,
                                  current_period_start, current_period_end, cancel_at, metadata, created_at,
                                  updated_at)
VALUES (%(tenant)s, gen_random_uuid(), %(external_id)s, %(item_id)s, %(customer_id)s, %(price_id)s, %(status)s,
        %(quantity)s, %(period_start)s, %(period_end)s, %(cancel_at)s, %(metadata)s::jsonb, now(), now())
ON CONFLICT (tenant, stripe_subscription_external_id) DO NOTHING
"""


async def write_stripe_records(conn: AsyncConnection[Any], tenant_id: UUID, details: StripeDetails,
                               master_billing_tenant_id: UUID | None) -> dict[str, int]:
    """Insert the tenant's Stripe rows where missing; return what this call inserted.

    Keys: ``stripe_customers`` and ``stripe_subscriptions`` (rows inserted now: 0 on a repeat call),
    and, when no subscription row can exist, one ``stripe_subscriptions_skipped_<reason>`` key
    (:class:`SubscriptionSkipped`) with value 1, also logged.
    """
    cur = await conn.execute(_INSERT_CUSTOMER, {
        "tenant": tenant_id, "external_id": details.stripe_customer_id, "billing_tenant": master_billing_tenant_id,
        # NOT NULL in Alga; Alga's own import writes '' for a customer without an email, and so does this.
        "email": details.customer_email or "", "name": details.customer_name,
    })
    written = {CUSTOMERS: max(cur.rowcount, 0), SUBSCRIPTIONS: 0}
    price = await _master_price_or_skip(conn, details, master_billing_tenant_id)
    if isinstance(price, SubscriptionSkipped):
        skipped = price
        written[SKIPPED_PREFIX + skipped.value] = 1
        log.log(logging.INFO if skipped is SubscriptionSkipped.NO_SUBSCRIPTION else logging.WARNING,
                "stripe subscription row not written", extra={
                    "tenant_id": str(tenant_id), "reason": skipped.value,
                    "stripe_subscription_id": details.stripe_subscription_id,
                    "stripe_price_id": details.stripe_price_id})
    else:
        written[SUBSCRIPTIONS] = await _insert_subscription(conn, tenant_id, details, price_id=price)
    log.info("stripe records written", extra={
        "tenant_id": str(tenant_id), "stripe_customer_id": details.stripe_customer_id,
        "rows": {k: v for k, v in written.items() if not k.startswith(SKIPPED_PREFIX)}})
    return written


async def _master_price_or_skip(conn: AsyncConnection[Any], details: StripeDetails,
                                    master_billing_tenant_id: UUID | None) -> SubscriptionSkipped | UUID:
    """The master billing tenant's ``stripe_prices.stripe_price_id`` to reference, or why there is none."""
    if details.stripe_subscription_id is None:
        return SubscriptionSkipped.NO_SUBSCRIPTION
    if details.stripe_price_id is None:
        return SubscriptionSkipped.NO_PRICE
    if master_billing_tenant_id is None:
        return SubscriptionSkipped.NO_MASTER_BILLING_TENANT
    cur = await conn.execute(_MASTER_PRICE_ID, {"master": master_billing_tenant_id,
                                                "price": details.stripe_price_id})
    row = await cur.fetchone()
    if row is None:
        return SubscriptionSkipped.UNKNOWN_PRICE
    price_id: UUID = _first(row)
    return price_id


async def _insert_subscription(conn: AsyncConnection[Any], tenant_id: UUID, details: StripeDetails,
                               price_id: UUID) -> int:
    cur = await conn.execute(_CUSTOMER_ID, {"tenant": tenant_id, "external_id": details.stripe_customer_id})
    row = await cur.fetchone()
    if row is None:  # inserted just above in this transaction: only a concurrent delete could hide it
        raise LookupError(f"stripe_customers row for {details.stripe_customer_id} vanished")
    cur = await conn.execute(_INSERT_SUBSCRIPTION, {
        "tenant": tenant_id, "external_id": details.stripe_subscription_id,
        "item_id": details.stripe_subscription_item_id, "customer_id": _first(row), "price_id": price_id,
        # NOT NULL in Alga; the original always wrote 'active'.
        "status": details.status or "active",
        "quantity": details.license_count or 1,
        "period_start": details.current_period_start, "period_end": details.current_period_end,
        # Stripe ends a subscription flagged cancel_at_period_end at the end of the current period.
        "cancel_at": details.current_period_end if details.cancel_at_period_end else None,
        "metadata": Jsonb(details.metadata),
    })
    return max(cur.rowcount, 0)


def _first(row: DictRow | tuple[Any, ...] | Any) -> Any:
    """The first column, whatever row factory the caller's connection uses (dict or tuple rows)."""
    if isinstance(row, dict):
        return next(iter(row.values()))
    return row[0]

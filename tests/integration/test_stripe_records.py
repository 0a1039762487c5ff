"""``write_stripe_records`` against the real test database (and removal of what it wrote).

Each test makes its own tenants: the customer's, and a master billing tenant holding Alga's product
and price rows (seeded here with SQL, as Alga's billing setup would). Then the contract check: the
statements run on a database reduced to exactly the schema contract's columns, and on one where
every column has another type of its declared family.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row
from tests.support.data import tenant_row_counts
from tests.support.databases import scratch_database

from alga_worker.db.provisioning import delete_tenant
from alga_worker.db.schema_contract import CONTRACT, verify_schema
from alga_worker.db.stripe_records import SKIPPED_PREFIX, SubscriptionSkipped, write_stripe_records
from alga_worker.models import StripeDetails

Conn = psycopg.AsyncConnection[Any]
STRIPE_TABLES = ("stripe_customers", "stripe_subscriptions", "stripe_prices", "stripe_products")


def stripe_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


async def new_tenant(conn: Conn, name: str) -> uuid.UUID:
    tenant_id = uuid.uuid4()
    await conn.execute("INSERT INTO tenants (tenant, client_name, email, created_at, updated_at)"
                       " VALUES (%s, %s, %s, now(), now())", (tenant_id, name, f"{tenant_id.hex[:8]}@example.test"))
    return tenant_id


async def seed_price(conn: Conn, master: uuid.UUID, price_external_id: str, *, reduced: bool = False) -> uuid.UUID:
    """A product and its price in the master billing tenant, as Alga's billing setup records them."""
    price_id = uuid.uuid4()
    if reduced:  # only the contract's columns exist
        await conn.execute("INSERT INTO stripe_products (tenant) VALUES (%s)", (master,))
        await conn.execute("INSERT INTO stripe_prices (tenant, stripe_price_id, stripe_price_external_id)"
                           " VALUES (%s, %s, %s)", (master, price_id, price_external_id))
        return price_id
    product_id = uuid.uuid4()
    await conn.execute("INSERT INTO stripe_products (tenant, stripe_product_id, stripe_product_external_id, name,"
                       " product_type) VALUES (%s, %s, %s, 'Alga PSA Pro', 'license')",
                       (master, product_id, stripe_id("prod")))
    await conn.execute("INSERT INTO stripe_prices (tenant, stripe_price_id, stripe_price_external_id,"
                       " stripe_product_id, unit_amount, currency, recurring_interval)"
                       " VALUES (%s, %s, %s, %s, 2900, 'usd', 'month')",
                       (master, price_id, price_external_id, product_id))
    return price_id


def details(**overrides: Any) -> StripeDetails:
    start = datetime(2025, 12, 1, tzinfo=UTC)
    fields: dict[str, Any] = {
        "stripe_customer_id": stripe_id("cus"), "stripe_subscription_id": stripe_id("sub"),
        "stripe_subscription_item_id": stripe_id("si"), "stripe_price_id": stripe_id("price"), "license_count": 8,
        "customer_email": "billing@acme.test", "customer_name": "Acme IT", "currency": "usd", "status": "trialing",
        "current_period_start": start, "current_period_end": start + timedelta(days=31),
        "cancel_at_period_end": True, "metadata": {"plan": "pro"},
    }
    fields.update(overrides)
    return StripeDetails(**fields)


async def write(conn: Conn, tenant: uuid.UUID, found: StripeDetails, master: uuid.UUID | None) -> dict[str, int]:
    async with conn.transaction():
        return await write_stripe_records(conn, tenant, found, master)


async def rows(conn: Conn, table: str, tenant: uuid.UUID) -> list[dict[str, Any]]:
    cur = await conn.execute(f"SELECT * FROM {table} WHERE tenant = %s", (tenant,))
    return [dict(r) for r in await cur.fetchall()]


# ---------------------------------------------------------------- behaviour


async def test_customer_and_subscription_written_once_referencing_the_master_price(db: Conn) -> None:
    master, tenant = await new_tenant(db, "Nine Minds billing"), await new_tenant(db, "Acme MSP")
    found = details()
    master_price = await seed_price(db, master, found.stripe_price_id or "")

    first = await write(db, tenant, found, master)
    second = await write(db, tenant, found, master)

    assert first == {"stripe_customers": 1, "stripe_subscriptions": 1}
    assert second == {"stripe_customers": 0, "stripe_subscriptions": 0}
    [customer] = await rows(db, "stripe_customers", tenant)
    assert customer["stripe_customer_external_id"] == found.stripe_customer_id
    assert customer["billing_tenant"] == master
    assert (customer["email"], customer["name"]) == ("billing@acme.test", "Acme IT")
    [subscription] = await rows(db, "stripe_subscriptions", tenant)
    assert subscription["stripe_subscription_external_id"] == found.stripe_subscription_id
    assert subscription["stripe_subscription_item_id"] == found.stripe_subscription_item_id
    assert subscription["stripe_customer_id"] == customer["stripe_customer_id"]
    assert subscription["stripe_price_id"] == master_price  # the master billing tenant's row
    assert (subscription["status"], subscription["quantity"]) == ("trialing", 8)
    assert subscription["current_period_start"] == found.current_period_start
    assert subscription["current_period_end"] == subscription["cancel_at"] == found.current_period_end
    assert subscription["metadata"] == {"plan": "pro"}
    # Nothing was written into the master billing tenant.
    assert await rows(db, "stripe_customers", master) == []
    assert await rows(db, "stripe_subscriptions", master) == []


async def test_no_subscription_row_without_the_price_in_the_master_billing_tenant(db: Conn) -> None:
    master, tenant, elsewhere = (await new_tenant(db, "Nine Minds billing"), await new_tenant(db, "Acme MSP"),
                                 await new_tenant(db, "Some other tenant"))
    found = details()
    await seed_price(db, elsewhere, found.stripe_price_id or "")  # known, but not to the master billing tenant

    written = await write(db, tenant, found, master)

    assert written == {"stripe_customers": 1, "stripe_subscriptions": 0,
                       SKIPPED_PREFIX + SubscriptionSkipped.UNKNOWN_PRICE: 1}
    assert len(await rows(db, "stripe_customers", tenant)) == 1
    assert await rows(db, "stripe_subscriptions", tenant) == []


@pytest.mark.parametrize(("overrides", "with_master", "reason"), [
    ({"stripe_subscription_id": None, "stripe_subscription_item_id": None, "stripe_price_id": None,
      "license_count": None}, True, SubscriptionSkipped.NO_SUBSCRIPTION),
    ({"stripe_subscription_item_id": None, "stripe_price_id": None}, True, SubscriptionSkipped.NO_PRICE),
    ({}, False, SubscriptionSkipped.NO_MASTER_BILLING_TENANT),
])
async def test_every_reason_for_no_subscription_row_is_reported(db: Conn, overrides: dict[str, Any],
                                                                with_master: bool, reason: SubscriptionSkipped) -> None:
    master, tenant = await new_tenant(db, "Nine Minds billing"), await new_tenant(db, "Acme MSP")
    found = details(**overrides)
    if found.stripe_price_id is not None:
        await seed_price(db, master, found.stripe_price_id)

    written = await write(db, tenant, found, master if with_master else None)

    assert written == {"stripe_customers": 1, "stripe_subscriptions": 0, SKIPPED_PREFIX + reason: 1}
    [customer] = await rows(db, "stripe_customers", tenant)
    assert customer["billing_tenant"] == (master if with_master else None)
    assert await rows(db, "stripe_subscriptions", tenant) == []


async def test_defaults_when_stripe_said_little(db: Conn) -> None:
    """No email (NOT NULL in Alga: '' as Alga's own import writes), no status ('active', as the original),
    no seats (1), no period (NULL rather than invented dates)."""
    master, tenant = await new_tenant(db, "Nine Minds billing"), await new_tenant(db, "Acme MSP")
    found = details(customer_email=None, customer_name=None, status=None, license_count=None,
                    current_period_start=None, current_period_end=None, cancel_at_period_end=False, metadata={})
    await seed_price(db, master, found.stripe_price_id or "")

    assert await write(db, tenant, found, master) == {"stripe_customers": 1, "stripe_subscriptions": 1}

    [customer] = await rows(db, "stripe_customers", tenant)
    assert (customer["email"], customer["name"]) == ("", None)
    [subscription] = await rows(db, "stripe_subscriptions", tenant)
    assert (subscription["status"], subscription["quantity"]) == ("active", 1)
    assert (subscription["current_period_start"], subscription["current_period_end"], subscription["cancel_at"]) \
        == (None, None, None)


async def test_tenant_removal_takes_the_stripe_rows_with_it(db: Conn) -> None:
    """TENANT_TABLES_DELETE_ORDER deletes children first: the foreign keys allow it, the master's price stays."""
    master, tenant = await new_tenant(db, "Nine Minds billing"), await new_tenant(db, "Acme MSP")
    found = details()
    await seed_price(db, master, found.stripe_price_id or "")
    await write(db, tenant, found, master)
    counts = await tenant_row_counts(db, tenant)
    assert (counts["stripe_customers"], counts["stripe_subscriptions"]) == (1, 1)

    async with db.transaction():
        deleted = await delete_tenant(db, tenant)

    assert (deleted["stripe_subscriptions"], deleted["stripe_customers"], deleted["tenants"]) == (1, 1, 1)
    assert set((await tenant_row_counts(db, tenant)).values()) == {0}
    assert len(await rows(db, "stripe_prices", master)) == 1


# ---------------------------------------------------------------- the schema contract covers these statements


ALTERNATIVES = {"text": "varchar(255)", "timestamp with time zone": "timestamp", "jsonb": "json",
                "integer": "bigint"}


@pytest.mark.parametrize("change", ["reduce", "retype"])
async def test_the_statements_run_on_a_database_shaped_only_by_the_contract(db: Conn, stack: Any,
                                                                           change: str) -> None:
    """A column the SQL uses but the contract forgot fails "reduce"; a family declared too wide fails
    "retype"."""
    async with scratch_database(db, stack.database_url) as url, \
            await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row) as conn:
        for table in CONTRACT:
            cur = await conn.execute("SELECT column_name, data_type FROM information_schema.columns"
                                     " WHERE table_schema = 'public' AND table_name = %s", (table.name,))
            for column in await cur.fetchall():
                name, data_type = column["column_name"], column["data_type"]
                if change == "reduce" and name not in table.columns:
                    await conn.execute(f'ALTER TABLE {table.name} DROP COLUMN "{name}" CASCADE')
                elif change == "retype" and table.name in STRIPE_TABLES and data_type in ALTERNATIVES:
                    await conn.execute(f'ALTER TABLE {table.name} ALTER COLUMN "{name}" '
                                       f'TYPE {ALTERNATIVES[data_type]}')
        assert await verify_schema(conn) == []
        master, tenant = await new_tenant(conn, "Nine Minds billing"), await new_tenant(conn, "Acme MSP")
        found = details()
        await seed_price(conn, master, found.stripe_price_id or "", reduced=change == "reduce")
        assert await write(conn, tenant, found, master) == {"stripe_customers": 1, "stripe_subscriptions": 1}
        assert await write(conn, tenant, found, master) == {"stripe_customers": 0, "stripe_subscriptions": 0}
        async with conn.transaction():
            deleted = await delete_tenant(conn, tenant)
        assert (deleted["stripe_subscriptions"], deleted["stripe_customers"]) == (1, 1)

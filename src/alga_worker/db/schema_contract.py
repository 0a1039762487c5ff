"""The schema contract: the tables and columns the worker reads and writes, declared once.

INTERFACE (owned by the schema-contract work; the health monitor and `alga-worker check` call it):

    async def verify_schema(conn: psycopg.AsyncConnection[Any]) -> list[str]

returns one human-readable problem per missing table, missing column, incompatible type, missing
unique key or unset NOT NULL column (an empty list when the live database satisfies the contract).
It only reads: the columns from ``information_schema``, the unique indexes from ``pg_catalog``.

Why: Alga PSA owns the production schema and renames things (``companies`` became ``clients`` in
October 2025; ``tenant_email_settings.tenant_id`` became ``tenant``). A worker built for one shape and
run against another fails inside a provisioning transaction, customer by customer. Comparing the
contract with the live database up front (``alga-worker check``, start-up, readiness) names the
difference before any workflow runs; ``activities/db_errors.py`` types the same errors as
``SchemaMismatchError`` if one slips through anyway.

What is declared: every table and column that SQL in ``db/provisioning.py``, ``db/customer_tracking.py``,
``db/licenses.py`` (and the CLI's web-app role check) names, with a *type family*, not an exact type: the worker's
statements work on ``varchar(255)`` as on ``text``, on ``timestamp`` as on ``timestamptz``. Plus the
unique keys the ``ON CONFLICT`` targets need: without one PostgreSQL rejects the statement (42P10). And, for the
tables the worker inserts into, any other column that is NOT NULL without a default is reported: the
worker's INSERT does not set it, so it would fail (23502). A column added to the worker's SQL must
be added here: ``tests/integration/test_schema_contract.py`` runs provisioning and removal on a
database reduced to exactly this contract, so a forgotten column fails the tests.

Which schema: the tables are looked up the way the worker's unqualified SQL finds them, through the
connection's ``search_path`` (the first schema in it that has the table). ``information_schema`` only
lists columns the connected role holds some privilege on, so "missing" also means "not visible to
this role"; ``docs/database.md`` lists the privileges the worker needs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from psycopg import AsyncConnection
from psycopg.pq import TransactionStatus
from psycopg.rows import tuple_row

__all__ = [
    "BOOLEAN", "CONTRACT", "DATE_LIKE", "INTEGER", "JSON", "NUMERIC", "RECOMMENDED_INDEXES", "TEXT", "TIMESTAMP",
    "UUID", "RecommendedIndex", "Table", "TypeFamily", "missing_recommended_indexes", "verify_schema",
]


@dataclass(frozen=True)
class TypeFamily:
    """Types (``information_schema.columns.data_type``) a column may have for the worker's SQL to work."""

    name: str
    types: frozenset[str]

    def accepts(self, data_type: str) -> bool:
        return data_type in self.types


UUID = TypeFamily("uuid", frozenset({"uuid"}))
TEXT = TypeFamily("text-like", frozenset({"text", "character varying", "character"}))
BOOLEAN = TypeFamily("boolean", frozenset({"boolean"}))
INTEGER = TypeFamily("integer-like", frozenset({"smallint", "integer", "bigint"}))
NUMERIC = TypeFamily("numeric", frozenset({"numeric", "real", "double precision"}))
TIMESTAMP = TypeFamily("timestamp-like", frozenset({"timestamp with time zone", "timestamp without time zone"}))
DATE_LIKE = TypeFamily("date-like", frozenset({"date", "timestamp with time zone", "timestamp without time zone"}))
JSON = TypeFamily("json", frozenset({"jsonb", "json"}))


@dataclass(frozen=True)
class Table:
    """One table: its columns (name -> type family) and the unique keys its ON CONFLICT targets need."""

    name: str
    columns: Mapping[str, TypeFamily]
    unique_keys: tuple[tuple[str, ...], ...] = ()
    # The worker inserts rows: every other NOT NULL column needs a default, or the INSERT fails.
    inserts: bool = True
    uses: str = field(default="", compare=False)


_STAMPS: dict[str, TypeFamily] = {"created_at": TIMESTAMP, "updated_at": TIMESTAMP}

CONTRACT: tuple[Table, ...] = (
    Table("tenants", {
        "tenant": UUID, "client_name": TEXT, "email": TEXT, "licensed_user_count": INTEGER,
        "last_license_update": TIMESTAMP, "stripe_event_id": TEXT, **_STAMPS,
    }, unique_keys=(("tenant",),),
        uses="insert (ON CONFLICT (tenant)), exists check, licence count update and usage, count, delete"),
    Table("clients", {
        "tenant": UUID, "client_id": UUID, "client_name": TEXT, "client_type": TEXT, "is_inactive": BOOLEAN,
        "properties": JSON, "notes": TEXT, **_STAMPS,
    }, unique_keys=(("tenant", "client_id"),),
        uses="default client insert, ownership proof, customer client lookup and insert, count, delete"),
    Table("client_locations", {
        "tenant": UUID, "location_id": UUID, "client_id": UUID, "location_name": TEXT, "email": TEXT,
        "phone": TEXT, "address_line1": TEXT, "city": TEXT, "country_code": TEXT, "country_name": TEXT,
        "is_default": BOOLEAN, "is_active": BOOLEAN, **_STAMPS,
    }, unique_keys=(("tenant", "location_id"),), uses="main location insert, count, delete"),
    Table("tenant_companies", {"tenant": UUID, "client_id": UUID, "is_default": BOOLEAN},
          unique_keys=(("tenant", "client_id"),), uses="default-client link insert, count, delete"),
    Table("tenant_settings", {
        "tenant": UUID, "onboarding_completed": BOOLEAN, "onboarding_skipped": BOOLEAN, "onboarding_data": JSON,
        "settings": JSON, **_STAMPS,
    }, unique_keys=(("tenant",),), uses="onboarding flags insert, count, delete"),
    Table("tenant_email_settings", {
        "tenant": UUID, "email_provider": TEXT, "fallback_enabled": BOOLEAN, "tracking_enabled": BOOLEAN,
        **_STAMPS,
    }, uses="insert where missing (no unique key in Alga), count, delete"),
    Table("roles", {
        "tenant": UUID, "role_id": UUID, "role_name": TEXT, "description": TEXT, "msp": BOOLEAN,
        "client": BOOLEAN, **_STAMPS,
    }, uses="onboarding seed insert where missing, Admin role lookup, count, delete"),
    Table("permissions", {
        "tenant": UUID, "permission_id": UUID, "resource": TEXT, "action": TEXT, "msp": BOOLEAN,
        "client": BOOLEAN, "description": TEXT, "created_at": TIMESTAMP,
    }, uses="onboarding seed insert where missing, id lookup, count, delete"),
    Table("role_permissions", {
        "tenant": UUID, "role_id": UUID, "permission_id": UUID, "created_at": TIMESTAMP,
    }, unique_keys=(("tenant", "role_id", "permission_id"),), uses="grants insert, count, delete"),
    Table("tax_regions", {
        "tenant": UUID, "region_code": TEXT, "region_name": TEXT, "is_active": BOOLEAN,
    }, unique_keys=(("tenant", "region_code"),), uses="default region insert, count, delete"),
    Table("tax_rates", {
        "tenant": UUID, "tax_rate_id": UUID, "tax_percentage": NUMERIC, "description": TEXT,
        "start_date": DATE_LIKE, "region_code": TEXT, "is_active": BOOLEAN,
    }, uses="default rate insert where missing, count, delete"),
    Table("users", {
        "tenant": UUID, "user_id": UUID, "username": TEXT, "first_name": TEXT, "last_name": TEXT,
        "email": TEXT, "hashed_password": TEXT, "user_type": TEXT, "is_inactive": BOOLEAN, "contact_id": UUID,
        **_STAMPS,
    }, unique_keys=(("tenant", "user_id"),),
        uses="admin upsert, cross-tenant email check, portal user lookup and upsert, web-app role check, "
             "count, delete"),
    Table("user_roles", {"tenant": UUID, "user_id": UUID, "role_id": UUID},
          unique_keys=(("tenant", "user_id", "role_id"),), uses="Admin role grant insert, count, delete"),
    # Customer tracking writes these in the management tenant (db/customer_tracking.py); for any other
    # tenant the worker counts and removes them by tenant only.
    Table("contacts", {
        "tenant": UUID, "contact_name_id": UUID, "client_id": UUID, "full_name": TEXT, "email": TEXT,
        "role": TEXT, "notes": TEXT, "is_inactive": BOOLEAN, "is_client_admin": BOOLEAN, **_STAMPS,
    }, unique_keys=(("tenant", "contact_name_id"),), uses="customer contact lookup and insert, count, delete"),
    Table("tag_definitions", {
        "tenant": UUID, "tag_id": UUID, "tag_text": TEXT, "tagged_type": TEXT, "background_color": TEXT,
        "text_color": TEXT, "created_at": TIMESTAMP,
    }, unique_keys=(("tenant", "tag_text", "tagged_type"),), uses="PSA Customer tag get-or-create, count, delete"),
    Table("tag_mappings", {
        "tenant": UUID, "mapping_id": UUID, "tag_id": UUID, "tagged_id": UUID, "tagged_type": TEXT,
        "created_by": UUID, "created_at": TIMESTAMP,
    }, unique_keys=(("tenant", "tag_id", "tagged_id"),), uses="customer client tag mapping, count, delete"),
    # Stripe billing rows of the new tenant (db/stripe_records.py), and the master billing tenant's prices.
    Table("stripe_customers", {
        "tenant": UUID, "stripe_customer_id": UUID, "stripe_customer_external_id": TEXT, "billing_tenant": UUID,
        "email": TEXT, "name": TEXT, **_STAMPS,
    }, unique_keys=(("tenant", "stripe_customer_external_id"),),
        uses="insert (ON CONFLICT (tenant, stripe_customer_external_id)), id lookup, count, delete"),
    Table("stripe_subscriptions", {
        "tenant": UUID, "stripe_subscription_id": UUID, "stripe_subscription_external_id": TEXT,
        "stripe_subscription_item_id": TEXT, "stripe_customer_id": UUID, "stripe_price_id": UUID, "status": TEXT,
        "quantity": INTEGER, "current_period_start": TIMESTAMP, "current_period_end": TIMESTAMP,
        "cancel_at": TIMESTAMP, "metadata": JSON, **_STAMPS,
    }, unique_keys=(("tenant", "stripe_subscription_external_id"),),
        uses="insert (ON CONFLICT (tenant, stripe_subscription_external_id)), count, delete"),
    Table("stripe_prices", {"tenant": UUID, "stripe_price_id": UUID, "stripe_price_external_id": TEXT},
          inserts=False, uses="master billing tenant's price lookup, count, delete"),
    # Written by Alga's StripeService for a tenant (imported prices' products); counted and removed.
    Table("stripe_products", {"tenant": UUID}, inserts=False, uses="count, delete"),
)
"""Every table and column the worker's SQL names. Order: as ``verify_schema`` reports."""


_COLUMNS_SQL = """
SELECT c.table_name::text, c.column_name::text, c.data_type::text, c.udt_name::text, s.pos,
       c.is_nullable = 'NO' AND c.column_default IS NULL AND c.is_identity = 'NO'
           AND c.is_generated = 'NEVER' AS required
FROM information_schema.columns AS c
JOIN unnest(current_schemas(false)) WITH ORDINALITY AS s(schema_name, pos) ON s.schema_name = c.table_schema::text
WHERE c.table_name::text = ANY(%s)
"""

# Unique, valid, non-partial indexes on plain columns: what ON CONFLICT (cols) can infer as its arbiter.
_UNIQUE_SQL = """
SELECT c.relname::text, s.pos, array_agg(a.attname::text ORDER BY a.attname)
FROM pg_index AS i
JOIN pg_class AS c ON c.oid = i.indrelid
JOIN pg_namespace AS n ON n.oid = c.relnamespace
JOIN unnest(current_schemas(false)) WITH ORDINALITY AS s(schema_name, pos) ON s.schema_name = n.nspname::text
JOIN pg_attribute AS a ON a.attrelid = i.indrelid
    AND a.attnum = ANY ((i.indkey::int2[])[0:i.indnkeyatts - 1])
WHERE i.indisunique AND i.indisvalid AND i.indpred IS NULL AND i.indexprs IS NULL
  AND c.relname::text = ANY(%s)
GROUP BY i.indexrelid, c.relname, s.pos
"""


async def verify_schema(conn: AsyncConnection[Any]) -> list[str]:
    """Compare the live database with the contract; one message per problem (empty: compatible)."""
    names = [table.name for table in CONTRACT]
    # Leave a connection that was idle as it was (not "idle in transaction"); autocommit needs nothing.
    was_idle = not conn.autocommit and conn.info.transaction_status == TransactionStatus.IDLE
    try:
        async with conn.cursor(row_factory=tuple_row) as cur:
            await cur.execute(_COLUMNS_SQL, (names,))
            column_rows = await cur.fetchall()
            await cur.execute(_UNIQUE_SQL, (names,))
            key_rows = await cur.fetchall()
    finally:
        if was_idle and not conn.closed:
            await conn.rollback()
    return compare(CONTRACT, column_rows, key_rows)


def compare(contract: tuple[Table, ...], column_rows: list[tuple[Any, ...]],
            key_rows: list[tuple[Any, ...]]) -> list[str]:
    """The problems, from the live columns ``(table, column, data_type, udt_name, search_path
    position, NOT NULL without default)`` and unique keys ``(table, search_path position, [columns])``."""
    # The schema the search_path resolves each table to: the earliest position that has it.
    resolved: dict[str, int] = {}
    for table, _, _, _, pos, _ in column_rows:
        resolved[table] = min(pos, resolved.get(table, pos))
    live: dict[str, dict[str, str]] = {}
    required: dict[str, list[str]] = {}
    for table, column, data_type, udt_name, pos, needs_value in column_rows:
        if pos == resolved[table]:
            shown = udt_name if data_type in ("USER-DEFINED", "ARRAY") else data_type
            live.setdefault(table, {})[column] = shown
            if needs_value:
                required.setdefault(table, []).append(column)
    keys: dict[str, set[frozenset[str]]] = {}
    for table, pos, columns in key_rows:
        if pos == resolved.get(table):
            keys.setdefault(table, set()).add(frozenset(columns))

    problems: list[str] = []
    for table in contract:
        columns = live.get(table.name)
        if columns is None:
            problems.append(f"missing table {table.name}")
            continue
        for column, family in table.columns.items():
            found = columns.get(column)
            if found is None:
                problems.append(f"missing column {table.name}.{column}")
            elif not family.accepts(found):
                problems.append(f"column {table.name}.{column}: expected {family.name}, found {found}")
        for key in table.unique_keys:
            if frozenset(key) not in keys.get(table.name, set()) and all(c in columns for c in key):
                problems.append(f"table {table.name}: no unique index on ({', '.join(key)}), "
                                "the worker's ON CONFLICT target")
        if table.inserts:
            for column in sorted(set(required.get(table.name, ())) - set(table.columns)):
                problems.append(f"column {table.name}.{column}: NOT NULL without a default, and the "
                                "worker's INSERT does not set it")
    return problems


# ---------------------------------------------------------------- recommended indexes


@dataclass(frozen=True)
class RecommendedIndex:
    """An index the worker's SQL is correct without, but whose cost grows with Alga's size without it.

    Not part of the contract: a database without it is compatible (start-up and readiness ignore it);
    ``alga-worker check`` warns and prints :attr:`ddl`. Whatever its name (Alga may have an equivalent
    under its own), any valid, non-partial btree index on ``table`` whose leading key columns are
    ``keys`` satisfies it. Not partial: the planner uses expression statistics only of non-partial
    indexes, misjudges how rare a match is without them, and may prefer an ordered scan of the whole
    tenant instead (docs/database.md §7).
    """

    name: str
    table: str
    keys: tuple[str, ...]
    serves: str

    @property
    def ddl(self) -> str:
        """What an operator runs, once, on the coordinator: builds without blocking Alga's writes."""
        return f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {self.name} ON {self.table} ({', '.join(self.keys)})"

    def satisfied_by(self, keys: list[str], predicate: str | None) -> bool:
        """Does an index with these key columns (as ``pg_get_indexdef`` prints them) and predicate do?"""
        return predicate is None and [_normalise(k) for k in keys[:len(self.keys)]] == [
            _normalise(k) for k in self.keys]


RECOMMENDED_INDEXES: tuple[RecommendedIndex, ...] = (
    RecommendedIndex(
        "idx_users_lower_email", "users", ("lower(email)",),
        serves="the duplicate-admin-email check of every provisioning reads every user of every tenant, "
               "and customer tracking's portal-user lookup every user of the management tenant"),
    RecommendedIndex(
        "idx_contacts_tenant_lower_email", "contacts", ("tenant", "lower(email)"),
        serves="customer tracking's contact lookup reads every contact of the management tenant"),
    RecommendedIndex(
        "idx_clients_tenant_alga_tenant_id", "clients", ("tenant", "(properties->>'alga_tenant_id')"),
        serves="customer tracking's client lookup reads every client of the management tenant "
               "(with idx_clients_tenant_tenant_id: the lookup matches either key)"),
    RecommendedIndex(
        "idx_clients_tenant_tenant_id", "clients", ("tenant", "(properties->>'tenant_id')"),
        serves="customer tracking's client lookup reads every client of the management tenant "
               "(with idx_clients_tenant_alga_tenant_id: the lookup matches either key)"),
)
"""docs/database.md ("Indexes the worker recommends") gives each one's statement, plans and row counts."""

# Valid btree indexes of the given tables: key columns as PostgreSQL prints them, and the predicate, in
# the schema the search_path resolves each table to.
_INDEXES_SQL = """
SELECT c.relname::text, s.pos,
       ARRAY(SELECT pg_get_indexdef(i.indexrelid, k, true) FROM generate_series(1, i.indnkeyatts) AS k
             ORDER BY k),
       pg_get_expr(i.indpred, i.indrelid, true)
FROM pg_index AS i
JOIN pg_class AS c ON c.oid = i.indrelid
JOIN pg_class AS ic ON ic.oid = i.indexrelid
JOIN pg_am AS am ON am.oid = ic.relam
JOIN pg_namespace AS n ON n.oid = c.relnamespace
JOIN unnest(current_schemas(false)) WITH ORDINALITY AS s(schema_name, pos) ON s.schema_name = n.nspname::text
WHERE i.indisvalid AND i.indisready AND am.amname = 'btree' AND c.relname::text = ANY(%s)
"""

_TABLES_SQL = """
SELECT c.relname::text, min(s.pos)
FROM pg_class AS c
JOIN pg_namespace AS n ON n.oid = c.relnamespace
JOIN unnest(current_schemas(false)) WITH ORDINALITY AS s(schema_name, pos) ON s.schema_name = n.nspname::text
WHERE c.relkind IN ('r', 'p') AND c.relname::text = ANY(%s)
GROUP BY c.relname
"""


async def missing_recommended_indexes(conn: AsyncConnection[Any],
                                      recommended: tuple[RecommendedIndex, ...] = RECOMMENDED_INDEXES,
                                      ) -> list[RecommendedIndex]:
    """The recommended indexes the live database lacks, for tables it has (a missing table is the
    contract's problem). Reads ``pg_catalog`` only; leaves an idle connection idle, as
    :func:`verify_schema` does."""
    tables = sorted({index.table for index in recommended})
    was_idle = not conn.autocommit and conn.info.transaction_status == TransactionStatus.IDLE
    try:
        async with conn.cursor(row_factory=tuple_row) as cur:
            await cur.execute(_TABLES_SQL, (tables,))
            resolved: dict[str, int] = {table: pos for table, pos in await cur.fetchall()}
            await cur.execute(_INDEXES_SQL, (tables,))
            index_rows = await cur.fetchall()
    finally:
        if was_idle and not conn.closed:
            await conn.rollback()
    live: dict[str, list[tuple[list[str], str | None]]] = {}
    for table, pos, keys, predicate in index_rows:
        if pos == resolved.get(table):
            live.setdefault(table, []).append((list(keys), predicate))
    return [index for index in recommended if index.table in resolved
            and not any(index.satisfied_by(keys, predicate) for keys, predicate in live.get(index.table, ()))]


def _normalise(expression: str) -> str:
    """One spelling per expression: ``lower((email)::text)`` (a varchar column), ``lower(email)`` and
    ``(properties ->> 'k'::text)`` / ``(properties->>'k')`` compare equal."""
    return "".join(expression.replace("::text", "").replace("(", " ").replace(")", " ").split()).lower()

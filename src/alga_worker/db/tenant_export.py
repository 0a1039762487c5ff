"""SQL and rules of a tenant export: which tables, which columns, which rows, and what is never exported.

Why a module of its own: the export activity (``activities/tenant_export.py``), the tests and the
benchmark must agree on what "every row of the tenant" means and on which columns are secrets.

- **Which tables.** Every ordinary or partitioned table (not a partition) in the schema the worker's
  unqualified SQL uses (``current_schema()``) that has a column named ``tenant``, found in the catalog
  at export time, so a table Alga adds tomorrow is exported without a change here
  (``provisioning.TENANT_TABLES_DELETE_ORDER`` lists only the tables the worker writes).
- **Which rows.** ``WHERE tenant = %s``, read through a server-side cursor in batches (``fetchmany``),
  ordered by the primary key when there is one, so memory holds one batch whatever the table's size.
- **Secrets never leave.** A column is left out, at the source (it is not even selected), when
  :func:`is_secret_name` says its name marks a secret; keys with such names inside ``json``/``jsonb``
  values are removed too (:func:`scrub_json`). The rule, decided once:

  the name is split into words (at ``_``, ``-``, ``.``, spaces and lower-to-upper camelCase changes,
  lower-cased); it is a secret when one word is in :data:`SECRET_WORDS` (``password``, ``secret``,
  ``token``, ``salt``, ``otp`` ...) or two adjacent words form a pair in :data:`SECRET_PAIRS`
  (``api key``, ``private key``, ``access key``, ``signing key`` ...), or the whole name is one of
  their concatenations (``apikey``). ``hashed_password``, ``two_factor_secret``, ``refresh_token``,
  ``apiKey`` are secrets; ``password_reset_at`` is left out too (erring on the safe side costs a
  timestamp). ``tests/unit/test_tenant_export_rules.py`` runs the rule over the dev schema, so a new
  secret-looking column fails a test until someone decides.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection, sql
from psycopg.rows import tuple_row

SECRET_WORDS: frozenset[str] = frozenset({
    "password", "passwords", "passwd", "passphrase", "pwd", "secret", "secrets", "token", "tokens", "salt",
    "otp", "totp", "hotp", "credential", "credentials", "apikey", "privatekey", "pin", "cvv", "cvc",
})
SECRET_PAIRS: frozenset[tuple[str, str]] = frozenset({
    ("api", "key"), ("private", "key"), ("secret", "key"), ("access", "key"), ("signing", "key"),
    ("encryption", "key"), ("auth", "key"), ("client", "secret"), ("recovery", "code"), ("recovery", "codes"),
    ("backup", "codes"), ("session", "key"), ("webhook", "key"), ("license", "key"), ("licence", "key"),
})
_CONCATENATED = frozenset(a + b for a, b in SECRET_PAIRS)
_SPLIT = re.compile(r"[_\-.\s]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def name_words(name: str) -> list[str]:
    """``twoFactor_Secret`` -> ``["two", "factor", "secret"]``."""
    return [w.lower() for part in _SPLIT.split(name) for w in _CAMEL.split(part) if w]


def is_secret_name(name: str) -> bool:
    """True when a column or JSON key named ``name`` may hold a secret (module docstring)."""
    words = name_words(name)
    if any(w in SECRET_WORDS or w in _CONCATENATED for w in words):
        return True
    return any(pair in SECRET_PAIRS for pair in itertools.pairwise(words))


def scrub_json(value: Any) -> tuple[Any, int]:
    """``value`` without the object keys :func:`is_secret_name` marks, at any depth; and how many went."""
    if isinstance(value, dict):
        removed = 0
        kept: dict[str, Any] = {}
        for key, inner in value.items():
            if isinstance(key, str) and is_secret_name(key):
                removed += 1
                continue
            kept[key], n = scrub_json(inner)
            removed += n
        return kept, removed
    if isinstance(value, list):
        removed = 0
        items = []
        for inner in value:
            item, n = scrub_json(inner)
            items.append(item)
            removed += n
        return items, removed
    return value, 0


@dataclass(frozen=True)
class Column:
    name: str
    type: str

    @property
    def is_json(self) -> bool:
        return self.type in ("json", "jsonb")


@dataclass(frozen=True)
class TenantTable:
    """One table with a ``tenant`` column: the columns exported, those left out, the ordering key."""

    name: str
    columns: tuple[Column, ...]
    excluded: tuple[str, ...] = ()
    order_by: tuple[str, ...] = field(default=())


_TABLE_COLUMNS = """
SELECT c.relname AS table_name, a.attname AS column_name, format_type(a.atttypid, a.atttypmod) AS column_type
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND EXISTS (SELECT 1 FROM pg_attribute t
              WHERE t.attrelid = c.oid AND t.attname = 'tenant' AND t.attnum > 0 AND NOT t.attisdropped)
ORDER BY c.relname, a.attnum
"""

_PRIMARY_KEYS = """
SELECT c.relname AS table_name, a.attname AS column_name
FROM pg_index i
JOIN pg_class c ON c.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
WHERE i.indisprimary AND n.nspname = current_schema()
ORDER BY c.relname, k.ord
"""


async def tenant_tables(conn: AsyncConnection[Any]) -> list[TenantTable]:
    """Every table of the current schema with a ``tenant`` column, by name, secret columns set apart."""
    columns: dict[str, list[Column]] = {}
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(_TABLE_COLUMNS)
        for table, column, type_ in await cur.fetchall():
            columns.setdefault(table, []).append(Column(column, type_))
        await cur.execute(_PRIMARY_KEYS)
        keys: dict[str, list[str]] = {}
        for table, column in await cur.fetchall():
            keys.setdefault(table, []).append(column)
    tables = []
    for name, cols in sorted(columns.items()):
        kept = tuple(c for c in cols if not is_secret_name(c.name))
        excluded = tuple(c.name for c in cols if is_secret_name(c.name))
        tables.append(TenantTable(name, kept, excluded, tuple(keys.get(name, ()))))
    return tables


async def tenant_name(conn: AsyncConnection[Any], tenant_id: UUID) -> tuple[bool, str | None]:
    """(exists, the tenant's name)."""
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute("SELECT client_name FROM tenants WHERE tenant = %s", (tenant_id,))
        row = await cur.fetchone()
    return (False, None) if row is None else (True, row[0])


async def schema_version(conn: AsyncConnection[Any]) -> str | None:
    """The latest migration applied: Alga's ``knex_migrations`` in production, the worker's own
    ``alga_worker_schema_migrations`` on a dev/test database; None when neither table is there."""
    async with conn.cursor(row_factory=tuple_row) as cur:
        for table, source, order in (("knex_migrations", "knex", "id"),
                                     ("alga_worker_schema_migrations", "alga-worker-dev", "name")):
            await cur.execute("SELECT to_regclass(%s) IS NOT NULL", (table,))
            found = await cur.fetchone()
            if found and found[0]:
                await cur.execute(sql.SQL("SELECT name FROM {} ORDER BY {} DESC LIMIT 1").format(
                    sql.Identifier(table), sql.Identifier(order)))
                latest = await cur.fetchone()
                return f"{source}:{latest[0]}" if latest else f"{source}:(none)"
    return None


def select_rows(table: TenantTable) -> sql.Composed:
    """``SELECT <exported columns> FROM <table> WHERE tenant = %s ORDER BY <primary key>``."""
    query = sql.SQL("SELECT {} FROM {} WHERE tenant = %s").format(
        sql.SQL(", ").join(sql.Identifier(c.name) for c in table.columns), sql.Identifier(table.name))
    if table.order_by:
        query = sql.SQL("{} ORDER BY {}").format(query, sql.SQL(", ").join(sql.Identifier(c) for c in table.order_by))
    return query


async def stream_rows(conn: AsyncConnection[Any], table: TenantTable, tenant_id: UUID,
                      batch_size: int) -> AsyncIterator[Sequence[tuple[Any, ...]]]:
    """The tenant's rows of ``table`` in batches of at most ``batch_size``, through a server-side
    cursor: must run inside the caller's transaction (the cursor lives as long as it)."""
    async with conn.cursor(name=f"tenant_export_{table.name}"[:63], row_factory=tuple_row) as cur:
        cur.itersize = batch_size
        await cur.execute(select_rows(table), (tenant_id,))
        while True:
            rows = await cur.fetchmany(batch_size)
            if not rows:
                return
            yield rows


async def count_rows(conn: AsyncConnection[Any], table: str, tenant_id: UUID) -> int:
    """``count(*)`` of the tenant's rows in ``table`` (tests and the benchmark compare with it)."""
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(sql.SQL("SELECT count(*) FROM {} WHERE tenant = %s").format(sql.Identifier(table)),
                          (tenant_id,))
        row = await cur.fetchone()
    return int(row[0]) if row else 0

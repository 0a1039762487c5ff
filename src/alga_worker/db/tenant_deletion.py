"""SQL and order of a tenant deletion: which tables, in which order, in which batches.

Why a module of its own: the deletion activity (``activities/tenant_deletion.py``), the tests and the
docs must agree on what "every row of the tenant, children first" means.

- **Which tables.** Every ordinary or partitioned table (not a partition) of ``current_schema()``
  with a column named ``tenant``, from the catalog at deletion time (the export's rule,
  ``db/tenant_export.tenant_tables``), so a table Alga adds is deleted without a change here.
- **Which order.** From the foreign keys between those tables (``pg_constraint``): a table is emptied
  only once every table referencing it is (:func:`deletion_plan`, Kahn's algorithm, ties by name).
  ``tenants`` comes last, with ``pending_tenant_deletions`` (the deletion's own record, which
  references ``tenants``) in the same final transaction: while the tenant row exists, so does the
  record that authorises its deletion.
- **Cycles.** Foreign keys that form a cycle (``A -> B -> A``, or a table referencing itself) cannot
  be ordered. Every such key whose own columns (all but ``tenant``) are nullable is *broken* first:
  those columns are set to NULL on the tenant's rows, in batches, before any row is deleted (Alga's
  original did this by hand for ``clients.account_manager_id`` and ``contacts.client_id``). A cycle
  left with only NOT NULL keys cannot be deleted in batches: :class:`UnorderableTables` names it
  (``SchemaMismatchError``, nothing deleted). On the dev schema there is no cycle.
- **Which rows, in which batches.** ``DELETE ... WHERE tenant = %s AND <primary key> IN (SELECT
  <primary key> ... WHERE tenant = %s LIMIT n)`` (``ctid`` for a table without a primary key): at
  most ``n`` rows per statement, each statement its own transaction. Every statement names the
  tenant, so no other tenant's row is ever touched. Nothing is remembered between batches but the
  database itself: a restarted deletion recomputes the plan and carries on with what is left.
"""

from __future__ import annotations

import graphlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection, sql
from psycopg.rows import tuple_row

TENANTS = "tenants"
PENDING = "pending_tenant_deletions"
FINAL_TABLES = (PENDING, TENANTS)  # deleted together, in one transaction, last

# Statuses of pending_tenant_deletions.status (the original's TenantDeletionStatus).
ACTIVE_STATUSES = ("pending", "awaiting_confirmation", "confirmed", "deleting")


@dataclass(frozen=True)
class ForeignKey:
    """``child(columns) REFERENCES parent``; ``nullable``: every column but ``tenant`` may be NULL."""

    name: str
    child: str
    parent: str
    columns: tuple[str, ...]
    nullable: bool


@dataclass(frozen=True)
class Table:
    name: str
    key: tuple[str, ...]  # the primary key's columns; empty: none (ctid is used)


@dataclass(frozen=True)
class Plan:
    """Tables in deletion order (children first, the final pair excluded) and the keys to break first."""

    order: tuple[str, ...]
    broken: tuple[ForeignKey, ...]
    tables: dict[str, Table]


class UnorderableTables(Exception):
    """Foreign keys form a cycle without a nullable key to break it."""

    def __init__(self, tables: Sequence[str]) -> None:
        super().__init__(f"the foreign keys between {', '.join(tables)} form a cycle with no nullable column to "
                         "break it: the tenant cannot be deleted in batches")
        self.tables = list(tables)


_TABLES = """
SELECT c.relname AS table_name,
       coalesce((SELECT array_agg(a.attname ORDER BY k.ord)
                 FROM pg_index i
                 CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
                 JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
                 WHERE i.indrelid = c.oid AND i.indisprimary), '{}') AS key_columns
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND EXISTS (SELECT 1 FROM pg_attribute t
              WHERE t.attrelid = c.oid AND t.attname = 'tenant' AND t.attnum > 0 AND NOT t.attisdropped)
ORDER BY c.relname
"""

_FOREIGN_KEYS = """
SELECT con.conname, child.relname AS child, parent.relname AS parent,
       array_agg(a.attname ORDER BY k.ord) AS columns,
       bool_and(a.attname = 'tenant' OR NOT a.attnotnull) AS nullable
FROM pg_constraint con
JOIN pg_class child ON child.oid = con.conrelid
JOIN pg_class parent ON parent.oid = con.confrelid
JOIN pg_namespace n ON n.oid = child.relnamespace
CROSS JOIN LATERAL unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord)
JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum
WHERE con.contype = 'f' AND n.nspname = current_schema() AND NOT child.relispartition
GROUP BY con.conname, child.relname, parent.relname
ORDER BY child.relname, con.conname
"""


async def catalog(conn: AsyncConnection[Any]) -> tuple[list[Table], list[ForeignKey]]:
    """The tenant tables and the foreign keys between them."""
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(_TABLES)
        tables = [Table(name, tuple(key)) for name, key in await cur.fetchall()]
        names = {t.name for t in tables}
        await cur.execute(_FOREIGN_KEYS)
        keys = [ForeignKey(con, child, parent, tuple(cols), bool(nullable))
                for con, child, parent, cols, nullable in await cur.fetchall()
                if child in names and parent in names]
    return tables, keys


def deletion_plan(tables: Iterable[Table], keys: Iterable[ForeignKey]) -> Plan:
    """Children first (module docstring); the final pair (``pending_tenant_deletions``, ``tenants``)
    is left out of ``order``, as the activity deletes it last in one transaction."""
    by_name = {t.name: t for t in tables}
    keys = [k for k in keys if k.child in by_name and k.parent in by_name]
    cyclic = _cyclic_keys(by_name, keys)
    broken = tuple(k for k in cyclic if k.nullable)
    kept = [k for k in keys if k not in broken]
    # A table may be emptied once every table referencing it is: "parent depends on child".
    sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
    for name in sorted(by_name):
        sorter.add(name)
    for k in kept:
        if k.child != k.parent:
            sorter.add(k.parent, k.child)
    unbroken_self = sorted({k.child for k in kept if k.child == k.parent})
    if unbroken_self:
        raise UnorderableTables(unbroken_self)
    try:
        sorter.prepare()
    except graphlib.CycleError as err:
        raise UnorderableTables(sorted(set(err.args[1]))) from None
    order: list[str] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready())
        order.extend(ready)
        sorter.done(*ready)
    return Plan(order=tuple(n for n in order if n not in FINAL_TABLES), broken=broken, tables=by_name)


def _cyclic_keys(tables: dict[str, Table], keys: list[ForeignKey]) -> list[ForeignKey]:
    """The keys inside a strongly connected component (a cycle), self-references included."""
    graph: dict[str, set[str]] = {name: set() for name in tables}
    for k in keys:
        graph[k.child].add(k.parent)
    component = _components(graph)
    return [k for k in keys if k.child == k.parent or
            (component[k.child] == component[k.parent] and k.child != k.parent)]


def _components(graph: dict[str, set[str]]) -> dict[str, int]:
    """Tarjan's strongly connected components (iterative): table -> component number."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    component: dict[str, int] = {}
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                number = len(set(component.values()))
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component[member] = number
                    if member == node:
                        break
    return component


def _batch_of(table: Table, extra: sql.Composable | None = None) -> sql.Composed:
    """``(<key>) IN (SELECT <key> FROM table WHERE tenant = %(t)s [AND extra] LIMIT %(n)s)``."""
    key = sql.SQL(", ").join(sql.Identifier(c) for c in table.key) if table.key else sql.SQL("ctid")
    where = sql.SQL("tenant = %(t)s") if extra is None else sql.SQL("tenant = %(t)s AND {}").format(extra)
    return sql.SQL("({key}) IN (SELECT {key} FROM {table} WHERE {where} LIMIT %(n)s)").format(
        key=key, table=sql.Identifier(table.name), where=where)


async def break_batch(conn: AsyncConnection[Any], table: Table, fk: ForeignKey, tenant_id: UUID, n: int) -> int:
    """Set ``fk``'s own columns to NULL on at most ``n`` of the tenant's rows that still have them."""
    own = [c for c in fk.columns if c != "tenant"]
    not_null = sql.SQL(" OR ").join(sql.SQL("{} IS NOT NULL").format(sql.Identifier(c)) for c in own)
    query = sql.SQL("UPDATE {table} SET {sets} WHERE tenant = %(t)s AND {batch}").format(
        table=sql.Identifier(table.name),
        sets=sql.SQL(", ").join(sql.SQL("{} = NULL").format(sql.Identifier(c)) for c in own),
        batch=_batch_of(table, sql.SQL("({})").format(not_null)))
    cur = await conn.execute(query, {"t": tenant_id, "n": n})
    return cur.rowcount


async def delete_batch(conn: AsyncConnection[Any], table: Table, tenant_id: UUID, n: int) -> int:
    """Delete at most ``n`` of the tenant's rows of ``table``; how many went."""
    query = sql.SQL("DELETE FROM {table} WHERE tenant = %(t)s AND {batch}").format(
        table=sql.Identifier(table.name), batch=_batch_of(table))
    cur = await conn.execute(query, {"t": tenant_id, "n": n})
    return cur.rowcount


async def remaining_rows(conn: AsyncConnection[Any], tables: Iterable[str], tenant_id: UUID) -> dict[str, int]:
    """The tenant's row count per table (only those with rows left)."""
    names = list(tables)
    if not names:
        return {}
    parts = sql.SQL(" UNION ALL ").join(
        sql.SQL("SELECT {name} AS t, count(*) AS n FROM {table} WHERE tenant = %(t)s").format(
            name=sql.Literal(name), table=sql.Identifier(name)) for name in names)
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(parts, {"t": tenant_id})
        return {str(t): int(n) for t, n in await cur.fetchall() if n}


# ---- pending_tenant_deletions


async def pending_table_exists(conn: AsyncConnection[Any]) -> bool:
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute("SELECT to_regclass(%s) IS NOT NULL", (PENDING,))
        row = await cur.fetchone()
    return bool(row and row[0])


async def pending_for_tenant(conn: AsyncConnection[Any], tenant_id: UUID) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute("SELECT deletion_id, status FROM pending_tenant_deletions WHERE tenant = %s "
                          "FOR UPDATE", (tenant_id,))
        return [{"deletion_id": r[0], "status": r[1]} for r in await cur.fetchall()]


async def tenant_exists(conn: AsyncConnection[Any], tenant_id: UUID, *, lock: bool = False) -> bool:
    query = "SELECT 1 FROM tenants WHERE tenant = %s" + (" FOR NO KEY UPDATE" if lock else "")  # noqa: S608
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(query, (tenant_id,))
        return await cur.fetchone() is not None

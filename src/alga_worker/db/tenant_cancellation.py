"""SQL of the deletion's ``Canceled`` tag on the customer's client in the management tenant (issue 13).

The client is the one customer tracking wrote: found by the tenant id it records in ``properties``
(``customer_tracking.TENANT_ID_KEYS``), never by name (a name identifies nothing). The tag definition
``Canceled`` (the original's text, ``tagged_type`` ``client``) is get-or-create on Alga's unique key,
shared by every cancelled customer and never removed; the *mapping* carries the run's minted id, so
the run can tell its own mapping from one that was there before, and its rollback deletes only that.
"""

from __future__ import annotations

from uuid import UUID, uuid4

from psycopg import AsyncConnection
from psycopg.rows import DictRow

from alga_worker.db.customer_tracking import CLIENT_TAGGED_TYPE, lock, tag_colors

CANCELLED_TAG = "Canceled"  # the original's tag text (tagClientAsCanceled)


async def find_customer_client(conn: AsyncConnection[DictRow], mgmt: UUID, tenant_id: UUID) -> list[UUID]:
    """The management clients that record ``tenant_id`` (normally one)."""
    cur = await conn.execute(
        "SELECT client_id FROM clients WHERE tenant = %(m)s"
        " AND (properties->>'alga_tenant_id' = %(t)s OR properties->>'tenant_id' = %(t)s)"
        " ORDER BY client_id LIMIT 2", {"m": mgmt, "t": str(tenant_id)})
    return [UUID(str(r["client_id"])) for r in await cur.fetchall()]


async def tag_cancelled(conn: AsyncConnection[DictRow], mgmt: UUID, *, client_id: UUID,
                        mapping_id: UUID) -> tuple[UUID, dict[str, int]]:
    """Map ``Canceled`` to the client with ``mapping_id`` unless it is mapped already. Returns the id of
    the mapping on the client afterwards (``mapping_id`` when this call or an earlier attempt of the same
    run added it) and the rows written."""
    await lock(conn, "cancelled-tag", str(client_id))
    background, text = tag_colors(CANCELLED_TAG)
    cur = await conn.execute(
        "INSERT INTO tag_definitions (tag_id, tenant, tag_text, tagged_type, background_color, text_color,"
        " created_at) VALUES (%s, %s, %s, %s, %s, %s, now())"
        " ON CONFLICT (tenant, tag_text, tagged_type) DO NOTHING RETURNING tag_id",
        (uuid4(), mgmt, CANCELLED_TAG, CLIENT_TAGGED_TYPE, background, text))
    defined = await cur.fetchone() is not None
    cur = await conn.execute(
        "SELECT tag_id FROM tag_definitions WHERE tenant = %s AND tag_text = %s AND tagged_type = %s",
        (mgmt, CANCELLED_TAG, CLIENT_TAGGED_TYPE))
    row = await cur.fetchone()
    if row is None:
        raise RuntimeError("Canceled tag definition neither inserted nor found")
    tag_id = row["tag_id"]
    cur = await conn.execute(
        "INSERT INTO tag_mappings (mapping_id, tenant, tag_id, tagged_id, tagged_type, created_by, created_at)"
        " VALUES (%s, %s, %s, %s, %s, NULL, now())"
        " ON CONFLICT (tenant, tag_id, tagged_id) DO NOTHING RETURNING mapping_id",
        (mapping_id, mgmt, tag_id, client_id, CLIENT_TAGGED_TYPE))
    mapped = await cur.fetchone() is not None
    cur = await conn.execute("SELECT mapping_id FROM tag_mappings WHERE tenant = %s AND tag_id = %s AND tagged_id = %s",
                             (mgmt, tag_id, client_id))
    found = await cur.fetchone()
    if found is None:
        raise RuntimeError("Canceled tag mapping neither inserted nor found")
    rows = {"tag_definitions": int(defined), "tag_mappings": int(mapped)}
    return UUID(str(found["mapping_id"])), {k: v for k, v in rows.items() if v}


async def untag_cancelled(conn: AsyncConnection[DictRow], mgmt: UUID, mapping_id: UUID) -> int:
    """Remove exactly the mapping ``mapping_id`` (this run's); 0 when it is gone already."""
    cur = await conn.execute("DELETE FROM tag_mappings WHERE tenant = %s AND mapping_id = %s", (mgmt, mapping_id))
    return cur.rowcount

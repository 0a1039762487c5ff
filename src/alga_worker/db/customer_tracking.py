"""SQL that records a customer in the management tenant: its client, contact, tag and portal user.

Why this module exists (reference 3.5, 3.6, B4): the original looked the management tenant up by its
*name*, inserted the customer's client without checking whether it existed, reused the admin's
temporary password for the portal user, and wrapped it all in a catch-all that logged and went on. A
name collision on ``(tenant, client_name)`` therefore silently skipped contact, tag and portal user
(the 2026 "CloudVBS" incident) and the welcome email still promised a portal.

Here every stage is *resolve or create* by an exact, tenant-scoped key, and the caller runs them all
in one transaction (:mod:`alga_worker.activities.customers`):

- **client**: ours is the management-tenant client whose ``properties`` record this Alga tenant id.
  Otherwise a client with exactly the same name belongs to someone else (or to nobody we can prove):
  :class:`AmbiguousCustomer`, never a guess. Otherwise insert with the id the workflow minted.
- **contact**: by ``lower(email)`` in the management tenant. One on our client is reused; one on any
  other client (or on none) makes the email ambiguous.
- **tag**: ``PSA Customer`` for clients, get-or-create on Alga's unique key, mapped once.
- **portal user**: a row with the minted user id is ours (an earlier attempt committed): its hash is
  replaced, as for the MSP admin. Otherwise a client user with the email is reused when it belongs to
  our contact and ambiguous when it does not. Otherwise it is created.

Concurrency: the caller holds advisory locks on the customer tenant id, the client name and the
email (that order everywhere), so two runs for one tenant, or two tenants with one name or one email,
see each other's committed rows instead of racing to a unique violation or a duplicate person.

Citus: every statement filters (or inserts) one ``tenant`` value, the management tenant's, so each is
a router statement on that tenant's shard group; nothing here touches another tenant's rows.
"""

from __future__ import annotations

import colorsys
import json
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID, uuid4

from psycopg import AsyncConnection
from psycopg.rows import DictRow

from alga_worker.db import users
from alga_worker.models import UserType

PSA_CUSTOMER_TAG = "PSA Customer"
# Alga renamed companies to clients (2025-10); tags written for clients since then say 'client'.
CLIENT_TAGGED_TYPE = "client"
CONTACT_ROLE = "Admin"
CONTACT_NOTES = "Primary admin for PSA tenant"
PORTAL_ADMIN_ROLE = "admin"  # compared lower-cased, as Alga's createPortalUser does
TAG_TEXT_COLOR = "#2C3E50"  # Alga's dark text for its light tag backgrounds

# The JSON key in clients.properties that says which Alga tenant a management client tracks. The
# newer TypeScript worker wrote ``tenant_id`` (the original wrote the tenant *name* there, which never
# equals a UUID, so it cannot match by accident); both count as a record of the tenant id.
TENANT_ID_KEYS: tuple[str, ...] = ("alga_tenant_id", "tenant_id")


class AmbiguousCustomer(Exception):
    """Existing management-tenant rows collide with this customer; ``details`` holds ids, never emails
    of other people. The message says what collides and that an operator must resolve it."""

    def __init__(self, message: str, details: dict[str, Any]) -> None:
        super().__init__(message)
        self.details = details


@dataclass(frozen=True)
class Resolved:
    """One stage's result: the row's id, whether this call wrote it, and the rows written per table."""

    id: UUID
    created: bool
    rows: dict[str, int] = field(default_factory=dict)


def advisory_key(kind: str, value: str) -> str:
    return f"customer-tracking/{kind}:{value}"


async def lock(conn: AsyncConnection[DictRow], kind: str, value: str) -> None:
    """Transaction-scoped advisory lock (released at COMMIT or ROLLBACK; coordinator-local on Citus)."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 7))", (advisory_key(kind, value),))


async def tenant_exists(conn: AsyncConnection[DictRow], tenant_id: UUID) -> bool:
    cur = await conn.execute("SELECT 1 FROM tenants WHERE tenant = %s", (tenant_id,))
    return await cur.fetchone() is not None


# ---------------------------------------------------------------- client


def client_properties(tenant_id: UUID, tenant_name: str) -> dict[str, str]:
    """What the management client records about the customer: the tenant *id* identifies it."""
    # tenant_id too: Alga's own tenant-deletion workflow finds the customer client by properties->>'tenant_id'.
    return {"alga_tenant_id": str(tenant_id), "tenant_id": str(tenant_id), "tenant_name": tenant_name,
            "subscription_type": "psa"}


async def resolve_client(conn: AsyncConnection[DictRow], mgmt: UUID, *, tenant_id: UUID, tenant_name: str,
                         client_name: str, minted_id: UUID) -> Resolved:
    """The management client tracking ``tenant_id``: found by the tenant id it records, else created.

    A client with exactly ``client_name`` that does not record this tenant id is somebody else's (or
    the original worker's, which recorded names): :class:`AmbiguousCustomer`.
    """
    cur = await conn.execute(
        "SELECT client_id FROM clients WHERE tenant = %(m)s"
        " AND (properties->>'alga_tenant_id' = %(t)s OR properties->>'tenant_id' = %(t)s)"
        " ORDER BY client_id LIMIT 2",
        {"m": mgmt, "t": str(tenant_id)},
    )
    found = await cur.fetchall()
    if len(found) > 1:
        raise AmbiguousCustomer(
            f"more than one client in the management tenant records Alga tenant {tenant_id}; an operator "
            "must merge or remove the extra one before the customer can be tracked",
            {"tenantId": str(tenant_id), "clientIds": [str(r["client_id"]) for r in found]},
        )
    if found:
        return Resolved(UUID(str(found[0]["client_id"])), created=False)
    cur = await conn.execute(
        "SELECT client_id FROM clients WHERE tenant = %s AND client_name = %s", (mgmt, client_name))
    same_name = await cur.fetchone()
    if same_name is not None:
        raise AmbiguousCustomer(
            f"a client named {client_name!r} already exists in the management tenant and does not record "
            f"Alga tenant {tenant_id}; an operator must resolve it (rename one of them, or record the "
            "tenant id on the existing client) before the customer can be tracked",
            {"tenantId": str(tenant_id), "clientName": client_name, "clientId": str(same_name["client_id"])},
        )
    await conn.execute(
        "INSERT INTO clients (client_id, tenant, client_name, client_type, is_inactive, notes, properties,"
        " created_at, updated_at)"
        " VALUES (%s, %s, %s, 'company', false, %s, %s::jsonb, now(), now())"
        " ON CONFLICT (tenant, client_id) DO NOTHING",
        (minted_id, mgmt, client_name, f"PSA Customer - Tenant: {tenant_name}",
         json.dumps(client_properties(tenant_id, tenant_name))),
    )
    return Resolved(minted_id, created=True, rows={"clients": 1})


# ---------------------------------------------------------------- contact


async def resolve_contact(conn: AsyncConnection[DictRow], mgmt: UUID, *, client_id: UUID, email: str,
                          full_name: str, minted_id: UUID) -> Resolved:
    """The customer's admin as a contact of its client: reused by email, else created.

    Any contact with this email on another client (or on none) makes it ambiguous: the web app finds
    people by email, and one address must not stand for two customers.
    """
    cur = await conn.execute(
        "SELECT contact_name_id, client_id FROM contacts WHERE tenant = %s AND lower(email) = lower(%s)"
        " ORDER BY (contact_name_id = %s) DESC, created_at, contact_name_id",
        (mgmt, email, minted_id),
    )
    rows = await cur.fetchall()
    others = [r for r in rows if r["client_id"] is None or UUID(str(r["client_id"])) != client_id]
    if others:
        raise AmbiguousCustomer(
            f"the admin's email is already a contact of another client in the management tenant "
            f"({len(others)} contact(s)); an operator must resolve it before the customer can be tracked",
            {"clientId": str(client_id), "otherContactIds": [str(r["contact_name_id"]) for r in others]},
        )
    if rows:
        return Resolved(UUID(str(rows[0]["contact_name_id"])), created=False)
    await conn.execute(
        "INSERT INTO contacts (contact_name_id, tenant, client_id, full_name, email, role, notes, is_inactive,"
        " is_client_admin, created_at, updated_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, false, true, now(), now())"
        " ON CONFLICT (tenant, contact_name_id) DO NOTHING",
        (minted_id, mgmt, client_id, full_name, email.lower(), CONTACT_ROLE, CONTACT_NOTES),
    )
    return Resolved(minted_id, created=True, rows={"contacts": 1})


# ---------------------------------------------------------------- tag


def _js_string_hash(text: str) -> int:
    """The string hash Alga's tag colours use: ``h = c + ((h << 5) - h)`` over UTF-16 code units, with
    JavaScript's 32-bit shift semantics, so a tag gets the colour the web app would give it."""

    def int32(value: int) -> int:
        value &= 0xFFFFFFFF
        return value - (1 << 32) if value >= 1 << 31 else value

    h = 0
    data = text.encode("utf-16-le")
    for i in range(0, len(data), 2):
        unit = int.from_bytes(data[i:i + 2], "little")
        h = unit + (int32(int32(h) << 5) - h)
    return h


def tag_colors(text: str) -> tuple[str, str]:
    """(background, text) colours: a light background whose hue follows the text, dark text."""
    hue = abs(_js_string_hash(text)) % 360
    red, green, blue = colorsys.hls_to_rgb(hue / 360, 0.85, 0.70)
    background = "#" + "".join(f"{round(c * 255):02X}" for c in (red, green, blue))
    return background, TAG_TEXT_COLOR


async def ensure_tag(conn: AsyncConnection[DictRow], mgmt: UUID, *, client_id: UUID) -> Resolved:
    """``PSA Customer`` defined once per management tenant and mapped once to the client.

    Both inserts use Alga's unique keys as conflict targets (not the customer lock): the definition is
    shared by every customer, so two tenants tracked at once must converge on one row.
    """
    background, text = tag_colors(PSA_CUSTOMER_TAG)
    cur = await conn.execute(
        "INSERT INTO tag_definitions (tag_id, tenant, tag_text, tagged_type, background_color, text_color,"
        " created_at) VALUES (%s, %s, %s, %s, %s, %s, now())"
        " ON CONFLICT (tenant, tag_text, tagged_type) DO NOTHING RETURNING tag_id",
        (uuid4(), mgmt, PSA_CUSTOMER_TAG, CLIENT_TAGGED_TYPE, background, text),
    )
    inserted = await cur.fetchone()
    defined = inserted is not None
    if inserted is None:
        cur = await conn.execute(
            "SELECT tag_id FROM tag_definitions WHERE tenant = %s AND tag_text = %s AND tagged_type = %s",
            (mgmt, PSA_CUSTOMER_TAG, CLIENT_TAGGED_TYPE),
        )
        inserted = await cur.fetchone()
        if inserted is None:  # a conflict means the row exists; it cannot vanish inside our snapshot
            raise RuntimeError("PSA Customer tag definition neither inserted nor found")
    tag_id = UUID(str(inserted["tag_id"]))
    cur = await conn.execute(
        "INSERT INTO tag_mappings (mapping_id, tenant, tag_id, tagged_id, tagged_type, created_by, created_at)"
        " VALUES (%s, %s, %s, %s, %s, NULL, now())"
        " ON CONFLICT (tenant, tag_id, tagged_id) DO NOTHING RETURNING mapping_id",
        (uuid4(), mgmt, tag_id, client_id, CLIENT_TAGGED_TYPE),
    )
    mapped = await cur.fetchone() is not None
    rows = {"tag_definitions": int(defined), "tag_mappings": int(mapped)}
    return Resolved(tag_id, created=mapped, rows={k: v for k, v in rows.items() if v})


# ---------------------------------------------------------------- portal user


@dataclass(frozen=True)
class PortalUser:
    """The customer's client-portal user and what this call did to it.

    ``state``: ``created`` (new row, new password), ``replaced`` (the row with the minted id already
    existed: an earlier attempt of this run committed, its password never left that attempt, so the
    hash is replaced and the new password is the valid one), ``existing`` (somebody else's row for the
    same contact: reused untouched, no new credentials) or ``missing`` (none, and none was asked for).
    """

    user_id: UUID | None
    state: str
    rows: dict[str, int] = field(default_factory=dict)


async def find_portal_admin_role(conn: AsyncConnection[DictRow], mgmt: UUID) -> UUID | None:
    """The management tenant's client-portal Admin role (msp false, client true), as Alga picks it."""
    cur = await conn.execute(
        "SELECT role_id FROM roles WHERE tenant = %s AND NOT msp AND client AND lower(role_name) = %s"
        " ORDER BY created_at, role_id LIMIT 1",
        (mgmt, PORTAL_ADMIN_ROLE),
    )
    row = await cur.fetchone()
    return None if row is None else UUID(str(row["role_id"]))


@dataclass(frozen=True)
class NewPortalUser:
    """What creating the portal user takes: the id the workflow minted, the portal Admin role, the
    user's names and the hash of its own temporary password (computed off the event loop)."""

    user_id: UUID
    role_id: UUID
    first_name: str
    last_name: str
    hashed_password: str = field(repr=False)


async def resolve_portal_user(conn: AsyncConnection[DictRow], mgmt: UUID, *, email: str, contact_id: UUID,
                              create: NewPortalUser | None) -> PortalUser:
    """Reuse, resume or create the client-portal user (see :class:`PortalUser`).

    ``create`` None means "look up only": a missing user stays missing. A client user with this email
    linked to any other contact (or to none) is ambiguous, whatever else is found.
    """
    minted_id = create.user_id if create is not None else None
    cur = await conn.execute(
        "SELECT user_id, contact_id FROM users WHERE tenant = %(m)s"
        " AND (user_id = %(minted)s::uuid OR (user_type = 'client' AND lower(email) = lower(%(e)s)))"
        " ORDER BY (user_id = %(minted)s::uuid) DESC NULLS LAST, created_at, user_id",
        {"m": mgmt, "minted": minted_id, "e": email},
    )
    rows = await cur.fetchall()
    others = [r for r in rows if r["contact_id"] is None or UUID(str(r["contact_id"])) != contact_id]
    if others:
        raise AmbiguousCustomer(
            f"a client-portal user with the admin's email already exists in the management tenant for another "
            f"contact ({len(others)} user(s)); an operator must resolve it before the customer can be tracked",
            {"contactId": str(contact_id), "otherUserIds": [str(r["user_id"]) for r in others]},
        )
    first = UUID(str(rows[0]["user_id"])) if rows else None
    if first is not None and (create is None or first != create.user_id):
        return PortalUser(first, "existing")
    if create is None:
        return PortalUser(None, "missing")
    # The one insert path for users (db/users.py): a row with the minted id gets its hash replaced.
    granted = await users.insert_user(conn, users.NewUserRow(
        tenant_id=mgmt, user_id=create.user_id, email=email.lower(), first_name=create.first_name,
        last_name=create.last_name, user_type=UserType.CLIENT, hashed_password=create.hashed_password,
        role_ids=(create.role_id,), contact_id=contact_id,
    )) > 0
    if first is not None:  # the row with the minted id: an earlier attempt of this run committed
        return PortalUser(create.user_id, "replaced", {"user_roles": 1} if granted else {})
    return PortalUser(create.user_id, "created", {"users": 1, "user_roles": int(granted)})


# ---------------------------------------------------------------- facts about an existing tenant


async def load_facts(conn: AsyncConnection[DictRow], tenant_id: UUID) -> dict[str, Any] | None:
    """Tenant name, default client name and first active MSP admin of one tenant (None: no tenant).

    Three router reads on the customer tenant's shard; ``admin`` is None when it has no active admin.
    """
    cur = await conn.execute("SELECT client_name FROM tenants WHERE tenant = %s", (tenant_id,))
    tenant = await cur.fetchone()
    if tenant is None:
        return None
    cur = await conn.execute(
        "SELECT c.client_name FROM tenant_companies tc JOIN clients c"
        " ON c.tenant = tc.tenant AND c.client_id = tc.client_id"
        " WHERE tc.tenant = %s AND tc.is_default LIMIT 1",
        (tenant_id,),
    )
    default_client = await cur.fetchone()
    cur = await conn.execute(
        "SELECT u.user_id, u.first_name, u.last_name, u.email FROM users u"
        " WHERE u.tenant = %(t)s AND u.user_type = 'internal' AND NOT coalesce(u.is_inactive, false)"
        " AND EXISTS (SELECT 1 FROM user_roles ur JOIN roles r ON r.tenant = ur.tenant AND r.role_id = ur.role_id"
        "   WHERE ur.tenant = %(t)s AND ur.user_id = u.user_id AND r.role_name = 'Admin' AND r.msp"
        "   AND NOT r.client)"
        " ORDER BY u.created_at NULLS LAST, u.user_id LIMIT 1",
        {"t": tenant_id},
    )
    admin = await cur.fetchone()
    return {
        "tenant_name": tenant["client_name"],
        "client_name": default_client["client_name"] if default_client else tenant["client_name"],
        "admin": admin,
    }


async def remove_minted_records(conn: AsyncConnection[DictRow], mgmt: UUID, *, client_id: UUID,
                                contact_id: UUID, portal_user_id: UUID) -> dict[str, int]:
    """Delete the management-tenant rows whose ids one run minted, children first (compensation).

    Ownership by construction: only that run can have written rows with these ids, so a reused client,
    contact or portal user from an earlier run (other ids) and the shared ``PSA Customer`` tag
    definition are never touched.
    """
    statements = (
        ("user_roles", "DELETE FROM user_roles WHERE tenant = %s AND user_id = %s", portal_user_id),
        ("users", "DELETE FROM users WHERE tenant = %s AND user_id = %s AND user_type = 'client'", portal_user_id),
        ("tag_mappings", "DELETE FROM tag_mappings WHERE tenant = %s AND tagged_id = %s", client_id),
        ("contacts", "DELETE FROM contacts WHERE tenant = %s AND contact_name_id = %s", contact_id),
        ("clients", "DELETE FROM clients WHERE tenant = %s AND client_id = %s", client_id),
    )
    deleted: dict[str, int] = {}
    for table, sql, key in statements:
        cur = await conn.execute(sql, (mgmt, key))
        deleted[table] = cur.rowcount
    return deleted

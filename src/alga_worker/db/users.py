"""SQL for the users of a tenant: the one insert path, lookups, state changes, the audit row.

Why one module: a user row is written by three callers (tenant creation's MSP admin in
``db/provisioning.py``, customer tracking's portal user in ``db/customer_tracking.py`` and
``create_user`` in ``activities/users.py``), and they must agree on what a user is: which columns are
set, what an idempotent retry does, how roles are granted. :func:`insert_user` is that single path.

Idempotency: the user id is minted by the workflow run, so a row with that id can only come from an
earlier attempt of the same run (a retry after COMMIT). Its hash is replaced (``ON CONFLICT (tenant,
user_id) DO UPDATE``): that attempt's password never left it, and the retry's sealed password becomes
the valid one. Role grants are "insert where missing".

Locks, in one order everywhere (no deadlock between any two of these transactions):

1. the tenant row, ``SELECT ... FROM tenants WHERE tenant = $1 FOR NO KEY UPDATE``
   (:func:`lock_tenant_row`): serialises every licence check (creations, reactivations) and the
   last-admin check of one tenant, and with ``db/licenses.update_license_count`` (which takes the same
   lock). ``NO KEY UPDATE``, not ``UPDATE``: the foreign-key checks of every insert that references the
   tenant (hundreds of Alga tables do, written by the web app all day) take ``KEY SHARE`` on this row,
   which ``FOR UPDATE`` would block for the length of the transaction and ``NO KEY UPDATE`` does not;
2. the email advisory lock, ``provisioning.lock_email`` (the key tenant creation takes), so creating a
   user and creating a tenant cannot both pass the cross-tenant email check for one address; for a
   client user also customer tracking's email lock (``customer_tracking.lock(conn, "email", ...)``), so a
   client user created here and the portal user customer tracking creates in the management tenant
   cannot both pass their check for one address. Customer tracking takes only its advisory locks and
   never this tenant-row lock (its foreign-key checks take ``KEY SHARE``, which ``NO KEY UPDATE`` lets
   through), so no cycle is possible;
3. the user row (``UPDATE``, or ``FOR UPDATE`` in ``set_temporary_password``, which takes no other).

Citus: every statement filters (or inserts) one ``tenant`` value and is a router statement on that
tenant's shard group, except the cross-tenant internal-email check (``provisioning``'s, multi-shard
on purpose) and the audit insert, which writes the audit tenant's shard.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection
from psycopg.rows import DictRow

from alga_worker.db import onboarding_catalog as catalog
from alga_worker.models import UserType

MSP_ADMIN_ROLE_NAME = catalog.MSP_ADMIN_ROLE.name

# A user holds a licence when active and internal: the definition db/licenses.license_usage counts by
# (``is_inactive = false``; NULL is not counted, as Alga counts).
_HOLDS_LICENCE = "user_type = 'internal' AND NOT is_inactive"

# An active MSP admin of tenant %(t)s (alias u): internal, not inactive (NULL counts as active, as
# customer_tracking.load_facts reads it), holding the role 'Admin' with msp and not client.
_ACTIVE_MSP_ADMIN = (
    "u.tenant = %(t)s AND u.user_type = 'internal' AND NOT coalesce(u.is_inactive, false)"
    " AND EXISTS (SELECT 1 FROM user_roles ur JOIN roles r ON r.tenant = ur.tenant AND r.role_id = ur.role_id"
    "   WHERE ur.tenant = %(t)s AND ur.user_id = u.user_id AND r.role_name = %(admin)s AND r.msp"
    "   AND NOT r.client)"
)

_USER_COLUMNS = "u.user_id, u.email, u.first_name, u.last_name, u.user_type, coalesce(u.is_inactive, false)" \
                " AS is_inactive"


# ---------------------------------------------------------------- records


@dataclass(frozen=True)
class LockedTenant:
    """The tenant row, locked for the rest of the transaction: its name and licence limit."""

    name: str
    licensed_user_count: int | None


@dataclass(frozen=True)
class UserRecord:
    """One user as the activities need it; never the hash."""

    user_id: UUID
    email: str
    first_name: str
    last_name: str
    user_type: UserType
    is_inactive: bool


@dataclass(frozen=True)
class UserRow:
    """One user as ``alga-worker user list`` shows it, with its role names (sorted)."""

    user_id: UUID
    email: str
    first_name: str
    last_name: str
    user_type: UserType
    is_inactive: bool
    roles: list[str]
    created_at: datetime | None


@dataclass(frozen=True)
class NewUserRow:
    """What :func:`insert_user` writes: the minted id, the person, the hash and the role ids.

    ``email`` is stored as given (callers pass the normalised, lower-cased address) and is also the
    ``username``, as Alga's web app creates users.
    """

    tenant_id: UUID
    user_id: UUID
    email: str
    first_name: str
    last_name: str
    user_type: UserType
    hashed_password: str = field(repr=False)
    role_ids: tuple[UUID, ...]
    contact_id: UUID | None = None


@dataclass(frozen=True)
class Role:
    role_id: UUID
    name: str


@dataclass(frozen=True)
class RoleMatch:
    """Requested role names resolved: ``found`` in request order (duplicates collapsed), ``unknown``
    as requested, ``available`` the names the tenant has for that kind of user (sorted)."""

    found: list[Role]
    unknown: list[str]
    available: list[str]


def _record(row: DictRow) -> UserRecord:
    return UserRecord(user_id=UUID(str(row["user_id"])), email=row["email"], first_name=row["first_name"] or "",
                      last_name=row["last_name"] or "", user_type=UserType(row["user_type"]),
                      is_inactive=bool(row["is_inactive"]))


# ---------------------------------------------------------------- tenant


async def lock_tenant_row(conn: AsyncConnection[DictRow], tenant_id: UUID) -> LockedTenant | None:
    """Lock 1 (module docstring); None when the tenant does not exist. Inside the caller's transaction."""
    cur = await conn.execute(
        "SELECT licensed_user_count, client_name FROM tenants WHERE tenant = %s FOR NO KEY UPDATE", (tenant_id,))
    row = await cur.fetchone()
    return None if row is None else LockedTenant(name=row["client_name"],
                                                 licensed_user_count=row["licensed_user_count"])


async def tenant_name(conn: AsyncConnection[DictRow], tenant_id: UUID) -> str | None:
    """The tenant's name, unlocked (reads); None when it does not exist."""
    cur = await conn.execute("SELECT client_name FROM tenants WHERE tenant = %s", (tenant_id,))
    row = await cur.fetchone()
    return None if row is None else str(row["client_name"])


async def licences_used(conn: AsyncConnection[DictRow], tenant_id: UUID, *, except_user_id: UUID) -> int:
    """Active internal users of the tenant other than ``except_user_id`` (the user being created or
    reactivated, so a retry after COMMIT does not count its own row against itself)."""
    cur = await conn.execute(
        f"SELECT count(*) AS used FROM users WHERE tenant = %s AND {_HOLDS_LICENCE} AND user_id <> %s",  # noqa: S608
        (tenant_id, except_user_id),
    )
    row = await cur.fetchone()
    return int(row["used"]) if row else 0


# ---------------------------------------------------------------- checks before a creation


async def client_email_taken(conn: AsyncConnection[DictRow], tenant_id: UUID, email: str,
                             *, except_user_id: UUID) -> bool:
    """Another client-portal user of this tenant has the address (compared lower-cased: old rows may
    be mixed case). Internal users are checked across tenants by ``provisioning``."""
    cur = await conn.execute(
        "SELECT 1 FROM users WHERE tenant = %s AND user_type = 'client' AND lower(email) = lower(%s)"
        " AND user_id <> %s LIMIT 1",
        (tenant_id, email, except_user_id),
    )
    return await cur.fetchone() is not None


async def match_roles(conn: AsyncConnection[DictRow], tenant_id: UUID, user_type: UserType,
                      names: Sequence[str]) -> RoleMatch:
    """Resolve role names case-insensitively among the tenant's roles for ``user_type``: MSP roles
    (msp and not client) for internal users, client-portal roles (client and not msp) for client users.
    Two roles of one kind whose names differ only in case: the oldest wins (deterministic)."""
    kind = "msp AND NOT client" if user_type is UserType.INTERNAL else "client AND NOT msp"
    cur = await conn.execute(
        f"SELECT role_id, role_name FROM roles WHERE tenant = %s AND {kind}"  # noqa: S608 (constant text)
        " ORDER BY created_at NULLS LAST, role_id",
        (tenant_id,),
    )
    by_name: dict[str, Role] = {}
    for row in await cur.fetchall():
        by_name.setdefault(str(row["role_name"]).lower(), Role(UUID(str(row["role_id"])), row["role_name"]))
    found: list[Role] = []
    unknown: list[str] = []
    seen: set[str] = set()
    for name in names:
        key = name.lower()
        if key in seen:
            continue
        seen.add(key)
        role = by_name.get(key)
        if role is None:
            unknown.append(name)
        else:
            found.append(role)
    return RoleMatch(found=found, unknown=unknown, available=sorted({r.name for r in by_name.values()}))


async def contact_exists(conn: AsyncConnection[DictRow], tenant_id: UUID, contact_id: UUID) -> bool:
    cur = await conn.execute("SELECT 1 FROM contacts WHERE tenant = %s AND contact_name_id = %s",
                             (tenant_id, contact_id))
    return await cur.fetchone() is not None


async def user_exists(conn: AsyncConnection[DictRow], tenant_id: UUID, user_id: UUID) -> bool:
    cur = await conn.execute("SELECT 1 FROM users WHERE tenant = %s AND user_id = %s", (tenant_id, user_id))
    return await cur.fetchone() is not None


# ---------------------------------------------------------------- the one insert path


async def insert_user(conn: AsyncConnection[DictRow], new: NewUserRow) -> int:
    """Insert the user and grant its roles; returns how many grants this call inserted.

    A row with the minted id is this run's own (module docstring): its hash is replaced, nothing
    else. The caller has made every check (duplicates, roles, licences) before, in the same
    transaction, under the locks of the module docstring.
    """
    await conn.execute(
        "INSERT INTO users (user_id, tenant, username, first_name, last_name, email, hashed_password, user_type,"
        " contact_id, is_inactive, created_at, updated_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, false, now(), now())"
        " ON CONFLICT (tenant, user_id) DO UPDATE SET hashed_password = EXCLUDED.hashed_password,"
        " updated_at = now()",
        (new.user_id, new.tenant_id, new.email, new.first_name, new.last_name, new.email, new.hashed_password,
         new.user_type.value, new.contact_id),
    )
    if not new.role_ids:
        return 0
    cur = await conn.execute(
        "INSERT INTO user_roles (tenant, user_id, role_id)"
        " SELECT %s, %s, r.role_id FROM unnest(%s::uuid[]) AS r(role_id)"
        " ON CONFLICT (tenant, user_id, role_id) DO NOTHING RETURNING role_id",
        (new.tenant_id, new.user_id, list(new.role_ids)),
    )
    return len(await cur.fetchall())


# ---------------------------------------------------------------- reads


async def get_user(conn: AsyncConnection[DictRow], tenant_id: UUID, user_id: UUID,
                   *, for_update: bool = False) -> UserRecord | None:
    """One user of the tenant (None: no such user there); ``for_update`` locks its row."""
    cur = await conn.execute(
        f"SELECT {_USER_COLUMNS} FROM users u WHERE u.tenant = %s AND u.user_id = %s"  # noqa: S608
        + (" FOR UPDATE" if for_update else ""),
        (tenant_id, user_id),
    )
    row = await cur.fetchone()
    return None if row is None else _record(row)


async def first_active_msp_admin(conn: AsyncConnection[DictRow], tenant_id: UUID) -> UserRecord | None:
    """The tenant's first active MSP admin, by ``created_at`` then ``user_id``, as
    ``customer_tracking.load_facts`` picks it (the original's "primary admin")."""
    cur = await conn.execute(
        f"SELECT {_USER_COLUMNS} FROM users u WHERE {_ACTIVE_MSP_ADMIN}"  # noqa: S608 (constant text)
        " ORDER BY u.created_at NULLS LAST, u.user_id LIMIT 1",
        {"t": tenant_id, "admin": MSP_ADMIN_ROLE_NAME},
    )
    row = await cur.fetchone()
    return None if row is None else _record(row)


async def is_active_msp_admin(conn: AsyncConnection[DictRow], tenant_id: UUID, user_id: UUID) -> bool:
    cur = await conn.execute(
        f"SELECT 1 FROM users u WHERE {_ACTIVE_MSP_ADMIN} AND u.user_id = %(u)s",  # noqa: S608 (constant text)
        {"t": tenant_id, "admin": MSP_ADMIN_ROLE_NAME, "u": user_id},
    )
    return await cur.fetchone() is not None


async def other_active_msp_admins(conn: AsyncConnection[DictRow], tenant_id: UUID, user_id: UUID) -> int:
    cur = await conn.execute(
        f"SELECT count(*) AS n FROM users u WHERE {_ACTIVE_MSP_ADMIN} AND u.user_id <> %(u)s",  # noqa: S608
        {"t": tenant_id, "admin": MSP_ADMIN_ROLE_NAME, "u": user_id},
    )
    row = await cur.fetchone()
    return int(row["n"]) if row else 0


async def list_users(conn: AsyncConnection[DictRow], tenant_id: UUID,
                     *, include_inactive: bool = True) -> list[UserRow] | None:
    """Every user of the tenant with its role names (None: no such tenant). Read only.

    Internal users first, then client users, each by creation time. Two router reads.
    """
    if await tenant_name(conn, tenant_id) is None:
        return None
    cur = await conn.execute(
        "SELECT u.user_id, u.email, u.first_name, u.last_name, u.user_type,"
        " coalesce(u.is_inactive, false) AS is_inactive, u.created_at,"
        " coalesce(array_agg(r.role_name ORDER BY r.role_name) FILTER (WHERE r.role_id IS NOT NULL),"
        "   ARRAY[]::text[]) AS roles"
        " FROM users u"
        " LEFT JOIN user_roles ur ON ur.tenant = u.tenant AND ur.user_id = u.user_id"
        " LEFT JOIN roles r ON r.tenant = ur.tenant AND r.role_id = ur.role_id"
        " WHERE u.tenant = %(t)s AND (%(all)s OR NOT coalesce(u.is_inactive, false))"
        " GROUP BY u.tenant, u.user_id, u.email, u.first_name, u.last_name, u.user_type, u.is_inactive,"
        " u.created_at"
        " ORDER BY u.user_type = 'client', u.created_at NULLS LAST, u.user_id",
        {"t": tenant_id, "all": include_inactive},
    )
    return [UserRow(user_id=UUID(str(row["user_id"])), email=row["email"], first_name=row["first_name"] or "",
                    last_name=row["last_name"] or "", user_type=UserType(row["user_type"]),
                    is_inactive=bool(row["is_inactive"]), roles=[str(r) for r in row["roles"]],
                    created_at=row["created_at"])
            for row in await cur.fetchall()]


# ---------------------------------------------------------------- changes


async def set_password(conn: AsyncConnection[DictRow], tenant_id: UUID, user_id: UUID, hashed_password: str) -> None:
    await conn.execute(
        "UPDATE users SET hashed_password = %s, updated_at = now() WHERE tenant = %s AND user_id = %s",
        (hashed_password, tenant_id, user_id),
    )


async def set_inactive(conn: AsyncConnection[DictRow], tenant_id: UUID, user_id: UUID, inactive: bool) -> None:
    await conn.execute(
        "UPDATE users SET is_inactive = %s, updated_at = now() WHERE tenant = %s AND user_id = %s",
        (inactive, tenant_id, user_id),
    )


async def delete_user(conn: AsyncConnection[DictRow], tenant_id: UUID, user_id: UUID) -> bool:
    """Delete the user's role grants and its row; True when the row existed. Idempotent.

    Only for ids a run minted (compensation): a user that has since been referenced elsewhere (it
    created a ticket) fails on that foreign key with ``ConstraintViolationError`` and is kept.
    """
    await conn.execute("DELETE FROM user_roles WHERE tenant = %s AND user_id = %s", (tenant_id, user_id))
    cur = await conn.execute("DELETE FROM users WHERE tenant = %s AND user_id = %s", (tenant_id, user_id))
    return cur.rowcount > 0


# ---------------------------------------------------------------- audit


@dataclass(frozen=True)
class AuditRow:
    """One ``extension_audit_logs`` row (Alga EE's table; migration 0004 for dev and tests)."""

    tenant_id: UUID
    log_id: UUID
    event_type: str
    user_id: UUID | None
    user_email: str | None
    resource_type: str
    resource_id: str
    workflow_id: str
    status: str
    error_message: str | None
    details: dict[str, Any]


async def insert_audit(conn: AsyncConnection[DictRow], row: AuditRow) -> bool:
    """Insert the row keyed by the minted ``log_id``; False when it exists (a retry writes nothing).

    Not in the schema contract: a database without the table fails here with ``UndefinedTable``,
    which the activity interceptor reports as ``SchemaMismatchError``.
    """
    cur = await conn.execute(
        "INSERT INTO extension_audit_logs (tenant, log_id, event_type, user_id, user_email, resource_type,"
        " resource_id, workflow_id, status, error_message, details, created_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, now())"
        " ON CONFLICT (tenant, log_id) DO NOTHING RETURNING log_id",
        (row.tenant_id, row.log_id, row.event_type, row.user_id, row.user_email, row.resource_type,
         row.resource_id, row.workflow_id, row.status, row.error_message, json.dumps(row.details)),
    )
    return await cur.fetchone() is not None


def actor_user_id(triggered_by: str | None) -> UUID | None:
    """An audit row's ``user_id``: ``triggeredBy`` when it is a user id; otherwise None, and the caller
    keeps the text (an operator's name) in the row's details instead."""
    if triggered_by is None:
        return None
    try:
        return UUID(triggered_by)
    except ValueError:
        return None

"""SQL that provisions one tenant: every statement is idempotent, all run in one transaction.

Why one transaction: a tenant without its roles, or an admin without the Admin role, is a broken
tenant that support has to repair by hand. Either everything below exists, or nothing does.

Why idempotent statements: Temporal retries an activity whose completion it did not see (worker
killed after COMMIT). The ids are minted by the workflow, so a retry finds its own rows and inserts
nothing new ("insert where missing", keyed on the natural or minted key). No statement relies on
catching an error inside the transaction (the original's B3 bug: one failed INSERT silently aborted
the rest).
"""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection
from psycopg.rows import DictRow

from alga_worker.db import onboarding_catalog as catalog
from alga_worker.db import users
from alga_worker.models import ProvisionTenantInput, UserType

# Tables holding rows of one tenant, children before parents: the order removal must follow.
TENANT_TABLES_DELETE_ORDER: tuple[str, ...] = (
    # Stripe billing rows (db/stripe_records.py): subscriptions reference customers and prices,
    # prices reference products.
    "stripe_subscriptions",
    "stripe_customers",
    "stripe_prices",
    "stripe_products",
    "tag_mappings",
    "tag_definitions",
    "user_roles",
    "role_permissions",
    "users",
    "roles",
    "permissions",
    "contacts",
    "tenant_companies",
    "client_locations",
    "clients",
    "tax_rates",
    "tax_regions",
    "tenant_email_settings",
    "tenant_settings",
    "tenants",
)


class DuplicateAdminEmail(Exception):
    """The admin email already belongs to an internal user (any tenant): SSO needs it unique."""


class TenantConflict(Exception):
    """The tenant id exists and this run did not create it: refuse to write into it or remove it."""


async def lock_email(conn: AsyncConnection[DictRow], email: str) -> None:
    """Serialise concurrent provisionings of one email (cross-tenant uniqueness has no constraint)."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 7))", ("admin-email:" + email,))


async def lock_tenant(conn: AsyncConnection[DictRow], tenant_id: UUID) -> None:
    """Serialise provisioning and removal of one tenant id (a removal never overtakes a late COMMIT)."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 7))", ("tenant:" + str(tenant_id),))


async def owns_tenant(conn: AsyncConnection[DictRow], tenant_id: UUID, client_id: UUID) -> bool:
    """Ownership proof: the default client whose id this run minted exists in that tenant.

    The client id comes from ``workflow.uuid4()`` of one run, so only that run (an earlier attempt of
    it) can have written the row; a name proves nothing (anybody can send the same tenant name).
    Checked in the same transaction as the write or delete that depends on it.
    """
    cur = await conn.execute("SELECT 1 FROM clients WHERE tenant = %s AND client_id = %s", (tenant_id, client_id))
    return await cur.fetchone() is not None


async def tenant_exists(conn: AsyncConnection[DictRow], tenant_id: UUID) -> bool:
    cur = await conn.execute("SELECT 1 FROM tenants WHERE tenant = %s", (tenant_id,))
    return await cur.fetchone() is not None


async def find_internal_user_by_email(conn: AsyncConnection[DictRow], email: str,
                                      *, except_user_id: UUID | None = None) -> DictRow | None:
    cur = await conn.execute(
        "SELECT tenant, user_id FROM users WHERE lower(email) = lower(%s) AND user_type = 'internal'"
        " AND (%s::uuid IS NULL OR user_id <> %s::uuid) LIMIT 1",
        (email, except_user_id, except_user_id),
    )
    return await cur.fetchone()


async def upsert_tenant(conn: AsyncConnection[DictRow], req: ProvisionTenantInput) -> bool:
    """Insert the tenant row; True when this call created it.

    When the row exists already it must be this run's own (an earlier attempt committed): anything
    else, an adopted ``tenantId`` of a live tenant or of the management tenant, is a conflict, raised
    before this transaction has written anything.
    """
    cur = await conn.execute(
        "INSERT INTO tenants (tenant, client_name, email, licensed_user_count, last_license_update,"
        " created_at, updated_at)"
        " VALUES (%(t)s, %(name)s, %(email)s, %(lic)s, CASE WHEN %(lic)s::int IS NULL THEN NULL ELSE now() END,"
        " now(), now())"
        " ON CONFLICT (tenant) DO NOTHING RETURNING tenant",
        {"t": req.tenant_id, "name": req.tenant_name, "email": req.admin.email, "lic": req.license_count},
    )
    created = await cur.fetchone() is not None
    if not created and not await owns_tenant(conn, req.tenant_id, req.client_id):
        raise TenantConflict(f"tenant {req.tenant_id} already exists and was not created by this run")
    return created


async def upsert_default_client(conn: AsyncConnection[DictRow], req: ProvisionTenantInput) -> None:
    """The MSP's own client record, its main location and the tenant's default-client link."""
    properties = json.dumps({"type": "msp", "is_system_client": True, "created_by": "tenant_setup"})
    await conn.execute(
        "INSERT INTO clients (client_id, tenant, client_name, client_type, is_inactive, properties,"
        " created_at, updated_at)"
        " VALUES (%s, %s, %s, 'company', false, %s::jsonb, now(), now())"
        " ON CONFLICT (tenant, client_id) DO NOTHING",
        (req.client_id, req.tenant_id, req.client_name, properties),
    )
    await conn.execute(
        "INSERT INTO client_locations (location_id, client_id, tenant, location_name, email, phone,"
        " address_line1, city, country_code, country_name, is_default, is_active, created_at, updated_at)"
        " VALUES (%s, %s, %s, 'Main Office', %s, '', 'N/A', 'N/A', 'XX', 'Unknown', true, true, now(), now())"
        " ON CONFLICT (tenant, location_id) DO NOTHING",
        (req.location_id, req.client_id, req.tenant_id, req.admin.email),
    )
    await conn.execute(
        "INSERT INTO tenant_companies (tenant, client_id, is_default) VALUES (%s, %s, true)"
        " ON CONFLICT (tenant, client_id) DO NOTHING",
        (req.tenant_id, req.client_id),
    )


async def upsert_tenant_settings(conn: AsyncConnection[DictRow], tenant_id: UUID) -> None:
    """Onboarding flags explicitly false (the web app shows its wizard only then), email settings."""
    await conn.execute(
        "INSERT INTO tenant_settings (tenant, onboarding_completed, onboarding_skipped, onboarding_data,"
        " settings, created_at, updated_at) VALUES (%s, false, false, NULL, NULL, now(), now())"
        " ON CONFLICT (tenant) DO NOTHING",
        (tenant_id,),
    )
    # Alga dropped the unique constraint on tenant_email_settings.tenant in 2025-09: check, don't conflict.
    await conn.execute(
        "INSERT INTO tenant_email_settings (tenant, email_provider, fallback_enabled, tracking_enabled,"
        " created_at, updated_at) SELECT %(t)s, 'resend', true, false, now(), now()"
        " WHERE NOT EXISTS (SELECT 1 FROM tenant_email_settings WHERE tenant = %(t)s)",
        {"t": tenant_id},
    )


async def run_onboarding_seeds(conn: AsyncConnection[DictRow], tenant_id: UUID) -> None:
    """Roles, permissions, grants, default tax region and rate: one set-based statement per table."""
    roles = catalog.ROLES
    await conn.execute(
        "INSERT INTO roles (role_id, tenant, role_name, description, msp, client, created_at, updated_at)"
        " SELECT gen_random_uuid(), %(t)s, r.name, r.description, r.msp, r.client, now(), now()"
        " FROM unnest(%(names)s::text[], %(descs)s::text[], %(msp)s::bool[], %(client)s::bool[])"
        "   AS r(name, description, msp, client)"
        " WHERE NOT EXISTS (SELECT 1 FROM roles x WHERE x.tenant = %(t)s AND x.role_name = r.name"
        "   AND x.msp = r.msp AND x.client = r.client)",
        {"t": tenant_id, "names": [r.name for r in roles], "descs": [r.description for r in roles],
         "msp": [r.msp for r in roles], "client": [r.client for r in roles]},
    )
    perms = catalog.PERMISSIONS
    await conn.execute(
        "INSERT INTO permissions (permission_id, tenant, resource, action, msp, client, description,"
        " created_at)"
        " SELECT gen_random_uuid(), %(t)s, p.resource, p.action, p.msp, p.client, p.description, now()"
        " FROM unnest(%(res)s::text[], %(act)s::text[], %(msp)s::bool[], %(client)s::bool[],"
        "   %(descs)s::text[]) AS p(resource, action, msp, client, description)"
        " WHERE NOT EXISTS (SELECT 1 FROM permissions x WHERE x.tenant = %(t)s"
        "   AND x.resource = p.resource AND x.action = p.action AND x.msp = p.msp AND x.client = p.client)",
        {"t": tenant_id, "res": [p.resource for p in perms], "act": [p.action for p in perms],
         "msp": [p.msp for p in perms], "client": [p.client for p in perms],
         "descs": [p.description for p in perms]},
    )
    # Resolve ids in Python (8 + 134 rows by the tenant index) and insert the grants as id pairs:
    # a five-column join in SQL against rows inserted moments ago cost 4x the whole rest of the seeds.
    cur = await conn.execute("SELECT role_id, role_name, msp, client FROM roles WHERE tenant = %s", (tenant_id,))
    role_ids = {(r["role_name"], r["msp"], r["client"]): r["role_id"] for r in await cur.fetchall()}
    cur = await conn.execute("SELECT permission_id, resource, action, msp, client FROM permissions WHERE tenant = %s",
                             (tenant_id,))
    perm_ids = {(p["resource"], p["action"], p["msp"], p["client"]): p["permission_id"] for p in await cur.fetchall()}
    grant_roles: list[Any] = []
    grant_perms: list[Any] = []
    for grant in catalog.ROLE_GRANTS:
        role_id = role_ids[(grant.role.name, grant.role.msp, grant.role.client)]
        for resource, action in grant.permissions:
            grant_roles.append(role_id)
            grant_perms.append(perm_ids[(resource, action, grant.role.msp, grant.role.client)])
    await conn.execute(
        "INSERT INTO role_permissions (tenant, role_id, permission_id, created_at)"
        " SELECT %(t)s, g.role_id, g.permission_id, now()"
        " FROM unnest(%(roles)s::uuid[], %(perms)s::uuid[]) AS g(role_id, permission_id)"
        " ON CONFLICT (tenant, role_id, permission_id) DO NOTHING",
        {"t": tenant_id, "roles": grant_roles, "perms": grant_perms},
    )
    region = catalog.DEFAULT_TAX_REGION
    await conn.execute(
        "INSERT INTO tax_regions (tenant, region_code, region_name, is_active) VALUES (%s, %s, %s, true)"
        " ON CONFLICT (tenant, region_code) DO NOTHING",
        (tenant_id, region["region_code"], region["region_name"]),
    )
    rate = catalog.DEFAULT_TAX_RATE
    await conn.execute(
        "INSERT INTO tax_rates (tax_rate_id, tenant, tax_percentage, description, start_date, region_code,"
        " is_active)"
        " SELECT gen_random_uuid(), %(t)s, %(pct)s, %(desc)s, now(), %(region)s::varchar, true"
        " WHERE NOT EXISTS (SELECT 1 FROM tax_rates WHERE tenant = %(t)s AND region_code = %(region)s::varchar)",
        {"t": tenant_id, "pct": rate["tax_percentage"], "desc": rate["description"],
         "region": rate["region_code"]},
    )


async def upsert_admin_user(conn: AsyncConnection[DictRow], req: ProvisionTenantInput, hashed_password: str) -> UUID:
    """The MSP admin with the Admin role, through the one insert path (``db/users.insert_user``);
    returns the role id.

    The user id is minted by the workflow run, so a row with it can only come from an earlier attempt
    of this run, whose password never left that attempt: replacing the hash is safe and is what makes
    the retry's sealed password the valid one.
    """
    cur = await conn.execute(
        "SELECT role_id FROM roles WHERE tenant = %s AND role_name = %s AND msp AND NOT client",
        (req.tenant_id, catalog.MSP_ADMIN_ROLE.name),
    )
    role = await cur.fetchone()
    if role is None:  # cannot happen after run_onboarding_seeds in the same transaction
        raise RuntimeError("MSP Admin role missing after onboarding seeds")
    role_id = UUID(str(role["role_id"]))
    await users.insert_user(conn, users.NewUserRow(
        tenant_id=req.tenant_id, user_id=req.admin_user_id, email=req.admin.email,
        first_name=req.admin.first_name, last_name=req.admin.last_name, user_type=UserType.INTERNAL,
        hashed_password=hashed_password, role_ids=(role_id,),
    ))
    return role_id


async def count_tenant_rows(conn: AsyncConnection[DictRow], tenant_id: UUID) -> dict[str, int]:
    """Rows per table for one tenant: the provisioning result and the tests' ground truth."""
    parts = " UNION ALL ".join(
        f"SELECT '{table}' AS t, count(*) AS n FROM {table} WHERE tenant = %(t)s"  # noqa: S608 (constant names)
        for table in TENANT_TABLES_DELETE_ORDER
    )
    cur = await conn.execute(parts, {"t": tenant_id})
    return {str(row["t"]): int(row["n"]) for row in await cur.fetchall()}


async def delete_tenant(conn: AsyncConnection[DictRow], tenant_id: UUID) -> dict[str, int]:
    """Remove every row of one tenant, children first. Idempotent: a second call deletes nothing."""
    deleted: dict[str, int] = {}
    for table in TENANT_TABLES_DELETE_ORDER:
        cur = await conn.execute(f"DELETE FROM {table} WHERE tenant = %s", (tenant_id,))  # noqa: S608
        deleted[table] = cur.rowcount
    return deleted

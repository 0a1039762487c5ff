"""``bench.scale.fill``: the bulk-filled tenants are what a provisioning writes, consistent and distinct.

The scale benchmark (and ``make bench``) only means something if the filled database looks like
Alga's: each tenant with exactly a provisioning's rows, every reference inside a tenant resolving,
every internal email unique across tenants (the duplicate-admin-email check must find nothing), and
the management tenant holding one customer's tracking rows per tenant. Checked on a scratch database.
"""

from __future__ import annotations

import psycopg
from bench.scale import DEV_MANAGEMENT_TENANT, fill
from psycopg.rows import dict_row
from tests.support.databases import scratch_database

from alga_worker.db.provisioning import count_tenant_rows
from alga_worker.db.schema_contract import verify_schema

# One provisioning (tests/integration/test_tenant_creation_e2e.py counts the same 465).
PROVISIONED = {"tenants": 1, "clients": 1, "client_locations": 1, "tenant_companies": 1, "tenant_settings": 1,
               "tenant_email_settings": 1, "roles": 8, "permissions": 134, "role_permissions": 313,
               "tax_regions": 1, "tax_rates": 1, "users": 1, "user_roles": 1}

# References inside a tenant that must resolve (the fill skips foreign-key triggers where it may).
DANGLING = {
    "grant without role": "SELECT count(*) FROM role_permissions x LEFT JOIN roles r"
                          " ON r.tenant = x.tenant AND r.role_id = x.role_id WHERE r.role_id IS NULL",
    "grant without permission": "SELECT count(*) FROM role_permissions x LEFT JOIN permissions p"
                                " ON p.tenant = x.tenant AND p.permission_id = x.permission_id"
                                " WHERE p.permission_id IS NULL",
    "user role without user": "SELECT count(*) FROM user_roles x LEFT JOIN users u"
                              " ON u.tenant = x.tenant AND u.user_id = x.user_id WHERE u.user_id IS NULL",
    "user role without role": "SELECT count(*) FROM user_roles x LEFT JOIN roles r"
                              " ON r.tenant = x.tenant AND r.role_id = x.role_id WHERE r.role_id IS NULL",
    "location without client": "SELECT count(*) FROM client_locations x LEFT JOIN clients c"
                               " ON c.tenant = x.tenant AND c.client_id = x.client_id WHERE c.client_id IS NULL",
    "default client missing": "SELECT count(*) FROM tenant_companies x LEFT JOIN clients c"
                              " ON c.tenant = x.tenant AND c.client_id = x.client_id WHERE c.client_id IS NULL",
    "rate without region": "SELECT count(*) FROM tax_rates x LEFT JOIN tax_regions r"
                           " ON r.tenant = x.tenant AND r.region_code = x.region_code WHERE r.region_code IS NULL",
    "row without tenant": "SELECT count(*) FROM users x LEFT JOIN tenants t ON t.tenant = x.tenant"
                          " WHERE t.tenant IS NULL",
}


async def test_filled_tenants_are_provisionings_with_distinct_people(db, stack) -> None:
    tenants, extra = 7, 3
    async with scratch_database(db, stack.database_url) as url:
        await fill(url, tenants, users_per_tenant=extra, batch=4)  # two batches after the template
        async with await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row) as conn:
            assert await verify_schema(conn) == []
            cur = await conn.execute("SELECT tenant FROM tenants WHERE tenant <> %s", (DEV_MANAGEMENT_TENANT,))
            filled = [row["tenant"] for row in await cur.fetchall()]
            assert len(filled) == tenants
            for tenant in filled:
                counts = {table: n for table, n in (await count_tenant_rows(conn, tenant)).items() if n}
                assert counts == {**PROVISIONED, "users": 1 + extra, "user_roles": 1 + extra}, tenant
            for what, query in DANGLING.items():
                cur = await conn.execute(query)
                assert (await cur.fetchone())["count"] == 0, what
            cur = await conn.execute(
                "SELECT count(*) AS n, count(DISTINCT lower(email)) AS distinct_emails,"
                " count(*) FILTER (WHERE email <> lower(email)) AS mixed_case"
                " FROM users WHERE user_type = 'internal'")
            people = await cur.fetchone()
            assert people == {"n": tenants * (1 + extra), "distinct_emails": tenants * (1 + extra), "mixed_case": 0}
            # One customer per cloned tenant in the management tenant (the template, the first, has none).
            cur = await conn.execute(
                "SELECT (SELECT count(*) FROM clients c WHERE c.tenant = %(m)s"
                "        AND (c.properties->>'alga_tenant_id')::uuid IN (SELECT tenant FROM tenants)) AS clients,"
                " (SELECT count(*) FROM contacts WHERE tenant = %(m)s) AS contacts,"
                " (SELECT count(*) FROM tag_mappings WHERE tenant = %(m)s) AS tags,"
                " (SELECT count(*) FROM users u JOIN user_roles ur ON ur.tenant = u.tenant AND ur.user_id = u.user_id"
                "  WHERE u.tenant = %(m)s AND u.user_type = 'client') AS portal_users",
                {"m": DEV_MANAGEMENT_TENANT})
            assert await cur.fetchone() == {"clients": tenants - 1, "contacts": tenants - 1, "tags": tenants - 1,
                                            "portal_users": tenants - 1}

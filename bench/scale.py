"""Alga at scale: fill a database with thousands of realistic tenants, then compare provisioning latency.

    .venv/bin/python -m bench.scale --tenants 10000     # ephemeral stack: p50 empty, fill, p50 filled

Why (issue 12, item 4): provisioning must cost the same with 10,000 tenants in the database as with
none. Only statements that read across tenants (the duplicate-admin-email check), or across one big
tenant (customer tracking in the management tenant, one client per customer), can grow; everything
else is keyed by ``tenant``. This module makes the database such a statement would meet, fast enough
to be part of a benchmark run, and measures the difference; ``bench/scale_explain.py`` shows why.

What :func:`fill` writes, per tenant: the 465 rows a provisioning writes (tenants, clients,
client_locations, tenant_companies, tenant_settings, tenant_email_settings, 8 roles, 134 permissions,
313 role_permissions, tax_regions, tax_rates, the admin in users and user_roles), plus
``users_per_tenant`` more internal users with their own MSP roles and distinct, realistic emails;
and, when the management tenant exists, what customer tracking records for each tenant there (a
client whose ``properties`` name the tenant, its admin as a contact, the ``PSA Customer`` tag mapping
and a client-portal user with its role): 6 rows per tenant in one big tenant.

How it stays fast (about a minute for 10,000 tenants on 2 cores): one template tenant is provisioned
through the worker's own ``provision_tenant`` activity (so it has exactly the rows a provisioning
writes, whatever that becomes), then cloned set-based, ``INSERT ... SELECT`` from the template's rows
joined to a batch of new tenants, one statement per table per batch. Every uuid column except
``tenant`` is remapped as ``md5(new tenant || old value)::uuid``: ids stay unique, and every
reference inside the tenant (role_permissions to roles and permissions, user_roles to users) stays
consistent without a join. Foreign-key triggers are skipped (``session_replication_role = replica``,
when the role may) because the rows are consistent by construction; indexes are maintained, as in
production. The tables are vacuumed and analysed at the end, as autovacuum would have done long before.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row, tuple_row
from psycopg_pool import AsyncConnectionPool

from alga_worker.db import customer_tracking as tracking
from alga_worker.db.pool import DbConnection
from alga_worker.db.provisioning import TENANT_TABLES_DELETE_ORDER
from alga_worker.models import AdminUserInput, ProvisionTenantInput

log = logging.getLogger("bench.scale")

DEV_MANAGEMENT_TENANT = UUID("00000000-0000-4000-8000-000000000001")  # 0002_management_tenant.sql
DEFAULT_USERS_PER_TENANT = 4
DEFAULT_BATCH = 500

# Name material for realistic, distinct people and companies (emails are distinct by construction:
# the domain carries the tenant's number, the local part differs per user of one tenant).
FIRST_NAMES = ("Ada", "Alan", "Grace", "Linus", "Margaret", "Dennis", "Barbara", "Ken", "Frances", "Edsger",
               "Radia", "Tim", "Hedy", "Donald", "Katherine", "John", "Sophie", "Niklaus", "Shafi", "Leslie",
               "Anita", "Bjarne", "Carol", "Guido", "Jean", "Whitfield", "Karen", "Vint", "Mary", "Robert",
               "Annie", "Butler", "Evelyn", "Fernando", "Joan", "Ivan", "Lynn", "Martin", "Susan", "Yukihiro",
               "Adele")
LAST_NAMES = ("Lovelace", "Turing", "Hopper", "Torvalds", "Hamilton", "Ritchie", "Liskov", "Thompson",
              "Allen", "Dijkstra", "Perlman", "Berners-Lee", "Lamarr", "Knuth", "Johnson", "McCarthy",
              "Wilson", "Wirth", "Goldwasser", "Lamport", "Borg", "Stroustrup", "Shaw", "van Rossum",
              "Sammet", "Diffie", "Jones", "Cerf", "Keller", "Kahn", "Easley", "Lampson", "Boyd",
              "Corbato", "Clarke", "Sutherland", "Conway", "Hellman", "Kare", "Matsumoto", "Goldberg",
              "Engelbart", "Backus")
COMPANY_WORDS = ("Acme", "Bluewave", "Cedar", "Delta", "Everest", "Falcon", "Granite", "Harbor", "Ion",
                 "Juniper", "Keystone", "Lumen", "Meridian", "Northwind", "Orbit", "Pinnacle", "Quartz",
                 "Redwood", "Summit", "Tidal", "Unity", "Vertex", "Willow", "Zenith")
COMPANY_KINDS = ("IT Services", "Networks", "Managed IT", "Tech Partners", "Systems", "Cloud Solutions",
                 "Computing", "Digital", "IT Support", "Infrastructure")

# The MSP roles (other than Admin) the extra users get, in turn.
EXTRA_USER_ROLES = ("Technician", "Dispatcher", "Project Manager", "Finance")

# Text columns that must differ per tenant (names, emails); every other column is the template's,
# every uuid column remapped. Expressions over ``b`` (the batch row) and ``x`` (the template row).
_OVERRIDES: dict[str, dict[str, str]] = {
    "tenants": {"client_name": "b.company", "email": "b.email", "created_at": "b.created_at",
                "updated_at": "b.created_at"},
    "clients": {"client_name": "b.company"},
    "client_locations": {"email": "b.email"},
    "users": {"email": "b.email", "username": "b.email", "first_name": "b.first_name",
              "last_name": "b.last_name", "hashed_password": "{hash}", "created_at": "b.created_at",
              "updated_at": "b.created_at"},
}

# A stored hash of Alga's shape ("<24 hex salt>:<128 hex PBKDF2>"), distinct per user, cheap to make:
# nobody logs in as a filled user, but the column should weigh what real rows weigh.
_FAKE_HASH = ("substr(md5({seed} || 's'), 1, 24) || ':' || md5({seed} || '1') || md5({seed} || '2')"
              " || md5({seed} || '3') || md5({seed} || '4')")

# One row per new tenant of a batch: its id, number, names and admin.
_BATCH_SQL = """
CREATE TEMP TABLE scale_batch ON COMMIT DROP AS
SELECT s.g, s.tenant, s.company, s.first_name, s.last_name, s.domain, s.created_at,
       lower(replace(s.first_name, ' ', '') || '.' || replace(s.last_name, ' ', '') || '@' || s.domain) AS email
FROM (
    SELECT g, gen_random_uuid() AS tenant,
           c.word || ' ' || c.kind || ' ' || g AS company,
           regexp_replace(lower(c.word || '-' || c.kind), '[^a-z0-9]+', '-', 'g') || '-' || g || '.example.com'
               AS domain,
           (%(firsts)s::text[])[1 + mod(g * 7, %(nf)s)] AS first_name,
           (%(lasts)s::text[])[1 + mod(g * 13, %(nl)s)] AS last_name,
           now() - make_interval(mins => g) AS created_at
    FROM generate_series(%(lo)s::int, %(hi)s::int) AS g,
         LATERAL (SELECT (%(words)s::text[])[1 + mod(g, %(nw)s)] AS word,
                         (%(kinds)s::text[])[1 + mod(g / %(nw)s, %(nk)s)] AS kind) AS c
) AS s
"""


@dataclass(frozen=True)
class Column:
    name: str
    data_type: str


async def _columns(conn: AsyncConnection[Any], table: str) -> list[Column]:
    """The table's columns a clone must copy: serial and identity columns get their own values."""
    cur = await conn.execute(
        "SELECT column_name::text, data_type::text FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = %s"
        " AND coalesce(column_default, '') NOT LIKE 'nextval(%%' AND is_identity = 'NO' AND is_generated = 'NEVER'"
        " ORDER BY ordinal_position", (table,))
    return [Column(name, data_type) for name, data_type in await cur.fetchall()]


def _clone_expression(table: str, column: Column) -> sql.Composable:
    """How the clone computes one column from the template row ``x`` and the batch row ``b``."""
    ident = sql.Identifier("x", column.name)
    if column.name == "tenant":
        return sql.SQL("b.tenant")
    override = _OVERRIDES.get(table, {}).get(column.name)
    if override is not None:
        seed = "(b.tenant::text || x.user_id::text)"
        return sql.SQL(override.replace("{hash}", _FAKE_HASH.format(seed=seed)))
    if column.data_type == "uuid":
        return sql.SQL("md5(b.tenant::text || {}::text)::uuid").format(ident)
    return ident


async def _clone_statement(conn: AsyncConnection[Any], table: str) -> sql.Composed:
    columns = await _columns(conn, table)
    return sql.SQL("INSERT INTO {table} ({cols}) SELECT {exprs} FROM scale_batch AS b"
                   " CROSS JOIN (SELECT * FROM {table} WHERE tenant = %(template)s) AS x").format(
        table=sql.Identifier(table),
        cols=sql.SQL(", ").join(sql.Identifier(c.name) for c in columns),
        exprs=sql.SQL(", ").join(_clone_expression(table, c) for c in columns))


async def _extra_users_statements(conn: AsyncConnection[Any], *, remap_roles: bool = True
                                  ) -> tuple[sql.Composed, sql.SQL]:
    """Clones of the template admin as ``k`` = 1..n other internal users, and their role grants (the
    template's role ids remapped to the batch tenant's clones, or as they are for the template)."""
    columns = await _columns(conn, "users")
    extra = {
        "user_id": "md5(b.tenant::text || ':user:' || k)::uuid",
        "email": "u.email", "username": "u.email", "first_name": "u.first_name", "last_name": "u.last_name",
        "hashed_password": _FAKE_HASH.format(seed="(b.tenant::text || ':user:' || k)"),
        # One user in five tenants has left: licence counts and 'active admin' reads see inactive rows.
        "is_inactive": "(k = %(k)s AND mod(b.g, 5) = 0)",
        "created_at": "b.created_at + make_interval(days => k)",
        "updated_at": "b.created_at + make_interval(days => k)",
    }
    exprs = [sql.SQL(extra[c.name]) if c.name in extra else _clone_expression("users", c) for c in columns]
    people = sql.SQL(
        " CROSS JOIN generate_series(1, %(k)s) AS k"
        " CROSS JOIN LATERAL (SELECT f AS first_name, l AS last_name,"
        "   lower(replace(f, ' ', '') || '.' || replace(l, ' ', '') || '@' || b.domain) AS email"
        "   FROM (SELECT (%(firsts)s::text[])[1 + mod(b.g * 7 + k * 3, %(nf)s)] AS f,"
        "                (%(lasts)s::text[])[1 + mod(b.g * 13 + k * 5, %(nl)s)] AS l) AS n) AS u")
    users = sql.SQL("INSERT INTO users ({cols}) SELECT {exprs} FROM scale_batch AS b{people}"
                    " CROSS JOIN (SELECT * FROM users WHERE tenant = %(template)s AND user_id = %(admin)s) AS x"
                    ).format(cols=sql.SQL(", ").join(sql.Identifier(c.name) for c in columns),
                             exprs=sql.SQL(", ").join(exprs), people=people)
    role = "(%(roles)s::uuid[])[1 + mod(k - 1, %(nr)s)]"
    if remap_roles:
        role = f"md5(b.tenant::text || {role}::text)::uuid"
    grants = sql.SQL(
        "INSERT INTO user_roles (tenant, user_id, role_id)"
        f" SELECT b.tenant, md5(b.tenant::text || ':user:' || k)::uuid, {role}"
        " FROM scale_batch AS b CROSS JOIN generate_series(1, %(k)s) AS k")
    return users, grants


# Customer tracking's rows for each tenant of the batch, in the management tenant (what
# db/customer_tracking.py writes for a checkout).
_TRACKING_SQL = (
    "INSERT INTO clients (client_id, tenant, client_name, client_type, is_inactive, notes, properties,"
    " created_at, updated_at)"
    " SELECT md5(b.tenant::text || ':customer')::uuid, %(m)s, b.company, 'company', false,"
    "   'PSA Customer - Tenant: ' || b.company,"
    "   jsonb_build_object('alga_tenant_id', b.tenant::text, 'tenant_id', b.tenant::text,"
    "                      'tenant_name', b.company, 'subscription_type', 'psa'),"
    "   b.created_at, b.created_at FROM scale_batch AS b",
    "INSERT INTO contacts (contact_name_id, tenant, client_id, full_name, email, role, notes, is_inactive,"
    " is_client_admin, created_at, updated_at)"
    " SELECT md5(b.tenant::text || ':contact')::uuid, %(m)s, md5(b.tenant::text || ':customer')::uuid,"
    "   b.first_name || ' ' || b.last_name, b.email, %(contact_role)s, %(contact_notes)s, false, true,"
    "   b.created_at, b.created_at FROM scale_batch AS b",
    "INSERT INTO tag_mappings (mapping_id, tenant, tag_id, tagged_id, tagged_type, created_by, created_at)"
    " SELECT md5(b.tenant::text || ':tag')::uuid, %(m)s, %(tag)s, md5(b.tenant::text || ':customer')::uuid,"
    "   %(tagged_type)s, NULL, b.created_at FROM scale_batch AS b",
    "INSERT INTO users (user_id, tenant, username, first_name, last_name, email, hashed_password, user_type,"
    " contact_id, is_inactive, created_at, updated_at)"
    " SELECT md5(b.tenant::text || ':portal')::uuid, %(m)s, b.email, b.first_name, b.last_name, b.email,"
    "   " + _FAKE_HASH.format(seed="(b.tenant::text || ':portal')") + ", 'client',"
    "   md5(b.tenant::text || ':contact')::uuid, false, b.created_at, b.created_at FROM scale_batch AS b",
    "INSERT INTO user_roles (tenant, user_id, role_id)"
    " SELECT %(m)s, md5(b.tenant::text || ':portal')::uuid, %(portal_role)s FROM scale_batch AS b",
)


async def provision_template(conninfo: str, *, number: int) -> ProvisionTenantInput:
    """One tenant through the worker's own ``provision_tenant`` activity (its transaction, its rows)."""
    from temporalio.testing import ActivityEnvironment

    from alga_worker.activities.tenants import TenantActivities
    from alga_worker.security import CredentialSealer, PasswordHasher

    pepper = "bench-scale-template-pepper"  # the template's own password is never used
    pool: AsyncConnectionPool[DbConnection] = AsyncConnectionPool(
        conninfo, connection_class=DbConnection, min_size=1, max_size=1, open=False,
        kwargs={"row_factory": dict_row, "prepare_threshold": None})
    await pool.open(wait=True, timeout=30)
    try:
        activities = TenantActivities(pool, PasswordHasher(pepper=pepper), CredentialSealer(pepper))
        company = f"{COMPANY_WORDS[number % len(COMPANY_WORDS)]} Template MSP {number}"
        req = ProvisionTenantInput(
            tenant_id=uuid.uuid4(), client_id=uuid.uuid4(), location_id=uuid.uuid4(),
            admin_user_id=uuid.uuid4(), tenant_name=company, client_name=company, license_count=10,
            seal_binding="bench/scale/template",
            admin=AdminUserInput(first_name="Ada", last_name="Lovelace",
                                 email=f"ada.lovelace@template-{number}-{uuid.uuid4().hex[:6]}.example.com"))
        await ActivityEnvironment().run(activities.provision_tenant, req)
        return req
    finally:
        await pool.close()


async def _try_skip_fk_triggers(conn: AsyncConnection[Any]) -> bool:
    try:
        await conn.execute("SET session_replication_role = replica")
        return True
    except psycopg.errors.InsufficientPrivilege:
        return False


async def fill(conninfo: str, tenants: int, *, users_per_tenant: int = DEFAULT_USERS_PER_TENANT,
               batch: int = DEFAULT_BATCH, management_tenant: UUID | None = DEV_MANAGEMENT_TENANT,
               progress: Callable[[int, int], None] | None = None) -> None:
    """Add ``tenants`` realistic tenants (465 rows each, ``users_per_tenant`` more users each, and
    their customer-tracking rows in ``management_tenant`` when it exists) to the database.

    May be called again on a filled database: new tenants are numbered after the existing ones (their
    names end with their number), so names and emails stay distinct. ``progress(done, total)`` is
    called after the template and after each committed batch.
    """
    if tenants <= 0:
        return
    async with await AsyncConnection.connect(conninfo, autocommit=True, row_factory=tuple_row,
                                             prepare_threshold=None) as conn:
        # Past every number a filled (or template) tenant's name ends with, even after deletions.
        cur = await conn.execute(
            "SELECT greatest(count(*), coalesce(max(substring(client_name FROM ' ([0-9]{1,9})$')::int), 0))"
            " FROM tenants")
        row = await cur.fetchone()
        first = (int(row[0]) if row else 0) + 1
        template = await provision_template(conninfo, number=first)
        if progress is not None:
            progress(1, tenants)
        if tenants == 1 and users_per_tenant == 0:
            return
        await conn.execute("SET synchronous_commit = off")  # batches are re-runnable; no need to wait on WAL
        skipped = await _try_skip_fk_triggers(conn)
        log.info("filling", extra={"tenants": tenants, "fk_triggers_skipped": skipped})
        tables = list(reversed(TENANT_TABLES_DELETE_ORDER))  # parents first
        cur = await conn.execute(
            sql.SQL(" UNION ALL ").join(
                sql.SQL("SELECT {name}, count(*) FROM {t} WHERE tenant = %(t)s").format(
                    name=sql.Literal(t), t=sql.Identifier(t)) for t in tables),
            {"t": template.tenant_id})
        present = [t for t, n in await cur.fetchall() if n]
        clones = [await _clone_statement(conn, t) for t in present]
        extra_users, extra_grants = await _extra_users_statements(conn)
        cur = await conn.execute(
            "SELECT role_name, role_id FROM roles WHERE tenant = %s AND msp AND NOT client", (template.tenant_id,))
        msp_roles = {name: role_id for name, role_id in await cur.fetchall()}
        extra_roles = [msp_roles[n] for n in EXTRA_USER_ROLES if n in msp_roles] or list(msp_roles.values())
        params: dict[str, Any] = {
            "template": template.tenant_id, "admin": template.admin_user_id, "k": users_per_tenant,
            "firsts": list(FIRST_NAMES), "nf": len(FIRST_NAMES), "lasts": list(LAST_NAMES), "nl": len(LAST_NAMES),
            "words": list(COMPANY_WORDS), "nw": len(COMPANY_WORDS), "kinds": list(COMPANY_KINDS),
            "nk": len(COMPANY_KINDS), "roles": extra_roles, "nr": len(extra_roles),
        }
        tracking_params = await _tracking_params(conn, management_tenant)

        async def one_batch(lo: int, hi: int) -> None:
            async with conn.transaction():
                await conn.execute(_BATCH_SQL, {**params, "lo": lo, "hi": hi})
                for statement in clones:
                    await conn.execute(statement, params)
                if users_per_tenant > 0:
                    await conn.execute(extra_users, params)
                    await conn.execute(extra_grants, params)
                if tracking_params is not None:
                    for tracking_sql in _TRACKING_SQL:
                        await conn.execute(tracking_sql, tracking_params)

        done = 1
        for lo in range(first + 1, first + tenants, batch):
            hi = min(lo + batch - 1, first + tenants - 1)
            await one_batch(lo, hi)
            done += hi - lo + 1
            if progress is not None:
                progress(done, tenants)
        # The template's own extra users last: a clone copies every user of the template.
        if users_per_tenant > 0:
            template_users, template_grants = await _extra_users_statements(conn, remap_roles=False)
            async with conn.transaction():
                await conn.execute(
                    "CREATE TEMP TABLE scale_batch ON COMMIT DROP AS SELECT %(g)s::int AS g,"
                    " %(t)s::uuid AS tenant, now() AS created_at, %(d)s::text AS domain",
                    {"g": first, "t": template.tenant_id, "d": template.admin.email.split("@", 1)[1]})
                await conn.execute(template_users, params)
                await conn.execute(template_grants, params)
        # What autovacuum would long have done on a database this size: visibility map set, statistics
        # current (the planner's choices below depend on them), no vacuum left to run mid-measurement.
        for table in sorted({*present, "contacts", "tag_mappings", "tag_definitions"}):
            await conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.Identifier(table)))


async def _tracking_params(conn: AsyncConnection[Any], management_tenant: UUID | None) -> dict[str, Any] | None:
    """What the tracking inserts need: the management tenant, its portal Admin role and the tag; None
    (no tracking rows) when there is no such tenant or role."""
    if management_tenant is None:
        return None
    cur = await conn.execute("SELECT 1 FROM tenants WHERE tenant = %s", (management_tenant,))
    if await cur.fetchone() is None:
        return None
    cur = await conn.execute(
        "SELECT role_id FROM roles WHERE tenant = %s AND NOT msp AND client AND lower(role_name) = %s"
        " ORDER BY created_at, role_id LIMIT 1", (management_tenant, tracking.PORTAL_ADMIN_ROLE))
    role = await cur.fetchone()
    if role is None:
        return None
    background, text = tracking.tag_colors(tracking.PSA_CUSTOMER_TAG)
    await conn.execute(
        "INSERT INTO tag_definitions (tag_id, tenant, tag_text, tagged_type, background_color, text_color,"
        " created_at) VALUES (%s, %s, %s, %s, %s, %s, now()) ON CONFLICT (tenant, tag_text, tagged_type) DO NOTHING",
        (uuid.uuid4(), management_tenant, tracking.PSA_CUSTOMER_TAG, tracking.CLIENT_TAGGED_TYPE, background, text))
    cur = await conn.execute(
        "SELECT tag_id FROM tag_definitions WHERE tenant = %s AND tag_text = %s AND tagged_type = %s",
        (management_tenant, tracking.PSA_CUSTOMER_TAG, tracking.CLIENT_TAGGED_TYPE))
    tag = await cur.fetchone()
    assert tag is not None
    return {"m": management_tenant, "portal_role": role[0], "tag": tag[0], "tagged_type": tracking.CLIENT_TAGGED_TYPE,
            "contact_role": tracking.CONTACT_ROLE, "contact_notes": tracking.CONTACT_NOTES}


# ---------------------------------------------------------------- measurement (the CLI)
#
# Two databases on one server, one empty and one filled, each with its own in-process worker (the
# real runtime: build_resources/build_worker) on its own task queue. Provisionings alternate between
# them, so whatever else the box does at that moment (the dev server, a checkpoint, the other phase's
# leftovers) weighs on both sides alike and the ratio measures the database alone.


@dataclass
class Side:
    """One database's figures in one phase: workflow end to end, and the DB activities alone."""

    workflow_ms: list[float] = field(default_factory=list)
    provision_ms: list[float] = field(default_factory=list)
    track_ms: list[float] = field(default_factory=list)

    def p50(self) -> dict[str, float]:
        return {name: round(statistics.median(values), 1) if values else 0.0
                for name, values in (("workflow", self.workflow_ms), ("provision_tenant", self.provision_ms),
                                     ("track_customer", self.track_ms))}


@dataclass
class Phase:
    label: str
    empty: Side
    filled: Side

    def summary(self) -> dict[str, Any]:
        empty, filled = self.empty.p50(), self.filled.p50()
        return {"label": self.label, "runs": len(self.empty.workflow_ms), "empty_p50_ms": empty,
                "filled_p50_ms": filled,
                "ratio": {k: round(filled[k] / empty[k], 2) if empty[k] else 0.0 for k in empty}}


@dataclass
class Target:
    """One database with its worker: a task queue for workflows, the activities for direct calls."""

    queue: str
    acts: dict[str, Any]


def _request(tag: str) -> dict[str, object]:
    return {"tenantName": f"Scale Bench MSP {tag}", "clientName": f"Scale Bench {tag}",
            "adminUser": {"firstName": "Bench", "lastName": "Scale", "email": f"bench.{tag}@scale-bench.example"}}


async def _timed(call: Awaitable[Any]) -> float:
    started = time.perf_counter()
    await call
    return (time.perf_counter() - started) * 1000


async def _one_round(client: Any, target: Target, side: Side) -> None:
    """One provisioning through the worker, then one provision_tenant and one track_customer alone."""
    from temporalio.testing import ActivityEnvironment

    from alga_worker.models import CustomerTrackingInput

    tag = uuid.uuid4().hex[:10]
    side.workflow_ms.append(await _timed(client.execute_workflow(
        "tenantCreationWorkflow", _request(tag), id=f"scale-{tag}", task_queue=target.queue)))
    env = ActivityEnvironment()
    admin = AdminUserInput(first_name="Bench", last_name="Scale", email=f"act.{tag}@scale-bench.example")
    req = ProvisionTenantInput(
        tenant_id=uuid.uuid4(), client_id=uuid.uuid4(), location_id=uuid.uuid4(), admin_user_id=uuid.uuid4(),
        tenant_name=f"Scale Act MSP {tag}", client_name=f"Scale Act {tag}", seal_binding=f"scale/{tag}", admin=admin)
    side.provision_ms.append(await _timed(env.run(target.acts["provision_tenant"], req)))
    track = CustomerTrackingInput(
        tenant_id=req.tenant_id, tenant_name=req.tenant_name, client_name=req.client_name, admin=admin,
        customer_client_id=uuid.uuid4(), contact_id=uuid.uuid4(), portal_user_id=uuid.uuid4(),
        seal_binding=f"scale/{tag}/track")
    side.track_ms.append(await _timed(env.run(target.acts["track_customer"], track)))


async def measure(client: Any, empty: Target, filled: Target, label: str, runs: int) -> Phase:
    """``runs`` rounds on each database, alternating which goes first."""
    phase = Phase(label, Side(), Side())
    for i in range(runs):
        pair = [(empty, phase.empty), (filled, phase.filled)]
        for target, side in pair if i % 2 == 0 else reversed(pair):
            await _one_round(client, target, side)
    return phase


async def _settle(conninfo: str) -> None:
    """Flush the fill's dirty pages now rather than during the measurement (needs a privileged role)."""
    async with await AsyncConnection.connect(conninfo, autocommit=True) as conn:
        with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
            await conn.execute("CHECKPOINT")


async def main(tenants: int, runs: int, users_per_tenant: int, json_path: Path | None) -> None:
    from psycopg.conninfo import make_conninfo
    from temporalio.client import Client

    from alga_worker.config import load_client_settings, load_settings
    from alga_worker.db.migrate import migrate
    from alga_worker.db.schema_contract import RECOMMENDED_INDEXES
    from alga_worker.payload_codec import data_converter
    from alga_worker.runtime.devstack import DevStack
    from alga_worker.runtime.worker import build_resources, build_worker

    logging.getLogger("alga_worker").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as root:
        Path(root).chmod(0o755)
        async with DevStack(Path(root) / "stack", ephemeral=True) as stack:
            filled_url = stack.database_url
            async with await AsyncConnection.connect(filled_url, autocommit=True) as conn:
                await conn.execute("CREATE DATABASE scale_empty")
            empty_url = make_conninfo(filled_url, dbname="scale_empty")
            await migrate(empty_url)
            started = time.perf_counter()
            await fill(filled_url, tenants, users_per_tenant=users_per_tenant, progress=_print_progress)
            fill_seconds = time.perf_counter() - started
            rows = await _row_total(filled_url)
            print(f"\nfilled {tenants} tenants in {fill_seconds:.1f} s ({rows:,} rows in the tenant tables, "
                  "vacuumed and analysed)")
            await _settle(filled_url)
            converter = data_converter(load_client_settings(stack.worker_environment(
                SECRETS_DIR=str(Path(root) / "secrets"))))
            client = await Client.connect(stack.temporal_address, data_converter=converter)
            targets: list[Target] = []
            workers = []
            resources = []
            for name, url in (("empty", empty_url), ("filled", filled_url)):
                settings = load_settings(stack.worker_environment(
                    DATABASE_URL=url, ALGA_AUTH_KEY="bench-pepper-not-secret", TEMPORAL_TASK_QUEUE=f"scale-{name}",
                    EMAIL_OUTBOX_DIR=str(Path(root) / f"outbox-{name}"), SECRETS_DIR=str(Path(root) / "secrets"),
                    MANAGEMENT_TENANT_ID=str(DEV_MANAGEMENT_TENANT), LOG_LEVEL="warning"))
                built = await build_resources(settings)
                resources.append(built)
                workers.append(build_worker(client, settings, built.activities))
                targets.append(Target(settings.task_queue, {
                    fn.__temporal_activity_definition.name: fn
                    for fn in built.activities if hasattr(fn, "__temporal_activity_definition")}))
            phases: list[Phase] = []
            try:
                async with workers[0], workers[1]:
                    empty, filled = targets
                    await measure(client, empty, filled, "warm-up", 3)
                    phases.append(await measure(client, empty, filled, "no recommended index", runs))
                    created: list[str] = []
                    async with await AsyncConnection.connect(filled_url, autocommit=True) as conn:
                        for index in RECOMMENDED_INDEXES:
                            await conn.execute(index.ddl)
                            await conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(index.table)))
                            created.append(index.name)
                            label = "+ " + index.name if len(created) == 1 else f"+ {index.name} ({len(created)})"
                            phases.append(await measure(client, empty, filled, label, runs))
            finally:
                for built in resources:
                    await built.aclose()
    report(phases, tenants=tenants, users_per_tenant=users_per_tenant, fill_seconds=fill_seconds, rows=rows,
           json_path=json_path)


def _print_progress(done: int, total: int) -> None:
    print(f"\rfill: {done}/{total} tenants", end="", flush=True)


async def _row_total(conninfo: str) -> int:
    """Rows in the worker's tenant tables, all tenants."""
    counts = sql.SQL(" + ").join(sql.SQL("(SELECT count(*) FROM {})").format(sql.Identifier(t))
                                 for t in TENANT_TABLES_DELETE_ORDER)
    async with await AsyncConnection.connect(conninfo, autocommit=True) as conn:
        cur = await conn.execute(sql.SQL("SELECT ") + counts)
        row = await cur.fetchone()
        return int(row[0]) if row else 0


def report(phases: Sequence[Phase], *, tenants: int, users_per_tenant: int, fill_seconds: float, rows: int,
           json_path: Path | None) -> None:
    """p50 per phase on the empty and the filled database (indexes cumulative, in declaration order)."""
    print(f"\n{'filled database has':<48} {'workflow p50 (empty / filled / ratio)':>38}   "
          f"{'provision_tenant':>26}   {'track_customer':>26}")
    for phase in phases:
        s = phase.summary()
        cells = [f"{s['empty_p50_ms'][k]:>6.1f} / {s['filled_p50_ms'][k]:>6.1f} ms / {s['ratio'][k]:>4.2f}"
                 for k in ("workflow", "provision_tenant", "track_customer")]
        print(f"{s['label']:<48} {cells[0]:>38}   {cells[1]:>26}   {cells[2]:>26}")
    if json_path is not None:
        json_path.write_text(json.dumps({
            "tenants": tenants, "users_per_tenant": users_per_tenant, "fill_seconds": round(fill_seconds, 1),
            "rows": rows, "phases": [p.summary() for p in phases], "raw": [asdict(p) for p in phases]}, indent=2))
        print(f"wrote {json_path}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tenants", type=int, default=10_000, help="tenants to fill (default 10000)")
    parser.add_argument("--runs", type=int, default=30, help="sequential provisionings per phase (default 30)")
    parser.add_argument("--users-per-tenant", type=int, default=DEFAULT_USERS_PER_TENANT,
                        help=f"users besides the admin, per tenant (default {DEFAULT_USERS_PER_TENANT})")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    asyncio.run(main(args.tenants, args.runs, args.users_per_tenant, args.json))

"""EXPLAIN (ANALYZE, BUFFERS) of every statement the worker runs in one provisioning, on any database.

    .venv/bin/python -m bench.scale_explain --database-url postgresql://...    # nothing is kept
    .venv/bin/python -m bench.scale_explain --fill 10000                       # ephemeral stack, filled

Why: to find what grows with the number of tenants, look at the plans of exactly the statements the
worker sends, in the state each one meets (after the statements before it in its transaction), not
at hand-copied SQL. So the worker's own activities run (``provision_tenant`` as a checkout runs it,
with Stripe rows, then ``track_customer`` in the management tenant) on connections that, before each
statement, run it once under ``EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)`` inside a savepoint rolled
back at once, then run it for real. Every transaction is rolled back at its end: the tool writes
nothing, so it can be pointed at a staging copy of Alga's database.

A statement "grows" when one of its plan nodes reads many rows to return few: a sequential scan over
more than ``--threshold`` rows, or an index scan that discards more than that many by its filter.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar
from uuid import UUID

from psycopg import AsyncTransaction
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from alga_worker.db.pool import DbConnection
from alga_worker.models import AdminUserInput, CustomerTrackingInput, ProvisionTenantInput, StripeDetails

DEFAULT_THRESHOLD = 1000
_EXPLAINABLE = ("SELECT", "INSERT", "UPDATE", "DELETE", "WITH")


@dataclass
class PlanNode:
    node: str
    relation: str | None
    index: str | None
    rows: int
    removed: int
    loops: int

    @property
    def scanned(self) -> int:
        """Rows the node looked at: returned plus discarded by its filter, over all loops."""
        return (self.rows + self.removed) * max(self.loops, 1)

    def describe(self) -> str:
        where = f" on {self.relation}" if self.relation else ""
        using = f" using {self.index}" if self.index else ""
        removed = f", {self.removed * max(self.loops, 1):,} removed by filter" if self.removed else ""
        return f"{self.node}{where}{using}: {self.rows * max(self.loops, 1):,} rows{removed}"


@dataclass
class StatementPlan:
    activity: str
    sql: str
    execution_ms: float
    planning_ms: float
    buffers: int
    nodes: list[PlanNode]
    triggers_ms: float = 0.0

    def growing(self, threshold: int) -> list[PlanNode]:
        """Nodes that read many rows to keep few: their cost follows the table, not the tenant."""
        return [n for n in self.nodes if n.relation is not None and (
            (n.node == "Seq Scan" and n.scanned > threshold) or n.removed * max(n.loops, 1) > threshold)]

    def short_sql(self, width: int = 110) -> str:
        text = " ".join(self.sql.split())
        return text if len(text) <= width else text[:width - 1] + "…"


def _walk(plan: dict[str, Any]) -> Iterator[PlanNode]:
    yield PlanNode(node=plan.get("Node Type", "?"), relation=plan.get("Relation Name"), index=plan.get("Index Name"),
                   rows=int(plan.get("Actual Rows", 0)),
                   removed=int(plan.get("Rows Removed by Filter", 0))
                   + int(plan.get("Rows Removed by Index Recheck", 0)),
                   loops=int(plan.get("Actual Loops", 1)))
    for child in plan.get("Plans", ()):
        yield from _walk(child)


def parse_plan(activity: str, query: str, explained: Any) -> StatementPlan:
    """One ``EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)`` result as a :class:`StatementPlan`."""
    top = (explained if isinstance(explained, list) else json.loads(explained))[0]
    plan = top["Plan"]
    return StatementPlan(
        activity=activity, sql=query, execution_ms=float(top.get("Execution Time", 0.0)),
        planning_ms=float(top.get("Planning Time", 0.0)),
        buffers=int(plan.get("Shared Hit Blocks", 0)) + int(plan.get("Shared Read Blocks", 0)),
        nodes=list(_walk(plan)), triggers_ms=sum(float(t.get("Time", 0.0)) for t in top.get("Triggers", ())))


class ExplainingConnection(DbConnection):
    """The worker's pool connection, explaining each statement before running it; never commits."""

    plans: ClassVar[list[StatementPlan]] = []
    activity: ClassVar[str] = ""

    @asynccontextmanager
    async def transaction(self, savepoint_name: str | None = None,
                          force_rollback: bool = False) -> AsyncIterator[AsyncTransaction]:
        async with super().transaction(savepoint_name, force_rollback=True) as tx:
            yield tx

    async def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        if (isinstance(query, str) and query.lstrip().upper().startswith(_EXPLAINABLE) and not self.autocommit
                and not query.startswith("SELECT set_config(")):  # the pool's per-transaction timeouts
            async with self.transaction():  # a savepoint, rolled back: the statement's effect is undone
                cur = await super().execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + query, params)
                row = await cur.fetchone()
            if row is not None:
                ExplainingConnection.plans.append(parse_plan(self.activity, query, next(iter(row.values()))))
        return await super().execute(query, params, **kwargs)


async def explain_provisioning(conninfo: str, management_tenant: UUID | None) -> list[StatementPlan]:
    """Run ``provision_tenant`` (checkout shape: with Stripe rows) and, when ``management_tenant`` is
    given, ``track_customer``, explaining every statement; nothing is committed."""
    from temporalio.testing import ActivityEnvironment

    from alga_worker.activities.customers import CustomerActivities
    from alga_worker.activities.tenants import TenantActivities
    from alga_worker.config import load_settings
    from alga_worker.security import CredentialSealer, PasswordHasher

    pepper = "bench-scale-explain-pepper"
    hasher, sealer = PasswordHasher(pepper=pepper), CredentialSealer(pepper)
    pool: AsyncConnectionPool[ExplainingConnection] = AsyncConnectionPool(
        conninfo, connection_class=ExplainingConnection, min_size=1, max_size=1, open=False,
        kwargs={"row_factory": dict_row, "prepare_threshold": None})
    await pool.open(wait=True, timeout=30)
    ExplainingConnection.plans = []
    tag = uuid.uuid4().hex[:10]
    admin = AdminUserInput(first_name="Explain", last_name="Plans", email=f"explain.{tag}@scale-explain.example")
    req = ProvisionTenantInput(
        tenant_id=uuid.uuid4(), client_id=uuid.uuid4(), location_id=uuid.uuid4(), admin_user_id=uuid.uuid4(),
        tenant_name=f"Explain MSP {tag}", client_name=f"Explain {tag}", license_count=5,
        seal_binding=f"explain/{tag}", admin=admin,
        stripe=StripeDetails(stripe_customer_id=f"cus_{tag}", stripe_subscription_id=f"sub_{tag}",
                             stripe_subscription_item_id=f"si_{tag}", stripe_price_id=f"price_{tag}",
                             license_count=5, customer_email=admin.email, customer_name=f"Explain MSP {tag}"))
    env = ActivityEnvironment()
    try:
        # The price lookup runs against the master billing tenant (here the management tenant, if any).
        ExplainingConnection.activity = "provision_tenant"
        await env.run(TenantActivities(pool, hasher, sealer, management_tenant).provision_tenant, req)  # type: ignore[arg-type]
        if management_tenant is not None:
            ExplainingConnection.activity = "track_customer"
            settings = load_settings({  # only the management tenant matters to track_customer
                "DATABASE_URL": conninfo, "ALGA_AUTH_KEY": pepper, "MANAGEMENT_TENANT_ID": str(management_tenant),
                "EMAIL_PROVIDER": "outbox", "EMAIL_OUTBOX_DIR": tempfile.gettempdir(), "NODE_ENV": "development"})
            track = CustomerTrackingInput(
                tenant_id=req.tenant_id, tenant_name=req.tenant_name, client_name=req.client_name, admin=admin,
                customer_client_id=uuid.uuid4(), contact_id=uuid.uuid4(), portal_user_id=uuid.uuid4(),
                seal_binding=f"explain/{tag}/track")
            await env.run(CustomerActivities(pool, hasher, sealer, settings).track_customer, track)  # type: ignore[arg-type]
    finally:
        await pool.close()
    return list(ExplainingConnection.plans)


def report(plans: list[StatementPlan], *, threshold: int, baseline: list[StatementPlan] | None = None) -> str:
    """A text table: per statement its time and buffers (and the baseline's), growing nodes flagged."""
    lines = [f"{'#':>3} {'activity':<16} {'ms':>7} {'buffers':>8}"
             + (f" {'ms (base)':>9} {'buf (base)':>10}" if baseline else "") + "  statement"]
    unmatched = list(baseline or ())
    for i, plan in enumerate(plans):
        # The same statement in the baseline run (a branch may add one: the tag already defined, say).
        base = next((b for b in unmatched if b.sql == plan.sql), None)
        if base is not None:
            unmatched.remove(base)
        extra = f" {base.execution_ms:>9.2f} {base.buffers:>10}" if base else (" " * 21 if baseline else "")
        lines.append(f"{i + 1:>3} {plan.activity:<16} {plan.execution_ms:>7.2f} {plan.buffers:>8}{extra}  "
                     f"{plan.short_sql()}")
        for node in plan.growing(threshold):
            lines.append(f"{'':>30}GROWS: {node.describe()}")
    total = sum(p.execution_ms for p in plans)
    lines.append(f"total execution {total:.1f} ms over {len(plans)} statements"
                 + (f" (baseline {sum(p.execution_ms for p in baseline):.1f} ms)" if baseline else ""))
    return "\n".join(lines)


async def _main(args: argparse.Namespace) -> None:
    logging.getLogger("alga_worker").setLevel(logging.ERROR)  # the activities' own log lines are noise here
    mgmt = None if args.no_tracking else UUID(args.management_tenant)
    if args.database_url:
        print(report(await explain_provisioning(args.database_url, mgmt), threshold=args.threshold))
        return
    from alga_worker.db.schema_contract import RECOMMENDED_INDEXES
    from alga_worker.runtime.devstack import DevStack
    from bench.scale import fill

    with tempfile.TemporaryDirectory() as root:
        Path(root).chmod(0o755)
        async with DevStack(Path(root) / "stack", ephemeral=True) as stack:
            empty = await explain_provisioning(stack.database_url, mgmt)
            print("== empty database (the management tenant only)\n" + report(empty, threshold=args.threshold))
            await fill(stack.database_url, args.fill)
            filled = await explain_provisioning(stack.database_url, mgmt)
            print(f"\n== {args.fill} tenants, no recommended index\n"
                  + report(filled, threshold=args.threshold, baseline=empty))
            import psycopg

            async with await psycopg.AsyncConnection.connect(stack.database_url, autocommit=True) as conn:
                for index in RECOMMENDED_INDEXES:
                    await conn.execute(index.ddl)
                    await conn.execute(f"ANALYZE {index.table}")
            indexed = await explain_provisioning(stack.database_url, mgmt)
            print(f"\n== {args.fill} tenants, recommended indexes created\n"
                  + report(indexed, threshold=args.threshold, baseline=empty))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", help="explain on this database (nothing is written)")
    parser.add_argument("--fill", type=int, default=10_000, help="without --database-url: tenants to fill")
    parser.add_argument("--management-tenant", default="00000000-0000-4000-8000-000000000001")
    parser.add_argument("--no-tracking", action="store_true", help="skip track_customer")
    parser.add_argument("--threshold", type=int, default=DEFAULT_THRESHOLD)
    asyncio.run(_main(parser.parse_args()))

"""Worker-side memory of a tenant export: flat, whatever the tenant's size (issue 13; not a test).

    .venv/bin/python -m bench.export_memory [--extra 10000 100000] [--batch 1000] [--json .bench/export_memory.json]

On one ephemeral DevStack (embedded PostgreSQL; exports into its EXPORT_DIR), provisions a plain tenant
and, for each ``--extra N``, a tenant with N extra ``contacts`` rows (notes of ~200 characters), then
runs the real ``export_tenant_data`` activity in-process (``ActivityEnvironment``) on each and prints
the peak of Python memory allocated while it ran (``tracemalloc``: the heap the activity's own work
allocates, psycopg's rows, the JSON lines, the compression buffers), with the rows, bytes and time.
For contrast, the same tenant read the way the original did (``SELECT *`` of each table into memory,
one JSON document) is measured the same way: that peak grows with the tenant, the export's does not.
Timings depend on the machine; the memory figures are what the bench is for (docs/lifecycle.md).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import logging
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from temporalio.testing import ActivityEnvironment

from alga_worker.config import load_settings
from alga_worker.db import tenant_export as sql
from alga_worker.models import AdminUserInput, ProvisionTenantInput, TenantExportInput, TenantExportOutcome
from alga_worker.runtime.devstack import DevStack
from alga_worker.runtime.worker import build_resources

T = TypeVar("T")
PEPPER = "bench-export-pepper-0123456789"


async def peak_of(work: Callable[[], Awaitable[T]]) -> tuple[T, int, float]:
    """(result, peak bytes allocated above the start, seconds) of one awaited piece of work."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    base, _ = tracemalloc.get_traced_memory()
    started = time.perf_counter()
    try:
        result = await work()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak - base, time.perf_counter() - started


async def add_contacts(conninfo: str, tenant: uuid.UUID, n: int) -> None:
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO contacts (tenant, full_name, email, role, notes)"
            " SELECT %s, 'Contact ' || g, 'contact' || g || '@example.com', 'staff', repeat(md5(g::text), 6)"
            " FROM generate_series(1, %s) AS g", (tenant, n))


async def load_like_the_original(conninfo: str, tenant: uuid.UUID) -> int:
    """Every table of the tenant read whole into memory and dumped as one JSON document (the original's
    way, secrets aside): what a non-streaming export holds at once."""
    async with await psycopg.AsyncConnection.connect(conninfo) as conn:
        document: dict[str, Any] = {}
        for table in await sql.tenant_tables(conn):
            cur = await conn.execute(sql.select_rows(table), (tenant,))
            names = [c.name for c in table.columns]
            document[table.name] = [dict(zip(names, row, strict=True)) for row in await cur.fetchall()]
        return len(json.dumps(document, default=str).encode())


async def run(extra: list[int], batch: int) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-export-") as root:
        Path(root).chmod(0o755)
        async with DevStack(Path(root) / "stack", ephemeral=True) as stack:
            settings = load_settings(stack.worker_environment(
                ALGA_AUTH_KEY=PEPPER, SECRETS_DIR=str(Path(root) / "secrets"), EXPORT_BATCH_SIZE=str(batch),
                LOG_LEVEL="warning"))
            resources = await build_resources(settings)
            acts = {getattr(fn, "__temporal_activity_definition").name: fn for fn in resources.activities}
            try:
                for n in [0, *extra]:
                    tenant = uuid.uuid4()
                    suffix = tenant.hex[:8]
                    await ActivityEnvironment().run(acts["provision_tenant"], ProvisionTenantInput(
                        tenant_id=tenant, client_id=uuid.uuid4(), location_id=uuid.uuid4(),
                        admin_user_id=uuid.uuid4(), tenant_name=f"Bench MSP {suffix}",
                        client_name=f"Bench MSP {suffix} LLC",
                        admin=AdminUserInput(first_name="Bea", last_name="Bench", email=f"bench-{suffix}@example.com"),
                        seal_binding=f"bench-{suffix}"))
                    if n:
                        await add_contacts(stack.database_url, tenant, n)
                    req = TenantExportInput(tenant_id=tenant, export_id=uuid.uuid4(), requested_by="bench")
                    outcome: TenantExportOutcome
                    outcome, peak, seconds = await peak_of(
                        functools.partial(ActivityEnvironment().run, acts["export_tenant_data"], req))
                    size, naive_peak, naive_seconds = await peak_of(
                        functools.partial(load_like_the_original, stack.database_url, tenant))
                    results.append({"extra_rows": n, "rows": outcome.record_count, "tables": outcome.table_count,
                                    "compressed_bytes": outcome.file_size_bytes, "export_peak_bytes": peak,
                                    "export_seconds": round(seconds, 3), "whole_document_bytes": size,
                                    "in_memory_peak_bytes": naive_peak,
                                    "in_memory_seconds": round(naive_seconds, 3)})
            finally:
                await resources.aclose()
    return results


def mib(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MiB"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.export_memory", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--extra", type=int, nargs="+", default=[10_000, 100_000],
                        help="extra contacts rows of each big tenant (default 10000 100000)")
    parser.add_argument("--batch", type=int, default=1000, help="EXPORT_BATCH_SIZE (default 1000)")
    parser.add_argument("--json", type=Path, default=Path(".bench/export_memory.json"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    results = asyncio.run(run(args.extra, args.batch))
    print(f"tenant export, EXPORT_BATCH_SIZE={args.batch}: peak Python memory while exporting (tracemalloc)")
    print(f"{'extra rows':>10} {'rows':>8} {'gz bytes':>10} {'export peak':>12} {'export s':>9} "
          f"{'in-memory peak':>15} {'in-memory s':>11}")
    for r in results:
        print(f"{r['extra_rows']:>10} {r['rows']:>8} {r['compressed_bytes']:>10} {mib(r['export_peak_bytes']):>12} "
              f"{r['export_seconds']:>9} {mib(r['in_memory_peak_bytes']):>15} {r['in_memory_seconds']:>11}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"batch": args.batch, "results": results}, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

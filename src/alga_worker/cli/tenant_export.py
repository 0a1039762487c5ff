"""``alga-worker tenant export``: run ``tenantExportWorkflow`` and show where the export went.

While the run works, a Rich bar on stderr follows the export activity's heartbeat details (the table
being written, tables done of all, rows so far), read with ``describe`` every half second; then stdout
gets the location, the manifest's key, and every table with its row count. Exit codes as every
command's (``cli/common.py``): 0 written, 1 refused or failed (``TenantNotFoundError``,
``ConfigurationError`` ... printed), 2 bad arguments.
"""

from __future__ import annotations

import asyncio
import getpass
import json
from typing import Annotated, Any
from uuid import UUID, uuid4

import typer
from rich.table import Table

from alga_worker.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    client,
    client_settings,
    err_console,
    out,
    parse_request,
    start_and_wait,
)
from alga_worker.models import WORKFLOW_TYPE_TENANT_EXPORT, TenantExportRequest, TenantExportResult

POLL_SECONDS = 0.5


def export_workflow_id(tenant_id: UUID, export_id: UUID) -> str:
    """One run per export id: a second start of the same export is refused while the first runs."""
    return f"tenant-export-{tenant_id}-{export_id}"


def tenant_export(
    tenant_id: Annotated[str, typer.Argument(help="The tenant's Alga tenant id.")],
    export_id: Annotated[str | None, typer.Option(
        help="The export's id (a UUID); default: a new one. Running an export id again rewrites the same "
             "objects.")] = None,
    reason: Annotated[str | None, typer.Option(help="Why (recorded in the manifest).")] = None,
    by: Annotated[str | None, typer.Option(
        "--by", help="Who asks (recorded in the manifest); default: operator:<login name>.")] = None,
) -> None:
    """Export every row of a tenant (gzip JSON Lines per table and a manifest) to the worker's bucket
    (EXPORT_S3_BUCKET) or folder (EXPORT_DIR), by running tenantExportWorkflow.

    Password hashes and other secret-looking columns are never exported (docs/lifecycle.md "Export").
    """
    request = parse_request(TenantExportRequest, {
        "tenant_id": tenant_id, "export_id": export_id or str(uuid4()), "reason": reason,
        "requested_by": by or f"operator:{_login()}",
    })
    assert request.export_id is not None
    raise typer.Exit(asyncio.run(_export(request, request.export_id)))


def _login() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in a container without a passwd entry
        return "unknown"


async def _export(request: TenantExportRequest, export_id: UUID) -> int:
    cs = client_settings()
    temporal = await client(cs)
    result: TenantExportResult | None = await start_and_wait(
        temporal, cs, WORKFLOW_TYPE_TENANT_EXPORT, request, export_workflow_id(request.tenant_id, export_id),
        TenantExportResult, "this export is already running", progress=_follow)
    if result is None:
        return EXIT_FAILED
    summary = Table(title="Tenant exported", show_header=False)
    for name, value in (("tenant id", str(result.tenant_id)), ("tenant name", result.tenant_name or "-"),
                        ("export id", str(result.export_id)), ("destination", result.destination.value),
                        ("location", result.location), ("manifest", result.manifest_key),
                        ("schema version", result.schema_version or "-"), ("tables", str(result.table_count)),
                        ("rows", str(result.record_count)), ("bytes (compressed)", str(result.file_size_bytes))):
        summary.add_row(name, value)
    out.print(summary)
    tables = Table(title="Tables")
    tables.add_column("table")
    tables.add_column("rows", justify="right")
    tables.add_column("bytes", justify="right")
    tables.add_column("left out")
    for t in result.tables:
        tables.add_row(t.table, str(t.rows), str(t.bytes), ", ".join(t.excluded_columns) or "")
    out.print(tables)
    return EXIT_OK


async def _follow(handle: Any) -> TenantExportResult:
    """Wait for the result with a bar fed by the export activity's heartbeat details."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    outcome = asyncio.ensure_future(handle.result())
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err_console, transient=True) as progress:
        task = progress.add_task("starting the export", total=None)
        while True:
            done, _ = await asyncio.wait({outcome}, timeout=POLL_SECONDS)
            if done:
                break
            details = await _heartbeat_details(handle)
            if details:
                step = "uploading" if details.get("step") == "uploading" else "exporting"
                table = details.get("table") or ""
                progress.update(task, description=f"{step} {table} ({details.get('rows', 0)} rows)".strip(),
                                completed=details.get("tablesDone", 0), total=details.get("tableCount") or None)
    result: TenantExportResult = outcome.result()
    return result


async def _heartbeat_details(handle: Any) -> dict[str, Any] | None:
    """The export activity's last heartbeat details, or None (not started yet, or unreadable)."""
    try:
        description = await handle.describe()
    except Exception:
        return None
    for pending in description.raw_description.pending_activities:
        for payload in pending.heartbeat_details.payloads:
            try:
                details = json.loads(payload.data)
            except ValueError:
                continue
            if isinstance(details, dict):
                return details
    return None

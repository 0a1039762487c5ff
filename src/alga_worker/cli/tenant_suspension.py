"""``alga-worker tenant suspend|resume``: Alga's tenant-wide suspension, through its workflows.

Each command runs ``suspendTenantWorkflow``/``resumeTenantWorkflow``, so the change is recorded in
Temporal and in the audit log (``--by``, the reason) and refused with the same typed errors a web-app
caller gets. It waits with a spinner and prints the tenant's state after the run; exit 0 also when
nothing had to change (the table says so), 1 when the workflow failed (its typed error printed),
2 for input refused before anything starts.

Both commands of one tenant share the workflow id ``tenant-suspension-<tenant id>``: a suspension and
a resumption of one tenant never run at once (the second is refused, exit 1, while the first runs),
and a closed run's id may be used again. Runs are started with their ``TenantId`` search attribute
when the namespace has it registered (the workflow sets it otherwise).
"""

from __future__ import annotations

import asyncio
import getpass
from typing import Annotated, Any
from uuid import UUID

import typer
from rich.table import Table

from alga_worker.cli.common import EXIT_FAILED, EXIT_OK, client, client_settings, out, parse_request, start_and_wait
from alga_worker.cli.users import ByEmailOpt
from alga_worker.cli.users import _start_attributes as start_attributes
from alga_worker.models import (
    WORKFLOW_TYPE_RESUME_TENANT,
    WORKFLOW_TYPE_SUSPEND_TENANT,
    ResumeTenantRequest,
    SuspendTenantRequest,
    TenantSuspensionResult,
)

TenantArg = Annotated[str, typer.Argument(help="The tenant's Alga tenant id.")]
ByOpt = Annotated[str | None, typer.Option(
    "--by", help="Who asks (recorded in the audit log; default: your login name).")]


def suspension_workflow_id(tenant_id: UUID | str) -> str:
    return f"tenant-suspension-{tenant_id}"


def _operator(by: str | None) -> str | None:
    if by is not None:
        return by
    try:
        return f"operator:{getpass.getuser()}"
    except (OSError, KeyError):  # no login name in a bare container
        return None


async def _run(workflow_type: str,
               request: SuspendTenantRequest | ResumeTenantRequest) -> TenantSuspensionResult | None:
    cs = client_settings()
    temporal = await client(cs)
    attributes = await start_attributes(temporal, request.tenant_id, None)
    result: TenantSuspensionResult | None = await start_and_wait(
        temporal, cs, workflow_type, request, suspension_workflow_id(request.tenant_id), TenantSuspensionResult,
        "a suspension or resumption of this tenant is already running", search_attributes=attributes)
    return result


def _print(title: str, result: TenantSuspensionResult) -> None:
    table = Table(title=title, show_header=False)
    table.add_row("tenant id", str(result.tenant_id))
    table.add_row("suspended", "yes" if result.suspended else "no")
    if result.suspended_at is not None:
        table.add_row("suspended at", result.suspended_at.isoformat(timespec="seconds"))
    if result.reason_code is not None:
        table.add_row("reason code", result.reason_code)
    table.add_row("changed", "yes" if result.changed else "no")
    table.add_row("reason", result.reason or "-")
    table.add_row("by", result.triggered_by or "-")
    table.add_row("audit log id", result.audit_log_id or "-")
    out.print(table)


def tenant_suspend(
    tenant_id: TenantArg,
    reason: Annotated[str, typer.Option(help="Why, in words (recorded in the audit log).")],
    by: ByOpt = None,
    by_email: ByEmailOpt = None,
) -> None:
    """Suspend a tenant (suspendTenantWorkflow); already suspended: nothing changes.

    Alga then stops every background job, integration, API key, public form and outbound email of the
    tenant; its data and users stay. Exit 0 also when nothing changed, 1 when the workflow failed."""
    request = parse_request(SuspendTenantRequest, {"tenant_id": tenant_id, "reason": reason,
                                                   "triggered_by": _operator(by), "triggered_by_email": by_email})

    async def main() -> int:
        result = await _run(WORKFLOW_TYPE_SUSPEND_TENANT, request)
        if result is None:
            return EXIT_FAILED
        _print("Tenant suspended" if result.changed else "Tenant already suspended (nothing changed)", result)
        return EXIT_OK

    raise typer.Exit(asyncio.run(main()))


def tenant_resume(
    tenant_id: TenantArg,
    reason: Annotated[str | None, typer.Option(help="Why, in words (recorded in the audit log).")] = None,
    by: ByOpt = None,
    by_email: ByEmailOpt = None,
) -> None:
    """Lift a tenant's suspension (resumeTenantWorkflow); not suspended: nothing changes.

    Alga's background work for the tenant resumes on its next tick. Exit 0 also when nothing changed,
    1 when the workflow failed."""
    request = parse_request(ResumeTenantRequest, {"tenant_id": tenant_id, "reason": reason,
                                                  "triggered_by": _operator(by), "triggered_by_email": by_email})

    async def main() -> int:
        result = await _run(WORKFLOW_TYPE_RESUME_TENANT, request)
        if result is None:
            return EXIT_FAILED
        if result.changed:
            title = "Tenant resumed"
        elif result.suspended:
            title = f"Tenant still suspended: its suspension ({result.reason_code}) is not this one (nothing changed)"
        else:
            title = "Tenant was not suspended (nothing changed)"
        _print(title, result)
        return EXIT_OK

    raise typer.Exit(asyncio.run(main()))


async def columns_missing(conn: Any) -> list[str]:
    """For ``alga-worker check``: Alga's suspension columns the database lacks (a warning there, never a
    failure: they are not in the schema contract); a failure to look is reported as a warning too."""
    from alga_worker.db import tenant_suspension

    try:
        return await tenant_suspension.missing_columns(conn)
    except Exception as err:
        return [f"(cannot tell: {type(err).__name__})"]


def register(tenant_app: typer.Typer) -> None:
    """Add ``suspend`` and ``resume`` to the ``tenant`` command group."""
    tenant_app.command("suspend")(tenant_suspend)
    tenant_app.command("resume")(tenant_resume)

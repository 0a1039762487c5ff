"""``alga-worker tenant delete|confirm-deletion|rollback-deletion``: tenantDeletionWorkflow for operators.

- ``delete`` starts the run (workflow id ``tenant-deletion-<tenant id>``: a second deletion of a tenant
  is refused while one runs; a closed run's id may be used again, so a tenant rolled back may be
  deleted later), waits with a spinner until it awaits its confirmation (export written, users
  deactivated, tenant suspended, statistics collected) and prints its state. Nothing is deleted yet.
- ``confirm-deletion`` sends ``confirmDeletion``; when the grace period is over (and ``--when
  immediate``) it waits for the deletion, with the deletion's progress (table, rows) on stderr, and
  prints the result; otherwise it prints when the deletion is scheduled and returns.
- ``rollback-deletion`` sends ``rollbackDeletion`` and waits for the run to end ``rolled_back``.

Exit codes: 0 done, 1 the workflow failed or refused (its typed error printed) or is not in a state
for the command, 2 input refused before anything started.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Annotated, Any

import typer
from rich.table import Table

from alga_worker.cli.common import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_OK,
    client,
    client_settings,
    err_console,
    fail,
    failure_text,
    out,
    parse_request,
)
from alga_worker.cli.tenant_suspension import _operator
from alga_worker.models import (
    WORKFLOW_TYPE_TENANT_DELETION,
    ConfirmationType,
    DeletionTriggerSource,
    TenantDeletionRequest,
    TenantDeletionResult,
    TenantDeletionState,
    TenantDeletionStatus,
    dump_wire,
)

TenantArg = Annotated[str, typer.Argument(help="The tenant's Alga tenant id.")]
ByOpt = Annotated[str | None, typer.Option("--by", help="Who asks (default: your login name).")]
POLL_SECONDS = 0.5
_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d)?\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def deletion_workflow_id(tenant_id: Any) -> str:
    return f"tenant-deletion-{tenant_id}"


def parse_grace(text: str) -> int:
    """``30d``, ``12h``, ``15m``, ``90s`` or plain seconds -> seconds; exit 2 otherwise."""
    match = _DURATION.match(text)
    if match is None:
        raise fail(EXIT_CONFIG, f"invalid --grace {text!r}: a number with s, m, h or d (e.g. 30d)")
    return int(match.group(1)) * _UNITS[match.group(2) or "s"]


def _print_state(title: str, state: TenantDeletionState) -> None:
    table = Table(title=title, show_header=False)
    table.add_row("tenant id", str(state.tenant_id))
    table.add_row("tenant name", state.tenant_name or "-")
    table.add_row("deletion id", str(state.deletion_id))
    table.add_row("status", state.status.value)
    table.add_row("step", state.step.value)
    if state.export_location:
        table.add_row("export", state.export_location)
    if state.deactivated_user_count is not None:
        table.add_row("users deactivated", str(state.deactivated_user_count))
    if state.stats is not None:
        table.add_row("rows", f"{state.stats.record_count} in {len(state.stats.tables)} tables")
    if state.grace_period_ends_at is not None:
        table.add_row("grace period ends", state.grace_period_ends_at.isoformat(timespec="seconds"))
    if state.deletion_scheduled_for is not None and state.confirmed_at is not None:
        table.add_row("deletion scheduled for", state.deletion_scheduled_for.isoformat(timespec="seconds"))
    if state.waiting_for:
        table.add_row("waiting for", ", ".join(state.waiting_for))
    if state.confirmed_by:
        table.add_row("confirmed by", f"{state.confirmed_by} ({state.confirmation_type})")
    if state.rolled_back_by:
        table.add_row("rolled back by", f"{state.rolled_back_by}: {state.rollback_reason}")
    if state.deleted_tables:
        table.add_row("tables emptied", str(len(state.deleted_tables)))
    if state.error:
        table.add_row("error", f"{state.error_type}: {state.error}")
    out.print(table)


async def _state(handle: Any) -> TenantDeletionState | None:
    state: TenantDeletionState | None = await handle.query("getState", result_type=TenantDeletionState)
    return state


async def _closed(handle: Any) -> bool:
    from temporalio.client import WorkflowExecutionStatus

    desc = await handle.describe()
    return bool(desc.status != WorkflowExecutionStatus.RUNNING)


async def _result_or_none(handle: Any) -> TenantDeletionResult | None:
    from temporalio.client import WorkflowFailureError

    try:
        result: TenantDeletionResult = await handle.result()
    except WorkflowFailureError as err:
        err_console.print(f"[red]✗[/] {failure_text(err)}", soft_wrap=True)
        return None
    return result


async def _until(handle: Any, statuses: set[TenantDeletionStatus], what: str) -> TenantDeletionState | None:
    """Poll ``getState`` until one of ``statuses`` or the run closes (None then, its failure printed)."""
    with err_console.status(what):
        while True:
            if await _closed(handle):
                await _result_or_none(handle)
                return None
            state = await _state(handle)
            if state is not None and state.status in statuses:
                return state
            await asyncio.sleep(POLL_SECONDS)


def tenant_delete(
    tenant_id: TenantArg,
    reason: Annotated[str, typer.Option(help="Why, in words (recorded with the suspension).")],
    grace: Annotated[str, typer.Option(help="Grace period before the earliest deletion: 30d, 12h, 90s ...")] = "30d",
    trigger_source: Annotated[DeletionTriggerSource, typer.Option(help="What asked for it.")] =
        DeletionTriggerSource.MANUAL,
    subscription: Annotated[str | None, typer.Option(help="The Stripe subscription id, if any.")] = None,
    by: ByOpt = None,
) -> None:
    """Start tenantDeletionWorkflow: export, deactivate users, suspend, then await confirmation.

    Nothing is deleted until `tenant confirm-deletion` and the grace period; `tenant rollback-deletion`
    undoes it before then. Exit 0 once the run awaits its confirmation, 1 when it failed or another
    deletion of the tenant runs, 2 for invalid input."""
    request = parse_request(TenantDeletionRequest, {
        "tenant_id": tenant_id, "trigger_source": trigger_source, "triggered_by": _operator(by),
        "subscription_external_id": subscription, "reason": reason, "grace_period_seconds": parse_grace(grace)})

    async def main() -> int:
        from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
        from temporalio.exceptions import WorkflowAlreadyStartedError

        from alga_worker.cli.users import _start_attributes

        cs = client_settings()
        temporal = await client(cs)
        wf_id = deletion_workflow_id(request.tenant_id)
        try:
            handle = await temporal.start_workflow(
                WORKFLOW_TYPE_TENANT_DELETION, dump_wire(request), id=wf_id, task_queue=cs.task_queue,
                result_type=TenantDeletionResult, id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                search_attributes=await _start_attributes(temporal, request.tenant_id, None))
        except WorkflowAlreadyStartedError:
            err_console.print(f"[red]✗[/] a deletion of this tenant is already running ({wf_id})")
            return EXIT_FAILED
        out.print(f"started [bold]{wf_id}[/]")
        state = await _until(handle, {TenantDeletionStatus.AWAITING_CONFIRMATION},
                             "exporting, deactivating users, suspending ...")
        if state is None:
            return EXIT_FAILED
        _print_state("Tenant deletion pending: awaiting confirmation (nothing deleted)", state)
        return EXIT_OK

    raise typer.Exit(asyncio.run(main()))


def tenant_confirm_deletion(
    tenant_id: TenantArg,
    when: Annotated[ConfirmationType, typer.Option(help="immediate: as soon as the grace period is over; "
                                                   "30_days / 90_days: that long from now.")] =
        ConfirmationType.IMMEDIATE,
    by: ByOpt = None,
) -> None:
    """Confirm a pending deletion (confirmDeletion signal); waits for the deletion when it is due now."""
    confirmed_by = _operator(by) or "operator"

    async def main() -> int:
        cs = client_settings()
        temporal = await client(cs)
        handle = temporal.get_workflow_handle(deletion_workflow_id(tenant_id), result_type=TenantDeletionResult)
        state = await _running_state(handle)
        if state is None:
            return EXIT_FAILED
        await handle.signal("confirmDeletion", {"type": when.value, "confirmedBy": confirmed_by})
        state = await _until(handle, {TenantDeletionStatus.CONFIRMED, TenantDeletionStatus.DELETING,
                                      TenantDeletionStatus.DELETED}, "confirming ...")
        if state is None:
            return EXIT_FAILED
        if state.status is TenantDeletionStatus.CONFIRMED and state.waiting_for:
            _print_state("Deletion confirmed: scheduled (nothing deleted yet)", state)
            return EXIT_OK
        result = await _deleting(handle)
        if result is None:
            return EXIT_FAILED
        final = await _state(handle)
        if final is not None:
            _print_state("Tenant deleted", final)
        return EXIT_OK

    raise typer.Exit(asyncio.run(main()))


def tenant_rollback_deletion(
    tenant_id: TenantArg,
    reason: Annotated[str, typer.Option(help="Why, in words (recorded on the pending deletion).")] =
        "rolled back by an operator",
    by: ByOpt = None,
) -> None:
    """Roll a pending deletion back (rollbackDeletion signal): users reactivated, tenant resumed."""
    async def main() -> int:
        cs = client_settings()
        temporal = await client(cs)
        handle = temporal.get_workflow_handle(deletion_workflow_id(tenant_id), result_type=TenantDeletionResult)
        state = await _running_state(handle)
        if state is None:
            return EXIT_FAILED
        if state.status in (TenantDeletionStatus.DELETING, TenantDeletionStatus.DELETED):
            err_console.print("[red]✗[/] too late: the deletion has started")
            return EXIT_FAILED
        await handle.signal("rollbackDeletion", {"reason": reason, "rolledBackBy": _operator(by) or "operator"})
        with err_console.status("rolling back ..."):
            result = await _result_or_none(handle)
        if result is None:
            return EXIT_FAILED
        final = await _state(handle)
        if final is not None:
            _print_state("Tenant deletion rolled back" if result.status is TenantDeletionStatus.ROLLED_BACK
                         else f"Tenant deletion ended: {result.status.value}", final)
        return EXIT_OK if result.status is TenantDeletionStatus.ROLLED_BACK else EXIT_FAILED

    raise typer.Exit(asyncio.run(main()))


async def _running_state(handle: Any) -> TenantDeletionState | None:
    from temporalio.service import RPCError

    try:
        closed = await _closed(handle)
    except RPCError:
        err_console.print(f"[red]✗[/] no deletion run for this tenant ({handle.id})")
        return None
    if closed:
        err_console.print(f"[red]✗[/] the deletion run has ended ({handle.id})")
        return None
    return await _state(handle)


async def _deleting(handle: Any) -> TenantDeletionResult | None:
    """Wait for the result, showing the deletion activity's heartbeat (table, rows) on stderr."""
    task = asyncio.ensure_future(_result_or_none(handle))
    with err_console.status("deleting ...") as status:
        while not task.done():
            desc = await handle.describe()
            for pending in desc.raw_description.pending_activities:
                if pending.activity_type.name == "delete_tenant_data" and pending.heartbeat_details.payloads:
                    details = json.loads(pending.heartbeat_details.payloads[0].data)
                    status.update(f"deleting: {details.get('table') or details.get('step')} "
                                  f"({details.get('tablesDone')}/{details.get('tableCount')} tables, "
                                  f"{details.get('rowsDeleted')} rows this attempt)")
            await asyncio.wait({task}, timeout=POLL_SECONDS)
    return task.result()


def register(tenant_app: typer.Typer) -> None:
    """Add ``delete``, ``confirm-deletion`` and ``rollback-deletion`` to the ``tenant`` command group."""
    tenant_app.command("delete")(tenant_delete)
    tenant_app.command("confirm-deletion")(tenant_confirm_deletion)
    tenant_app.command("rollback-deletion")(tenant_rollback_deletion)


"""`alga-worker`: run the worker, run it on the embedded stack, check a deployment, operate tenants.

Exit codes are part of the interface (scripts and Kubernetes read them):
0 ok · 1 worker died / workflow failed · 2 configuration invalid · 3 database unreachable ·
4 Temporal unreachable · 5 the web app's DB role cannot read the worker's tables · 6 not found ·
7 the database does not satisfy the schema contract (``db/schema_contract.py``) · 8 worker versioning
is off (``deployment`` commands, ``cli/deployment.py``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import Annotated, Any, TypeVar
from uuid import uuid4

import typer
from rich.table import Table

from alga_worker.cli.codec_server import codec_server
from alga_worker.cli.common import (
    EXIT_CONFIG,
    EXIT_DB,
    EXIT_DB_SERVER_ROLE,
    EXIT_FAILED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_SCHEMA,
    EXIT_TEMPORAL,
    err_console,
    out,
)
from alga_worker.cli.common import client as _client
from alga_worker.cli.common import client_settings as _client_settings
from alga_worker.cli.common import fail as _fail
from alga_worker.cli.common import failure_text as _failure_text
from alga_worker.cli.common import minutes as _minutes
from alga_worker.cli.common import settings as _settings
from alga_worker.cli.common import start_and_wait as _start_and_wait
from alga_worker.cli.common import validation_problems as _validation_problems
from alga_worker.cli.deployment import deployment_app, pinned_override
from alga_worker.cli.emails import email_app
from alga_worker.cli.tenant_deletion import register as register_tenant_deletion
from alga_worker.cli.tenant_export import tenant_export
from alga_worker.cli.tenant_suspension import columns_missing as tenant_suspension_columns_missing
from alga_worker.cli.tenant_suspension import register as register_tenant_suspension
from alga_worker.cli.users import user_app
from alga_worker.config import (
    ConfigError,
    Settings,
    database_conninfo,
    load_client_settings,
)
from alga_worker.models import (
    WORKFLOW_TYPE_HEALTH_CHECK,
    WORKFLOW_TYPE_TENANT_CREATION,
    WORKFLOW_TYPE_UPDATE_LICENSE_COUNT,
    AdminUserInput,
    CheckoutStatusReport,
    HealthCheckResult,
    LicenseCountResult,
    LicenseUsageInput,
    NmStoreCallback,
    TenantCreationInput,
    TenantCreationResult,
    TenantCreationState,
    UpdateLicenseCountRequest,
    dump_wire,
)

DEFAULT_DEV_DIR = Path(".dev-stack")

# No pretty tracebacks: they print local variables, and locals can hold secrets.
app = typer.Typer(help="Alga PSA Temporal worker.", no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False)
tenant_app = typer.Typer(help="Start, inspect, cancel and list tenant creations; suspend, resume, export and "
                              "delete tenants.",
                         no_args_is_help=True)
db_app = typer.Typer(help="Dev/test database schema.", no_args_is_help=True)
app.add_typer(tenant_app, name="tenant")
app.add_typer(db_app, name="db")
customer_app = typer.Typer(help="Customer tracking in the management tenant.", no_args_is_help=True)
app.add_typer(customer_app, name="customer")
checkout_app = typer.Typer(help="Find a checkout's tenant creation; re-send its nm-store reports.",
                           no_args_is_help=True)
app.add_typer(checkout_app, name="checkout")
app.add_typer(user_app, name="user")
app.add_typer(email_app, name="email")
app.add_typer(deployment_app, name="deployment")
app.command("codec-server")(codec_server)  # the Temporal codec server (payload encryption)

def _setup_logging(settings: Settings) -> None:
    from alga_worker.runtime.logging import configure_logging

    configure_logging(settings.log_level, settings.log_format, settings.secret_values(),
                      static={"service": "alga-temporal-worker", "build_id": settings.build_id,
                              "environment": settings.environment})


# ---------------------------------------------------------------- worker


@app.command()
def run() -> None:
    """Run the worker against the configured Temporal and database until SIGTERM."""
    settings = _settings()
    _setup_logging(settings)
    from alga_worker.runtime.worker import run_worker

    raise typer.Exit(asyncio.run(run_worker(settings)))


@app.command()
def check() -> None:
    """Check configuration, database, schema contract and Temporal; the exit code names the first failure.

    Exit codes: 0 all good, 2 configuration invalid, 3 database unreachable, 7 schema contract not
    satisfied (each missing table or column, incompatible type or missing unique key is printed),
    5 the web app's database role cannot read the worker's tables, 4 Temporal unreachable. A missing
    recommended index (``RECOMMENDED_INDEXES``) is a warning with its DDL and changes no exit code.
    """
    settings = _settings()
    out.print(f"[green]✓[/] configuration valid (task queue {settings.task_queue}, "
              f"email {settings.email_provider.value})")

    async def probe() -> int:
        from alga_worker.db.pool import ping

        try:
            version = await ping(settings.admin_conninfo())
        except Exception as err:
            err_console.print(f"[red]✗[/] database (admin role): {type(err).__name__}")
            return EXIT_DB
        out.print(f"[green]✓[/] database reachable (PostgreSQL {version})")
        schema_code = await _check_schema(settings.admin_conninfo())
        if schema_code != EXIT_OK:
            return schema_code
        server = settings.server_conninfo()
        if server is not None:
            if not await _server_role_can_read(server):
                err_console.print("[red]✗[/] database: the web app role cannot read tenants/users")
                return EXIT_DB_SERVER_ROLE
            out.print("[green]✓[/] web app role can read the worker's tables")
        from temporalio.client import Client

        try:
            client = await Client.connect(**settings.temporal_connect)
            ok = await client.service_client.check_health()
        except Exception as err:
            err_console.print(f"[red]✗[/] Temporal at {settings.temporal_address}: {type(err).__name__}")
            return EXIT_TEMPORAL
        if not ok:
            err_console.print(f"[red]✗[/] Temporal at {settings.temporal_address} is not serving")
            return EXIT_TEMPORAL
        out.print(f"[green]✓[/] Temporal reachable at {settings.temporal_address} "
                  f"(namespace {settings.temporal_namespace})")
        await _report_search_attributes(client)
        return EXIT_OK

    raise typer.Exit(asyncio.run(probe()))


async def _report_search_attributes(client: Any) -> None:
    """Registered search attributes, as a warning only: without them runs are not searchable by checkout
    or tenant id, but still work (the worker sets only the registered ones)."""
    from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest

    from alga_worker import search_attributes

    names = [key.name for key in search_attributes.ALL]
    try:
        response = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=client.namespace))
    except Exception as err:
        err_console.print(f"[yellow]![/] search attributes: cannot list them ({type(err).__name__})")
        return
    missing = [name for name in names if name not in response.custom_attributes]
    if missing:
        err_console.print(f"[yellow]![/] search attributes not registered: {', '.join(missing)} "
                          "(runs are not findable by them; see docs/checkout.md)")
    else:
        out.print(f"[green]✓[/] search attributes registered ({', '.join(names)})")


async def _check_schema(conninfo: str) -> int:
    """The schema contract on the worker's own role: every problem printed, EXIT_SCHEMA if any."""
    from psycopg import AsyncConnection
    from rich.markup import escape

    from alga_worker.db.schema_contract import CONTRACT, verify_schema

    try:
        async with await AsyncConnection.connect(conninfo, autocommit=True, connect_timeout=10) as conn:
            problems = await verify_schema(conn)
            missing = [] if problems else await _missing_recommended_indexes(conn)
            no_suspension = [] if problems else await tenant_suspension_columns_missing(conn)
    except Exception as err:
        err_console.print(f"[red]✗[/] database: schema contract check failed: {type(err).__name__}")
        return EXIT_DB
    if problems:
        err_console.print(f"[red]✗[/] schema contract: {len(problems)} problem(s) "
                          "(the worker will not poll against this database)")
        for problem in problems:
            err_console.print(f"  - {escape(problem)}", soft_wrap=True)
        return EXIT_SCHEMA
    out.print(f"[green]✓[/] schema contract satisfied ({len(CONTRACT)} tables)")
    # A warning, never a failure: the worker is correct without them, only slower as Alga grows.
    for index in missing:
        err_console.print(f"[yellow]![/] recommended index missing: {index.name} on {index.table} "
                          f"({escape(', '.join(index.keys))}); without it {escape(index.serves)}. Create it with: "
                          f"{escape(index.ddl)}  (docs/database.md §7, \"Indexes the worker recommends\")",
                          soft_wrap=True)
    if no_suspension:  # a feature of newer Alga versions: a warning, the worker runs without it
        err_console.print(f"[yellow]![/] tenant suspension unavailable: the database has no "
                          f"{escape(', '.join(no_suspension))} (docs/lifecycle.md, \"Suspension\")", soft_wrap=True)
    return EXIT_OK


async def _missing_recommended_indexes(conn: Any) -> list[Any]:
    """The recommended indexes the database lacks; a failure to list them is a warning, like them."""
    from alga_worker.db.schema_contract import missing_recommended_indexes

    try:
        return list(await missing_recommended_indexes(conn))
    except Exception as err:
        err_console.print(f"[yellow]![/] recommended indexes: cannot list them ({type(err).__name__})")
        return []


async def _server_role_can_read(conninfo: str) -> bool:
    from psycopg import AsyncConnection

    try:
        async with await AsyncConnection.connect(conninfo, connect_timeout=5) as conn:
            await conn.execute("SELECT 1 FROM tenants LIMIT 1")
            await conn.execute("SELECT 1 FROM users LIMIT 1")
        return True
    except Exception:
        return False


@db_app.command("migrate")
def db_migrate() -> None:
    """Apply the bundled dev/test schema (Alga PSA's own migrations own production)."""
    try:
        conninfo = database_conninfo()
    except ConfigError as err:
        raise _fail(EXIT_CONFIG, str(err)) from None
    from alga_worker.db.migrate import migrate

    try:
        applied = asyncio.run(migrate(conninfo))
    except Exception as err:
        raise _fail(EXIT_DB, f"migration failed: {type(err).__name__}: {err}") from None
    out.print(f"applied {len(applied)} migration(s): {', '.join(applied) or 'schema up to date'}")


# ---------------------------------------------------------------- embedded stack


def _dev_env(stack: Any) -> None:
    for key, value in stack.worker_environment(
        HEALTH_CHECK_PORT=os.environ.get("HEALTH_CHECK_PORT", "8080"),
        METRICS_PORT=os.environ.get("METRICS_PORT", "9464"),
        LOG_FORMAT=os.environ.get("LOG_FORMAT", "console"),
    ).items():
        os.environ.setdefault(key, value)


@app.command()
def dev(
    state_dir: Annotated[Path, typer.Option(help="Where the stack keeps its data.")] = DEFAULT_DEV_DIR,
) -> None:
    """Run the worker on the embedded stack (Temporal dev server + PostgreSQL) until Ctrl-C."""
    from alga_worker.runtime.devstack import DevStack
    from alga_worker.runtime.worker import run_worker

    async def main() -> int:
        async with DevStack(state_dir.resolve(), ui=True, standard_ports=True) as stack:
            _dev_env(stack)
            settings = _settings()
            _setup_logging(settings)
            out.print(f"[bold]Temporal Web UI:[/] {stack.ui_url}")
            out.print(f"Temporal: {stack.temporal_address}  outbox: {settings.email_outbox_dir}")
            hint = "" if stack.temporal_port == 7233 else f"TEMPORAL_ADDRESS={stack.temporal_address} "
            out.print(f"Start a tenant in another shell: {hint}.venv/bin/alga-worker tenant create --name 'Acme MSP' "
                      "--admin-email ada@acme.example --admin-first-name Ada --admin-last-name Lovelace")
            return await run_worker(settings)

    raise typer.Exit(asyncio.run(main()))


@app.command()
def demo(
    state_dir: Annotated[Path, typer.Option(help="Where the stack keeps its data.")] = DEFAULT_DEV_DIR,
) -> None:
    """Provision one demo tenant end to end on the embedded stack and show what was created."""
    from alga_worker.runtime.devstack import DevStack
    from alga_worker.runtime.worker import run_worker

    async def main() -> int:
        async with DevStack(state_dir.resolve()) as stack:
            _dev_env(stack)
            os.environ["HEALTH_CHECK_PORT"] = "0"
            os.environ["METRICS_PORT"] = "0"
            settings = _settings()
            stop = asyncio.Event()
            worker_task = asyncio.create_task(run_worker(settings, stop=stop, install_signal_handlers=False))
            cs = load_client_settings()
            client = await _client(cs)
            suffix = time.strftime("%Y%m%d%H%M%S")
            request = TenantCreationInput(
                tenant_name=f"Demo MSP {suffix}",
                admin_user=AdminUserInput(first_name="Dana", last_name="Demo",
                                          email=f"dana+{suffix}@demo-msp.example.com"),
                client_name=f"Demo MSP {suffix} LLC",
                license_count=5,
            )
            handle = await client.start_workflow(
                WORKFLOW_TYPE_TENANT_CREATION, dump_wire(request), id=f"tenant-creation-demo-{suffix}",
                task_queue=cs.task_queue, execution_timeout=_minutes(10), result_type=TenantCreationResult,
            )
            try:
                result = await _follow(handle)
            finally:
                stop.set()
                await worker_task
            _print_result(result, settings)
            return EXIT_OK

    raise typer.Exit(asyncio.run(main()))


# ---------------------------------------------------------------- tenant operations


@tenant_app.command("create")
def tenant_create(
    name: Annotated[str, typer.Option("--name", help="Tenant (MSP) name.")],
    admin_email: Annotated[str, typer.Option(help="Admin user's email.")],
    admin_first_name: Annotated[str, typer.Option(help="Admin user's first name.")],
    admin_last_name: Annotated[str, typer.Option(help="Admin user's last name.")],
    client_name: Annotated[str | None, typer.Option(help="Default client name (defaults to --name).")] = None,
    license_count: Annotated[int | None, typer.Option(help="Licensed internal users.")] = None,
    workflow_id: Annotated[str | None, typer.Option(help="Workflow id (default: generated).")] = None,
    wait: Annotated[bool, typer.Option(help="Follow progress until it finishes.")] = True,
) -> None:
    """Start tenantCreationWorkflow."""
    from pydantic import ValidationError

    try:
        request = TenantCreationInput(
            tenant_name=name, client_name=client_name, license_count=license_count,
            admin_user=AdminUserInput(first_name=admin_first_name, last_name=admin_last_name, email=admin_email),
        )
    except ValidationError as err:
        problems = _validation_problems(err)
        raise _fail(EXIT_CONFIG, f"invalid input: {problems}") from None
    cs = _client_settings()

    async def main() -> int:
        client = await _client(cs)
        wf_id = workflow_id or f"tenant-creation-{int(time.time() * 1000)}-{uuid4().hex[:9]}"
        handle = await client.start_workflow(
            WORKFLOW_TYPE_TENANT_CREATION, dump_wire(request), id=wf_id, task_queue=cs.task_queue,
            execution_timeout=_minutes(60), run_timeout=_minutes(30),
            result_type=TenantCreationResult,
        )
        out.print(f"started [bold]{wf_id}[/]")
        if not wait:
            return EXIT_OK
        try:
            result = await _follow(handle)
        except _WorkflowFailed as failure:
            err_console.print(f"[red]✗[/] {failure}")
            return EXIT_FAILED
        _print_result(result, None)
        return EXIT_OK

    raise typer.Exit(asyncio.run(main()))


class _WorkflowFailed(Exception):
    pass


async def _follow(handle: Any) -> TenantCreationResult:
    """Show progress from getState while waiting for the result."""
    from rich.progress import BarColumn, Progress, TextColumn
    from temporalio.client import WorkflowFailureError

    result_task = asyncio.create_task(handle.result())
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                  console=err_console, transient=True) as progress:
        bar = progress.add_task("starting", total=100)
        while not result_task.done():
            try:
                state = await handle.query("getState", result_type=TenantCreationState)
                progress.update(bar, completed=state.progress, description=state.step.value)
            except Exception:  # noqa: S110 - the query races workflow start/finish; the result decides
                pass
            await asyncio.wait({result_task}, timeout=0.25)
    try:
        result: TenantCreationResult = await result_task
        return result
    except WorkflowFailureError as err:
        raise _WorkflowFailed(_failure_text(err)) from err


T = TypeVar("T")


def _print_result(result: TenantCreationResult, settings: Settings | None) -> None:
    table = Table(title="Tenant created", show_header=False)
    table.add_row("tenant id", result.tenant_id)
    table.add_row("client id", result.client_id)
    table.add_row("admin user id", result.admin_user_id)
    table.add_row("admin email", result.admin_email)
    table.add_row("welcome email", f"{'sent' if result.email_sent else 'NOT sent'} via {result.email_provider or '-'}")
    total = 0
    for name, outcome in result.outcomes.items():
        rows = ", ".join(f"{t} {n}" for t, n in outcome.rows.items())
        total += sum(outcome.rows.values())
        detail = outcome.detail if outcome.detail and name != "welcome_email" else None
        text = outcome.status.value + (f" — {rows}" if rows else "") + (f" ({detail})" if detail else "")
        table.add_row(name, text)
    out.print(table)
    out.print(f"{total} rows written for tenant {result.tenant_id}")
    if result.email_destination:
        out.print(f"welcome email: {result.email_destination}", soft_wrap=True)


@tenant_app.command("status")
def tenant_status(workflow_id: str) -> None:
    """Show a tenant creation's execution status and its getState answer."""
    cs = _client_settings()

    async def main() -> int:
        from temporalio.service import RPCError

        client = await _client(cs)
        handle = client.get_workflow_handle(workflow_id)
        try:
            desc = await handle.describe()
        except RPCError:
            err_console.print(f"no workflow {workflow_id}")
            return EXIT_NOT_FOUND
        doc: dict[str, Any] = {"workflowId": workflow_id, "status": desc.status.name if desc.status else None,
                               "started": desc.start_time.isoformat() if desc.start_time else None}
        try:
            state = await handle.query("getState", result_type=TenantCreationState)
            doc["state"] = dump_wire(state)
        except Exception as err:
            doc["state"] = f"unavailable ({type(err).__name__})"
        out.print_json(json.dumps(doc))
        return EXIT_OK

    raise typer.Exit(asyncio.run(main()))


@tenant_app.command("cancel")
def tenant_cancel(
    workflow_id: str,
    reason: Annotated[str, typer.Option(help="Why (recorded in the failure).")] = "cancelled by operator",
    by: Annotated[str, typer.Option(help="Who cancels.")] = os.environ.get("USER", "operator"),
) -> None:
    """Signal `cancel`: the workflow stops before its next step and removes what it created."""
    cs = _client_settings()

    async def main() -> int:
        from temporalio.service import RPCError

        client = await _client(cs)
        try:
            await client.get_workflow_handle(workflow_id).signal("cancel", {"reason": reason, "cancelledBy": by})
        except RPCError as err:
            err_console.print(f"cannot signal {workflow_id}: {err.message}")
            return EXIT_NOT_FOUND
        out.print(f"cancel sent to {workflow_id}")
        return EXIT_OK

    raise typer.Exit(asyncio.run(main()))


@tenant_app.command("list")
def tenant_list(limit: Annotated[int, typer.Option(help="At most this many.")] = 20) -> None:
    """List recent tenant creations (visibility query)."""
    cs = _client_settings()

    async def main() -> int:
        client = await _client(cs)
        table = Table("workflow id", "status", "started", "closed")
        async for wf in client.list_workflows(f"WorkflowType='{WORKFLOW_TYPE_TENANT_CREATION}'", limit=limit):
            table.add_row(wf.id, wf.status.name if wf.status else "?",
                          wf.start_time.isoformat(timespec="seconds"),
                          wf.close_time.isoformat(timespec="seconds") if wf.close_time else "")
        out.print(table)
        return EXIT_OK

    raise typer.Exit(asyncio.run(main()))

@tenant_app.command("licenses")
def tenant_licenses(
    tenant_id: Annotated[str, typer.Argument(help="The tenant's Alga tenant id.")],
    set_count: Annotated[int | None, typer.Option(
        "--set", help="Set the licence limit to N (1..100000) by running updateTenantLicenseCountWorkflow.")] = None,
    event_id: Annotated[str | None, typer.Option(
        help="With --set: the Stripe event id (evt_...) this change applies; a repeat of the last one "
             "applied changes nothing.")] = None,
) -> None:
    """Show a tenant's licence usage (limit, used, remaining), or with --set change its limit.

    Usage is read from the database with the worker's own SQL (read only, no workflow); a change goes
    through the workflow, so it is recorded in Temporal like any other and refused with typed errors.
    """
    from pydantic import ValidationError

    if set_count is None and event_id is not None:
        raise _fail(EXIT_CONFIG, "--event-id needs --set")
    try:
        if set_count is None:
            usage_of = LicenseUsageInput.model_validate({"tenant_id": tenant_id})
        else:
            request = UpdateLicenseCountRequest.model_validate(
                {"tenant_id": tenant_id, "license_count": set_count, "event_id": event_id})
    except ValidationError as err:
        problems = _validation_problems(err)
        raise _fail(EXIT_CONFIG, f"invalid input: {problems}") from None
    if set_count is None:
        raise typer.Exit(asyncio.run(_print_license_usage(usage_of)))
    raise typer.Exit(asyncio.run(_set_license_count(request)))


async def _print_license_usage(req: LicenseUsageInput) -> int:
    """Usage straight from the database: an operator asking needs no worker to be running."""
    from psycopg import AsyncConnection
    from psycopg.rows import dict_row

    from alga_worker.db import licenses

    try:
        conninfo = database_conninfo()
    except ConfigError as err:
        raise _fail(EXIT_CONFIG, str(err)) from None
    try:
        async with await AsyncConnection.connect(conninfo, autocommit=True, connect_timeout=10,
                                                 row_factory=dict_row) as conn:
            usage = await licenses.license_usage(conn, req.tenant_id)
    except Exception as err:
        raise _fail(EXIT_DB, f"cannot read licence usage: {type(err).__name__}") from None
    if usage is None:
        raise _fail(EXIT_NOT_FOUND, f"tenant {req.tenant_id} does not exist")
    table = Table(title="Licence usage", show_header=False)
    table.add_row("tenant id", str(req.tenant_id))
    table.add_row("limit", "unlimited" if usage.limit is None else str(usage.limit))
    table.add_row("used", str(usage.used))
    table.add_row("remaining", "unlimited" if usage.remaining is None else str(usage.remaining))
    out.print(table)
    return EXIT_OK


async def _set_license_count(request: UpdateLicenseCountRequest) -> int:
    """Run updateTenantLicenseCountWorkflow and print its result, or the typed failure."""
    cs = _client_settings()
    client = await _client(cs)
    # One id per Stripe event: two deliveries of one event cannot run at once.
    wf_id = (f"license-count-{request.tenant_id}-{request.event_id}" if request.event_id
             else f"license-count-{request.tenant_id}-{int(time.time() * 1000)}-{uuid4().hex[:9]}")
    result = await _start_and_wait(client, cs, WORKFLOW_TYPE_UPDATE_LICENSE_COUNT, request, wf_id,
                                   LicenseCountResult, "a licence update for this event is already running")
    if result is None:
        return EXIT_FAILED
    table = Table(title="Licence count" + (" set" if result.changed else " unchanged (event already applied)"),
                  show_header=False)
    table.add_row("tenant id", str(result.tenant_id))
    table.add_row("licence count", str(result.license_count))
    previous = result.previous_license_count
    table.add_row("previous licence count", "unlimited" if previous is None else str(previous))
    table.add_row("changed", "yes" if result.changed else "no")
    table.add_row("event id", result.event_id or "-")
    out.print(table)
    return EXIT_OK


register_tenant_suspension(tenant_app)  # tenant suspend, tenant resume


tenant_app.command("export")(tenant_export)  # tenant export (docs/lifecycle.md "Export")
register_tenant_deletion(tenant_app)  # tenant delete, confirm-deletion, rollback-deletion ("Deletion")


@app.command("health-check")
def health_check(
    expect_build_id: Annotated[str | None, typer.Option(help="Fail unless this build answered.")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for a worker.")] = 30.0,
    routed: Annotated[bool, typer.Option(
        help="With Worker Versioning: start the run as callers do (it goes to the current version) "
             "instead of pinning it to --expect-build-id. Proves new starts reach that build.")] = False,
) -> None:
    """Run healthCheckWorkflow through Temporal: proves a worker polls the queue and reaches its DB.

    With Worker Versioning on (TEMPORAL_WORKER_DEPLOYMENT_NAME) and --expect-build-id, the run is
    pinned to that version, so it proves the new build answers before it is made current (the
    pipeline's verification); with --routed it runs where a new start goes, the current version
    (the check after promotion).
    """
    cs = _client_settings()
    override = pinned_override(cs, expect_build_id) if expect_build_id and not routed else None

    async def main() -> int:
        from datetime import timedelta

        client = await _client(cs)
        try:
            result: HealthCheckResult = await client.execute_workflow(
                WORKFLOW_TYPE_HEALTH_CHECK, id=f"health-check-{int(time.time() * 1000)}-{uuid4().hex[:6]}",
                task_queue=cs.task_queue, execution_timeout=timedelta(seconds=timeout),
                result_type=HealthCheckResult, versioning_override=override,
            )
        except Exception as err:
            err_console.print(f"[red]✗[/] health check failed: {type(err).__name__}: {err}")
            return EXIT_FAILED
        out.print_json(json.dumps(dump_wire(result)))
        if expect_build_id and result.build_id != expect_build_id:
            err_console.print(f"[red]✗[/] answered by build {result.build_id}, expected {expect_build_id}")
            return EXIT_FAILED
        return EXIT_OK

    raise typer.Exit(asyncio.run(main()))


# ---------------------------------------------------------------- customer tracking


@customer_app.command("track")
def customer_track(
    tenant_id: Annotated[str, typer.Argument(help="The customer's Alga tenant id.")],
    create_portal_user: Annotated[bool, typer.Option(
        help="Also create the client-portal user if missing and email its own temporary password to the "
             "tenant's admin. Without it nothing is sent and no portal user is created.")] = False,
    repairs: Annotated[str | None, typer.Option(
        help="The tenantCreationWorkflow id whose tracking this repairs (recorded in the result).")] = None,
) -> None:
    """Run customerTrackingWorkflow: record an existing tenant in the management tenant, idempotently.

    Names and the admin are read from the database. A collision with another customer's records fails
    with AmbiguousCustomerError and writes nothing: resolve it in the management tenant, then run again.
    """
    from pydantic import ValidationError

    from alga_worker.models import WORKFLOW_TYPE_CUSTOMER_TRACKING, CustomerTrackingRequest, CustomerTrackingResult

    try:
        request = CustomerTrackingRequest.model_validate(
            {"tenant_id": tenant_id, "workflow_id": repairs, "create_portal_user": create_portal_user})
    except ValidationError as err:
        problems = _validation_problems(err)
        raise _fail(EXIT_CONFIG, f"invalid input: {problems}") from None
    cs = _client_settings()

    async def main() -> int:
        client = await _client(cs)
        # One id per tenant: two operators cannot run it for the same customer at once.
        wf_id = f"customer-tracking-{request.tenant_id}"
        result = await _start_and_wait(client, cs, WORKFLOW_TYPE_CUSTOMER_TRACKING, request, wf_id,
                                       CustomerTrackingResult,
                                       f"customer tracking for tenant {request.tenant_id} is already running")
        if result is None:
            return EXIT_FAILED
        table = Table(title="Customer tracked", show_header=False)
        table.add_row("tenant id", result.tenant_id)
        table.add_row("customer client id", result.customer_client_id)
        table.add_row("contact id", result.contact_id)
        table.add_row("tag id", result.tag_id)
        table.add_row("portal user id", result.portal_user_id or "-")
        for name, outcome in result.outcomes.items():
            table.add_row(name, outcome.status.value + (f" ({outcome.detail})" if outcome.detail else ""))
        out.print(table)
        return EXIT_OK

    raise typer.Exit(asyncio.run(main()))


# ---------------------------------------------------------------- checkout (nm-store)

# The checkoutSessionId the workflow accepts (models.TenantCreationInput); checked before the id is put
# into a visibility query, so no input can change the query's meaning.
CHECKOUT_SESSION_ID_RE = re.compile(r"^[A-Za-z0-9_\-]{1,255}$")


def _checkout_session_id(value: str) -> str:
    if not CHECKOUT_SESSION_ID_RE.fullmatch(value):
        raise _fail(EXIT_CONFIG, "invalid checkout session id: 1-255 letters, digits, '_' or '-'")
    return value


async def _checkout_runs(client: Any, session_id: str) -> list[Any] | None:
    """tenantCreationWorkflow runs tagged with this checkout session, newest first (None: the query
    failed, already reported)."""
    from temporalio.service import RPCError

    from alga_worker.search_attributes import CHECKOUT_SESSION_ID

    query = (f'WorkflowType="{WORKFLOW_TYPE_TENANT_CREATION}" AND '
             f'{CHECKOUT_SESSION_ID.name}="{session_id}"')
    try:
        runs = [wf async for wf in client.list_workflows(query, limit=20)]
    except RPCError as err:
        err_console.print(f"cannot search runs by {CHECKOUT_SESSION_ID.name} (is the search attribute "
                          f"registered on this namespace? see docs/checkout.md): {err.message}", soft_wrap=True)
        return None
    return sorted(runs, key=lambda wf: wf.start_time, reverse=True)


def _no_checkout_runs(runs: list[Any] | None, session_id: str) -> int:
    """The exit code when a checkout's runs could not be listed (None: already reported) or there are none."""
    if runs is None:
        return EXIT_FAILED
    err_console.print(f"no tenantCreationWorkflow run for checkout session {session_id}")
    return EXIT_NOT_FOUND


def _run_summary(wf: Any) -> dict[str, Any]:
    return {"workflowId": wf.id, "runId": wf.run_id, "status": wf.status.name if wf.status else None,
            "started": wf.start_time.isoformat() if wf.start_time else None,
            "closed": wf.close_time.isoformat() if wf.close_time else None}


async def _sent_to_nm_store(client: Any, handle: Any) -> tuple[CheckoutStatusReport | None,
                                                                NmStoreCallback | None]:
    """The last status report and callback this run scheduled, decoded from its history: exactly the
    inputs the workflow derived (same body, same idempotency key), whatever the run's state now."""
    report: CheckoutStatusReport | None = None
    callback: NmStoreCallback | None = None
    history = await handle.fetch_history()
    for event in history.events:
        if not event.HasField("activity_task_scheduled_event_attributes"):
            continue
        attributes = event.activity_task_scheduled_event_attributes
        name = attributes.activity_type.name
        if name == "report_checkout_status":
            [report] = await client.data_converter.decode(attributes.input.payloads, [CheckoutStatusReport])
        elif name == "send_nm_store_callback":
            [callback] = await client.data_converter.decode(attributes.input.payloads, [NmStoreCallback])
    return report, callback


async def _checkout_state(handle: Any) -> TenantCreationState | None:
    """getState, or None when no worker answers (a query, even of a closed run, needs one)."""
    try:
        state: TenantCreationState = await handle.query("getState", result_type=TenantCreationState)
    except Exception as err:
        err_console.print(f"getState unavailable ({type(err).__name__}): is a worker polling the queue?")
        return None
    return state


@checkout_app.command("status")
def checkout_status(session_id: Annotated[str, typer.Argument(help="Stripe checkout session id (cs_...).")]) -> None:
    """Find the tenant creation of a checkout session and show what was reported to nm-store.

    Prints JSON: the run (workflow id, execution status), the checkout section of getState (last status,
    status and callback delivery with HTTP status, idempotency key and time, last error) and any older
    runs for the same session. Exit 6 when no run carries this session id.
    """
    session_id = _checkout_session_id(session_id)
    cs = _client_settings()

    async def main() -> int:
        client = await _client(cs)
        runs = await _checkout_runs(client, session_id)
        if not runs:
            return _no_checkout_runs(runs, session_id)
        latest = runs[0]
        state = await _checkout_state(client.get_workflow_handle(latest.id, run_id=latest.run_id))
        doc: dict[str, Any] = {"checkoutSessionId": session_id, **_run_summary(latest)}
        if state is not None:
            doc.update({"step": state.step.value, "tenantId": state.tenant_id, "error": state.error,
                        "checkout": dump_wire(state.checkout) if state.checkout else None})
        else:
            doc["checkout"] = "unavailable (no worker answered getState)"
        doc["otherRuns"] = [_run_summary(wf) for wf in runs[1:]]
        out.print_json(json.dumps(doc))
        return EXIT_OK

    raise typer.Exit(asyncio.run(main()))


@checkout_app.command("resend")
def checkout_resend(session_id: Annotated[str, typer.Argument(help="Stripe checkout session id (cs_...).")]) -> None:
    """Re-send a checkout's last status report to nm-store and, once the run has ended, its callback.

    The requests are rebuilt from the run's own history, so they carry the bodies and idempotency keys
    the workflow sent: nm-store treats them as repeats of the originals, never as new events. Needs the
    worker's nm-store settings (NMSTORE_BASE_URL, INTERNAL_API_SHARED_SECRET, TEMPORAL_WEBHOOK_SECRET).
    Prints the HTTP outcome of each request; exit 1 if any failed, 6 if there is nothing to re-send.
    """
    session_id = _checkout_session_id(session_id)
    settings = _settings()
    cs = _client_settings()

    async def main() -> int:
        from temporalio.client import WorkflowExecutionStatus
        from temporalio.exceptions import ApplicationError

        from alga_worker.models import CheckoutStatus, OutcomeStatus
        from alga_worker.nmstore import NmStoreClient, new_http_client

        client = await _client(cs)
        runs = await _checkout_runs(client, session_id)
        if not runs:
            return _no_checkout_runs(runs, session_id)
        latest = runs[0]
        handle = client.get_workflow_handle(latest.id, run_id=latest.run_id)
        report, callback = await _sent_to_nm_store(client, handle)
        if report is None:
            err_console.print(f"run {latest.id} has not reported to nm-store yet: nothing to re-send")
            return EXIT_NOT_FOUND
        ended = latest.status not in (None, WorkflowExecutionStatus.RUNNING)
        unsendable = False
        if ended and callback is None and report.workflow_status is not CheckoutStatus.IN_PROGRESS:
            # The run ended before its callback was scheduled: build the one it would have sent, with
            # the tenant id (from getState) only when its tenant exists, as the workflow does.
            state = await _checkout_state(handle)
            if state is None:
                unsendable = True
            else:
                tenant = state.outcomes.get("tenant")
                created = tenant is not None and tenant.status is OutcomeStatus.DONE
                callback = NmStoreCallback(
                    session_id=report.checkout_session_id, status=report.workflow_status, error=report.error,
                    alga_tenant_id=state.tenant_id if created else None, workflow_id=report.workflow_id)
        out.print(f"run {latest.id} ({latest.status.name if latest.status else '?'})")
        failed = unsendable
        if unsendable:
            err_console.print("[red]✗[/] callback: not scheduled by the run, and cannot be rebuilt without getState")
        async with new_http_client() as http:
            nmstore = NmStoreClient(settings, http)
            sends: list[tuple[str, Any]] = [(f"status {report.workflow_status.value}",
                                             nmstore.report_status(report))]
            if ended and callback is not None:
                sends.append((f"callback {callback.status.value}", nmstore.send_callback(callback)))
            elif ended and not unsendable:
                err_console.print("the run ended without a final status: no callback to send")
            for what, send in sends:  # in order: the status first, then the callback
                try:
                    delivery = await send
                except ApplicationError as err:
                    failed = True
                    err_console.print(f"[red]✗[/] {what}: {err.type}: {err}", soft_wrap=True)
                    continue
                out.print(f"[green]✓[/] {what}: HTTP {delivery.http_status} "
                          f"(idempotency key {delivery.idempotency_key})", soft_wrap=True)
        return EXIT_FAILED if failed else EXIT_OK

    raise typer.Exit(asyncio.run(main()))


def main() -> None:
    """Console entry point: run the command, flush, then leave without interpreter finalisation.

    Why: the Temporal SDK's native threads (its Rust core and protobuf) may call back into Python while
    the interpreter finalises, which aborts the process (``Fatal Python error: PyGILState_Release ...
    finalizing``, exit -6) after the command has finished and printed its result: seen in CI about
    once in eight runs of a command that had connected to Temporal. Every command has completed its
    work and closed what it opened by the time ``app`` returns, so nothing is lost by skipping
    finalisation; the exit code is the command's own.
    """
    code = 0
    try:
        app()
    except SystemExit as done:
        if isinstance(done.code, int):
            code = done.code
        elif done.code is not None:  # a message instead of a code: print it as Python would
            print(done.code, file=sys.stderr)
            code = 1
    finally:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    main()

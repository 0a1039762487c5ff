"""What every ``alga-worker`` noun module shares: exit codes, consoles, settings, the Temporal client,
and the one start-and-wait helper for commands that run a workflow.

Why a module of its own: the CLI is a package with one module per noun (tenant, user, email ...), and
each needs the same exit codes (part of the interface: scripts and Kubernetes read them) and the same
way of reporting a typed workflow failure. Nothing here runs at import beyond building two consoles.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console

from alga_worker.config import ClientSettings, ConfigError, Settings, load_client_settings, load_settings
from alga_worker.models import dump_wire

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_DB = 3
EXIT_TEMPORAL = 4
EXIT_DB_SERVER_ROLE = 5
EXIT_NOT_FOUND = 6
EXIT_SCHEMA = 7

out = Console()
err_console = Console(stderr=True)

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


def fail(code: int, message: str) -> typer.Exit:
    """Print ``error: message`` on stderr and return the exit to raise."""
    err_console.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    return typer.Exit(code)


def settings() -> Settings:
    """The worker's settings, including the start-up policy on payload encryption (a production
    worker without PAYLOAD_KEYS is refused unless PAYLOAD_ENCRYPTION=off)."""
    from alga_worker.payload_codec import require_encryption_policy

    try:
        loaded = load_settings()
        require_encryption_policy(loaded)
    except ConfigError as err:
        raise fail(EXIT_CONFIG, str(err)) from None
    return loaded


def client_settings() -> ClientSettings:
    try:
        return load_client_settings()
    except ConfigError as err:
        raise fail(EXIT_CONFIG, str(err)) from None


async def client(cs: ClientSettings) -> Any:
    from temporalio.client import Client

    from alga_worker.payload_codec import data_converter

    interceptors = _tracing_interceptors()
    try:
        return await Client.connect(**cs.temporal_connect, data_converter=data_converter(cs),
                                    interceptors=interceptors)
    except Exception as err:
        raise fail(EXIT_TEMPORAL, f"cannot reach Temporal at {cs.temporal_connect.get('target_host')}: "
                                  f"{type(err).__name__}") from None


def _tracing_interceptors() -> list[Any]:
    """Tracing for workflows this command starts (on when OTEL_EXPORTER_OTLP_ENDPOINT is set): the
    StartWorkflow span here is the root of the run's trace. Spans leave at process exit."""
    from alga_worker.config import describe_variable, load_tracing_settings, merged_environment
    from alga_worker.runtime import tracing

    try:
        env = merged_environment()
        tracing_settings = load_tracing_settings(env)
    except ConfigError as err:
        raise fail(EXIT_CONFIG, str(err)) from None
    if tracing_settings is None:
        return []

    def value(name: str) -> str:
        declared = describe_variable(name)
        return env.get(name) or (declared.default if declared and declared.default else "")

    tracing.configure_tracing(tracing_settings, environment=value("NODE_ENV"), build_id=value("BUILD_ID"),
                              default_service_name=tracing.CLI_SERVICE_NAME)
    return tracing.client_interceptors()


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


def validation_problems(err: ValidationError) -> str:
    """``field: message; ...`` without the refused values (they may be personal data)."""
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                     for e in err.errors(include_input=False, include_url=False))


def parse_request(model: type[M], data: dict[str, Any]) -> M:
    """Build a request model from command-line values, or exit 2 naming the invalid fields."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise fail(EXIT_CONFIG, f"invalid input: {validation_problems(err)}") from None


def failure_text(err: BaseException) -> str:
    """``Type: message`` of a workflow failure's innermost cause (the activity's own typed error)."""
    from temporalio.exceptions import ActivityError

    cause: BaseException = getattr(err, "cause", None) or err
    while isinstance(cause, ActivityError) and cause.cause is not None:
        cause = cause.cause
    return f"{getattr(cause, 'type', None) or type(cause).__name__}: {cause}"


async def _with_spinner(what: str, result: Awaitable[T]) -> T:
    """Await ``result`` with a Rich spinner on stderr (transient: scripts reading stdout see nothing)."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    task = asyncio.ensure_future(result)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=err_console, transient=True) as progress:
        progress.add_task(what, total=None)
        await asyncio.wait({task})
    return task.result()


async def start_and_wait(client: Any, cs: ClientSettings, workflow_type: str, request: Any, wf_id: str,
                         result_type: type[T], already_running: str, *,
                         search_attributes: Any = None,
                         progress: Callable[[Any], Awaitable[T]] | None = None) -> T | None:
    """Start a workflow, say so, and wait for its result with progress on stderr; None (reason
    printed) when it is already running or fails. One place for what every operator command that runs
    a workflow does. ``progress`` replaces the spinner (e.g. a bar fed by a query)."""
    from temporalio.client import WorkflowFailureError
    from temporalio.exceptions import WorkflowAlreadyStartedError

    try:
        handle = await client.start_workflow(workflow_type, dump_wire(request), id=wf_id, task_queue=cs.task_queue,
                                             execution_timeout=minutes(30), result_type=result_type,
                                             search_attributes=search_attributes)
    except WorkflowAlreadyStartedError:
        err_console.print(f"[red]✗[/] {already_running} ({wf_id})")
        return None
    out.print(f"started [bold]{wf_id}[/]")
    try:
        if progress is not None:
            return await progress(handle)
        result: T = await _with_spinner(f"waiting for {workflow_type}", handle.result())
    except WorkflowFailureError as err:
        err_console.print(f"[red]✗[/] {failure_text(err)}", soft_wrap=True)
        return None
    return result

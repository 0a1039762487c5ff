"""`alga-worker deployment`: the Worker Deployment's versions, promotion and rollback.

With ``TEMPORAL_WORKER_DEPLOYMENT_NAME`` set, each worker polls as version ``BUILD_ID`` (the image's
git sha) of that Worker Deployment, and every workflow is pinned to the version that started it
(``workflows/__init__.py``). A version that polls gets no new starts until it is made *current*;
that is what the deploy pipeline does after verification (``deploy/argo/scripts/
promote-worker-version.sh`` runs ``set-current`` inside a worker pod), and what a rollback undoes.

Why commands of our own instead of the temporal CLI: the image carries no temporal CLI, and these
read the same settings (address, namespace, TLS, API key, secret files) as the worker. Each waits for
what the pipeline needs before the next step: ``set-current`` waits until the version has polled
(pods just started) and until the routing change has reached the task queues, so a workflow
started right after it lands on the new version.

Exit codes (as the rest of the CLI): 0 ok, 1 the server refused, 2 configuration invalid, 4
Temporal unreachable, 6 no such deployment or version, 8 versioning is off
(TEMPORAL_WORKER_DEPLOYMENT_NAME unset: a pipeline step treats that as "nothing to promote").
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from dataclasses import asdict, dataclass
from typing import Annotated, Any

import typer
from rich.table import Table

from alga_worker.cli.common import (
    EXIT_FAILED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    client,
    client_settings,
    err_console,
    out,
)
from alga_worker.config import ClientSettings

EXIT_UNVERSIONED = 8
POLL_INTERVAL_SECONDS = 1.0
ROUTING_GRACE_SECONDS = 30.0

deployment_app = typer.Typer(
    help="Worker Versioning: show the Worker Deployment, make a version current, roll back.",
    no_args_is_help=True)

_STATUS_PREFIX = "WORKER_DEPLOYMENT_VERSION_STATUS_"
_DRAINAGE_PREFIX = "VERSION_DRAINAGE_STATUS_"


class DeploymentError(Exception):
    """A deployment command cannot go on; ``code`` is the exit code."""

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        super().__init__(message)


@dataclass(frozen=True)
class VersionView:
    build_id: str
    status: str  # inactive, current, ramping, draining, drained
    drainage: str | None  # draining / drained once the version is neither current nor ramping
    created: str | None
    last_current: str | None


@dataclass(frozen=True)
class DeploymentView:
    deployment: str
    current: str | None
    ramping: str | None
    ramping_percentage: float
    versions: list[VersionView]

    def has(self, build_id: str) -> bool:
        return any(v.build_id == build_id for v in self.versions)

    def previous(self) -> str | None:
        """The version that was current most recently before the current one (the rollback target)."""
        earlier = [v for v in self.versions if v.build_id != self.current and v.last_current]
        return max(earlier, key=lambda v: v.last_current or "").build_id if earlier else None


def _timestamp(message: Any, field: str) -> str | None:
    """A protobuf timestamp as fixed-width UTC text (so text order is time order), None when unset."""
    if not message.HasField(field):
        return None
    return str(getattr(message, field).ToDatetime().strftime("%Y-%m-%dT%H:%M:%S.%fZ"))


def _view(name: str, resp: Any) -> DeploymentView:
    from temporalio.api.enums.v1 import VersionDrainageStatus, WorkerDeploymentVersionStatus

    info = resp.worker_deployment_info
    routing = info.routing_config
    versions = []
    for summary in info.version_summaries:
        drainage = None
        if summary.HasField("drainage_info") and summary.drainage_info.status:
            drainage = VersionDrainageStatus.Name(summary.drainage_info.status).removeprefix(_DRAINAGE_PREFIX).lower()
        versions.append(VersionView(
            build_id=summary.deployment_version.build_id,
            status=WorkerDeploymentVersionStatus.Name(summary.status).removeprefix(_STATUS_PREFIX).lower(),
            drainage=drainage,
            created=_timestamp(summary, "create_time"),
            last_current=_timestamp(summary, "last_current_time"),
        ))
    versions.sort(key=lambda v: v.created or "", reverse=True)
    return DeploymentView(
        deployment=name,
        current=routing.current_deployment_version.build_id or None,
        ramping=routing.ramping_deployment_version.build_id or None,
        ramping_percentage=routing.ramping_version_percentage,
        versions=versions,
    )


def deployment_name(cs: ClientSettings) -> str:
    if not cs.worker_deployment_name:
        raise DeploymentError(EXIT_UNVERSIONED, "worker versioning is off: TEMPORAL_WORKER_DEPLOYMENT_NAME is unset")
    return cs.worker_deployment_name


async def describe(temporal: Any, name: str) -> tuple[DeploymentView, bytes] | None:
    """The deployment and its conflict token; None when the server has never seen a poller of it."""
    from temporalio.api.workflowservice.v1 import DescribeWorkerDeploymentRequest
    from temporalio.service import RPCError, RPCStatusCode

    try:
        resp = await temporal.workflow_service.describe_worker_deployment(
            DescribeWorkerDeploymentRequest(namespace=temporal.namespace, deployment_name=name))
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    return _view(name, resp), resp.conflict_token


async def _routing_settled(temporal: Any, name: str) -> bool:
    """True once the last routing change has reached every task queue of the deployment."""
    from temporalio.api.enums.v1 import RoutingConfigUpdateState
    from temporalio.api.workflowservice.v1 import DescribeWorkerDeploymentRequest

    resp = await temporal.workflow_service.describe_worker_deployment(
        DescribeWorkerDeploymentRequest(namespace=temporal.namespace, deployment_name=name))
    state = resp.worker_deployment_info.routing_config_update_state
    # UNSPECIFIED: a server that does not report propagation (it is synchronous there).
    return state in (RoutingConfigUpdateState.ROUTING_CONFIG_UPDATE_STATE_COMPLETED,
                     RoutingConfigUpdateState.ROUTING_CONFIG_UPDATE_STATE_UNSPECIFIED)


async def set_current(temporal: Any, name: str, build_id: str, *, wait_seconds: float,
                      identity: str) -> str | None:
    """Make ``build_id`` the current version of deployment ``name``; return the previous current.

    Waits up to ``wait_seconds`` for the version to have polled (a rollout's pods may still be
    starting), then for the routing change to reach the task queues. Idempotent: setting the current
    version again changes nothing. Raises :class:`DeploymentError` (6) when the version never polls.
    """
    from temporalio.api.workflowservice.v1 import SetWorkerDeploymentCurrentVersionRequest
    from temporalio.service import RPCError, RPCStatusCode

    deadline = time.monotonic() + wait_seconds
    previous: str | None
    while True:
        found = await describe(temporal, name)
        if found is not None and found[0].has(build_id):
            view, token = found
            if view.current == build_id:
                previous = build_id
                break
            try:
                await temporal.workflow_service.set_worker_deployment_current_version(
                    SetWorkerDeploymentCurrentVersionRequest(
                        namespace=temporal.namespace, deployment_name=name, build_id=build_id,
                        conflict_token=token, identity=identity))
            except RPCError as err:
                # Someone changed the deployment since the describe (conflict token), or the version's
                # pollers are not registered yet: describe again until the deadline.
                retryable = err.status in (RPCStatusCode.FAILED_PRECONDITION, RPCStatusCode.ABORTED,
                                           RPCStatusCode.NOT_FOUND)
                if not retryable or time.monotonic() >= deadline:
                    raise
            else:
                previous = view.current
                break
        elif time.monotonic() >= deadline:
            what = "deployment" if found is None else "version"
            raise DeploymentError(EXIT_NOT_FOUND, f"{what} {name}:{build_id} not found after {wait_seconds:.0f} s: "
                                                  "no worker of that build has polled (pods not ready, or "
                                                  "TEMPORAL_WORKER_DEPLOYMENT_NAME/BUILD_ID differ)")
        await asyncio.sleep(POLL_INTERVAL_SECONDS)
    # Propagation gets its own grace even when the version only polled at the end of the wait.
    routing_deadline = max(deadline, time.monotonic() + ROUTING_GRACE_SECONDS)
    while not await _routing_settled(temporal, name):
        if time.monotonic() >= routing_deadline:
            raise DeploymentError(EXIT_FAILED, f"{name}:{build_id} is current, but the routing change has not "
                                               "reached every task queue in time")
        await asyncio.sleep(POLL_INTERVAL_SECONDS)
    return previous


def _identity(given: str | None) -> str:
    return given or f"alga-worker-cli@{socket.gethostname()}"


def _run(main: Any) -> None:
    """Run ``main(cs, client, name)``; map errors to exit codes (Temporal's message, never secrets)."""
    from temporalio.service import RPCError

    cs = client_settings()

    async def runner() -> int:
        try:
            name = deployment_name(cs)
            temporal = await client(cs)
            result: int = await main(temporal, name)
            return result
        except DeploymentError as err:
            err_console.print(f"[red]✗[/] {err}", soft_wrap=True)
            return err.code
        except RPCError as err:
            err_console.print(f"[red]✗[/] Temporal refused: {err.status.name}: {err.message}", soft_wrap=True)
            return EXIT_FAILED

    raise typer.Exit(asyncio.run(runner()))


WaitOption = Annotated[float, typer.Option(help="Seconds to wait for the version to poll and for routing.")]
IdentityOption = Annotated[str | None, typer.Option(help="Recorded as who changed the deployment.")]


@deployment_app.command("status")
def status(as_json: Annotated[bool, typer.Option("--json", help="Print JSON (for scripts).")] = False) -> None:
    """Show the current (and ramping) version and every version's status and drainage."""

    async def main(temporal: Any, name: str) -> int:
        found = await describe(temporal, name)
        if found is None:
            raise DeploymentError(EXIT_NOT_FOUND, f"deployment {name} not found: no versioned worker has polled yet")
        view = found[0]
        if as_json:
            out.print_json(json.dumps(asdict(view)))
            return EXIT_OK
        out.print(f"deployment [bold]{name}[/]: current [bold]{view.current or '(unversioned workers)'}[/]"
                  + (f", ramping {view.ramping} at {view.ramping_percentage:g}%" if view.ramping else ""))
        table = Table("build id", "status", "drainage", "created", "last current")
        for v in view.versions:
            table.add_row(v.build_id, v.status, v.drainage or "-", v.created or "-", v.last_current or "-")
        out.print(table)
        return EXIT_OK

    _run(main)


@deployment_app.command("set-current")
def set_current_command(
    build_id: Annotated[str, typer.Argument(help="The version (image build id / git sha) to make current.")],
    wait: WaitOption = 120.0,
    identity: IdentityOption = None,
) -> None:
    """Make a version current: new workflow starts go to it; runs pinned to other versions stay there."""

    async def main(temporal: Any, name: str) -> int:
        previous = await set_current(temporal, name, build_id, wait_seconds=wait, identity=_identity(identity))
        if previous == build_id:
            out.print(f"{name}: {build_id} was already current")
        else:
            out.print(f"{name}: current version {previous or '(unversioned workers)'} -> [bold]{build_id}[/]")
        return EXIT_OK

    _run(main)


@deployment_app.command("rollback")
def rollback(
    to: Annotated[str | None, typer.Option(help="Version to make current; default: the one current before.")] = None,
    wait: WaitOption = 120.0,
    identity: IdentityOption = None,
) -> None:
    """Point current back at the version that was current before (or at --to). Its pods must be up."""

    async def main(temporal: Any, name: str) -> int:
        target = to
        if target is None:
            found = await describe(temporal, name)
            if found is None:
                raise DeploymentError(EXIT_NOT_FOUND, f"deployment {name} not found")
            target = found[0].previous()
            if target is None:
                raise DeploymentError(EXIT_NOT_FOUND, f"{name}: no version was current before "
                                                      f"{found[0].current or '(none)'}; name one with --to")
        previous = await set_current(temporal, name, target, wait_seconds=wait, identity=_identity(identity))
        out.print(f"{name}: rolled back, current version {previous or '(unversioned workers)'} -> [bold]{target}[/]")
        return EXIT_OK

    _run(main)


def pinned_override(cs: ClientSettings, build_id: str) -> Any:
    """A start option that runs a workflow on version ``build_id`` whether or not it is current (the
    pipeline's pre-promotion health check); None when versioning is off."""
    if not cs.worker_deployment_name:
        return None
    from temporalio.common import PinnedVersioningOverride, WorkerDeploymentVersion

    return PinnedVersioningOverride(WorkerDeploymentVersion(deployment_name=cs.worker_deployment_name,
                                                            build_id=build_id))


__all__ = ["EXIT_UNVERSIONED", "DeploymentError", "DeploymentView", "VersionView", "deployment_app", "describe",
           "pinned_override", "set_current"]

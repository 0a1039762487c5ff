"""``alga-worker user ...``: create, list, reset, re-invite, deactivate and reactivate users of a tenant.

Every change runs its workflow (``createUserWorkflow`` ...), so it is recorded in Temporal, audited and
refused with the same typed errors a web-app caller gets; the command waits with a spinner and prints
the result, or the failure type with exit code 1. ``user list`` reads the database directly (read only,
like ``tenant licenses``): an operator asking who exists needs no worker to be running.

Workflow ids never contain an email address in clear: visibility is stored unencrypted. A creation is
``create-user-<tenant>-<sha256(email)[:16]>``, so two concurrent creations of one address in one
tenant collide in Temporal instead of racing in the database; the others are
``<verb>-user-<user id>-<ms>-<random>``. Runs are started with their ``TenantId``/``UserId`` search
attributes when the namespace has them registered (the workflow sets them otherwise).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Annotated, Any
from uuid import UUID, uuid4

import typer
from rich.table import Table

from alga_worker.cli.common import (
    EXIT_CONFIG,
    EXIT_DB,
    EXIT_FAILED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    client,
    client_settings,
    fail,
    out,
    parse_request,
    start_and_wait,
)
from alga_worker.models import (
    WORKFLOW_TYPE_CREATE_USER,
    WORKFLOW_TYPE_DEACTIVATE_USER,
    WORKFLOW_TYPE_REACTIVATE_USER,
    WORKFLOW_TYPE_RESEND_WELCOME_EMAIL,
    WORKFLOW_TYPE_RESET_USER_PASSWORD,
    CreateUserRequest,
    CreateUserResult,
    ResendWelcomeEmailRequest,
    ResendWelcomeEmailResult,
    UserActionRequest,
    UserActionResult,
    UserListInput,
    UserType,
)

user_app = typer.Typer(help="Create, list, reset, re-invite, deactivate and reactivate users.", no_args_is_help=True)

TenantArg = Annotated[str, typer.Argument(help="The tenant's Alga tenant id.")]
UserArg = Annotated[str, typer.Argument(help="The user's Alga user id (see `user list`).")]
ByOpt = Annotated[str | None, typer.Option("--by", help="Who asks (recorded in the audit log).")]
ByEmailOpt = Annotated[str | None, typer.Option("--by-email", help="Their email (recorded in the audit log).")]


def create_user_workflow_id(tenant_id: UUID | str, email: str) -> str:
    """One id per tenant and (normalised) address, the address hashed: visibility is unencrypted."""
    digest = hashlib.sha256(email.encode()).hexdigest()[:16]
    return f"create-user-{tenant_id}-{digest}"


def action_workflow_id(verb: str, subject: UUID | str) -> str:
    return f"{verb}-user-{subject}-{int(time.time() * 1000)}-{uuid4().hex[:9]}"


async def _start_attributes(temporal: Any, tenant_id: UUID, user_id: UUID | None) -> Any:
    """``TenantId``/``UserId`` for the start, those the namespace has registered; None if it cannot say."""
    from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
    from temporalio.common import SearchAttributePair, TypedSearchAttributes

    from alga_worker import search_attributes

    try:
        response = await temporal.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=temporal.namespace))
    except Exception:  # an API key without operator rights: the workflow sets them itself
        return None
    registered = set(response.custom_attributes)
    pairs = [SearchAttributePair(key, str(value)) for key, value in
             ((search_attributes.TENANT_ID, tenant_id), (search_attributes.USER_ID, user_id))
             if value is not None and key.name in registered]
    return TypedSearchAttributes(pairs) if pairs else None


async def _run(workflow_type: str, request: Any, wf_id: str, result_type: type[Any], busy: str,
               tenant_id: UUID, user_id: UUID | None) -> Any:
    cs = client_settings()
    temporal = await client(cs)
    attributes = await _start_attributes(temporal, tenant_id, user_id)
    return await start_and_wait(temporal, cs, workflow_type, request, wf_id, result_type, busy,
                                search_attributes=attributes)


def _table(title: str, rows: list[tuple[str, str]]) -> None:
    table = Table(title=title, show_header=False)
    for name, value in rows:
        table.add_row(name, value)
    out.print(table)


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


# ---------------------------------------------------------------- create


@user_app.command("create")
def user_create(
    tenant_id: TenantArg,
    email: Annotated[str, typer.Option(help="The new user's email (stored lower-cased).")],
    first_name: Annotated[str, typer.Option(help="First name.")],
    last_name: Annotated[str, typer.Option(help="Last name.")],
    role: Annotated[list[str], typer.Option(
        "--role", help="A role name of the tenant (repeatable, at least one; MSP roles for internal users, "
                       "client-portal roles for client users).")],
    user_type: Annotated[UserType, typer.Option("--type", help="internal (MSP staff, holds a licence) or "
                                                               "client (client portal).")] = UserType.INTERNAL,
    contact_id: Annotated[str | None, typer.Option(help="Client users: the contact they act for.")] = None,
    force: Annotated[bool, typer.Option(help="Create an internal user beyond the licence limit.")] = False,
    by: ByOpt = None,
    by_email: ByEmailOpt = None,
) -> None:
    """Run createUserWorkflow: the user, its roles, and an invitation email with a temporary password.

    All or nothing: an invitation that cannot be delivered removes the user again. Refusals (exit 1):
    DuplicateError, UnknownRoleError, LicenseLimitError, TenantNotFoundError, ValidationError.
    """
    request = parse_request(CreateUserRequest, {
        "tenant_id": tenant_id, "email": email, "first_name": first_name, "last_name": last_name,
        "user_type": user_type, "roles": role, "contact_id": contact_id, "force": force,
        "triggered_by": by, "triggered_by_email": by_email,
    })

    async def main() -> int:
        result: CreateUserResult | None = await _run(
            WORKFLOW_TYPE_CREATE_USER, request, create_user_workflow_id(request.tenant_id, request.email),
            CreateUserResult, "a creation of this user is already running", request.tenant_id, None)
        if result is None:
            return EXIT_FAILED
        _table("User created" + (" beyond the licence limit (forced)" if result.forced else ""), [
            ("tenant id", result.tenant_id), ("user id", result.user_id), ("email", result.email),
            ("type", result.user_type.value), ("roles", ", ".join(result.roles)),
            ("invitation sent", _yes(result.invitation_sent) + (f" ({result.email_provider})"
                                                                  if result.email_provider else "")),
        ])
        return EXIT_OK

    raise typer.Exit(asyncio.run(main()))


# ---------------------------------------------------------------- list


@user_app.command("list")
def user_list(
    tenant_id: TenantArg,
    active_only: Annotated[bool, typer.Option(help="Leave deactivated users out.")] = False,
) -> None:
    """List a tenant's users from the database (read only; no workflow, no worker needed)."""
    req = parse_request(UserListInput, {"tenant_id": tenant_id, "include_inactive": not active_only})
    raise typer.Exit(asyncio.run(_print_users(req)))


async def _print_users(req: UserListInput) -> int:
    from psycopg import AsyncConnection
    from psycopg.rows import dict_row

    from alga_worker.config import ConfigError, database_conninfo
    from alga_worker.db import users

    try:
        conninfo = database_conninfo()
    except ConfigError as err:
        raise fail(EXIT_CONFIG, str(err)) from None
    try:
        async with await AsyncConnection.connect(conninfo, autocommit=True, connect_timeout=10,
                                                 row_factory=dict_row) as conn:
            rows = await users.list_users(conn, req.tenant_id, include_inactive=req.include_inactive)
    except Exception as err:
        raise fail(EXIT_DB, f"cannot read users: {type(err).__name__}") from None
    if rows is None:
        raise fail(EXIT_NOT_FOUND, f"tenant {req.tenant_id} does not exist")
    table = Table(title=f"Users of tenant {req.tenant_id}" + (" (active only)" if not req.include_inactive else ""))
    for column in ("id", "email", "name", "type", "active", "roles"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(str(row.user_id), row.email, " ".join(p for p in (row.first_name, row.last_name) if p),
                      str(row.user_type), _yes(not row.is_inactive), ", ".join(row.roles))
    out.print(table)
    out.print(f"{len(rows)} user(s)")
    return EXIT_OK


# ---------------------------------------------------------------- reset, resend, deactivate, reactivate


def _print_action(title: str, result: UserActionResult) -> None:
    rows = [("tenant id", result.tenant_id), ("user id", result.user_id), ("email", result.email),
            ("active", _yes(not result.is_inactive)), ("changed", _yes(result.changed)),
            ("email sent", _yes(result.email_sent) + (f" ({result.email_provider})" if result.email_provider else ""))]
    if result.forced:
        rows.append(("forced", "yes (beyond the licence limit)"))
    rows.append(("audit log id", result.audit_log_id or "-"))
    _table(title, rows)


def _action(verb: str, workflow_type: str, title: str, request: UserActionRequest) -> None:
    async def main() -> int:
        result: UserActionResult | None = await _run(
            workflow_type, request, action_workflow_id(verb, request.user_id), UserActionResult,
            f"a {verb} of this user is already running", request.tenant_id, request.user_id)
        if result is None:
            return EXIT_FAILED
        _print_action(title if result.changed else f"{title} (no change: it already was)", result)
        return EXIT_OK

    raise typer.Exit(asyncio.run(main()))


def _action_request(tenant_id: str, user_id: str, by: str | None, by_email: str | None,
                    force: bool = False) -> UserActionRequest:
    return parse_request(UserActionRequest, {"tenant_id": tenant_id, "user_id": user_id, "force": force,
                                             "triggered_by": by, "triggered_by_email": by_email})


@user_app.command("reset-password")
def user_reset_password(tenant_id: TenantArg, user_id: UserArg, by: ByOpt = None, by_email: ByEmailOpt = None) -> None:
    """Run resetUserPasswordWorkflow: a new temporary password, emailed; the old one stops working."""
    _action("reset-password", WORKFLOW_TYPE_RESET_USER_PASSWORD, "Password reset",
            _action_request(tenant_id, user_id, by, by_email))


@user_app.command("deactivate")
def user_deactivate(tenant_id: TenantArg, user_id: UserArg, by: ByOpt = None, by_email: ByEmailOpt = None) -> None:
    """Run deactivateUserWorkflow. The tenant's last active MSP admin is refused (LastAdminError)."""
    _action("deactivate", WORKFLOW_TYPE_DEACTIVATE_USER, "User deactivated",
            _action_request(tenant_id, user_id, by, by_email))


@user_app.command("reactivate")
def user_reactivate(
    tenant_id: TenantArg, user_id: UserArg,
    force: Annotated[bool, typer.Option(help="Reactivate an internal user beyond the licence limit.")] = False,
    by: ByOpt = None, by_email: ByEmailOpt = None,
) -> None:
    """Run reactivateUserWorkflow (LicenseLimitError at the limit unless --force); no email is sent."""
    _action("reactivate", WORKFLOW_TYPE_REACTIVATE_USER, "User reactivated",
            _action_request(tenant_id, user_id, by, by_email, force))


@user_app.command("resend-welcome")
def user_resend_welcome(
    tenant_id: TenantArg,
    by: Annotated[str, typer.Option("--by", help="Who asks (recorded in the audit log).")],
    by_email: Annotated[str, typer.Option("--by-email", help="Their email (recorded in the audit log).")],
    user_id: Annotated[str | None, typer.Option(
        help="The user to welcome again (default: the tenant's first active MSP admin).")] = None,
) -> None:
    """Run resendWelcomeEmailWorkflow: a new temporary password and the welcome email again."""
    request = parse_request(ResendWelcomeEmailRequest, {"tenant_id": tenant_id, "user_id": user_id,
                                                         "triggered_by": by, "triggered_by_email": by_email})

    async def main() -> int:
        wf_id = action_workflow_id("resend-welcome", request.user_id or f"tenant-{request.tenant_id}")
        result: ResendWelcomeEmailResult | None = await _run(
            WORKFLOW_TYPE_RESEND_WELCOME_EMAIL, request, wf_id, ResendWelcomeEmailResult,
            "a resend for this user is already running", request.tenant_id, request.user_id)
        if result is None:
            return EXIT_FAILED
        _table("Welcome email resent", [
            ("tenant", result.tenant_name), ("user id", result.user_id), ("email", result.email),
            ("provider", result.email_provider or "-"), ("audit log id", result.audit_log_id or "-"),
        ])
        return EXIT_OK

    raise typer.Exit(asyncio.run(main()))

"""``alga-worker email ...``: list and preview the templates locally, or send one through the worker.

``preview`` renders on this machine with sample values for whatever ``--var`` does not give (secrets
as a visible placeholder), with the links of the local ``APPLICATION_URL``/``CLIENT_PORTAL_URL``: no
Temporal, database or pepper needed, so a template change can be looked at before it ships.
``send`` runs ``sendEmailWorkflow`` (recorded in Temporal, deduplicated per run, sent by the worker's
provider) and prints the result; templates that carry a temporary password are refused here already,
as the workflow would refuse them (see ``workflows/email.py``).

Exit codes (``cli/common.py``): 0 sent or rendered, 1 the workflow failed (its failure type printed),
2 invalid input (unknown template, ``--var`` not ``name=value``, a variable refused), 4 Temporal
unreachable.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal
from uuid import uuid4

import typer
from rich.markup import escape
from rich.table import Table

from alga_worker.cli.common import EXIT_CONFIG, EXIT_FAILED, client, client_settings, fail, out, parse_request
from alga_worker.cli.common import start_and_wait as _start_and_wait
from alga_worker.models import (
    WORKFLOW_TYPE_SEND_EMAIL,
    EmailTemplate,
    SendEmailWorkflowRequest,
    SendEmailWorkflowResult,
)

email_app = typer.Typer(help="Send a templated email through the worker, or preview a template.",
                        no_args_is_help=True)

TEMPLATE_NAMES = ", ".join(t.value for t in EmailTemplate)
TemplateArg = Annotated[str, typer.Argument(help=f"One of: {TEMPLATE_NAMES}.", show_default=False)]
VarOpt = Annotated[list[str] | None, typer.Option(
    "--var", help="A template variable, name=value (repeatable). `email templates` lists them.")]


def _template(name: str) -> EmailTemplate:
    try:
        return EmailTemplate(name)
    except ValueError:
        raise fail(EXIT_CONFIG, f"unknown template {name!r}; known: {TEMPLATE_NAMES}") from None


def _variables(pairs: list[str] | None) -> dict[str, str]:
    """``name=value`` pairs (the value may contain ``=``); a repeated name keeps the last value."""
    values: dict[str, str] = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise fail(EXIT_CONFIG, f"--var must be name=value (got {name.strip() or '(empty)'!r} without '=')")
        values[name.strip()] = value
    return values


def _problems_text(problems: list[dict[str, str]]) -> str:
    return "; ".join(f"{p['field']}: {p['problem']}" for p in problems)


def _local_links() -> Any:
    """The links the worker would use, from this environment (and secret files): APPLICATION_URL and
    CLIENT_PORTAL_URL with the worker's defaults."""
    from alga_worker.config import ConfigError, describe_variable, merged_environment
    from alga_worker.email.templates import Links

    try:
        env = merged_environment()
    except ConfigError as err:
        raise fail(EXIT_CONFIG, str(err)) from None
    default = describe_variable("APPLICATION_URL")
    application_url = env.get("APPLICATION_URL") or (default.default if default else None) or "http://localhost:3000"
    try:
        return Links(application_url=application_url, client_portal_url=env.get("CLIENT_PORTAL_URL") or None)
    except ValueError as err:
        raise fail(EXIT_CONFIG, f"APPLICATION_URL/CLIENT_PORTAL_URL: {err}") from None


@email_app.command("templates")
def templates_list() -> None:
    """List the templates with their variables (* required) and secrets (sealed, never sent by `send`)."""
    from alga_worker.email.templates import SPECS

    table = Table(title="Email templates")
    table.add_column("template", style="bold", no_wrap=True)
    table.add_column("variables (* required)", overflow="fold")
    table.add_column("secrets", overflow="fold")
    table.add_column("email send")
    for template, spec in SPECS.items():
        variables = ", ".join(f"{n}{'*' if r else ''}" for n, r in spec.variables.items())
        secrets = ", ".join(f"{n}{'*' if r else ''}" for n, r in spec.secret_fields.items()) or "-"
        table.add_row(template.value, variables, secrets, "no (secret)" if spec.secrets else "yes")
    out.print(table)


@email_app.command("preview")
def preview(
    template: TemplateArg,
    var: VarOpt = None,
    fmt: Annotated[Literal["html", "text", "both"], typer.Option(
        "--format", help="Which part to print.")] = "both",
) -> None:
    """Render TEMPLATE locally: sample values for every variable not given, secrets as a placeholder."""
    from pydantic import ValidationError

    from alga_worker.email.templates import problems_of, render, sample_values

    chosen = _template(template)
    values = sample_values(chosen, _variables(var))
    try:
        subject, html, text = render(chosen, values, links=_local_links())
    except ValidationError as err:
        raise fail(EXIT_CONFIG, f"invalid variables: {_problems_text(problems_of(err))}") from None
    # Plain output (typer.echo, not Rich): bodies must print exactly, brackets and all.
    typer.echo(f"Subject: {subject}")
    if fmt in ("text", "both"):
        typer.echo("\n--- text/plain ---\n" + text)
    if fmt in ("html", "both"):
        typer.echo("\n--- text/html ---\n" + html)


@email_app.command("send")
def send(
    template: TemplateArg,
    to: Annotated[list[str] | None, typer.Option("--to", help="A recipient (repeatable).")] = None,
    to_operations: Annotated[bool, typer.Option(
        "--to-operations", help="Also send to the worker's OPERATIONS_EMAIL.")] = False,
    var: VarOpt = None,
) -> None:
    """Send TEMPLATE through sendEmailWorkflow and print the result (templates without secrets only)."""
    from alga_worker.email.templates import spec_of, variable_problems

    chosen = _template(template)
    variables = _variables(var)
    if spec_of(chosen).secrets:
        raise fail(EXIT_CONFIG, f"template {chosen.value} carries a temporary password and is not sent by "
                                "`email send`; use the user commands (user create, user reset-password, "
                                "user resend-welcome) instead")
    request = parse_request(SendEmailWorkflowRequest, {"template": chosen, "to": to or [],
                                                       "to_operations": to_operations, "variables": variables})
    problems = variable_problems(chosen, variables)
    if not request.to and not request.to_operations:
        problems.append({"field": "to", "problem": "no recipient: give --to or --to-operations"})
    if problems:
        raise fail(EXIT_CONFIG, f"invalid input: {_problems_text(problems)}")
    cs = client_settings()
    wf_id = f"send-email-{chosen.value}-{uuid4()}"

    async def main() -> SendEmailWorkflowResult | None:
        temporal = await client(cs)
        return await _start_and_wait(temporal, cs, WORKFLOW_TYPE_SEND_EMAIL, request, wf_id,
                                     SendEmailWorkflowResult, "a send with this id is already running")

    result = asyncio.run(main())
    if result is None:
        raise typer.Exit(EXIT_FAILED)
    table = Table(title="Email sent", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for name, value in (("template", result.template.value), ("recipients", str(result.recipients)),
                        ("provider", result.provider), ("message id", result.message_id),
                        ("destination", result.destination), ("duplicate", "yes" if result.duplicate else "no"),
                        ("workflow id", wf_id)):
        table.add_row(name, escape(value))  # ids and paths are data, not Rich markup
    out.print(table)

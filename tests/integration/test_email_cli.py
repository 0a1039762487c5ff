"""`alga-worker email templates|preview|send` as an operator runs them: the real command in a subprocess,
``send`` against a real worker process, the Temporal dev server and the outbox provider."""

from __future__ import annotations

import asyncio
import html as html_lib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.data import unique_email
from tests.support.processes import WorkerProcess, run_cli, start_worker
from tests.support.workers import outbox_messages, text_body

from alga_worker.email.templates import DEFAULT_CLIENT_PORTAL_PATH, SAMPLE_SECRET

APP = "https://psa.cli-test.example.org"
OPERATIONS = "ops-team@nineminds-ops.com"
PERSON_VARS = ("--var", "tenant_name=Acme IT", "--var", "first_name=Ada", "--var", "last_name=Lovelace")


def preview_env(tmp_path: Path) -> dict[str, str]:
    """No Temporal, no database, no pepper: only where links point."""
    secrets = tmp_path / "secrets"
    secrets.mkdir(exist_ok=True)
    return {"APPLICATION_URL": APP, "SECRETS_DIR": str(secrets), "COLUMNS": "200",
            "TEMPORAL_ADDRESS": "127.0.0.1:1"}


@pytest.fixture
async def worker(worker_env: dict[str, str], tmp_path: Path) -> AsyncIterator[WorkerProcess]:
    process = start_worker({**worker_env, "OPERATIONS_EMAIL": OPERATIONS}, tmp_path / "worker.log")
    try:
        await process.wait_until("/readyz", 200)
        yield process
    finally:
        process.stop()


async def cli(env: dict[str, str], *args: str) -> Any:
    """run_cli in a thread: the test's event loop stays free."""
    return await asyncio.to_thread(run_cli, {**env, "COLUMNS": "200"}, *args, timeout=120)


def test_templates_lists_every_template_with_its_variables_and_secrets(tmp_path: Path) -> None:
    done = run_cli(preview_env(tmp_path), "email", "templates")
    assert done.returncode == 0, done.stderr
    for name in ("tenant_welcome", "portal_access", "user_invitation", "password_reset", "account_deactivated",
                 "provisioning_failed", "tenant_cancelled", "temporary_password*", "portal_temporary_password",
                 "error_message*"):
        assert name in done.stdout


def test_preview_renders_locally_with_samples_and_a_visible_secret_placeholder(tmp_path: Path) -> None:
    done = run_cli(preview_env(tmp_path), "email", "preview", "user_invitation", "--var", "user_type=client",
                   "--var", "tenant_name=<b>Acme</b>", "--format", "both")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.startswith("Subject: You have been invited to <b>Acme</b> on Alga PSA")
    text, html = out.split("--- text/html ---")
    assert f"Sign in at: {APP}{DEFAULT_CLIENT_PORTAL_PATH}" in text
    assert f"Temporary Password: {SAMPLE_SECRET}" in text
    assert "Welcome to <b>Acme</b>" in text
    assert "&lt;b&gt;Acme&lt;/b&gt;" in html and "<b>Acme</b>" not in html
    assert html_lib.escape(SAMPLE_SECRET) in html
    assert "{{" not in out and "{%" not in out


def test_preview_prints_one_part_on_request(tmp_path: Path) -> None:
    text = run_cli(preview_env(tmp_path), "email", "preview", "account_deactivated", "--format", "text")
    html = run_cli(preview_env(tmp_path), "email", "preview", "account_deactivated", "--format", "html")
    assert text.returncode == 0 and html.returncode == 0
    assert "--- text/plain ---" in text.stdout and "<html" not in text.stdout
    assert "--- text/html ---" in html.stdout and "--- text/plain ---" not in html.stdout


@pytest.mark.parametrize("args,message", [
    (("newsletter",), "unknown template"),
    (("account_deactivated", "--var", "first_name"), "--var must be name=value"),
    (("account_deactivated", "--var", "nickname=Ada"), "variables.nickname"),
    (("account_deactivated", "--var", "email=not-an-address"), "variables.email"),
], ids=["unknown template", "var without =", "unknown variable", "bad value"])
def test_preview_refuses_bad_input_with_exit_2(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    done = run_cli(preview_env(tmp_path), "email", "preview", *args)
    assert done.returncode == 2
    assert message in done.stderr
    assert "not-an-address" not in done.stderr


async def test_send_runs_send_email_workflow_and_prints_the_result(worker: WorkerProcess, worker_env: dict[str, str],
                                                                   outbox: Path) -> None:
    email = unique_email("cli-mail")
    done = await cli(worker_env, "email", "send", "account_deactivated", "--to", email, *PERSON_VARS,
                     "--var", f"email={email}")
    assert done.returncode == 0, done.stderr
    workflow_id = re.search(r"started (send-email-\S+)", done.stdout)
    assert workflow_id, done.stdout
    assert "Email sent" in done.stdout and "account_deactivated" in done.stdout and "outbox" in done.stdout
    [msg] = outbox_messages(outbox)
    assert str(msg["To"]) == email and "Acme IT" in text_body(msg)
    assert msg["X-Alga-Tag-workflow"] == "sendEmailWorkflow"


async def test_send_to_operations(worker: WorkerProcess, worker_env: dict[str, str], outbox: Path) -> None:
    done = await cli(worker_env, "email", "send", "provisioning_failed", "--to-operations",
                     "--var", "tenant_name=Acme IT", "--var", "admin_email=ada@acme.example",
                     "--var", "workflow_id=tenant-creation-1", "--var", "run_id=r-1",
                     "--var", "failed_step=provision_tenant", "--var", "error_type=DuplicateError",
                     "--var", "error_message=already exists")
    assert done.returncode == 0, done.stderr
    [msg] = outbox_messages(outbox)
    assert str(msg["To"]) == OPERATIONS and "tenant-creation-1" in text_body(msg)


async def test_send_refuses_secret_templates_and_bad_input_before_starting(worker_env: dict[str, str],
                                                                           outbox: Path) -> None:
    email = unique_email("cli-mail")
    refused = await cli(worker_env, "email", "send", "password_reset", "--to", email, *PERSON_VARS,
                        "--var", f"email={email}")
    assert refused.returncode == 2 and "user reset-password" in refused.stderr
    no_recipient = await cli(worker_env, "email", "send", "account_deactivated", *PERSON_VARS,
                             "--var", f"email={email}")
    assert no_recipient.returncode == 2 and "no recipient" in no_recipient.stderr
    bad_address = await cli(worker_env, "email", "send", "account_deactivated", "--to", "nobody", *PERSON_VARS,
                            "--var", f"email={email}")
    assert bad_address.returncode == 2 and "to.0" in bad_address.stderr
    assert "started" not in refused.stdout + no_recipient.stdout + bad_address.stdout
    assert outbox_messages(outbox) == []


async def test_send_reports_a_failed_workflow_with_exit_1(worker_env: dict[str, str], tmp_path: Path,
                                                          outbox: Path) -> None:
    """A worker without OPERATIONS_EMAIL: the run fails with ConfigurationError, the command exits 1."""
    process = start_worker(worker_env, tmp_path / "worker-no-ops.log")
    try:
        await process.wait_until("/readyz", 200)
        done = await cli(worker_env, "email", "send", "provisioning_failed", "--to-operations",
                         "--var", "tenant_name=Acme IT", "--var", "admin_email=ada@acme.example",
                         "--var", "workflow_id=w", "--var", "run_id=r", "--var", "failed_step=s",
                         "--var", "error_type=X", "--var", "error_message=boom")
    finally:
        process.stop()
    assert done.returncode == 1
    assert "ConfigurationError" in done.stderr and "OPERATIONS_EMAIL" in done.stderr
    assert outbox_messages(outbox) == []

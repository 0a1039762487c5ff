"""``alga-worker user ...`` as operators run it: a real worker process, the CLI as a subprocess.

Each command's happy path (create, list, reset-password, resend-welcome, deactivate, reactivate) and
refusals with their exit codes: 2 for input refused before anything starts, 1 for a workflow that
failed (its typed error printed), 6 for an unknown tenant in ``list``.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.data import unique_email
from tests.support.processes import WorkerProcess, run_cli, start_worker
from tests.support.users import (
    alga_hash_matches,
    audit_rows,
    emailed_password,
    messages_to,
    one_message,
    provision_tenant,
    user_row,
)
from tests.support.visibility import workflow_ids_matching
from tests.support.workers import activity_name, outbox_messages

from alga_worker.config import Settings, load_settings
from alga_worker.runtime.worker import build_resources

MGMT = "00000000-0000-4000-8000-000000000001"


@pytest.fixture
def user_env(worker_env: dict[str, str]) -> dict[str, str]:
    return dict(worker_env, MANAGEMENT_TENANT_ID=MGMT, COLUMNS="250")


@pytest.fixture
def user_settings(user_env: dict[str, str]) -> Settings:
    return load_settings(user_env)


@pytest.fixture
async def acts(user_settings: Settings) -> AsyncIterator[dict[str, Any]]:
    resources = await build_resources(user_settings)
    try:
        yield {activity_name(fn): fn for fn in resources.activities}
    finally:
        await resources.aclose()


@pytest.fixture
def worker(user_env: dict[str, str], tmp_path: Path) -> Iterator[WorkerProcess]:
    process = start_worker(user_env, tmp_path / "worker.log")
    try:
        yield process
    finally:
        process.stop()


async def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(run_cli, env, *args, timeout=120)


async def test_every_user_command_happy_path(client, user_env, user_settings, acts, db, outbox: Path,
                                             worker: WorkerProcess) -> None:
    tenant, _ = await provision_tenant(acts, user_settings, license_count=5)
    tid = str(tenant.tenant_id)
    await worker.wait_until("/readyz", 200)
    address = unique_email("cli.user")

    created = await cli(user_env, "user", "create", tid, "--email", address.upper(), "--first-name", "Cleo",
                        "--last-name", "Commandline", "--role", "Technician", "--role", "finance",
                        "--by", "ops-tester", "--by-email", "ops@nineminds.example")
    assert created.returncode == 0, created.stderr
    assert "User created" in created.stdout and address in created.stdout
    create_id = f"create-user-{tid}-{hashlib.sha256(address.encode()).hexdigest()[:16]}"
    assert f"started {create_id}" in created.stdout
    cur = await db.execute("SELECT user_id FROM users WHERE tenant = %s AND email = %s", (tid, address))
    user_id = str((await cur.fetchone())["user_id"])
    assert user_id in created.stdout
    invitation_password = emailed_password(one_message(outbox, address, "invited"))
    [audit] = await audit_rows(db, create_id)
    assert audit["user_email"] == "ops@nineminds.example"

    listed = await cli(user_env, "user", "list", tid)
    assert listed.returncode == 0, listed.stderr
    assert address in listed.stdout and tenant.admin.email in listed.stdout
    assert user_id in listed.stdout and "Finance, Technician" in listed.stdout and "Cleo Commandline" in listed.stdout
    assert "2 user(s)" in listed.stdout

    reset = await cli(user_env, "user", "reset-password", tid, user_id, "--by", "ops-tester")
    assert reset.returncode == 0, reset.stderr
    assert "Password reset" in reset.stdout
    reset_password = emailed_password(one_message(outbox, address, "has been reset"))
    row = await user_row(db, tid, user_id)
    assert row is not None
    assert alga_hash_matches(reset_password, row["hashed_password"], user_settings)
    assert not alga_hash_matches(invitation_password, row["hashed_password"], user_settings)

    resent = await cli(user_env, "user", "resend-welcome", tid, "--by", "ops-tester",
                       "--by-email", "ops@nineminds.example")
    assert resent.returncode == 0, resent.stderr
    assert "Welcome email resent" in resent.stdout and tenant.admin.email in resent.stdout
    assert len(messages_to(outbox, tenant.admin.email)) == 1

    off = await cli(user_env, "user", "deactivate", tid, user_id)
    assert off.returncode == 0, off.stderr
    assert "User deactivated" in off.stdout
    active = await cli(user_env, "user", "list", tid, "--active-only")
    assert active.returncode == 0 and address not in active.stdout and "1 user(s)" in active.stdout

    on = await cli(user_env, "user", "reactivate", tid, user_id)
    assert on.returncode == 0, on.stderr
    assert "User reactivated" in on.stdout
    row = await user_row(db, tid, user_id)
    assert row is not None and row["is_inactive"] is False

    # Every run is found by its ids, and no workflow id carries an address.
    started = {started_id(done) for done in (created, reset, resent, off, on)}
    by_user = started - {started_id(resent)}  # the resend went to the admin
    assert await workflow_ids_matching(client, f'UserId = "{user_id}"', by_user) == by_user
    assert await workflow_ids_matching(client, f'TenantId = "{tid}"', started) == started
    for run_id in started:
        assert "@" not in run_id and address.split("@")[0] not in run_id


def started_id(done: subprocess.CompletedProcess[str]) -> str:
    match = re.search(r"^started (\S+)$", done.stdout, re.MULTILINE)
    assert match, done.stdout
    return match.group(1)


async def test_user_command_refusals_and_exit_codes(user_env, user_settings, acts, db, outbox: Path,
                                                    worker: WorkerProcess) -> None:
    tenant, _ = await provision_tenant(acts, user_settings, license_count=1)
    tid, admin = str(tenant.tenant_id), str(tenant.admin_user_id)
    await worker.wait_until("/readyz", 200)
    person = ("--first-name", "Rex", "--last-name", "Refused")

    # Refused before anything starts: exit 2.
    for args in (("user", "create", tid, "--email", "not an address", *person, "--role", "Technician"),
                 ("user", "create", tid, "--email", unique_email(), *person),  # no --role
                 ("user", "create", tid, "--email", unique_email(), *person, "--role", "Technician", "--type", "guest"),
                 ("user", "list", "not-a-uuid"),
                 ("user", "resend-welcome", tid),  # --by and --by-email are required
                 ("user", "deactivate", tid, "not-a-uuid")):
        done = await cli(user_env, *args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert "started" not in done.stdout

    listed = await cli(user_env, "user", "list", str(uuid.uuid4()))
    assert listed.returncode == 6 and "does not exist" in listed.stderr

    # Workflows that fail: exit 1, the typed error printed.
    failures = {
        "UnknownRoleError": ("user", "create", tid, "--email", unique_email(), *person, "--role", "Wizard"),
        "LicenseLimitError": ("user", "create", tid, "--email", unique_email(), *person, "--role", "Technician"),
        "LastAdminError": ("user", "deactivate", tid, admin),
        "UserNotFoundError": ("user", "reset-password", tid, str(uuid.uuid4())),
        "TenantNotFoundError": ("user", "resend-welcome", str(uuid.uuid4()), "--by", "ops", "--by-email",
                                "ops@nineminds.example"),
    }
    for error_type, args in failures.items():
        done = await cli(user_env, *args)
        assert done.returncode == 1, (error_type, done.stdout, done.stderr)
        assert error_type in done.stderr, (error_type, done.stderr)

    # Nothing was written or sent by any of them.
    cur = await db.execute("SELECT count(*) AS n FROM users WHERE tenant = %s", (tid,))
    assert (await cur.fetchone())["n"] == 1
    row = await user_row(db, tid, admin)
    assert row is not None and row["is_inactive"] is False
    assert outbox_messages(outbox) == []

    forced = await cli(user_env, "user", "create", tid, "--email", unique_email(), *person, "--role", "Technician",
                       "--force")
    assert forced.returncode == 0, forced.stderr
    assert "forced" in forced.stdout

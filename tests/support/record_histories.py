"""Record the workflow histories that the replay test replays (run when a workflow changes on purpose).

    .venv/bin/python -m tests.support.record_histories            # the pre-checkout set (kept as is)
    .venv/bin/python -m tests.support.record_histories checkout   # a checkout run with every step
    .venv/bin/python -m tests.support.record_histories users      # one-mailer runs and every user/email workflow
    .venv/bin/python -m tests.support.record_histories suspension # suspendTenantWorkflow, resumeTenantWorkflow
    .venv/bin/python -m tests.support.record_histories export     # tenantExportWorkflow: written, unknown tenant
    .venv/bin/python -m tests.support.record_histories deletion   # tenantDeletionWorkflow: deleted, rolled back
    .venv/bin/python -m tests.support.record_histories encrypted  # payloads encrypted under the test key old-2026

Commit the JSON files it writes. The first set predates ``checkout-processing-v1``: it proves that
runs started before that patch still replay, so do not re-record it with today's code. A replay
failure after an edit means the edit is not deterministic for in-flight executions: gate it with
``workflow.patched()`` instead of re-recording.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from tests.support.data import TEST_PEPPER, tenant_request
from tests.support.outages import wait_for
from tests.support.workers import running_worker

from alga_worker.config import Settings, load_settings
from alga_worker.converter import DATA_CONVERTER
from alga_worker.payload_codec import data_converter
from alga_worker.runtime.devstack import DevStack

OUT = Path(__file__).resolve().parents[1] / "integration" / "histories"
ENCRYPTED_OUT = OUT / "encrypted"  # replayed by test_payload_encryption.py with the key, not by test_replay.py

# A fixed, published test key (never a real one): the encrypted histories were written under it, and the
# replay test reads them after a "rotation" to a new active key that still holds this one.
OLD_KEY_ID = "old-2026"
OLD_KEY = "b2xkLTIwMjYtdGVzdC1rZXktbm90LWEtc2VjcmV0ISE="  # base64 of b"old-2026-test-key-not-a-secret!!"
QUEUE = "record-histories"
MGMT = "00000000-0000-4000-8000-000000000001"  # dev migrations: 0002_management_tenant.sql


@contextlib.asynccontextmanager
async def recording_stack(**env: str) -> AsyncIterator[tuple[Client, Settings]]:
    """An ephemeral dev stack, the worker's settings on it (``env`` added) and a client with the converter
    those settings give (plain unless they hold payload keys)."""
    with tempfile.TemporaryDirectory() as root:
        Path(root).chmod(0o755)
        async with DevStack(Path(root) / "stack", ephemeral=True) as stack:
            settings = load_settings(stack.worker_environment(
                ALGA_AUTH_KEY=TEST_PEPPER, TEMPORAL_TASK_QUEUE=QUEUE, EMAIL_OUTBOX_DIR=str(Path(root) / "outbox"),
                SECRETS_DIR=str(Path(root) / "secrets"), **env))
            client = await Client.connect(stack.temporal_address, data_converter=data_converter(settings))
            yield client, settings


async def write_histories(handles: Iterable[tuple[str, WorkflowHandle[Any, Any]]], out: Path | None = None) -> None:
    out = OUT if out is None else out
    out.mkdir(exist_ok=True)
    for name, handle in handles:
        history = await handle.fetch_history()
        (out / f"{name}.json").write_text(history.to_json())
        print(f"wrote {out.relative_to(OUT.parent)}/{name}.json ({len(history.events)} events)")


async def main() -> None:
    async with recording_stack() as (client, settings), running_worker(client, settings):
        done = await client.start_workflow("tenantCreationWorkflow", tenant_request(),
                                           id=f"replay-completed-{uuid.uuid4().hex[:8]}", task_queue=QUEUE)
        await done.result()
        cancelled = await client.start_workflow(
            "tenantCreationWorkflow", tenant_request(), id=f"replay-cancelled-{uuid.uuid4().hex[:8]}",
            task_queue=QUEUE, start_signal="cancel", start_signal_args=[{"reason": "replay"}])
        with contextlib.suppress(WorkflowFailureError):
            await cancelled.result()
        health = await client.start_workflow("healthCheckWorkflow", id="replay-health", task_queue=QUEUE)
        await health.result()
        await write_histories((("tenant_creation_completed", done), ("tenant_creation_cancelled", cancelled),
                               ("health_check", health)))


async def checkout() -> None:
    """A signup with every step: nm-store reports and callback, Stripe, customer tracking, email."""
    from tests.fakes.nmstore_server import FakeNmStoreServer
    from tests.fakes.stripe_server import FakeStripeServer

    with tempfile.TemporaryDirectory() as root, FakeNmStoreServer() as nmstore, FakeStripeServer() as stripe:
        Path(root).chmod(0o755)
        async with DevStack(Path(root) / "stack", ephemeral=True) as stack:
            queue = "record-histories"
            settings = load_settings(stack.worker_environment(
                ALGA_AUTH_KEY=TEST_PEPPER, TEMPORAL_TASK_QUEUE=queue, EMAIL_OUTBOX_DIR=str(Path(root) / "outbox"),
                SECRETS_DIR=str(Path(root) / "secrets"), NMSTORE_BASE_URL=nmstore.url,
                INTERNAL_API_SHARED_SECRET=nmstore.internal_secret, TEMPORAL_WEBHOOK_SECRET=nmstore.webhook_secret,
                STRIPE_SECRET_KEY=stripe.api_key, STRIPE_API_BASE=stripe.url,
                MANAGEMENT_TENANT_ID="00000000-0000-4000-8000-000000000001"))
            ids = stripe.add_session(quantity=4)
            client = await Client.connect(stack.temporal_address, data_converter=DATA_CONVERTER)
            async with running_worker(client, settings):
                handle = await client.start_workflow(
                    "tenantCreationWorkflow", tenant_request(checkoutSessionId=ids["session"]),
                    id=f"replay-checkout-{uuid.uuid4().hex[:8]}", task_queue=queue)
                await handle.result()
            history = await handle.fetch_history()
            (OUT / "tenant_creation_checkout.json").write_text(history.to_json())
            print(f"wrote tenant_creation_checkout.json ({len(history.events)} events)")


async def users() -> None:
    """The one mailer and issue 9's workflows: a checkout run through ``send_email`` (portal section),
    a failed run with the operators' notice, customer tracking creating a portal user, each user
    workflow (create, resend welcome, reset, deactivate, reactivate) and both email workflows."""
    from tests.fakes.nmstore_server import FakeNmStoreServer
    from tests.fakes.stripe_server import FakeStripeServer

    mgmt = "00000000-0000-4000-8000-000000000001"
    with tempfile.TemporaryDirectory() as root, FakeNmStoreServer() as nmstore, FakeStripeServer() as stripe:
        Path(root).chmod(0o755)
        async with DevStack(Path(root) / "stack", ephemeral=True) as stack:
            queue, plain_queue = "record-histories", "record-histories-plain"
            base = {"ALGA_AUTH_KEY": TEST_PEPPER, "EMAIL_OUTBOX_DIR": str(Path(root) / "outbox"),
                    "SECRETS_DIR": str(Path(root) / "secrets")}
            settings = load_settings(stack.worker_environment(
                **base, TEMPORAL_TASK_QUEUE=queue, NMSTORE_BASE_URL=nmstore.url,
                INTERNAL_API_SHARED_SECRET=nmstore.internal_secret, TEMPORAL_WEBHOOK_SECRET=nmstore.webhook_secret,
                STRIPE_SECRET_KEY=stripe.api_key, STRIPE_API_BASE=stripe.url, MANAGEMENT_TENANT_ID=mgmt,
                OPERATIONS_EMAIL="ops@nineminds.example"))
            # A worker without customer tracking: its tenant has no portal user for tracking to create.
            plain = load_settings(stack.worker_environment(**base, TEMPORAL_TASK_QUEUE=plain_queue))
            ids = stripe.add_session(quantity=4)
            client = await Client.connect(stack.temporal_address, data_converter=DATA_CONVERTER)
            handles: dict[str, Any] = {}
            async with running_worker(client, settings), running_worker(client, plain):
                async def run(name: str, workflow: str, arg: Any, on: str = queue, fails: bool = False) -> Any:
                    handle = await client.start_workflow(workflow, arg, id=f"replay-{name}-{uuid.uuid4().hex[:8]}",
                                                         task_queue=on)
                    handles[name] = handle
                    if fails:
                        with contextlib.suppress(WorkflowFailureError):
                            await handle.result()
                        return None
                    return await handle.result()

                admin = {"firstName": "Ada", "lastName": "Lovelace",
                         "email": f"replay-{uuid.uuid4().hex[:8]}@example.com"}
                created = await run("tenant_creation_one_mailer", "tenantCreationWorkflow",
                                    tenant_request(checkoutSessionId=ids["session"], adminUser=admin))
                await run("tenant_creation_failed_notice", "tenantCreationWorkflow",
                          tenant_request(adminUser=dict(admin, firstName="Bob")), fails=True)
                bare = await run("plain-tenant", "tenantCreationWorkflow",
                                tenant_request(tenantName="Plain MSP", clientName=f"Plain MSP {uuid.uuid4().hex[:8]}"),
                                on=plain_queue)
                await run("customer_tracking_portal_user", "customerTrackingWorkflow",
                          {"tenantId": bare["tenantId"], "createPortalUser": True})
                tenant = created["tenantId"]
                user = await run("create_user", "createUserWorkflow", {
                    "tenantId": tenant, "email": f"tech-{uuid.uuid4().hex[:8]}@example.com", "firstName": "Tess",
                    "lastName": "Tech", "roles": ["Technician"], "triggeredBy": "replay"})
                await run("resend_welcome_email", "resendWelcomeEmailWorkflow", {
                    "tenantId": tenant, "triggeredBy": "replay", "triggeredByEmail": "ops@nineminds.example"})
                action = {"tenantId": tenant, "userId": user["userId"]}
                await run("reset_user_password", "resetUserPasswordWorkflow", action)
                await run("deactivate_user", "deactivateUserWorkflow", action)
                await run("reactivate_user", "reactivateUserWorkflow", action)
                await run("send_email", "sendEmailWorkflow", {
                    "template": "account_deactivated", "to": ["someone@example.com"],
                    "variables": {"tenant_name": "Acme", "first_name": "Some", "last_name": "One",
                                  "email": "someone@example.com"}})
                await run("test_email", "testEmailWorkflow", {
                    "tenantId": "smoke", "tenantName": "Smoke MSP",
                    "adminUser": {"userId": "smoke", "firstName": "Sam", "lastName": "Smoke",
                                  "email": "smoke@example.com"}})
            for name, handle in handles.items():
                if name == "plain-tenant":
                    continue
                history = await handle.fetch_history()
                (OUT / f"{name}.json").write_text(history.to_json())
                print(f"wrote {name}.json ({len(history.events)} events)")


async def suspension() -> None:
    """Issue 13's suspension pair: one tenant suspended, then resumed (each with its audit record)."""
    async with recording_stack(MANAGEMENT_TENANT_ID=MGMT) as (client, settings), running_worker(client, settings):
        created = await client.start_workflow("tenantCreationWorkflow", tenant_request(),
                                              id=f"replay-suspension-tenant-{uuid.uuid4().hex[:8]}", task_queue=QUEUE)
        tenant = (await created.result())["tenantId"]
        handles = []
        for name, workflow in (("suspend_tenant", "suspendTenantWorkflow"), ("resume_tenant", "resumeTenantWorkflow")):
            arg = {"tenantId": tenant, "reason": "replay", "triggeredBy": "replay"}
            handle = await client.start_workflow(workflow, arg, task_queue=QUEUE,
                                                 id=f"replay-{name}-{uuid.uuid4().hex[:8]}")
            await handle.result()
            handles.append((name, handle))
        await write_histories(handles)


async def export() -> None:
    """Issue 13's export: one tenant exported into the dev stack's EXPORT_DIR, and an unknown tenant refused."""
    async with recording_stack() as (client, settings), running_worker(client, settings):
        created = await client.start_workflow("tenantCreationWorkflow", tenant_request(),
                                              id=f"replay-export-tenant-{uuid.uuid4().hex[:8]}", task_queue=QUEUE)
        tenant = (await created.result())["tenantId"]
        written = await client.start_workflow(
            "tenantExportWorkflow", {"tenantId": tenant, "requestedBy": "replay", "reason": "replay"},
            id=f"replay-tenant-export-{uuid.uuid4().hex[:8]}", task_queue=QUEUE)
        await written.result()
        unknown = await client.start_workflow(
            "tenantExportWorkflow", {"tenantId": str(uuid.uuid4())},
            id=f"replay-tenant-export-unknown-{uuid.uuid4().hex[:8]}", task_queue=QUEUE)
        with contextlib.suppress(WorkflowFailureError):
            await unknown.result()
        await write_histories((("tenant_export", written), ("tenant_export_unknown_tenant", unknown)))


async def deletion() -> None:
    """Issue 13's deletion: one tenant confirmed and deleted (grace period 0), one rolled back while it waits."""
    handles = []
    async with recording_stack(MANAGEMENT_TENANT_ID=MGMT) as (client, settings), running_worker(client, settings):
        for name, signal, args in (
                ("tenant_deletion_deleted", "confirmDeletion", {"type": "immediate", "confirmedBy": "replay"}),
                ("tenant_deletion_rolled_back", "rollbackDeletion", {"reason": "replay", "rolledBackBy": "replay"})):
            # Its own client name: each tenant gets its customer client (and so the Canceled tag).
            created = await client.start_workflow("tenantCreationWorkflow", tenant_request(clientName=f"Replay {name}"),
                                                  id=f"replay-deletion-tenant-{uuid.uuid4().hex[:8]}", task_queue=QUEUE)
            tenant = (await created.result())["tenantId"]
            handle = await client.start_workflow(
                "tenantDeletionWorkflow",
                {"tenantId": tenant, "triggerSource": "nineminds_extension", "reason": "replay",
                 "gracePeriodSeconds": 0 if signal == "confirmDeletion" else 3600},
                id=f"tenant-deletion-{tenant}", task_queue=QUEUE)
            await wait_for(f"{name} to await its confirmation", lambda h=handle: _awaiting(h), timeout=60)
            await handle.signal(signal, args)
            await handle.result()
            handles.append((name, handle))
        await write_histories(handles)


async def _awaiting(handle: WorkflowHandle[Any, Any]) -> bool:
    state = await handle.query("getState")
    return bool(state and state["status"] == "awaiting_confirmation")


async def encrypted() -> None:
    """A provisioning and a refused send-email run on a worker and client encrypting under old-2026."""
    keys = {"PAYLOAD_KEYS": f"{OLD_KEY_ID}:{OLD_KEY}", "PAYLOAD_ACTIVE_KEY_ID": OLD_KEY_ID}
    async with recording_stack(**keys) as (client, settings), running_worker(client, settings):
        done = await client.start_workflow("tenantCreationWorkflow", tenant_request(),
                                           id=f"replay-encrypted-{uuid.uuid4().hex[:8]}", task_queue=QUEUE)
        await done.result()
        refused = await client.start_workflow(
            "sendEmailWorkflow", {"template": "no_such_template", "to": ["ops@example-msp.com"], "variables": {}},
            id=f"replay-encrypted-refused-{uuid.uuid4().hex[:8]}", task_queue=QUEUE)
        with contextlib.suppress(WorkflowFailureError):
            await refused.result()
        await write_histories((("tenant_creation_completed", done), ("send_email_refused", refused)), ENCRYPTED_OUT)


if __name__ == "__main__":
    import sys

    modes = {"checkout": checkout, "users": users, "suspension": suspension, "export": export,
             "deletion": deletion, "encrypted": encrypted}
    asyncio.run(modes[sys.argv[1]]() if sys.argv[1:] else main())

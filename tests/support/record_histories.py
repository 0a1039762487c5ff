"""Record the workflow histories that the replay test replays (run when a workflow changes on purpose).

    .venv/bin/python -m tests.support.record_histories

Commit the JSON files it writes. A replay failure after an edit means the edit is not deterministic
for in-flight executions: gate it with ``workflow.patched()`` instead of re-recording.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import uuid
from pathlib import Path

from temporalio.client import Client, WorkflowFailureError
from tests.support.data import TEST_PEPPER, tenant_request
from tests.support.workers import running_worker

from alga_worker.config import load_settings
from alga_worker.converter import DATA_CONVERTER
from alga_worker.runtime.devstack import DevStack

OUT = Path(__file__).resolve().parents[1] / "integration" / "histories"


async def main() -> None:
    with tempfile.TemporaryDirectory() as root:
        Path(root).chmod(0o755)
        async with DevStack(Path(root) / "stack", ephemeral=True) as stack:
            queue = "record-histories"
            settings = load_settings(stack.worker_environment(
                ALGA_AUTH_KEY=TEST_PEPPER, TEMPORAL_TASK_QUEUE=queue, EMAIL_OUTBOX_DIR=str(Path(root) / "outbox"),
                SECRETS_DIR=str(Path(root) / "secrets")))
            client = await Client.connect(stack.temporal_address, data_converter=DATA_CONVERTER)
            async with running_worker(client, settings):
                done = await client.start_workflow("tenantCreationWorkflow", tenant_request(),
                                                   id=f"replay-completed-{uuid.uuid4().hex[:8]}", task_queue=queue)
                await done.result()
                cancelled = await client.start_workflow(
                    "tenantCreationWorkflow", tenant_request(), id=f"replay-cancelled-{uuid.uuid4().hex[:8]}",
                    task_queue=queue, start_signal="cancel", start_signal_args=[{"reason": "replay"}])
                with contextlib.suppress(WorkflowFailureError):
                    await cancelled.result()
                health = await client.start_workflow("healthCheckWorkflow", id="replay-health", task_queue=queue)
                await health.result()
            for name, handle in (("tenant_creation_completed", done), ("tenant_creation_cancelled", cancelled),
                                 ("health_check", health)):
                history = await handle.fetch_history()
                (OUT / f"{name}.json").write_text(history.to_json())
                print(f"wrote {name}.json ({len(history.events)} events)")


if __name__ == "__main__":
    asyncio.run(main())

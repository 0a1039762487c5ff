"""Worker processes for chaos tests: the real `alga-worker run`, as Kubernetes would start it."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from alga_worker.runtime.devstack import free_port

ALGA_WORKER = str(Path(sys.executable).parent / "alga-worker")


@dataclass
class WorkerProcess:
    proc: subprocess.Popen[bytes]
    health_port: int
    log_path: Path

    def probe(self, path: str) -> tuple[int, dict[str, Any]]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}{path}", timeout=2) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"{}")
        except (urllib.error.URLError, ConnectionError):
            return 0, {}

    async def wait_until(self, path: str, status: int, attempts: int = 300) -> None:
        """Poll a probe until it answers ``status`` (bounded; fails with the process output)."""
        for _ in range(attempts):
            code, _ = await asyncio.to_thread(self.probe, path)
            if code == status:
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited {self.proc.returncode}:\n{self.output()}")
            await asyncio.sleep(0.1)
        raise AssertionError(f"{path} never answered {status}:\n{self.output()}")

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    async def wait_exit(self, timeout: float = 60) -> int:
        return await asyncio.wait_for(asyncio.to_thread(self.proc.wait), timeout)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def start_worker(env: dict[str, str], log_path: Path, *args: str) -> WorkerProcess:
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "DB_", "EMAIL_"))}
    full_env.update(env)
    full_env["HEALTH_CHECK_PORT"] = str(port)
    full_env["HEALTH_CHECK_HOST"] = "127.0.0.1"
    log = log_path.open("ab")
    proc = subprocess.Popen([ALGA_WORKER, *(args or ("run",))], env=full_env, stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    log.close()
    return WorkerProcess(proc=proc, health_port=port, log_path=log_path)


# Variables of the developer's shell that would leak into a CLI's configuration: tests pass their own.
CONFIG_PREFIXES: tuple[str, ...] = ("TEMPORAL_", "DB_", "EMAIL_", "ALGA_", "NM", "INTERNAL_")


def cells(out: str) -> dict[str, str]:
    """The two-column rows of a rich table in a command's output, label -> value."""
    rows: dict[str, str] = {}
    for line in out.splitlines():
        parts = [p.strip() for p in re.split(r"[│|]", line) if p.strip()]
        if len(parts) == 2:
            rows[parts[0]] = parts[1]
    return rows


async def cli(env: dict[str, str], *args: str, timeout: float = 120) -> tuple[int, str, str]:
    """`alga-worker` as operators run it, with only ``env`` as configuration, without blocking the event
    loop (an in-process worker keeps polling while the command waits on it): (exit code, stdout, stderr)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(CONFIG_PREFIXES)}
    full_env.update(env, COLUMNS="200")
    proc = await asyncio.create_subprocess_exec(ALGA_WORKER, *args, env=full_env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def run_cli(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "DB_", "EMAIL_", "ALGA_"))}
    full_env.update(env)
    return subprocess.run([ALGA_WORKER, *args], env=full_env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, check=False)


async def wait_for_worker_blocked_on_lock(conn: psycopg.AsyncConnection[Any], attempts: int = 300) -> None:
    """Until a worker backend waits on a lock: the provisioning transaction is in flight."""
    for _ in range(attempts):
        cur = await conn.execute(
            "SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = 'alga-temporal-worker'"
            " AND wait_event_type = 'Lock'")
        row = await cur.fetchone()
        if row and row["n"] > 0:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("no worker transaction ever waited on the lock")

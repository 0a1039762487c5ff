"""Worker processes of the bench: started as Kubernetes would start them, measured from outside.

The environment is built as the test suite builds it (tests/support/processes.py ``start_worker``):
the machine's own variables minus any ``TEMPORAL_*``/``DB_*``/``EMAIL_*`` of the developer's shell,
plus the stack's worker environment. Peak memory is the process's own ``VmHWM`` (the kernel's
high-water mark of its resident set), so the client and the bench never count.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from alga_worker.runtime.devstack import free_port

ALGA_WORKER = str(Path(sys.executable).parent / "alga-worker")
SHELL_CONFIG_PREFIXES = ("TEMPORAL_", "DB_", "EMAIL_", "OTEL_")


@dataclass
class Process:
    """One worker process, its stdout+stderr in ``log_path``, its health and metrics on loopback ports."""

    proc: subprocess.Popen[bytes]
    log_path: Path
    health_port: int | None
    metrics_port: int | None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def peak_rss_bytes(self) -> int:
        """``VmHWM`` from /proc/<pid>/status: the worker's own resident-set high-water mark."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"no VmHWM for pid {self.pid}")

    def log_lines(self) -> int:
        """Lines written to stdout/stderr so far."""
        if not self.log_path.exists():
            return 0
        with self.log_path.open("rb") as f:
            return sum(1 for _ in f)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _get(self, port: int | None, path: str) -> tuple[int, bytes]:
        if port is None:
            return 0, b""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()
        except (urllib.error.URLError, ConnectionError):
            return 0, b""

    async def wait_ready(self, attempts: int = 600) -> None:
        """Until /readyz answers 200 (polls, Temporal and the database answer); bounded."""
        for _ in range(attempts):
            code, _ = await asyncio.to_thread(self._get, self.health_port, "/readyz")
            if code == 200:
                return
            self._fail_if_exited()
            await asyncio.sleep(0.1)
        raise RuntimeError(f"worker never became ready:\n{self.output()[-4000:]}")

    async def scrape(self) -> str:
        """The Prometheus text of /metrics ("" when metrics are off)."""
        code, body = await asyncio.to_thread(self._get, self.metrics_port, "/metrics")
        return body.decode() if code == 200 else ""

    def _fail_if_exited(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"process exited {self.proc.returncode}:\n{self.output()[-4000:]}")

    async def terminate(self, timeout: float = 60) -> int:
        """SIGTERM and wait (the worker drains and flushes its spans), SIGKILL past ``timeout``."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return await asyncio.wait_for(asyncio.to_thread(self.proc.wait), timeout)
            except TimeoutError:
                self.kill()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def start(argv: list[str], env: dict[str, str], log_path: Path, *, health: bool = True,
          metrics: bool = True) -> Process:
    """Start ``argv`` with the stack's ``env`` (and free loopback ports for health and metrics)."""
    health_port = free_port() if health else None
    metrics_port = free_port() if metrics else None
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(SHELL_CONFIG_PREFIXES)}
    full_env.update(env)
    full_env["HEALTH_CHECK_HOST"] = "127.0.0.1"
    full_env["HEALTH_CHECK_PORT"] = str(health_port or 0)
    full_env["ENABLE_HEALTH_CHECK"] = "true" if health else "false"
    full_env["METRICS_HOST"] = "127.0.0.1"
    full_env["METRICS_PORT"] = str(metrics_port or 0)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        proc = subprocess.Popen(argv, env=full_env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return Process(proc=proc, log_path=log_path, health_port=health_port, metrics_port=metrics_port)


def start_worker(env: dict[str, str], log_path: Path) -> Process:
    """The real worker: ``alga-worker run``."""
    return start([ALGA_WORKER, "run"], env, log_path)


def start_noop_worker(env: dict[str, str], log_path: Path) -> Process:
    """The ceiling's worker: ``python -m bench.noop_worker`` (run from the project root, like ``make``)."""
    env = dict(env, PYTHONPATH=os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")])))
    return start([sys.executable, "-m", "bench.noop_worker"], env, log_path, health=False)


"""``/healthz`` and ``/readyz`` that report real state (the original's answered 200 unconditionally).

Served from a thread with the stdlib HTTP server, so a blocked event loop cannot hide behind a
responsive probe: the loop-side monitor must keep refreshing ``last_loop_tick``, and liveness fails
when it stops.

- ready:   the worker's run task is running (polling), Temporal and the database answered the last
           check, and no SIGTERM has arrived.
- live:    the run task has not died, the event loop ticks, Temporal has not failed
           ``LIVENESS_FAILURES`` checks in a row. The database is deliberately not part of liveness:
           a restart does not fix a database outage.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

LIVENESS_FAILURES = 3
LOOP_STALL_SECONDS = 30.0


@dataclass
class HealthState:
    """Mutable worker state, written by the event loop, read by the probe thread."""

    build_id: str = "dev"
    task_queue: str = ""
    worker_running: bool = False
    run_task_died: bool = False
    draining: bool = False
    temporal_ok: bool = False
    temporal_failures: int = 0
    db_ok: bool = False
    last_loop_tick: float = field(default_factory=time.monotonic)
    detail: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def update(self, **changes: Any) -> None:
        with self._lock:
            for key, value in changes.items():
                setattr(self, key, value)

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        with self._lock:
            checks = {
                "worker_polling": self.worker_running and not self.run_task_died,
                "not_draining": not self.draining,
                "temporal": self.temporal_ok,
                "database": self.db_ok,
            }
            return all(checks.values()), self._doc(checks)

    def liveness(self) -> tuple[bool, dict[str, Any]]:
        with self._lock:
            checks = {
                "run_task_alive": not self.run_task_died,
                "event_loop": time.monotonic() - self.last_loop_tick < LOOP_STALL_SECONDS,
                "temporal": self.temporal_failures < LIVENESS_FAILURES,
            }
            return all(checks.values()), self._doc(checks)

    def _doc(self, checks: dict[str, bool]) -> dict[str, Any]:
        doc: dict[str, Any] = {"status": "ok" if all(checks.values()) else "unavailable", "checks": checks,
                               "build_id": self.build_id, "task_queue": self.task_queue,
                               "draining": self.draining}
        if self.detail:
            doc["detail"] = self.detail
        return doc


class HealthServer:
    """A tiny threaded HTTP server for kubelet probes."""

    def __init__(self, state: HealthState, host: str, port: int) -> None:
        self.state = state
        handler = _make_handler(state)
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="health-server", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _make_handler(state: HealthState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path in ("/healthz", "/health", "/livez"):
                ok, doc = state.liveness()
            elif path in ("/readyz", "/ready"):
                ok, doc = state.readiness()
            else:
                self._send(404, {"status": "not found"})
                return
            self._send(200 if ok else 503, doc)

        def _send(self, code: int, doc: dict[str, Any]) -> None:
            body = json.dumps(doc).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # probes every few seconds: no log spam
            return

    return Handler

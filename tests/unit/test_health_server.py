"""/healthz and /readyz over real HTTP: they report state instead of answering 200 unconditionally."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from alga_worker.runtime.health import LIVENESS_FAILURES, LOOP_STALL_SECONDS, HealthServer, HealthState


@pytest.fixture(scope="module")
def shared_state() -> HealthState:
    return HealthState(build_id="build-123", task_queue="tenant-workflows")


@pytest.fixture(scope="module")
def server(shared_state: HealthState) -> Iterator[HealthServer]:
    """One server per module (stopping one waits for serve_forever's 0.5 s poll); state reset per test."""
    srv = HealthServer(shared_state, "127.0.0.1", 0)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def state(shared_state: HealthState) -> HealthState:
    fresh = HealthState(build_id="build-123", task_queue="tenant-workflows")
    shared_state.update(**{name: getattr(fresh, name) for name in (
        "worker_running", "run_task_died", "draining", "temporal_ok", "temporal_failures", "db_ok",
        "last_loop_tick", "detail")})
    return shared_state


def get(server: HealthServer, path: str) -> tuple[int, dict[str, Any], str]:
    url = f"http://127.0.0.1:{server.port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read()), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as err:
        with err:
            return err.code, json.loads(err.read()), err.headers.get("Content-Type", "")


def ready(state: HealthState) -> None:
    state.update(worker_running=True, temporal_ok=True, db_ok=True)


def test_port_zero_binds_an_ephemeral_port(server: HealthServer, state: HealthState) -> None:
    assert server.port > 0


def test_readyz_is_503_before_the_worker_runs(server: HealthServer, state: HealthState) -> None:
    code, doc, content_type = get(server, "/readyz")
    assert code == 503
    assert content_type == "application/json"
    assert doc["status"] == "unavailable"
    assert doc["checks"] == {"worker_polling": False, "not_draining": True, "temporal": False, "database": False}
    assert doc["build_id"] == "build-123"
    assert doc["task_queue"] == "tenant-workflows"


def test_readyz_is_200_once_running_and_connected(server: HealthServer, state: HealthState) -> None:
    ready(state)
    code, doc, _ = get(server, "/readyz")
    assert code == 200
    assert doc["status"] == "ok"
    assert doc["checks"] == {"worker_polling": True, "not_draining": True, "temporal": True, "database": True}
    assert doc["draining"] is False


@pytest.mark.parametrize("missing", ["worker_running", "temporal_ok", "db_ok"])
def test_readyz_needs_every_condition(server: HealthServer, state: HealthState, missing: str) -> None:
    ready(state)
    state.update(**{missing: False})
    code, doc, _ = get(server, "/readyz")
    assert code == 503
    assert doc["status"] == "unavailable"
    assert list(doc["checks"].values()).count(False) == 1


def test_readyz_is_503_as_soon_as_draining(server: HealthServer, state: HealthState) -> None:
    ready(state)
    assert get(server, "/readyz")[0] == 200
    state.update(draining=True)
    code, doc, _ = get(server, "/readyz")
    assert code == 503
    assert doc["checks"]["not_draining"] is False
    assert doc["draining"] is True
    # Draining is not a liveness failure: the pod must be allowed to finish its work.
    assert get(server, "/healthz")[0] == 200


def test_readyz_is_503_when_the_run_task_died(server: HealthServer, state: HealthState) -> None:
    ready(state)
    state.update(run_task_died=True)
    code, doc, _ = get(server, "/readyz")
    assert code == 503
    assert doc["checks"]["worker_polling"] is False


def test_healthz_is_200_normally(server: HealthServer, state: HealthState) -> None:
    code, doc, _ = get(server, "/healthz")
    assert code == 200
    assert doc["status"] == "ok"
    assert doc["checks"] == {"run_task_alive": True, "event_loop": True, "temporal": True}


def test_healthz_does_not_depend_on_the_database(server: HealthServer, state: HealthState) -> None:
    ready(state)
    state.update(db_ok=False)
    assert get(server, "/healthz")[0] == 200
    assert get(server, "/readyz")[0] == 503


def test_healthz_is_503_when_the_run_task_died(server: HealthServer, state: HealthState) -> None:
    state.update(run_task_died=True, detail="worker task exited: RuntimeError")
    code, doc, _ = get(server, "/healthz")
    assert code == 503
    assert doc["status"] == "unavailable"
    assert doc["checks"]["run_task_alive"] is False
    assert doc["detail"] == "worker task exited: RuntimeError"


def test_healthz_fails_after_repeated_temporal_failures(server: HealthServer, state: HealthState) -> None:
    assert LIVENESS_FAILURES == 3
    state.update(temporal_failures=LIVENESS_FAILURES - 1)
    assert get(server, "/healthz")[0] == 200
    state.update(temporal_failures=LIVENESS_FAILURES)
    code, doc, _ = get(server, "/healthz")
    assert code == 503
    assert doc["checks"]["temporal"] is False
    state.update(temporal_failures=0)
    assert get(server, "/healthz")[0] == 200


def test_healthz_fails_when_the_event_loop_stalls(server: HealthServer, state: HealthState) -> None:
    state.update(last_loop_tick=time.monotonic() - 60)
    code, doc, _ = get(server, "/healthz")
    assert code == 503
    assert doc["checks"]["event_loop"] is False
    state.update(last_loop_tick=time.monotonic() - LOOP_STALL_SECONDS / 2)
    assert get(server, "/healthz")[0] == 200


@pytest.mark.parametrize("path", ["/health", "/livez", "/healthz?verbose=1"])
def test_liveness_aliases(server: HealthServer, state: HealthState, path: str) -> None:
    code, doc, _ = get(server, path)
    assert code == 200
    assert "run_task_alive" in doc["checks"]


def test_ready_alias(server: HealthServer, state: HealthState) -> None:
    ready(state)
    code, doc, _ = get(server, "/ready")
    assert code == 200
    assert "worker_polling" in doc["checks"]


@pytest.mark.parametrize("path", ["/", "/metrics", "/healthzz", "/readyz/extra"])
def test_other_paths_are_404(server: HealthServer, state: HealthState, path: str) -> None:
    code, doc, _ = get(server, path)
    assert code == 404
    assert doc == {"status": "not found"}


def test_responses_are_not_cached(server: HealthServer, state: HealthState) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=5) as response:
        assert response.headers["Cache-Control"] == "no-store"
        body = response.read()
        assert int(response.headers["Content-Length"]) == len(body)


def test_state_methods_without_http() -> None:
    state = HealthState()
    ok, doc = state.readiness()
    assert not ok
    assert doc["status"] == "unavailable"
    ready(state)
    ok, doc = state.readiness()
    assert ok
    assert "detail" not in doc
    ok, doc = state.liveness()
    assert ok


def test_stop_releases_the_port() -> None:
    srv = HealthServer(HealthState(), "127.0.0.1", 0)
    srv.start()
    port = srv.port
    srv.stop()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)

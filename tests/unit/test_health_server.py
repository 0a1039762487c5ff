"""/healthz and /readyz over real HTTP: they report state instead of answering 200 unconditionally.

The rules under test: liveness fails only for what a restart fixes (the run task died, the event loop
stalled); Temporal, database and schema problems, start-up waits and draining are readiness only.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from alga_worker.config import ConfigError, load_settings
from alga_worker.runtime.health import (
    LOOP_STALL_SECONDS,
    HealthServer,
    HealthState,
    describe_database,
    describe_db_error,
)
from alga_worker.runtime.worker import Backoff, metrics_bind_address

RESETTABLE = ("worker_running", "run_task_died", "draining", "temporal_ok", "db_ok", "schema_ok",
              "temporal_failures", "db_failures", "temporal_error", "db_error", "schema_problems",
              "waiting_for", "last_loop_tick", "detail")


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
    shared_state.update(**{name: getattr(fresh, name) for name in RESETTABLE})
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
    state.update(worker_running=True, temporal_ok=True, db_ok=True, schema_ok=True)


def test_every_field_is_reset_between_tests() -> None:
    fields = {name for name in HealthState.__dataclass_fields__ if not name.startswith("_")}
    assert fields - {"build_id", "task_queue"} == set(RESETTABLE)


def test_port_zero_binds_an_ephemeral_port(server: HealthServer, state: HealthState) -> None:
    assert server.port > 0


def test_readyz_is_503_before_the_worker_runs(server: HealthServer, state: HealthState) -> None:
    code, doc, content_type = get(server, "/readyz")
    assert code == 503
    assert content_type == "application/json"
    assert doc["status"] == "unavailable"
    assert doc["checks"] == {"worker_polling": False, "not_draining": True, "temporal": False, "database": False,
                             "schema": False}
    assert doc["build_id"] == "build-123"
    assert doc["task_queue"] == "tenant-workflows"


def test_readyz_is_200_once_running_and_connected(server: HealthServer, state: HealthState) -> None:
    ready(state)
    code, doc, _ = get(server, "/readyz")
    assert code == 200
    assert doc["status"] == "ok"
    assert doc["checks"] == {"worker_polling": True, "not_draining": True, "temporal": True, "database": True,
                             "schema": True}
    assert doc["draining"] is False
    assert doc["failures"] == {"temporal": 0, "database": 0}
    assert "detail" not in doc


@pytest.mark.parametrize("missing", ["worker_running", "temporal_ok", "db_ok", "schema_ok"])
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
    assert doc["checks"] == {"run_task_alive": True, "event_loop": True}


@pytest.mark.parametrize("outage", [
    {"temporal_ok": False, "temporal_failures": 1000, "temporal_error": "RuntimeError: connection refused"},
    {"db_ok": False, "db_failures": 1000, "db_error": "OperationalError"},
    {"schema_ok": False, "schema_problems": ("table tenants: column plan missing",)},
    {"worker_running": False, "waiting_for": "waiting for Temporal at temporal:7233"},
], ids=["temporal", "database", "schema", "starting"])
def test_dependency_outages_fail_readiness_never_liveness(server: HealthServer, state: HealthState,
                                                          outage: dict[str, Any]) -> None:
    """However long an outage lasts, a restart fixes none of it: liveness stays 200."""
    ready(state)
    state.update(**outage)
    code, doc, _ = get(server, "/readyz")
    assert code == 503
    assert list(doc["checks"].values()).count(False) == 1
    code, doc, _ = get(server, "/healthz")
    assert code == 200
    assert doc["checks"] == {"run_task_alive": True, "event_loop": True}
    assert "detail" not in doc


def test_readiness_detail_says_what_is_missing(server: HealthServer, state: HealthState) -> None:
    ready(state)
    state.update(temporal_ok=False, temporal_failures=4, temporal_error="timed out",
                 db_ok=False, db_failures=2, db_error="OperationalError (SQLSTATE 57P01)",
                 schema_ok=False, schema_problems=("missing table tenant_settings", "users.email: wrong type"))
    code, doc, _ = get(server, "/readyz")
    assert code == 503
    assert doc["failures"] == {"temporal": 4, "database": 2}
    assert doc["detail"] == ("Temporal: timed out; database: OperationalError (SQLSTATE 57P01); "
                             "schema: missing table tenant_settings; users.email: wrong type")


def test_start_up_wait_is_in_the_readiness_detail(server: HealthServer, state: HealthState) -> None:
    state.update(waiting_for="waiting for the database at db:5432/server: OperationalError (attempt 3, next in 4 s)")
    code, doc, _ = get(server, "/readyz")
    assert code == 503
    assert doc["detail"].startswith("waiting for the database at db:5432/server")
    assert get(server, "/healthz")[0] == 200


def test_a_recovered_dependency_leaves_no_stale_detail(server: HealthServer, state: HealthState) -> None:
    ready(state)
    state.update(temporal_ok=False, temporal_error="timed out")
    assert get(server, "/readyz")[1]["detail"] == "Temporal: timed out"
    state.update(temporal_ok=True)  # the error text may linger in state; it is not reported once ok
    code, doc, _ = get(server, "/readyz")
    assert code == 200
    assert "detail" not in doc


def test_healthz_is_503_when_the_run_task_died(server: HealthServer, state: HealthState) -> None:
    state.update(run_task_died=True, detail="worker task exited: RuntimeError")
    code, doc, _ = get(server, "/healthz")
    assert code == 503
    assert doc["status"] == "unavailable"
    assert doc["checks"]["run_task_alive"] is False
    assert doc["detail"] == "worker task exited: RuntimeError"


def test_healthz_fails_when_the_event_loop_stalls(server: HealthServer, state: HealthState) -> None:
    state.update(last_loop_tick=time.monotonic() - 60)
    code, doc, _ = get(server, "/healthz")
    assert code == 503
    assert doc["checks"]["event_loop"] is False
    assert doc["detail"].startswith("event loop has not turned for")
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


def test_update_rejects_unknown_fields() -> None:
    """A typo in a state update must fail loudly, not create a field no probe reads."""
    with pytest.raises(AttributeError):
        HealthState().update(temporal_failure=1)


def test_ipv6_bind_address() -> None:
    srv = HealthServer(HealthState(), "::1", 0)  # the CI machine has an IPv6 loopback: no skip
    srv.start()
    try:
        with urllib.request.urlopen(f"http://[::1]:{srv.port}/healthz", timeout=5) as response:
            assert response.status == 200
    finally:
        srv.stop()


@pytest.mark.parametrize(("host", "expected"), [
    ("0.0.0.0", "0.0.0.0:9464"), ("127.0.0.1", "127.0.0.1:9464"), ("::", "[::]:9464"), ("[::1]", "[::1]:9464"),
])
def test_metrics_bind_address(host: str, expected: str) -> None:
    assert metrics_bind_address(host, 9464) == expected


@pytest.mark.parametrize(("value", "stored"), [("127.0.0.1", "127.0.0.1"), ("::", "::"), ("[::1]", "::1")])
def test_metrics_host_accepts_ip_literals(tmp_path: Path, value: str, stored: str) -> None:
    assert load_settings(minimal_env(tmp_path, METRICS_HOST=value)).metrics_host == stored
    assert load_settings(minimal_env(tmp_path)).metrics_host == "0.0.0.0"


def test_metrics_host_rejects_a_host_name(tmp_path: Path) -> None:
    """The SDK's exporter binds a socket address: a name would only fail later, inside the runtime."""
    with pytest.raises(ConfigError) as err:
        load_settings(minimal_env(tmp_path, METRICS_HOST="metrics.internal"))
    assert err.value.variables == ["METRICS_HOST"]


def minimal_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"DB_HOST": "db.internal", "ALGA_AUTH_KEY": "pepper-for-tests", "SECRETS_DIR": str(tmp_path), **extra}


@pytest.mark.parametrize("conninfo", [
    "postgresql://postgres:s3cret-pw@db.internal:5433/server?sslmode=require",
    "host=db.internal port=5433 dbname=server user=postgres password=s3cret-pw",
])
def test_database_description_never_includes_the_password(conninfo: str) -> None:
    assert describe_database(conninfo) == "db.internal:5433/server"
    assert "s3cret-pw" not in describe_database(conninfo)


def test_database_errors_are_described_without_their_message() -> None:
    import psycopg

    err = psycopg.OperationalError('connection to "postgresql://u:s3cret-pw@h/db" failed')
    assert describe_db_error(err) == "OperationalError (cannot connect, or the connection was lost)"
    assert describe_db_error(TimeoutError()) == "timed out"


def test_backoff_is_exponential_capped_and_jittered() -> None:
    backoff = Backoff(initial=1.0, maximum=30.0)
    delays = [backoff.next_delay() for _ in range(12)]
    bases = [min(30.0, 2.0 ** n) for n in range(12)]
    assert all(base / 2 <= d <= base for d, base in zip(delays, bases, strict=True))
    assert max(delays) <= 30.0
    assert len({round(Backoff().next_delay(), 6) for _ in range(20)}) > 1, "no jitter"


def test_stop_releases_the_port() -> None:
    srv = HealthServer(HealthState(), "127.0.0.1", 0)
    srv.start()
    port = srv.port
    srv.stop()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)

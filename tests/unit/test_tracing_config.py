"""Tracing configuration: off (nothing imported, installed or returned) without an OTLP endpoint; the
OTEL_* variables read as the OTel spec defines them, through the worker's settings (secret files count,
errors name the variable, the headers are secrets); and on/off is reversible within a process.

The spans themselves are tested end to end in tests/integration/test_tracing.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import psycopg
import pytest
from temporalio.contrib.opentelemetry import TracingInterceptor
from tests.support.processes import run_cli

from alga_worker.config import (
    OTEL_VARIABLES,
    ConfigError,
    TracingSettings,
    load_settings,
    load_tracing_settings,
)
from alga_worker.runtime import tracing

PEPPER = "pepper-for-tests-0123456789"


@pytest.fixture
def base_env(tmp_path: Path) -> dict[str, str]:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    return {"SECRETS_DIR": str(secrets), "DB_HOST": "db.internal", "ALGA_AUTH_KEY": PEPPER}


def _wrapped() -> dict[str, bool]:
    """Whether psycopg's and httpx's entry points carry an instrumentation wrapper."""
    return {
        "psycopg.AsyncConnection.connect": hasattr(psycopg.AsyncConnection.connect, "__wrapped__"),
        "httpx.AsyncHTTPTransport": hasattr(httpx.AsyncHTTPTransport.handle_async_request, "__wrapped__"),
        "httpx.HTTPTransport": hasattr(httpx.HTTPTransport.handle_request, "__wrapped__"),
    }


def test_without_an_endpoint_nothing_is_installed_and_no_interceptor_returned(base_env: dict[str, str]) -> None:
    settings = load_settings({**base_env, "OTEL_SERVICE_NAME": "x", "OTEL_EXPORTER_OTLP_HEADERS": "a=b"})
    assert settings.tracing is None
    assert load_tracing_settings({}) is None
    assert tracing.configure_tracing(settings.tracing, environment="test", build_id="b") is None
    assert tracing.client_interceptors() == []
    assert not any(_wrapped().values())
    tracing.shutdown_tracing()  # a no-op when off


def test_off_imports_no_opentelemetry_at_all() -> None:
    """Zero cost: the worker and the CLI modules, with tracing off, never import OpenTelemetry."""
    code = (
        "import sys\n"
        "import alga_worker.cli, alga_worker.runtime.worker\n"
        "from alga_worker.runtime import tracing\n"
        "assert tracing.configure_tracing(None, environment='e', build_id='b') is None\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.strip() == "[]"


def test_on_installs_once_and_shutdown_undoes_it() -> None:
    settings = TracingSettings.model_validate({"endpoint": "http://127.0.0.1:9/"})
    interceptor = tracing.configure_tracing(settings, environment="test", build_id="b1")
    try:
        assert isinstance(interceptor, TracingInterceptor)
        assert tracing.client_interceptors() == [interceptor]
        assert all(_wrapped().values())
        # A second call (the demo command runs worker and client in one process) installs nothing new.
        assert tracing.configure_tracing(settings, environment="test", build_id="b1") is interceptor
    finally:
        tracing.shutdown_tracing(timeout_seconds=1)
    assert tracing.client_interceptors() == []
    assert not any(_wrapped().values())


@pytest.mark.parametrize(("env", "url"), [
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, "http://collector:4318/v1/traces"),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "https://otlp.example/otlp/"}, "https://otlp.example/otlp/v1/traces"),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/custom"}, "http://c:4318/custom"),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://base:4318", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t:1/v1/traces"},
     "http://t:1/v1/traces"),
])
def test_the_endpoint_resolves_as_the_otel_spec_says(env: dict[str, str], url: str) -> None:
    settings = load_tracing_settings(env)
    assert settings is not None and settings.traces_url == url


def test_malformed_values_name_the_variable_never_the_value(base_env: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({**base_env, "OTEL_EXPORTER_OTLP_ENDPOINT": "collector-without-scheme",
                       "OTEL_EXPORTER_OTLP_HEADERS": "api-key-sekrit-no-equals",
                       "OTEL_RESOURCE_ATTRIBUTES": "team"})
    assert set(info.value.variables) == {"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_HEADERS",
                                         "OTEL_RESOURCE_ATTRIBUTES"}
    assert "sekrit" not in str(info.value) and "collector-without-scheme" not in str(info.value)


def test_headers_are_a_secret_and_may_come_from_a_vault_file(base_env: dict[str, str]) -> None:
    Path(base_env["SECRETS_DIR"], "otel").write_text(
        "export OTEL_EXPORTER_OTLP_HEADERS='Authorization=Bearer%20otel-key-123,X-Scope-OrgID=tenant-9'\n")
    settings = load_settings({**base_env, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert settings.tracing is not None
    assert settings.tracing.header_pairs() == [("Authorization", "Bearer otel-key-123"),
                                               ("X-Scope-OrgID", "tenant-9")]
    # Redacted from logs as a whole and value by value; never shown by repr.
    assert {"Bearer otel-key-123", "tenant-9"} <= set(settings.secret_values())
    assert "otel-key-123" not in repr(settings)
    assert [v.name for v in OTEL_VARIABLES if v.secret] == ["OTEL_EXPORTER_OTLP_HEADERS"]


def test_resource_service_version_environment_and_their_precedence() -> None:
    plain = TracingSettings.model_validate({"endpoint": "http://c:4318"})
    assert tracing.resource_attributes(plain, environment="staging", build_id="abc123") == {
        "service.name": "alga-temporal-worker", "service.version": "abc123",
        "deployment.environment": "staging", "deployment.environment.name": "staging"}
    assert tracing.resource_attributes(plain, environment="e", build_id="b",
                                       default_service_name=tracing.CLI_SERVICE_NAME)["service.name"] == \
        "alga-worker-cli"
    custom = TracingSettings.model_validate({
        "endpoint": "http://c:4318", "resource_attributes": "service.name=from-attrs,k8s.cluster.name=eu%201",
        "service_name": None})
    attributes = tracing.resource_attributes(custom, environment="e", build_id="b")
    assert attributes["service.name"] == "from-attrs" and attributes["k8s.cluster.name"] == "eu 1"
    named = custom.model_copy(update={"service_name": "worker-eu"})
    assert tracing.resource_attributes(named, environment="e", build_id="b")["service.name"] == "worker-eu"


def test_the_cli_refuses_a_malformed_endpoint_with_exit_2(tmp_path: Path) -> None:
    result = run_cli({"SECRETS_DIR": str(tmp_path), "OTEL_EXPORTER_OTLP_ENDPOINT": "not a url"},
                     "tenant", "status", "some-workflow")
    assert result.returncode == 2, result.stderr
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" in result.stderr and "not a url" not in result.stderr

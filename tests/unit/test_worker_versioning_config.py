"""Worker Versioning settings: TEMPORAL_WORKER_DEPLOYMENT_NAME + BUILD_ID, and the worker's deployment config.

The end-to-end behaviour (pinned runs, promotion, rollback) is in
tests/integration/test_worker_versioning.py; these are the rules that stop a bad configuration at
start-up, before the worker polls.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.common import VersioningBehavior, WorkerDeploymentVersion
from temporalio.workflow import _Definition

from alga_worker.config import ConfigError, load_client_settings, load_settings
from alga_worker.runtime.worker import deployment_config
from alga_worker.workflows import VERSIONING_BEHAVIOR, WORKFLOWS


@pytest.fixture
def base_env(tmp_path: Path) -> dict[str, str]:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    return {"SECRETS_DIR": str(secrets), "DB_HOST": "db.internal", "ALGA_AUTH_KEY": "pepper-for-tests-0123456789"}


def _problems(env: dict[str, str]) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    return dict(info.value.problems)


@pytest.mark.parametrize("value", [None, ""], ids=["absent", "empty"])
def test_unset_means_versioning_off(base_env: dict[str, str], value: str | None) -> None:
    env = dict(base_env)
    if value is not None:
        env["TEMPORAL_WORKER_DEPLOYMENT_NAME"] = value
    settings = load_settings(env)  # BUILD_ID "dev" is fine without versioning
    assert settings.worker_deployment_name is None
    assert settings.worker_deployment_version is None
    assert deployment_config(settings) is None  # the unversioned worker, as before


def test_versioned_worker_joins_the_deployment_as_its_build_id_with_pinned_default(
        base_env: dict[str, str]) -> None:
    settings = load_settings({**base_env, "TEMPORAL_WORKER_DEPLOYMENT_NAME": "alga-temporal-worker",
                              "BUILD_ID": "3f2a9c1"})
    version = WorkerDeploymentVersion(deployment_name="alga-temporal-worker", build_id="3f2a9c1")
    assert settings.worker_deployment_version == version
    config = deployment_config(settings)
    assert config is not None
    assert config.version == version
    assert config.use_worker_versioning is True
    assert config.default_versioning_behavior == VersioningBehavior.PINNED


@pytest.mark.parametrize("build_id", [None, "dev", "DEV", " dev "], ids=["default", "dev", "DEV", "spaced"])
def test_versioning_refuses_the_dev_build_id(base_env: dict[str, str], build_id: str | None) -> None:
    env = {**base_env, "TEMPORAL_WORKER_DEPLOYMENT_NAME": "alga-temporal-worker"}
    if build_id is not None:
        env["BUILD_ID"] = build_id
    problems = _problems(env)
    assert set(problems) == {"BUILD_ID"}
    assert "TEMPORAL_WORKER_DEPLOYMENT_NAME" in problems["BUILD_ID"]


@pytest.mark.parametrize("name", ["alga.worker", "alga:worker", "alga worker", "x" * 201])
def test_deployment_name_that_the_server_could_not_split_is_refused(base_env: dict[str, str], name: str) -> None:
    problems = _problems({**base_env, "TEMPORAL_WORKER_DEPLOYMENT_NAME": name, "BUILD_ID": "3f2a9c1"})
    assert set(problems) == {"TEMPORAL_WORKER_DEPLOYMENT_NAME"}
    assert name not in str(problems)  # names, never values


def test_client_settings_carry_the_deployment_name(base_env: dict[str, str]) -> None:
    assert load_client_settings(base_env).worker_deployment_name is None
    env = {**base_env, "TEMPORAL_WORKER_DEPLOYMENT_NAME": "alga-temporal-worker"}
    assert load_client_settings(env).worker_deployment_name == "alga-temporal-worker"


def test_every_workflow_is_pinned_by_the_worker_default() -> None:
    """No workflow picks its own behaviour, so the worker's PINNED default applies to every one; a
    workflow that declared AUTO_UPGRADE would silently move open runs to new code at a rollout."""
    assert VERSIONING_BEHAVIOR == VersioningBehavior.PINNED
    for cls in WORKFLOWS:
        declared = _Definition.must_from_class(cls).versioning_behavior
        assert declared in (None, VersioningBehavior.UNSPECIFIED), cls.__name__

"""Every variable the worker reads is wired by the chart, and the chart sets nothing the worker ignores.

Why: the original chart left NMSTORE_BASE_URL, EMAIL_PROVIDER and the pepper unset and wrote
concurrency settings into a file nothing read (reference section 11, B2). Here the settings module
(alga_worker.config) is the single source of truth and these tests hold the chart to it.

How "wired" is counted: a variable reaches the worker through the ConfigMap (envFrom), an env entry
(Kubernetes Secret), or a Vault agent file line `export NAME='value'`; all three count.

Optional variables: a render of shipped values leaves optional variables with no value unset (an empty
TEMPORAL_TLS_CLIENT_CERT_PATH would make the SDK open the file ""), so equality with the full set is
asserted on a render where every variable is given a value (`test_every_variable_can_be_set...`), while
each shipped configuration must deliver a subset that the settings module accepts as a whole
(`test_shipped_configuration_loads...`). Together: nothing unwired, nothing unused, no gaps.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import helm_python
import pytest
from helm_support import (
    CHART_DIR,
    TRICKY,
    ValueSet,
    load_yaml,
    only,
    render_objects,
    render_set,
    render_vault_templates,
    secret_placeholder,
    value_sets,
    vault_placeholder,
    vault_templates,
    worker_container,
    worker_environment,
)

from alga_worker import config
from alga_worker.payload_codec import require_encryption_policy

ALL_NAMES = set(config.variable_names())
SECRET_NAMES = {v.name for v in (*config.VARIABLES, *config.TEMPORAL_VARIABLES, *config.OTEL_VARIABLES) if v.secret}
SETS = value_sets()
# Two keys, the Vault value a rotation leaves (the active id is config: PAYLOAD_ACTIVE_KEY_ID).
PAYLOAD_KEYS = ("old-2025:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=,"
                "k2026a:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=")

# A value for every non-secret variable (valid where the worker parses it), to show all are settable.
EVERY_CONFIG_VALUE: dict[str, str] = {
    "TEMPORAL_TLS": "true",
    "TEMPORAL_TLS_CLIENT_CERT_PATH": "/etc/temporal-tls/tls.crt",
    "TEMPORAL_TLS_CLIENT_KEY_PATH": "/etc/temporal-tls/tls.key",
    "TEMPORAL_TLS_SERVER_CA_CERT_PATH": "/etc/temporal-tls/ca.crt",
    "TEMPORAL_TLS_SERVER_NAME": "temporal.example",
    "EMAIL_OUTBOX_DIR": "/tmp/outbox",
    "RESEND_API_URL": "https://api.resend.com",
    "SMTP_HOST": "smtp.example",
    "SMTP_PORT": "587",
    "SMTP_USERNAME": "worker",
    "SMTP_STARTTLS": "true",
    "NM_STORE_URL": "http://nm-store-callbacks.msp.svc.cluster.local:3000",
    "STRIPE_API_BASE": "https://api.stripe.com",
    "MASTER_BILLING_TENANT_ID": "0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f",
    "MANAGEMENT_TENANT_ID": "1d2e3f4a-5b6c-4d7e-8f9a-0b1c2d3e4f5a",
    "CLIENT_PORTAL_URL": "https://portal.nineminds.example",
    "OPERATIONS_EMAIL": "ops@nineminds.example",
    "EXPORT_S3_BUCKET": "alga-tenant-exports",
    "EXPORT_S3_PREFIX": "tenant-exports",
    "EXPORT_S3_ENDPOINT_URL": "https://s3.eu-central-1.amazonaws.com",
    "EXPORT_S3_REGION": "eu-central-1",
    "EXPORT_DIR": "/exports",
    "EXPORT_BATCH_SIZE": "1000",
    "TENANT_DELETION_BATCH_SIZE": "1000",
    "OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-collector.monitoring.svc.cluster.local:4318",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://otel-collector.monitoring.svc.cluster.local:4318/v1/traces",
    "OTEL_SERVICE_NAME": "alga-temporal-worker",
    "OTEL_RESOURCE_ATTRIBUTES": "k8s.cluster.name=eu-1",
    "PAYLOAD_ACTIVE_KEY_ID": "k8s-test",
    "PAYLOAD_ENCRYPTION": "on",
}


def env_for_settings(value_set: ValueSet, objects: list[dict[str, Any]], tmp_path: Path) -> dict[str, str]:
    """The worker's environment with the Vault files written where SECRETS_DIR points."""
    worker_env = worker_environment(objects)
    secrets_dir = tmp_path / value_set.name
    secrets_dir.mkdir()
    for name, text in worker_env.vault_files.items():
        (secrets_dir / name).write_text(text, encoding="utf-8")
    return {**worker_env.env, "SECRETS_DIR": str(secrets_dir)}


def vault_files_of(value_set: ValueSet) -> list[dict[str, Any]]:
    """The chart's vault.files entries in effect for a value set (the set's own, else the defaults)."""
    files = value_set.values.get("vault", {}).get("files")
    if files is None:
        files = load_yaml(CHART_DIR / "values.yaml")["vault"]["files"]
    return [f for f in files if f["env"]]


def test_values_declare_every_variable_once() -> None:
    """values.yaml names every variable: non-secrets under `config`, secrets under `secrets`."""
    values = load_yaml(CHART_DIR / "values.yaml")
    config_names, secret_names = set(values["config"]), set(values["secrets"])
    assert config_names.isdisjoint(secret_names)
    assert config_names | secret_names == ALL_NAMES
    assert secret_names == SECRET_NAMES
    assert config_names == ALL_NAMES - SECRET_NAMES


def test_schema_allows_exactly_the_worker_config_names() -> None:
    """values.schema.json rejects a config key the worker does not read (a typo fails the install)."""
    import json

    schema = json.loads((CHART_DIR / "values.schema.json").read_text(encoding="utf-8"))
    config_schema = schema["properties"]["config"]
    assert config_schema["additionalProperties"] is False
    assert set(config_schema["properties"]) == ALL_NAMES - SECRET_NAMES
    with pytest.raises(helm_python.HelmError, match="DB_HOSTNAME"):
        render_objects({"config": {"DB_HOSTNAME": "x"}})


@pytest.mark.parametrize("vault", [False, True], ids=["k8s-secrets", "vault"])
def test_every_variable_can_be_set_and_nothing_else(vault: bool) -> None:
    """With every variable given a value, the rendered names equal the settings module's names."""
    every_secret = {name: {"secretName": "all-secrets", "key": name.lower()} for name in SECRET_NAMES}
    values: dict[str, Any] = {"config": EVERY_CONFIG_VALUE, "secrets": every_secret}
    if vault:
        values["vault"] = {
            "enabled": True,
            "files": [
                {
                    "name": "everything",
                    "path": "secret/data/alga-psa/everything",
                    "env": {name: name.lower() for name in SECRET_NAMES},
                }
            ],
        }
    worker_env = worker_environment(render_objects(values))
    assert len(worker_env.env_names) == len(set(worker_env.env_names)), "duplicate env entries"
    assert worker_env.all_names == ALL_NAMES
    assert worker_env.vault_names == (SECRET_NAMES if vault else set())
    assert worker_env.configmap_names == ALL_NAMES - SECRET_NAMES
    assert set(worker_env.env_names) == (set() if vault else SECRET_NAMES)


@pytest.mark.parametrize("value_set", SETS, ids=[s.name for s in SETS])
def test_shipped_configuration_loads_into_settings(value_set: ValueSet, tmp_path: Path) -> None:
    """Each shipped configuration delivers only names the worker reads, and load_settings accepts it."""
    objects = render_set(value_set)
    worker_env = worker_environment(objects)
    env = env_for_settings(value_set, objects, tmp_path)
    assert worker_env.all_names <= set(config.variable_names(env)), worker_env.all_names - ALL_NAMES
    assert worker_env.configmap_names.isdisjoint(worker_env.env_names)
    assert worker_env.vault_names.isdisjoint(worker_env.env_names), "a Vault secret is also in env"
    assert bool(worker_env.vault_names) == value_set.vault
    settings = config.load_settings(env)
    configmap = only(objects, "ConfigMap")["data"]
    assert settings.temporal_address == configmap["TEMPORAL_ADDRESS"]
    assert settings.task_queue == configmap["TEMPORAL_TASK_QUEUE"]
    assert settings.task_queue in {"tenant-workflows", "tenant-workflows-v2"}
    assert settings.nmstore_base_url is not None, "NMSTORE_BASE_URL must be wired (B2)"
    assert settings.internal_api_shared_secret is not None
    assert settings.missing_checkout_settings() == [], "every shipped set can process checkouts"
    assert settings.callback_base_url == (settings.nm_store_url or settings.nmstore_base_url)
    assert settings.db_password_admin is not None
    assert settings.graceful_shutdown_seconds == 30
    assert (settings.health_check_port, settings.metrics_port) == (8080, 9464)
    # A production set delivers PAYLOAD_KEYS: the worker would refuse to start without them.
    require_encryption_policy(settings)
    if settings.environment == "production":
        assert settings.payload_keys is not None, "a production set must deliver PAYLOAD_KEYS"
    if value_set.vault:
        # The pepper comes from the Vault key mapped to the variable PASSWORD_PEPPER_VARIABLE names.
        pepper = settings.password_pepper_variable
        pepper_keys = {f["env"][pepper] for f in vault_files_of(value_set) if pepper in f["env"]}
        assert len(pepper_keys) == 1, pepper_keys
        assert settings.password_pepper.get_secret_value() == vault_placeholder(pepper_keys.pop())
        assert settings.internal_api_shared_secret.get_secret_value() == vault_placeholder(
            "internal_api_shared_secret"
        )


def test_hosted_settings_are_the_plan(tmp_path: Path) -> None:
    """Hosted: resend email, production environment, the plan's Temporal, database and URLs."""
    hosted = next(s for s in SETS if s.name == "hosted")
    settings = config.load_settings(env_for_settings(hosted, render_set(hosted), tmp_path))
    assert settings.email_provider == config.EmailProvider.RESEND
    assert settings.resend_api_key is not None
    assert settings.resend_api_key.get_secret_value() == vault_placeholder("resend_api_key")
    assert settings.environment == "production"
    assert settings.temporal_address == "temporal-frontend.temporal.svc.cluster.local:7233"
    assert settings.temporal_namespace == "default"
    assert (settings.db_name, settings.db_user_server, settings.db_user_admin) == (
        "server",
        "app_user",
        "postgres",
    )
    assert settings.db_port == 5432
    assert str(settings.nmstore_base_url).rstrip("/") == "http://nm-store-release.msp.svc.cluster.local:3000"
    assert str(settings.application_url).rstrip("/") == "https://algapsa.com"
    assert settings.server_conninfo() is not None
    # Checkout: the callback goes to the same nm-store; both nm-store secrets and Stripe come from Vault.
    assert settings.callback_base_url == settings.nmstore_base_url
    assert settings.temporal_webhook_secret is not None and settings.stripe_secret_key is not None
    assert settings.temporal_webhook_secret.get_secret_value() == vault_placeholder("temporal_webhook_secret")
    assert settings.stripe_secret_key.get_secret_value() == vault_placeholder("stripe_secret_key")


def test_dev_settings_use_outbox_and_dev_secret(tmp_path: Path) -> None:
    """Dev: outbox email in /tmp (the only writable path) and the chart's dev Secret."""
    dev = next(s for s in SETS if s.name == "dev")
    objects = render_set(dev)
    settings = config.load_settings(env_for_settings(dev, objects, tmp_path))
    assert settings.email_provider == config.EmailProvider.OUTBOX
    assert str(settings.email_outbox_dir).startswith("/tmp/")
    assert only(objects, "Secret")["metadata"]["annotations"]["alga-psa/purpose"] == "local-development-only"
    default_objects = render_set(next(s for s in SETS if s.name == "default"))
    assert not any(o["kind"] == "Secret" for o in default_objects)


def test_vault_templates_parse_into_the_right_values(tmp_path: Path) -> None:
    """Agent output for awkward values (quotes, $, backslash, #, spaces) reads back exactly."""
    hosted = next(s for s in SETS if s.name == "hosted")
    templates = vault_templates(render_set(hosted))
    assert set(templates) == {"temporal-worker", "shared"}
    stored = {
        "secret/data/alga-psa/temporal-worker": {"internal_api_shared_secret": "in'ter\"nal $X `y` \\z",
                                                 "temporal_webhook_secret": "wh'sec $(id) \"#x",
                                                 "payload_keys": PAYLOAD_KEYS},
        "secret/data/alga-psa/shared": {
            "nextauth_secret": TRICKY,
            "postgres_password": "p@ss:w/rd'#1",
            "db_password_server": "  spaced  ",
            "resend_api_key": "re_123$abc",
            "stripe_secret_key": "sk_live_'quoted'$",
        },
    }
    files = render_vault_templates(templates, stored)
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
        for line in text.splitlines():
            assert line.startswith("export "), line
            shlex.split(line)  # valid shell, as a human sourcing it for debugging would expect
    parsed = config.read_secret_files(tmp_path)
    assert parsed == {
        "INTERNAL_API_SHARED_SECRET": "in'ter\"nal $X `y` \\z",
        "NEXTAUTH_SECRET": TRICKY,
        "DB_PASSWORD_ADMIN": "p@ss:w/rd'#1",
        "DB_PASSWORD_SERVER": "  spaced  ",
        "RESEND_API_KEY": "re_123$abc",
        "TEMPORAL_WEBHOOK_SECRET": "wh'sec $(id) \"#x",
        "STRIPE_SECRET_KEY": "sk_live_'quoted'$",
        "PAYLOAD_KEYS": PAYLOAD_KEYS,
    }
    env = {"DB_HOST": "db", "EMAIL_PROVIDER": "resend", "SECRETS_DIR": str(tmp_path),
           "PASSWORD_PEPPER_VARIABLE": "NEXTAUTH_SECRET", "PAYLOAD_ACTIVE_KEY_ID": "k2026a"}
    settings = config.load_settings(env)
    assert settings.password_pepper.get_secret_value() == TRICKY
    assert settings.temporal_webhook_secret is not None and settings.stripe_secret_key is not None
    assert settings.temporal_webhook_secret.get_secret_value() == "wh'sec $(id) \"#x"
    assert settings.db_password_admin is not None
    assert settings.db_password_admin.get_secret_value() == "p@ss:w/rd'#1"
    assert settings.payload_keys is not None and settings.payload_keys.get_secret_value() == PAYLOAD_KEYS


def test_vault_template_with_missing_key_fails_instead_of_rendering_placeholder() -> None:
    """A key missing in Vault must stop the agent (pod not started), not write "<no value>"."""
    hosted = next(s for s in SETS if s.name == "hosted")
    templates = vault_templates(render_set(hosted))
    with pytest.raises(helm_python.HelmError):
        render_vault_templates(
            {"shared": templates["shared"]}, {"secret/data/alga-psa/shared": {"nextauth_secret": "x"}}
        )


def test_pepper_variable_rename_is_wired_and_old_name_refused() -> None:
    """PASSWORD_PEPPER_VARIABLE=NEXTAUTH_SECRET: the chart delivers NEXTAUTH_SECRET, refuses ALGA_AUTH_KEY."""
    base: dict[str, Any] = {"config": {"PASSWORD_PEPPER_VARIABLE": "NEXTAUTH_SECRET"}}
    with pytest.raises(helm_python.HelmError, match="ALGA_AUTH_KEY"):
        render_objects(base)
    values = {
        **base,
        "secrets": {
            "ALGA_AUTH_KEY": None,
            "NEXTAUTH_SECRET": {"secretName": "alga-web", "key": "nextauth_secret"},
        },
    }
    worker_env = worker_environment(render_objects(values))
    names = set(config.variable_names(worker_env.env))
    assert "NEXTAUTH_SECRET" in worker_env.env_names and "ALGA_AUTH_KEY" not in worker_env.env_names
    assert worker_env.all_names <= names
    env = {**worker_env.env, "SECRETS_DIR": "/nonexistent"}
    settings = config.load_settings(env)
    assert settings.password_pepper.get_secret_value() == secret_placeholder("NEXTAUTH_SECRET")


def test_unknown_or_duplicate_secret_routes_are_refused() -> None:
    """No chart env name the worker ignores; no variable from two Vault files."""
    with pytest.raises(helm_python.HelmError, match="NM_STORE_URL"):
        render_objects({"secrets": {"NM_STORE_URL": {"secretName": "x", "key": "y"}}})
    with pytest.raises(helm_python.HelmError, match="DB_HOST"):
        render_objects(
            {"config": {"DB_HOST": "x"}, "devSecrets": {"create": True, "values": {"DB_HOST": "x"}}}
        )
    twice = {
        "enabled": True,
        "files": [
            {"name": "a", "path": "secret/data/a", "env": {"RESEND_API_KEY": "k"}},
            {"name": "b", "path": "secret/data/b", "env": {"RESEND_API_KEY": "k"}},
        ],
    }
    with pytest.raises(helm_python.HelmError, match="both"):
        render_objects({"vault": twice})


@pytest.mark.parametrize("value_set", SETS, ids=[s.name for s in SETS])
def test_worker_versioning_is_on_with_the_image_tag_as_version_except_in_dev(
    value_set: ValueSet, tmp_path: Path
) -> None:
    """The chart joins Worker Deployment `alga-temporal-worker` as version BUILD_ID = the image tag; the dev
    values (every :dev image has BUILD_ID dev) turn versioning off, since the worker refuses 'dev'."""
    objects = render_set(value_set)
    settings = config.load_settings(env_for_settings(value_set, objects, tmp_path))
    if value_set.name.startswith("dev"):
        assert settings.worker_deployment_version is None
        return
    version = settings.worker_deployment_version
    assert version is not None and version.deployment_name == "alga-temporal-worker"
    image = worker_container(objects)["image"].split("@")[0]
    assert version.build_id == image.rsplit(":", 1)[1] != "dev"


def test_worker_deployment_name_the_server_could_not_split_is_refused_by_the_schema() -> None:
    for name in ("alga.worker", "alga:worker", "alga worker"):
        with pytest.raises(helm_python.HelmError, match="TEMPORAL_WORKER_DEPLOYMENT_NAME"):
            render_objects({"config": {"TEMPORAL_WORKER_DEPLOYMENT_NAME": name}})
    tagged = render_objects({"image": {"tag": "3f2a9c1"}, "config": {"TEMPORAL_WORKER_DEPLOYMENT_NAME": "other"}})
    data = only(tagged, "ConfigMap")["data"]
    assert (data["TEMPORAL_WORKER_DEPLOYMENT_NAME"], data["BUILD_ID"]) == ("other", "3f2a9c1")

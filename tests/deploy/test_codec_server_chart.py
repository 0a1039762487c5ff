"""The chart's codec server (codecServer.enabled): its own Deployment, Service and NetworkPolicy.

What is held here, for the hosted values (Vault) and the defaults (Kubernetes Secrets):

- off by default, in every shipped configuration;
- on: valid under kubernetes-validate --strict, helm lint --strict clean, checkov clean;
- same image, service account and (pod and container) security context as the worker; probes on the
  plain-HTTP /healthz port; the worker's Service, PDB and NetworkPolicy do not select its pods, its own
  Service and NetworkPolicy select only them;
- the environment its container gets loads with ``load_codec_server_settings``: PAYLOAD_KEYS through the
  worker's own route (the Vault file or the ``secrets`` entry), the token from codecServer.token, and no
  other secret of the worker's (no database password, no pepper) reaches it;
- ingress only to the codec port from the configured Web UI peers, egress only DNS (and Vault);
- mTLS values mount the TLS Secret and set the three file variables; a configuration without any
  authentication, or with clientCA but no Secret, does not render.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import helm_python
import pytest
from helm_support import (
    CHART_DIR,
    KUBE_MIN_VERSION,
    TRICKY,
    ValueSet,
    checkov_bin,
    checkov_skips,
    deep_merge,
    render,
    render_objects,
    render_set,
    render_vault_templates,
    secret_placeholder,
    selects,
    validate_object,
    value_sets,
    vault_placeholder,
)
from kubernetes_validate.utils import latest_version

from alga_worker import config

SETS = value_sets()
KUBE_VERSIONS = [KUBE_MIN_VERSION, latest_version()]
WORKER_SECRETS = {v.name for v in (*config.VARIABLES, *config.TEMPORAL_VARIABLES, *config.OTEL_VARIABLES)
                  if v.secret} | {"NEXTAUTH_SECRET"}
CODEC_SECRETS = {"PAYLOAD_KEYS", "CODEC_SERVER_TOKEN"}
UI_ORIGIN = "https://temporal.nineminds.example"
TOKEN_VAULT_PATH = "secret/data/alga-psa/codec-server"


def _hosted() -> ValueSet:
    return next(s for s in SETS if s.name == "hosted")


def hosted_with_codec(**codec: Any) -> ValueSet:
    """Hosted (Vault) with the codec server on, its token from Vault."""
    hosted = _hosted()
    extra = {"codecServer": deep_merge({"enabled": True, "corsOrigins": [UI_ORIGIN],
                                        "token": {"vaultPath": TOKEN_VAULT_PATH}}, codec)}
    return ValueSet("hosted-codec", deep_merge(hosted.values, extra), hosted.namespace, hosted.release, True)


def default_with_codec(**codec: Any) -> ValueSet:
    """Chart defaults (Kubernetes Secrets) with the codec server on, its token from a Secret."""
    default = next(s for s in SETS if s.name == "default")
    extra = {"codecServer": deep_merge({"enabled": True, "corsOrigins": [UI_ORIGIN, "http://localhost:8233"],
                                        "token": {"secretName": "codec-server-secrets"}}, codec)}
    return ValueSet("default-codec", deep_merge(default.values, extra), default.namespace, default.release, False)


CODEC_SETS = [hosted_with_codec(), default_with_codec()]
CODEC_IDS = [s.name for s in CODEC_SETS]


def codec_objects(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The codec server's objects by kind."""
    found = {o["kind"]: o for o in objects
             if o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "codec-server"}
    return found


def worker_objects(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["kind"]: o for o in objects if o["kind"] in ("Deployment", "Service", "NetworkPolicy",
                                                            "PodDisruptionBudget")
            and o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "worker"}


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    [only] = deployment["spec"]["template"]["spec"]["containers"]
    return dict(only)


def codec_environment(objects: list[dict[str, Any]], tmp_path: Path) -> tuple[dict[str, str], set[str], set[str]]:
    """The codec container's environment as the process sees it (Secret refs resolved, Vault files rendered
    into SECRETS_DIR); the names delivered by Secret refs, and those delivered by Vault files."""
    deployment = codec_objects(objects)["Deployment"]
    env: dict[str, str] = {}
    secret_names: set[str] = set()
    for entry in container(deployment)["env"]:
        if "value" in entry:
            env[entry["name"]] = str(entry["value"])
        else:
            secret_names.add(entry["name"])
            env[entry["name"]] = (f"k8s-codec-token-{TRICKY}-0123456789abcdef" if entry["name"] == "CODEC_SERVER_TOKEN"
                                  else secret_placeholder(entry["name"]))
    annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
    prefix, template_prefix = "vault.hashicorp.com/agent-inject-secret-", "vault.hashicorp.com/agent-inject-template-"
    templates = {key[len(prefix):]: (str(path), str(annotations[template_prefix + key[len(prefix):]]))
                 for key, path in annotations.items() if key.startswith(prefix)}
    secrets_dir = tmp_path / "vault-secrets"
    secrets_dir.mkdir()
    vault_names: set[str] = set()
    if templates:
        kv: dict[str, dict[str, str]] = {}
        for path, text in templates.values():
            keys = [part.split('"')[1] for part in text.split("index .Data.data ")[1:]]
            kv.setdefault(path, {}).update({key: (vault_placeholder(key) if key != "codec_server_token"
                                                  else f"vault-codec-token-{TRICKY}") for key in keys})
        for name, text in render_vault_templates(templates, kv).items():
            (secrets_dir / name).write_text(text, encoding="utf-8")
            vault_names |= {line.split()[1].split("=", 1)[0] for line in text.splitlines()
                            if line.startswith("export ")}
    env["SECRETS_DIR"] = str(secrets_dir)
    return env, secret_names, vault_names


# ---------------------------------------------------------------- off by default


@pytest.mark.parametrize("value_set", SETS, ids=[s.name for s in SETS])
def test_off_in_every_shipped_configuration(value_set: ValueSet) -> None:
    assert codec_objects(render_set(value_set)) == {}


# ---------------------------------------------------------------- on


@pytest.mark.parametrize("value_set", CODEC_SETS, ids=CODEC_IDS)
def test_objects_valid_under_kubernetes_validate_strict(value_set: ValueSet) -> None:
    objects = codec_objects(render_set(value_set))
    assert set(objects) == {"Deployment", "Service", "NetworkPolicy"}
    for kube_version in KUBE_VERSIONS:
        for obj in objects.values():
            validate_object(obj, kube_version)


@pytest.mark.parametrize("value_set", CODEC_SETS, ids=CODEC_IDS)
def test_helm_lint_strict_is_clean(value_set: ValueSet) -> None:
    result = helm_python.lint(CHART_DIR, value_set.values, strict=True, namespace=value_set.namespace,
                              kube_version=f"v{KUBE_MIN_VERSION}")
    assert result["errors"] == [] and result["messages"] == [], result


@pytest.mark.parametrize("value_set", CODEC_SETS, ids=CODEC_IDS)
def test_same_image_identity_and_security_context_as_the_worker(value_set: ValueSet) -> None:
    objects = render_set(value_set)
    codec, worker = codec_objects(objects)["Deployment"], worker_objects(objects)["Deployment"]
    codec_pod, worker_pod = codec["spec"]["template"]["spec"], worker["spec"]["template"]["spec"]
    assert codec_pod["securityContext"] == worker_pod["securityContext"]
    assert container(codec)["securityContext"] == container(worker)["securityContext"]
    assert container(codec)["securityContext"]["readOnlyRootFilesystem"] is True
    assert container(codec)["image"] == container(worker)["image"]
    assert codec_pod["serviceAccountName"] == worker_pod["serviceAccountName"]
    assert codec_pod["automountServiceAccountToken"] is False
    args = container(codec)["args"]
    assert args[0] == "codec-server"
    ports = {p["name"]: p["containerPort"] for p in container(codec)["ports"]}
    assert args[args.index("--port") + 1] == str(ports["codec"])
    assert args[args.index("--health-port") + 1] == str(ports["health"])
    for probe in ("livenessProbe", "readinessProbe"):
        assert container(codec)[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert "startupProbe" not in container(codec)


@pytest.mark.parametrize("value_set", CODEC_SETS, ids=CODEC_IDS)
def test_selectors_keep_worker_and_codec_server_apart(value_set: ValueSet) -> None:
    objects = render_set(value_set)
    codec, worker = codec_objects(objects), worker_objects(objects)
    codec_labels = codec["Deployment"]["spec"]["template"]["metadata"]["labels"]
    worker_labels = worker["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert selects(codec["Deployment"]["spec"]["selector"], codec_labels)
    assert selects({"matchLabels": codec["Service"]["spec"]["selector"]}, codec_labels)
    assert not selects({"matchLabels": codec["Service"]["spec"]["selector"]}, worker_labels)
    assert selects(codec["NetworkPolicy"]["spec"]["podSelector"], codec_labels)
    assert not selects(codec["NetworkPolicy"]["spec"]["podSelector"], worker_labels)
    assert not selects({"matchLabels": worker["Service"]["spec"]["selector"]}, codec_labels)
    assert not selects(worker["NetworkPolicy"]["spec"]["podSelector"], codec_labels)
    if "PodDisruptionBudget" in worker:
        assert not selects(worker["PodDisruptionBudget"]["spec"]["selector"], codec_labels)
    assert codec["Service"]["spec"]["ports"] == [{"name": "codec", "port": 8888, "targetPort": "codec",
                                                  "protocol": "TCP"}]


@pytest.mark.parametrize("value_set", CODEC_SETS, ids=CODEC_IDS)
def test_environment_loads_and_holds_only_the_codec_secrets(value_set: ValueSet, tmp_path: Path) -> None:
    objects = render_set(value_set)
    env, secret_names, vault_names = codec_environment(objects, tmp_path)
    settings = config.load_codec_server_settings(env)
    assert settings.cors_origins == tuple(value_set.values["codecServer"]["corsOrigins"])
    assert settings.token is not None and settings.tls_cert is None
    delivered = secret_names | vault_names
    assert delivered == CODEC_SECRETS, delivered
    assert not (delivered & (WORKER_SECRETS - CODEC_SECRETS))
    if value_set.vault:
        assert (secret_names, vault_names) == (set(), CODEC_SECRETS)
        assert settings.token.get_secret_value() == f"vault-codec-token-{TRICKY}"
        assert settings.payload_keys.get_secret_value() == vault_placeholder("payload_keys")
    else:
        assert (secret_names, vault_names) == (CODEC_SECRETS, set())
        assert settings.payload_keys.get_secret_value() == secret_placeholder("PAYLOAD_KEYS")
    # No other worker setting reaches it: no database, no pepper, no ConfigMap.
    assert not any(name.startswith(("DB_", "DATABASE_", "ALGA_", "EMAIL_", "RESEND_")) for name in env)
    assert "envFrom" not in container(codec_objects(objects)["Deployment"])


def test_vault_token_defaults_to_the_workers_own_vault_path(tmp_path: Path) -> None:
    hosted = _hosted()
    value_set = ValueSet("hosted-codec-default", deep_merge(hosted.values, {"codecServer": {"enabled": True}}),
                         hosted.namespace, hosted.release, True)
    objects = render_set(value_set)
    annotations = codec_objects(objects)["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["vault.hashicorp.com/agent-inject-secret-codec-server-token"] == \
        "secret/data/alga-psa/temporal-worker"
    env, _, vault_names = codec_environment(objects, tmp_path)
    assert vault_names == CODEC_SECRETS
    assert config.load_codec_server_settings(env).token is not None


def test_vault_files_are_reduced_to_the_keys_and_the_token() -> None:
    deployment = codec_objects(render_set(hosted_with_codec()))["Deployment"]
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    templates = {k: v for k, v in annotations.items() if k.startswith("vault.hashicorp.com/agent-inject-template-")}
    assert set(templates) == {"vault.hashicorp.com/agent-inject-template-temporal-worker",
                              "vault.hashicorp.com/agent-inject-template-codec-server-token"}
    assert "export PAYLOAD_KEYS=" in templates["vault.hashicorp.com/agent-inject-template-temporal-worker"]
    joined = "\n".join(templates.values())
    assert joined.count("export ") == 2
    assert annotations["vault.hashicorp.com/agent-inject-secret-codec-server-token"] == TOKEN_VAULT_PATH
    assert annotations["vault.hashicorp.com/role"] == "temporal-worker-py"


@pytest.mark.parametrize("value_set", CODEC_SETS, ids=CODEC_IDS)
def test_network_policy_admits_only_the_web_ui_to_the_codec_port(value_set: ValueSet) -> None:
    objects = render_set(value_set)
    policy = codec_objects(objects)["NetworkPolicy"]["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    [rule] = policy["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8888}]
    assert rule["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "temporal"}},
                             "podSelector": {"matchLabels": {"app.kubernetes.io/component": "web"}}}]
    egress_ports = sorted(p["port"] for r in policy["egress"] for p in r["ports"])
    assert egress_ports == ([53, 53, 8200] if value_set.vault else [53, 53])
    custom = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}]
    changed = deep_merge(value_set.values, {"codecServer": {"networkPolicy": {"ingressFrom": custom}}})
    [rule] = codec_objects(render_objects(changed, value_set.namespace, value_set.release))[
        "NetworkPolicy"]["spec"]["ingress"]
    assert rule["from"] == custom
    off = deep_merge(value_set.values, {"networkPolicy": {"enabled": False}})
    assert set(codec_objects(render_objects(off, value_set.namespace, value_set.release))) == {"Deployment",
                                                                                               "Service"}


def test_mtls_mounts_the_tls_secret_and_requires_client_certificates(tmp_path: Path) -> None:
    value_set = default_with_codec(token={"secretName": ""}, tls={"secretName": "codec-server-tls",
                                                                  "clientCA": True})
    objects = render_set(value_set)
    deployment = codec_objects(objects)["Deployment"]
    env = {e["name"]: e.get("value") for e in container(deployment)["env"]}
    assert env["CODEC_SERVER_TLS_CERT"] == "/etc/codec-server-tls/tls.crt"
    assert env["CODEC_SERVER_TLS_KEY"] == "/etc/codec-server-tls/tls.key"
    assert env["CODEC_SERVER_TLS_CLIENT_CA"] == "/etc/codec-server-tls/ca.crt"
    assert "CODEC_SERVER_TOKEN" not in env
    [tls] = [v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "tls"]
    assert tls["secret"]["secretName"] == "codec-server-tls"
    assert {"name": "tls", "mountPath": "/etc/codec-server-tls", "readOnly": True} in container(deployment)[
        "volumeMounts"]
    for obj in codec_objects(objects).values():
        validate_object(obj, KUBE_VERSIONS[-1])


def test_no_authentication_or_half_mtls_does_not_render() -> None:
    with pytest.raises(helm_python.HelmError, match="no authentication"):
        render_objects({"codecServer": {"enabled": True}})
    with pytest.raises(helm_python.HelmError, match="no authentication"):  # Vault on: a Secret token is not used
        render_objects({"vault": {"enabled": True}, "codecServer": {
            "enabled": True, "token": {"secretName": "codec", "vaultPath": ""}}})
    with pytest.raises(helm_python.HelmError, match="clientCA"):
        render_objects({"codecServer": {"enabled": True, "tls": {"clientCA": True},
                                        "token": {"secretName": "codec"}}})
    with pytest.raises(helm_python.HelmError, match="PAYLOAD_KEYS"):
        render_objects({"secrets": {"PAYLOAD_KEYS": {"secretName": ""}},
                        "codecServer": {"enabled": True, "token": {"secretName": "codec"}}})
    with pytest.raises(helm_python.HelmError, match="corsOrigins"):
        render_objects({"codecServer": {"enabled": True, "token": {"secretName": "codec"},
                                        "corsOrigins": ["temporal.example.com/path"]}})


# ---------------------------------------------------------------- checkov


def test_checkov_finds_nothing_in_the_codec_server_objects() -> None:
    """The codec server's rendered objects (Vault and Secrets, TLS on and off) pass checkov, with the
    chart's one skips file."""
    sets = [*CODEC_SETS, default_with_codec(tls={"secretName": "codec-server-tls", "clientCA": True})]
    with tempfile.TemporaryDirectory(prefix="checkov-codec-") as tmp:
        root = Path(tmp)
        for i, value_set in enumerate(sets):
            docs = render(value_set.values, value_set.namespace, value_set.release)
            text = "\n---\n".join(t for p, t in sorted(docs.items()) if p.endswith("codec-server.yaml"))
            (root / f"codec-{i}.yaml").write_text(text, encoding="utf-8")
        cmd = [str(checkov_bin()), "--directory", str(root), "--framework", "kubernetes", "--output", "json",
               "--quiet", "--compact", "--skip-download"]
        skips = ",".join(sorted(checkov_skips()))
        if skips:
            cmd += ["--skip-check", skips]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, check=False,
                              env={**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": ""})
    assert proc.returncode in (0, 1), proc.stderr[-4000:]
    parsed = json.loads(proc.stdout)
    [report] = parsed if isinstance(parsed, list) else [parsed]
    assert report["summary"]["parsing_errors"] == 0
    assert report["summary"]["resource_count"] >= 3 * len(sets)
    failed = report["results"]["failed_checks"]
    assert not failed, "\n".join(f"{f['check_id']} {f['check_name']} {f['resource']}" for f in failed)

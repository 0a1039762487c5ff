"""Shared helpers for the chart, image and Vault tests: render the chart, rebuild the worker's
environment from the rendered objects, and run checkov once per test session.

Why a module and not a conftest: other suites share tests/deploy; these helpers are imported
explicitly so nothing here changes how their tests are collected.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
HELM_DIR = REPO_ROOT / "deploy" / "helm"
CHART_DIR = HELM_DIR / "temporal-worker"
DOCKERFILE = REPO_ROOT / "deploy" / "docker" / "Dockerfile"
CHECKOV_SKIPS = REPO_ROOT / "deploy" / "checkov-skips.yaml"
KUBE_MIN_VERSION = "1.29.0"

# Values a test puts into secrets, chosen to break naive quoting: quotes, $, backslash, #, spaces.
TRICKY = 'it\'s a "pepper" $HOME \\ #not-a-comment  x'


def load_yaml(path: Path) -> dict[str, Any]:
    """A values file as a dict (empty file -> {})."""
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Merge like Helm does for -f files: maps merge recursively, everything else replaces."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@dataclass(frozen=True)
class ValueSet:
    """One way the chart is installed: values on top of the chart defaults, release and namespace."""

    name: str
    values: dict[str, Any]
    namespace: str
    release: str
    vault: bool


# The recommended release name (docs/cutover.md): every resource is then `temporal-worker-py`.
RELEASE = "temporal-worker-py"


def environment_values_files() -> list[Path]:
    """Every per-environment values file shipped next to the chart (deploy/helm/values-*.yaml)."""
    return sorted(HELM_DIR.glob("values-*.yaml"))


def value_sets() -> list[ValueSet]:
    """The shipped configurations: chart defaults and every deploy/helm/values-*.yaml (dev, staging,
    hosted, ...), each with Vault on and off. A new values file is covered without editing this list."""
    vault_on = {"vault": {"enabled": True}}
    vault_off = {"vault": {"enabled": False}}
    sets = [
        ValueSet("default", {}, "alga", RELEASE, False),
        ValueSet("default-vault", vault_on, "alga", RELEASE, True),
    ]
    for path in environment_values_files():
        name = path.stem.removeprefix("values-")
        values = load_yaml(path)
        namespace = str(values.get("requiredNamespace") or f"alga-{name}")
        vault = bool(values.get("vault", {}).get("enabled", False))
        other, other_values = ("no-vault", vault_off) if vault else ("vault", vault_on)
        sets.append(ValueSet(name, values, namespace, RELEASE, vault))
        sets.append(ValueSet(f"{name}-{other}", deep_merge(values, other_values), namespace, RELEASE, not vault))
    return sets


# Hosted values with two earlier builds draining (versioning.draining) and room in the budget for them:
# checkov and the draining tests check the extra Deployments too.
DRAINING_IDS = ("1111111111111111111111111111111111111111", "3333333333333333333333333333333333333333")


def draining_value_set() -> ValueSet:
    """The hosted configuration while two earlier builds drain."""
    hosted = next(v for v in value_sets() if v.name == "hosted")
    extra = {
        "image": {"tag": "2222222222222222222222222222222222222222"},
        "versioning": {"draining": list(DRAINING_IDS)},
    }
    return ValueSet("hosted-draining", deep_merge(hosted.values, extra), hosted.namespace, hosted.release, hosted.vault)


def selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Whether a Kubernetes label selector (matchLabels, matchExpressions In/NotIn/Exists) selects labels."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": labels.get(key) not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


@functools.cache
def chart() -> helm_python.Chart:
    """The chart, loaded once per session (render calls are cheap, loading is not free)."""
    return helm_python.Chart.load(CHART_DIR)


def render(
    values: Mapping[str, Any], namespace: str = "alga", release: str = "temporal-worker"
) -> dict[str, str]:
    """Rendered templates by file name, exactly as `helm template` would produce them."""
    return chart().render(dict(values), name=release, namespace=namespace, is_install=True)


def render_objects(
    values: Mapping[str, Any], namespace: str = "alga", release: str = "temporal-worker"
) -> list[dict[str, Any]]:
    """Rendered Kubernetes objects (NOTES.txt and empty documents dropped)."""
    objects: list[dict[str, Any]] = []
    for path, text in sorted(render(values, namespace, release).items()):
        if path.endswith("NOTES.txt"):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects


def render_set(value_set: ValueSet) -> list[dict[str, Any]]:
    """Objects for one shipped configuration."""
    return render_objects(value_set.values, value_set.namespace, value_set.release)


def is_dashboard(obj: Mapping[str, Any]) -> bool:
    """The Grafana dashboard ConfigMap (monitoring.dashboard), which is not the worker's configuration."""
    return obj.get("kind") == "ConfigMap" and str(obj["metadata"]["name"]).endswith("-dashboard")


def only(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """The single object of a kind (the dashboard ConfigMap aside); fails if there are none or several."""
    found = [o for o in objects if o.get("kind") == kind and not is_dashboard(o)]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def kinds(objects: list[dict[str, Any]]) -> set[str]:
    """Kinds present in a render."""
    return {str(o["kind"]) for o in objects}


def worker_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The worker container of the Deployment."""
    containers = only(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["worker"]
    return dict(containers[0])


# ---------------------------------------------------------------- Vault agent templates


def vault_templates(objects: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    """Vault agent files from the pod annotations: file name -> (Vault path, template text)."""
    annotations = only(objects, "Deployment")["spec"]["template"]["metadata"].get("annotations", {})
    secret_prefix = "vault.hashicorp.com/agent-inject-secret-"
    template_prefix = "vault.hashicorp.com/agent-inject-template-"
    files: dict[str, tuple[str, str]] = {}
    for key, path in annotations.items():
        if key.startswith(secret_prefix):
            name = key[len(secret_prefix) :]
            files[name] = (str(path), str(annotations[template_prefix + name]))
    return files


def render_vault_templates(
    templates: Mapping[str, tuple[str, str]], kv: Mapping[str, Mapping[str, str]]
) -> dict[str, str]:
    """Render Vault agent (consul-template) templates as the agent would, with `kv` as Vault's data.

    Why through Helm: consul-template and Helm share Go's text/template engine, so whitespace
    trimming, string literals and pipelines behave exactly as in the agent. Only the two
    consul-template functions the chart uses are mapped: `secret "path"` becomes a lookup in
    `.Values.kv` returning {"Data": {"data": ...}} (KV v2 shape), and `replaceAll` becomes Sprig's
    `replace`, which has the same argument order (old, new, string).
    """
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "vaultsim"
        (root / "templates").mkdir(parents=True)
        (root / "Chart.yaml").write_text("apiVersion: v2\nname: vaultsim\nversion: 0.0.1\n")
        for name, (path, text) in templates.items():
            assert f'secret "{path}"' in text, f"template {name} does not read its own path {path}"
            go = text.replace(f'secret "{path}"', f'(index .Values.kv "{path}")')
            go = go.replace("replaceAll", "replace")
            (root / "templates" / f"{name}.txt").write_text(go, encoding="utf-8")
        values = {"kv": {path: {"Data": {"data": dict(data)}} for path, data in kv.items()}}
        rendered = helm_python.Chart.load(root).render(values, name="sim", namespace="sim")
    return {Path(key).stem: text for key, text in rendered.items()}


# ---------------------------------------------------------------- the worker's environment


@dataclass
class WorkerEnvironment:
    """What the worker process would see: env (ConfigMap + env entries) and Vault secret files."""

    env: dict[str, str]
    configmap_names: set[str]
    env_names: list[str]
    vault_names: set[str]
    vault_files: dict[str, str]

    @property
    def all_names(self) -> set[str]:
        """Every variable the chart delivers, by any route."""
        return self.configmap_names | set(self.env_names) | self.vault_names


# PAYLOAD_KEYS must parse (`<keyId>:<base64 of 32 bytes>`), so its stand-ins are well-formed keys.
PAYLOAD_KEYS_PLACEHOLDER = {"k8s": "k8s-test:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
                            "vault": "vault-test:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="}


def secret_placeholder(name: str) -> str:
    """A stand-in for a Kubernetes Secret value; URL-shaped for DATABASE_URL so it validates."""
    if name == "DATABASE_URL":
        return "postgresql://worker:pw@db.example:5432/server"
    if name == "PAYLOAD_KEYS":
        return PAYLOAD_KEYS_PLACEHOLDER["k8s"]
    return f"k8s-secret-{name.lower()}-{TRICKY}"


def vault_placeholder(key: str) -> str:
    """A stand-in for a value stored in Vault under `key`."""
    if key == "payload_keys":
        return PAYLOAD_KEYS_PLACEHOLDER["vault"]
    return f"vault-{key}-{TRICKY}"


def worker_environment(
    objects: list[dict[str, Any]], vault_value: Callable[[str], str] = vault_placeholder
) -> WorkerEnvironment:
    """Rebuild the worker's environment from a render, resolving Secret refs and Vault templates."""
    container = worker_container(objects)
    configmaps = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ConfigMap"}
    secrets = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Secret"}
    env: dict[str, str] = {}
    configmap_names: set[str] = set()
    for source in container.get("envFrom", []):
        ref = source["configMapRef"]["name"]
        data = configmaps[ref].get("data") or {}
        configmap_names |= set(data)
        env.update({k: str(v) for k, v in data.items()})
    env_names: list[str] = []
    for entry in container.get("env", []):
        name = entry["name"]
        env_names.append(name)
        if "value" in entry:
            env[name] = str(entry["value"])
            continue
        ref = entry["valueFrom"]["secretKeyRef"]
        chart_secret = secrets.get(ref["name"])
        if chart_secret is not None:
            env[name] = str(chart_secret["stringData"][ref["key"]])
        else:
            env[name] = secret_placeholder(name)
    templates = vault_templates(objects)
    kv: dict[str, dict[str, str]] = {}
    for _, (path, text) in templates.items():
        keys = [part.split('"')[1] for part in text.split("index .Data.data ")[1:]]
        kv[path] = {key: vault_value(key) for key in keys}
    files = render_vault_templates(templates, kv) if templates else {}
    vault_names = set()
    for text in files.values():
        for line in text.splitlines():
            if line.startswith("export "):
                vault_names.add(line.split()[1].split("=", 1)[0])
    return WorkerEnvironment(env, configmap_names, env_names, vault_names, files)


# ---------------------------------------------------------------- tools


def tool_next_to_python(name: str) -> Path:
    """An executable installed in the test interpreter's environment (hadolint, shellcheck)."""
    path = Path(sys.executable).parent / name
    assert path.exists(), f"{name} not found next to {sys.executable}: pip install the pinned tool"
    return path


def checkov_bin() -> Path:
    """checkov lives in its own venv (it pins packaging<24, which pytest cannot share)."""
    configured = os.environ.get("ALGA_CHECKOV_BIN")
    path = Path(configured) if configured else REPO_ROOT / ".venv-checkov" / "bin" / "checkov"
    assert path.exists(), (
        f"checkov not found at {path}. Create it with: python3.11 -m venv .venv-checkov && "
        ".venv-checkov/bin/pip install checkov==3.3.30 (or set ALGA_CHECKOV_BIN)"
    )
    return path


def checkov_skips() -> dict[str, str]:
    """Skipped checkov check ids -> reason, from the single skips file."""
    data = load_yaml(CHECKOV_SKIPS)
    return {str(item["id"]): str(item["reason"]).strip() for item in data.get("skips", [])}


@functools.cache
def checkov_report() -> tuple[dict[str, Any], ...]:
    """Run checkov once per session on every rendered configuration plus the Dockerfile.

    One process for both frameworks: checkov's start-up dominates its run time.
    """
    with tempfile.TemporaryDirectory(prefix="checkov-") as tmp:
        root = Path(tmp)
        for value_set in [*value_sets(), draining_value_set()]:
            docs = render(value_set.values, value_set.namespace, value_set.release)
            text = "\n---\n".join(t for p, t in sorted(docs.items()) if not p.endswith("NOTES.txt"))
            (root / f"{value_set.name}.yaml").write_text(text, encoding="utf-8")
        (root / "docker").mkdir()
        shutil.copy(DOCKERFILE, root / "docker" / "Dockerfile")
        skips = ",".join(sorted(checkov_skips()))
        cmd = [
            str(checkov_bin()),
            "--directory",
            str(root),
            "--framework",
            "kubernetes",
            "dockerfile",
            "--output",
            "json",
            "--quiet",
            "--compact",
            "--skip-download",
        ]
        if skips:
            cmd += ["--skip-check", skips]
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
            env={**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": ""},
        )
    assert proc.returncode in (0, 1), f"checkov crashed (rc {proc.returncode}):\n{proc.stderr[-4000:]}"
    parsed = json.loads(proc.stdout)
    reports = parsed if isinstance(parsed, list) else [parsed]
    return tuple(reports)


# ---------------------------------------------------------------- KEDA custom resources


KEDA_API_VERSION = "keda.sh/v1alpha1"


def validate_keda_object(obj: Mapping[str, Any]) -> None:
    """Validate a KEDA ScaledObject or TriggerAuthentication against the CRD's model (cloudcoil's
    models are generated from KEDA's CRDs), strictly: a field the CRD does not define is refused.

    Why the round trip: the generated pydantic models ignore unknown fields, as the API server's
    pruning would silently drop them. Dumping what was validated (only the fields given) and
    comparing with the input turns every dropped or coerced field into a failure.
    """
    from cloudcoil.models.keda import v1alpha1

    models = {"ScaledObject": v1alpha1.ScaledObject, "TriggerAuthentication": v1alpha1.TriggerAuthentication}
    assert obj.get("apiVersion") == KEDA_API_VERSION, f"apiVersion {obj.get('apiVersion')}, not {KEDA_API_VERSION}"
    model = models.get(str(obj.get("kind")))
    assert model is not None, f"no KEDA model for kind {obj.get('kind')}"
    validated = model.model_validate(dict(obj))
    dumped = validated.model_dump(by_alias=True, exclude_unset=True, mode="json")
    assert dumped == json.loads(json.dumps(obj)), (
        f"{obj['kind']} has fields or values its CRD does not define:\n{_diff(obj, dumped)}"
    )


def _diff(given: Mapping[str, Any], kept: Mapping[str, Any], path: str = "") -> str:
    """Paths present in `given` but dropped or changed in `kept`."""
    lines: list[str] = []
    for key, value in given.items():
        here = f"{path}.{key}"
        if key not in kept:
            lines.append(f"unknown field {here}")
        elif isinstance(value, Mapping) and isinstance(kept[key], Mapping):
            lines.append(_diff(value, kept[key], here))
        elif isinstance(value, list) and isinstance(kept[key], list) and len(value) == len(kept[key]):
            for i, (a, b) in enumerate(zip(value, kept[key], strict=True)):
                if isinstance(a, Mapping) and isinstance(b, Mapping):
                    lines.append(_diff(a, b, f"{here}[{i}]"))
                elif a != b:
                    lines.append(f"{here}[{i}]: {a!r} -> {b!r}")
        elif value != kept[key]:
            lines.append(f"{here}: {value!r} -> {kept[key]!r}")
    return "\n".join(line for line in lines if line)


def validate_object(obj: Mapping[str, Any], kube_version: str) -> None:
    """kubernetes-validate --strict for built-in kinds; the KEDA CRD models for keda.sh objects and the
    Prometheus Operator CRD models for monitoring.coreos.com objects."""
    import kubernetes_validate

    if str(obj.get("apiVersion", "")).startswith("keda.sh/"):
        validate_keda_object(obj)
        return
    if str(obj.get("apiVersion", "")).startswith("monitoring.coreos.com/"):
        from monitoring_support import validate_prometheus_operator_object

        validate_prometheus_operator_object(obj)
        return
    kubernetes_validate.validate(dict(obj), kube_version, strict=True)

"""The chart beside the original worker, on every values file the pipeline uses: names that never
collide, the pepper hosted needs, autoscaling on work (KEDA) or CPU (HPA) but never both, and a
database connection budget the chart refuses to exceed.

Why: issue 10. The chart's names equalled the original TypeScript worker's (release alga-psa); the
pipeline's default values were the main Alga chart's, which this chart's schema rejects; hosted
values peppered with ALGA_AUTH_KEY while the web app verifies with NEXTAUTH_SECRET; the HPA scaled on
memory, which a Python worker does not give back; and nothing bounded replicas x pool size.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate
import pytest
import yaml
from helm_support import (
    CHART_DIR,
    HELM_DIR,
    KUBE_MIN_VERSION,
    REPO_ROOT,
    deep_merge,
    environment_values_files,
    is_dashboard,
    kinds,
    load_yaml,
    only,
    render_objects,
    validate_keda_object,
    validate_object,
    worker_container,
    worker_environment,
)
from kubernetes_validate.utils import latest_version

ARGO_TEMPLATES = sorted((REPO_ROOT / "deploy" / "argo" / "templates").glob("*.yaml"))
CHART_VALUES = load_yaml(CHART_DIR / "values.yaml")

# The original worker (reference section 8.3): release alga-psa, subchart temporal-worker.
ORIGINAL_RELEASE = "alga-psa"
ORIGINAL_NAMES = {
    "alga-psa-temporal-worker",
    "alga-psa-temporal-worker-secrets",
    "alga-psa-temporal-worker-config",
    "temporal-worker",
}
ORIGINAL_SELECTOR = {"app.kubernetes.io/name": "temporal-worker", "app.kubernetes.io/instance": "alga-psa"}
ORIGINAL_VAULT_ROLE = "temporal-worker"
NAMED_KINDS = {
    "Deployment", "Service", "ServiceAccount", "ConfigMap", "Secret", "HorizontalPodAutoscaler",
    "PodDisruptionBudget", "NetworkPolicy", "ScaledObject", "TriggerAuthentication",
}


# ---------------------------------------------------------------- values files the pipeline uses


def _argo_parameters(node: Any) -> list[dict[str, Any]]:
    """Every {name, value|default|enum} parameter anywhere in an Argo document."""
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        if isinstance(node.get("name"), str) and any(k in node for k in ("value", "default", "enum")):
            found.append(node)
        for value in node.values():
            found.extend(_argo_parameters(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_argo_parameters(item))
    return found


def argo_values_paths() -> dict[str, set[Path]]:
    """Values files the Argo templates name, by template: literal deploy/helm/values-*.yaml paths,
    non-empty helm-values-file defaults, and values-<environment>.yaml for every environment value."""
    named: dict[str, set[Path]] = {}
    for template in ARGO_TEMPLATES:
        text = template.read_text(encoding="utf-8")
        paths = {REPO_ROOT / m for m in re.findall(r"deploy/helm/values-[a-z0-9-]+\.yaml", text)}
        for doc in yaml.safe_load_all(text):
            for param in _argo_parameters(doc):
                literals = [param.get("value"), param.get("default"), *(param.get("enum") or [])]
                literals = [str(v) for v in literals if v not in (None, "") and "{{" not in str(v)]
                if param["name"] == "helm-values-file":
                    paths |= {REPO_ROOT / v for v in literals}
                elif param["name"] == "environment":
                    paths |= {HELM_DIR / f"values-{v}.yaml" for v in literals}
        named[template.name] = paths
    return named


def install_for(path: Path) -> tuple[dict[str, Any], str]:
    """Values and namespace for a values file (its requiredNamespace, if any)."""
    values = load_yaml(path)
    return values, str(values.get("requiredNamespace") or "alga-test")


def test_argo_templates_name_only_values_files_of_this_chart() -> None:
    """Every values path the pipeline would use by default is a values file of this chart, next to it
    (never the main Alga chart's values, which this chart's strict schema rejects)."""
    named = argo_values_paths()
    assert any(named.values()), "the Argo templates name no environment or values file"
    shipped = set(environment_values_files())
    for template, paths in named.items():
        for path in paths:
            assert path.is_file(), f"{template} names {path.relative_to(REPO_ROOT)}, which does not exist"
            assert path in shipped, f"{template} names {path}, which is not a deploy/helm/values-*.yaml"
    assert {HELM_DIR / "values-hosted.yaml", HELM_DIR / "values-staging.yaml"} <= shipped


@pytest.mark.parametrize("path", environment_values_files(), ids=lambda p: p.name)
def test_every_values_file_renders_and_validates_strictly(path: Path) -> None:
    """Each values file (and so each one the pipeline names) passes the chart's schema and renders
    objects valid under kubernetes-validate --strict (KEDA objects under their CRD models)."""
    values, namespace = install_for(path)
    objects = render_objects(values, namespace=namespace, release="temporal-worker-py")
    assert "Deployment" in kinds(objects)
    for kube_version in (KUBE_MIN_VERSION, latest_version()):
        for obj in objects:
            try:
                validate_object(obj, kube_version)
            except kubernetes_validate.ValidationError as err:
                pytest.fail(f"{path.name}: {obj['kind']} ({kube_version}): {err.message} at {err.path}")


def test_main_alga_chart_values_are_refused() -> None:
    """The defect: values in the main chart's layout (temporalWorker: ...) fail this chart's schema."""
    main_chart_style = {"temporalWorker": {"enabled": True, "image": {"tag": "latest"}}}
    with pytest.raises(helm_python.HelmError, match="temporalWorker"):
        render_objects(main_chart_style)


def test_staging_never_polls_hosted_work() -> None:
    """Staging and hosted differ in (Temporal namespace, task queue) and in Kubernetes namespace and
    Vault role: a staging worker on hosted's queue would take production tasks."""
    staging = deep_merge(CHART_VALUES, load_yaml(HELM_DIR / "values-staging.yaml"))
    hosted = deep_merge(CHART_VALUES, load_yaml(HELM_DIR / "values-hosted.yaml"))

    def queue(values: dict[str, Any]) -> tuple[str, str, str]:
        cfg = values["config"]
        return (cfg["TEMPORAL_ADDRESS"], cfg["TEMPORAL_NAMESPACE"], cfg["TEMPORAL_TASK_QUEUE"])

    assert queue(staging) != queue(hosted)
    assert staging["requiredNamespace"] != hosted["requiredNamespace"]
    assert staging["vault"]["role"] != hosted["vault"]["role"]
    assert {f["path"] for f in staging["vault"]["files"]}.isdisjoint(f["path"] for f in hosted["vault"]["files"])


# ---------------------------------------------------------------- names beside the original worker


@pytest.mark.parametrize("release", [ORIGINAL_RELEASE, "temporal-worker-py"])
@pytest.mark.parametrize("values_name", ["defaults", "values-hosted.yaml", "values-staging.yaml"])
def test_names_never_collide_with_the_original_worker(release: str, values_name: str) -> None:
    """Even installed as release alga-psa, no object is named like one of the original's, and the
    selector never matches the original's pods (nor ours theirs)."""
    values: dict[str, Any] = {} if values_name == "defaults" else load_yaml(HELM_DIR / values_name)
    namespace = str(values.get("requiredNamespace") or "msp")
    objects = render_objects(values, namespace=namespace, release=release)
    names = {o["metadata"]["name"] for o in objects if o["kind"] in NAMED_KINDS}
    assert names, "nothing rendered"
    assert names.isdisjoint(ORIGINAL_NAMES), names & ORIGINAL_NAMES
    selector = only(objects, "Deployment")["spec"]["selector"]["matchLabels"]
    assert selector["app.kubernetes.io/name"] == "temporal-worker-py"
    assert selector != ORIGINAL_SELECTOR
    # Neither selector matches the other's pods: both select on app.kubernetes.io/name.
    original_pod_labels = {**ORIGINAL_SELECTOR, "app.kubernetes.io/component": "worker"}
    assert not all(original_pod_labels.get(k) == v for k, v in selector.items())
    pod_labels = only(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert not all(pod_labels.get(k) == v for k, v in ORIGINAL_SELECTOR.items())
    if values.get("vault", CHART_VALUES["vault"]).get("enabled"):
        annotations = only(objects, "Deployment")["spec"]["template"]["metadata"]["annotations"]
        assert annotations["vault.hashicorp.com/role"] != ORIGINAL_VAULT_ROLE


def test_recommended_release_names_every_resource_temporal_worker_py() -> None:
    """Release temporal-worker-py: every object and the service account are `temporal-worker-py` (the
    Grafana dashboard ConfigMap beside the worker's is `temporal-worker-py-dashboard`)."""
    objects = render_objects(load_yaml(HELM_DIR / "values-hosted.yaml"), namespace="msp",
                             release="temporal-worker-py")
    assert {o["metadata"]["name"] for o in objects if not is_dashboard(o)} == {"temporal-worker-py"}
    assert {o["metadata"]["name"] for o in objects if is_dashboard(o)} == {"temporal-worker-py-dashboard"}
    spec = only(objects, "Deployment")["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == "temporal-worker-py"
    assert CHART_VALUES["vault"]["role"] == "temporal-worker-py"


# ---------------------------------------------------------------- the pepper


@pytest.mark.parametrize("values_name", ["values-hosted.yaml", "values-staging.yaml"])
@pytest.mark.parametrize("vault", [True, False], ids=["vault", "k8s-secrets"])
def test_hosted_and_staging_pepper_with_nextauth_secret(values_name: str, vault: bool) -> None:
    """The worker gets NEXTAUTH_SECRET (from Vault or a Secret), PASSWORD_PEPPER_VARIABLE names it,
    and ALGA_AUTH_KEY is not delivered at all (it would not be read)."""
    values = deep_merge(load_yaml(HELM_DIR / values_name), {"vault": {"enabled": vault}})
    objects = render_objects(values, namespace=str(values["requiredNamespace"]), release="temporal-worker-py")
    configmap = only(objects, "ConfigMap")["data"]
    assert configmap["PASSWORD_PEPPER_VARIABLE"] == "NEXTAUTH_SECRET"
    env = worker_environment(objects)
    assert "NEXTAUTH_SECRET" in env.all_names
    assert "ALGA_AUTH_KEY" not in env.all_names
    if vault:
        assert "NEXTAUTH_SECRET" in env.vault_names and "NEXTAUTH_SECRET" not in env.env_names
    else:
        [entry] = [e for e in worker_container(objects)["env"] if e["name"] == "NEXTAUTH_SECRET"]
        assert entry["valueFrom"]["secretKeyRef"]["key"] == "nextauth_secret"


# ---------------------------------------------------------------- autoscaling


def scaling_objects(objects: list[dict[str, Any]]) -> set[str]:
    return kinds(objects) & {"HorizontalPodAutoscaler", "ScaledObject", "TriggerAuthentication"}


def test_modes_render_exactly_one_owner_of_the_replica_count() -> None:
    """keda: a ScaledObject and no HPA; hpa: an HPA and no ScaledObject; none: Deployment replicas."""
    keda = render_objects({"autoscaling": {"mode": "keda"}})
    hpa = render_objects({"autoscaling": {"mode": "hpa"}})
    none = render_objects({"autoscaling": {"mode": "none"}, "replicaCount": 3})
    assert scaling_objects(keda) == {"ScaledObject"}
    assert scaling_objects(hpa) == {"HorizontalPodAutoscaler"}
    assert scaling_objects(none) == set()
    assert "replicas" not in only(keda, "Deployment")["spec"]
    assert "replicas" not in only(hpa, "Deployment")["spec"]
    assert only(none, "Deployment")["spec"]["replicas"] == 3
    with pytest.raises(helm_python.HelmError, match="mode"):
        render_objects({"autoscaling": {"mode": "both"}})
    with pytest.raises(helm_python.HelmError, match="enabled"):
        render_objects({"autoscaling": {"enabled": True}})  # the old switch is refused, not ignored


def test_hpa_scales_on_cpu_only() -> None:
    """A Python worker's memory does not track its load: the HPA has one metric, CPU."""
    hpa = only(render_objects({"autoscaling": {"mode": "hpa", "targetCPUUtilizationPercentage": 60}}),
               "HorizontalPodAutoscaler")["spec"]
    assert hpa["metrics"] == [
        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}}
    ]
    with pytest.raises(helm_python.HelmError, match="targetMemoryUtilizationPercentage"):
        render_objects({"autoscaling": {"targetMemoryUtilizationPercentage": 80}})


def test_scaled_object_scales_on_the_task_queue_backlog() -> None:
    """The Temporal scaler on this worker's own queue, namespace and frontend; the chart's min/max
    and HPA behaviour; valid under KEDA's CRD model."""
    objects = render_objects(load_yaml(HELM_DIR / "values-hosted.yaml"), namespace="msp",
                             release="temporal-worker-py")
    scaled = only(objects, "ScaledObject")
    validate_keda_object(scaled)
    spec = scaled["spec"]
    deployment = only(objects, "Deployment")
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                      "name": deployment["metadata"]["name"]}
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (3, 18)
    [trigger] = spec["triggers"]
    configmap = only(objects, "ConfigMap")["data"]
    assert trigger["type"] == "temporal"
    assert trigger["metadata"] == {
        "endpoint": configmap["TEMPORAL_ADDRESS"],
        "namespace": configmap["TEMPORAL_NAMESPACE"],
        "taskQueue": configmap["TEMPORAL_TASK_QUEUE"],
        "targetQueueSize": "5",
        "activationTargetQueueSize": "0",
        "queueTypes": "workflow,activity",
    }
    assert "authenticationRef" not in trigger
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior == CHART_VALUES["autoscaling"]["behavior"]


def test_scaled_object_overrides_and_trigger_authentication() -> None:
    """Explicit endpoint/namespace/queue win over config; credentials come from a Secret through a
    TriggerAuthentication (both valid under the CRD models); half-configured auth is refused."""
    values = {
        "autoscaling": {
            "mode": "keda",
            "keda": {
                "endpoint": "my-ns.a1b2c.tmprl.cloud:7233",
                "namespace": "my-ns.a1b2c",
                "taskQueue": "tenant-workflows-v2",
                "extraMetadata": {"tlsServerName": "my-ns.a1b2c.tmprl.cloud", "unsafeSsl": False},
                "authentication": {"secretName": "temporal-cloud", "apiKey": "api-key"},
            },
        }
    }
    objects = render_objects(values)
    scaled, auth = only(objects, "ScaledObject"), only(objects, "TriggerAuthentication")
    validate_keda_object(scaled)
    validate_keda_object(auth)
    [trigger] = scaled["spec"]["triggers"]
    assert trigger["metadata"]["endpoint"] == "my-ns.a1b2c.tmprl.cloud:7233"
    assert trigger["metadata"]["namespace"] == "my-ns.a1b2c"
    assert trigger["metadata"]["taskQueue"] == "tenant-workflows-v2"
    assert trigger["metadata"]["unsafeSsl"] == "false"
    assert trigger["authenticationRef"] == {"name": auth["metadata"]["name"]}
    assert auth["spec"] == {"secretTargetRef": [{"parameter": "apiKey", "name": "temporal-cloud", "key": "api-key"}]}
    mtls = {"secretName": "temporal-mtls", "ca": "ca.crt", "cert": "tls.crt", "key": "tls.key"}
    mtls_auth = only(render_objects({"autoscaling": {"mode": "keda", "keda": {"authentication": mtls}}}),
                     "TriggerAuthentication")
    validate_keda_object(mtls_auth)
    assert {r["parameter"] for r in mtls_auth["spec"]["secretTargetRef"]} == {"ca", "cert", "key"}
    with pytest.raises(helm_python.HelmError, match="names no key"):
        render_objects({"autoscaling": {"mode": "keda", "keda": {"authentication": {"secretName": "x"}}}})
    with pytest.raises(helm_python.HelmError, match="secretName is empty"):
        render_objects({"autoscaling": {"mode": "keda", "keda": {"authentication": {"apiKey": "k"}}}})
    with pytest.raises(helm_python.HelmError, match="taskQueue"):
        render_objects({"autoscaling": {"mode": "keda", "keda": {"extraMetadata": {"taskQueue": "x"}}}})


def test_keda_model_validation_is_strict() -> None:
    """The CRD check refuses what KEDA would not accept: an unknown field, a number where the trigger
    metadata must be a string, a wrong apiVersion. (So the passes above mean something.)"""
    scaled = only(render_objects({"autoscaling": {"mode": "keda"}}), "ScaledObject")
    validate_keda_object(scaled)
    unknown = deep_merge(scaled, {"spec": {"maxReplicas": 10}})
    with pytest.raises(AssertionError, match=r"unknown field \.spec\.maxReplicas"):
        validate_keda_object(unknown)
    numeric = deep_merge(scaled, {})
    numeric["spec"]["triggers"][0]["metadata"]["targetQueueSize"] = 5
    with pytest.raises(Exception, match="string"):
        validate_keda_object(numeric)
    with pytest.raises(Exception, match=r"not keda\.sh/v1alpha1"):
        validate_keda_object({**scaled, "apiVersion": "keda.sh/v1"})


# ---------------------------------------------------------------- database connection budget


def peak_connections(pods: int, pool_max: int, surge: int = 1) -> int:
    """Pods at the peak of a rollout times (pool + 1 readiness-probe connection)."""
    return (pods + surge) * (pool_max + 1)


MODES = {
    # mode -> (values setting the pod count, the rendered field that carries it)
    "keda": ({"autoscaling": {"mode": "keda", "minReplicas": 1, "maxReplicas": 6}},
             ("ScaledObject", "maxReplicaCount")),
    "hpa": ({"autoscaling": {"mode": "hpa", "minReplicas": 1, "maxReplicas": 6}},
            ("HorizontalPodAutoscaler", "maxReplicas")),
    "none": ({"autoscaling": {"mode": "none"}, "replicaCount": 6}, ("Deployment", "replicas")),
}


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("where", ["inside", "at", "over"])
def test_connection_budget_inside_at_and_over(mode: str, where: str) -> None:
    """6 pods (+1 surge) x (DB_POOL_MAX 4 + 1) = 35: a budget of 36 or 35 renders, 34 is refused with
    a message naming the numbers and the knobs."""
    values, (kind, field) = MODES[mode]
    peak = peak_connections(6, 4)
    assert peak == 35
    budget = {"inside": peak + 1, "at": peak, "over": peak - 1}[where]
    full = deep_merge(values, {"config": {"DB_POOL_MAX": "4"}, "database": {"connectionBudget": budget}})
    if where == "over":
        with pytest.raises(helm_python.HelmError) as err:
            render_objects(full)
        message = str(err.value)
        assert "exceeds database.connectionBudget 34" in message
        assert "= 35" in message and "DB_POOL_MAX 4" in message
        return
    objects = render_objects(full)
    assert only(objects, kind)["spec"][field] == 6


def test_connection_budget_counts_percentage_surge_and_recreate() -> None:
    """maxSurge 25% of 10 pods rounds up to 3 (as Kubernetes does); Recreate adds none."""
    base = {"autoscaling": {"mode": "hpa", "maxReplicas": 10}, "config": {"DB_POOL_MAX": "9"}}
    surge = {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}}}
    peak = (10 + math.ceil(10 * 0.25)) * 10
    assert peak == 130
    render_objects(deep_merge(base, {**surge, "database": {"connectionBudget": 130}}))
    with pytest.raises(helm_python.HelmError, match="13 pods"):
        render_objects(deep_merge(base, {**surge, "database": {"connectionBudget": 129}}))
    recreate = {"strategy": {"type": "Recreate"}, "database": {"connectionBudget": 100}}
    render_objects(deep_merge(base, recreate))


def test_connection_budget_uses_the_worker_default_pool_and_schema_requires_a_budget() -> None:
    """An empty DB_POOL_MAX means the worker's default (10); the budget must be a positive integer."""
    values = {"autoscaling": {"mode": "none"}, "replicaCount": 2, "config": {"DB_POOL_MAX": ""}}
    render_objects(deep_merge(values, {"database": {"connectionBudget": 33}}))  # (2+1) x 11
    with pytest.raises(helm_python.HelmError, match="exceeds"):
        render_objects(deep_merge(values, {"database": {"connectionBudget": 32}}))
    for bad in (0, "lots", None):
        with pytest.raises(helm_python.HelmError, match="connectionBudget"):
            render_objects({"database": {"connectionBudget": bad}})


@pytest.mark.parametrize("path", environment_values_files(), ids=lambda p: p.name)
def test_shipped_values_fit_their_budget(path: Path) -> None:
    """Every values file declares a budget its peak fits (the render would fail otherwise), and the
    peak printed in NOTES matches the arithmetic."""
    from helm_support import render

    values, namespace = install_for(path)
    merged = deep_merge(CHART_VALUES, values)
    mode = merged["autoscaling"]["mode"]
    pods = merged["replicaCount"] if mode == "none" else merged["autoscaling"]["maxReplicas"]
    pool = int(merged["config"]["DB_POOL_MAX"] or 10)
    peak = peak_connections(pods, pool, merged["strategy"]["rollingUpdate"]["maxSurge"])
    assert peak <= merged["database"]["connectionBudget"]
    notes = render(values, namespace, "temporal-worker-py")["temporal-worker/templates/NOTES.txt"]
    assert f"up to {peak} connections at peak" in notes

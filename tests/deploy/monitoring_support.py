"""The monitoring kit as data: the alert rules, their unit tests and the dashboard of deploy/monitoring/,
the metric names they use, and strict validation of the Prometheus Operator objects the chart renders.

Why a module: the chart tests (tests/deploy) and the real-scrape test (tests/integration) read the same
files and must agree on which names are the worker's and which come from elsewhere.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import promql_parser
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
MONITORING_DIR = REPO_ROOT / "deploy" / "monitoring"
ALERTS = MONITORING_DIR / "alerts.yaml"
ALERT_TESTS = MONITORING_DIR / "alerts.test.yaml"
DASHBOARD = MONITORING_DIR / "dashboard.json"
JOB = "alga-temporal-worker"
DATASOURCE_VARIABLE = "${datasource}"

# Metric names the alerts and the dashboard may use although no worker exposes them: each is documented
# by the project named beside it. Anything else must appear in a real scrape of a worker
# (tests/integration/test_metric_names_exposed.py).
EXTERNAL_METRICS: dict[str, str] = {
    # Prometheus: one sample per scrape target, 1 when the scrape succeeded.
    # https://prometheus.io/docs/concepts/jobs_instances/#automatically-generated-labels-and-time-series
    "up": "Prometheus",
    # kube-state-metrics pod metrics.
    # https://github.com/kubernetes/kube-state-metrics/blob/main/docs/metrics/workload/pod-metrics.md
    "kube_pod_container_status_restarts_total": "kube-state-metrics",
    "kube_pod_container_resource_limits": "kube-state-metrics",
    "kube_pod_init_container_status_running": "kube-state-metrics",
    "kube_pod_init_container_status_waiting_reason": "kube-state-metrics",
    "kube_pod_init_container_status_terminated_reason": "kube-state-metrics",
    # cAdvisor container metrics, served by the kubelet at /metrics/cadvisor.
    # https://github.com/google/cadvisor/blob/master/docs/storage/prometheus.md
    "container_cpu_usage_seconds_total": "cAdvisor",
    "container_memory_working_set_bytes": "cAdvisor",
}


# ---------------------------------------------------------------- alert rules


def load_yaml_file(path: Path) -> dict[str, Any]:
    """A YAML file as a dict."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{path} is not a YAML mapping"
    return data


def alert_rules(rule_file: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every alerting rule of a rule file (default: deploy/monitoring/alerts.yaml), in file order."""
    data = rule_file if rule_file is not None else load_yaml_file(ALERTS)
    return [rule for group in data["groups"] for rule in group["rules"] if "alert" in rule]


def alert_exprs(rule_file: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Alert name -> its PromQL expression."""
    return {rule["alert"]: str(rule["expr"]) for rule in alert_rules(rule_file)}


def alert_test_cases() -> Iterator[tuple[str, str, bool]]:
    """(test name, alert name, fires?) for every alert_rule_test of alerts.test.yaml."""
    for test in load_yaml_file(ALERT_TESTS)["tests"]:
        for case in test.get("alert_rule_test") or []:
            yield str(test.get("name", "")), str(case["alertname"]), bool(case.get("exp_alerts"))


# ---------------------------------------------------------------- dashboard


def dashboard() -> dict[str, Any]:
    """deploy/monitoring/dashboard.json."""
    data = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def dashboard_panels(data: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every panel, those nested in collapsed rows included."""
    panels: list[dict[str, Any]] = []
    for panel in (data if data is not None else dashboard()).get("panels", []):
        panels.append(panel)
        panels.extend(panel.get("panels") or [])
    return panels


# Grafana's built-in range variables, which it replaces before a query reaches Prometheus (other
# variables, such as $namespace, only occur inside label matcher strings, where PromQL takes them as is).
GRAFANA_RANGES = {"$__rate_interval": "2m", "$__interval": "1m", "$__range": "6h"}


def as_promql(expr: str) -> str:
    """A dashboard query as Prometheus receives it: Grafana's range variables replaced by durations."""
    for variable, duration in GRAFANA_RANGES.items():
        expr = expr.replace(variable, duration)
    return expr


def dashboard_exprs(data: Mapping[str, Any] | None = None) -> dict[str, str]:
    """"<panel title> / <refId>" -> PromQL of every panel target (see :func:`as_promql`)."""
    return {f"{panel['title']} / {target['refId']}": as_promql(str(target["expr"]))
            for panel in dashboard_panels(data) for target in panel.get("targets") or []}


# ---------------------------------------------------------------- PromQL


def selector_names(expr: str) -> set[str]:
    """Metric names of every vector and range selector of a PromQL expression (promql_parser's AST).

    A selector without a literal name (``{__name__=~"..."}``) is refused: its series could not be
    checked against a scrape.
    """
    names: set[str] = set()
    nameless: list[str] = []

    def visit(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                names.add(node.name)
            else:
                nameless.append(str(node))

    promql_parser.walk(promql_parser.parse(expr), visit)
    assert not nameless, f"selectors without a metric name in {expr!r}: {nameless}"
    return names


def referenced_metric_names() -> dict[str, set[str]]:
    """Metric name -> where it is used ("alert X", "dashboard <panel> / <refId>")."""
    used: dict[str, set[str]] = {}
    sources = {f"alert {name}": expr for name, expr in alert_exprs().items()}
    sources.update({f"dashboard {where}": expr for where, expr in dashboard_exprs().items()})
    for where, expr in sources.items():
        for name in selector_names(expr):
            used.setdefault(name, set()).add(where)
    return used


# ---------------------------------------------------------------- strict comparisons


def dropped_or_changed(given: Any, kept: Any, path: str = "") -> list[str]:
    """Paths of ``given`` that ``kept`` (a model's dump of it) lost or changed. Extra keys in ``kept``
    (defaults a model adds) are fine; anything the model did not understand is not."""
    if isinstance(given, Mapping):
        if not isinstance(kept, Mapping):
            return [f"{path or '.'}: {type(given).__name__} became {type(kept).__name__}"]
        problems: list[str] = []
        for key, value in given.items():
            if key not in kept:
                problems.append(f"unknown field {path}.{key}")
            else:
                problems.extend(dropped_or_changed(value, kept[key], f"{path}.{key}"))
        return problems
    if isinstance(given, list):
        if not isinstance(kept, list) or len(given) != len(kept):
            return [f"{path}: list changed"]
        return [p for i, (a, b) in enumerate(zip(given, kept, strict=True))
                for p in dropped_or_changed(a, b, f"{path}[{i}]")]
    if given != kept:
        return [f"{path}: {given!r} -> {kept!r}"]
    return []


PROMETHEUS_OPERATOR_API = "monitoring.coreos.com/v1"


def validate_prometheus_operator_object(obj: Mapping[str, Any]) -> None:
    """Validate a PodMonitor, ServiceMonitor or PrometheusRule against the Prometheus Operator CRD models
    (cloudcoil's, generated from the Operator's CRDs), refusing every field the CRD does not define.

    Why the round trip: the generated pydantic models ignore unknown fields, as the API server's
    pruning would silently drop them; dumping what was validated and comparing it with the input turns
    each dropped or coerced field into a failure.
    """
    from cloudcoil.models.prometheus_operator import v1

    models = {"ServiceMonitor": v1.ServiceMonitor, "PrometheusRule": v1.PrometheusRule, "PodMonitor": v1.PodMonitor}
    assert obj.get("apiVersion") == PROMETHEUS_OPERATOR_API, f"apiVersion {obj.get('apiVersion')}"
    model = models.get(str(obj.get("kind")))
    assert model is not None, f"no Prometheus Operator model for kind {obj.get('kind')}"
    validated = model.model_validate(dict(obj))
    dumped = validated.model_dump(by_alias=True, exclude_unset=True, mode="json")
    given = json.loads(json.dumps(obj))
    problems = dropped_or_changed(given, dumped)
    assert not problems, f"{obj['kind']} has fields or values its CRD does not define:\n" + "\n".join(problems)

"""The monitoring kit (deploy/monitoring/) and the chart objects that install it.

Why each check: alert rules nobody ran are guesses, so promtool checks them and runs their unit tests
(a firing and a quiet case per alert), on the file and on the rules as the chart renders them. The
PodMonitor and PrometheusRule are custom resources kubernetes-validate does not know, so they are
validated against the Prometheus Operator's CRD models with unknown fields refused. The dashboard is
loaded by Grafana's own model (grafana-foundation-sdk) and must lose nothing in a round trip. Every
runbook link must lead somewhere. The PodMonitor must scrape every worker pod of the release, the
draining builds' included (they are not behind the Service), and no other pod. The metric names used
here are checked against a real scrape in tests/integration/test_metric_names_exposed.py.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python
import promql_parser
import promtool
import pytest
import yaml
from grafana_foundation_sdk.cog import plugins
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.runtime import UnknownDataquery
from grafana_foundation_sdk.models import prometheus
from grafana_foundation_sdk.models.dashboard import Dashboard, RowPanel
from helm_support import (
    CHART_DIR,
    DRAINING_IDS,
    HELM_DIR,
    RELEASE,
    REPO_ROOT,
    deep_merge,
    draining_value_set,
    environment_values_files,
    load_yaml,
    only,
    render_objects,
    selects,
    value_sets,
)
from monitoring_support import (
    ALERT_TESTS,
    ALERTS,
    DASHBOARD,
    DATASOURCE_VARIABLE,
    EXTERNAL_METRICS,
    JOB,
    MONITORING_DIR,
    alert_exprs,
    alert_rules,
    alert_test_cases,
    dashboard,
    dashboard_exprs,
    dashboard_panels,
    dropped_or_changed,
    load_yaml_file,
    referenced_metric_names,
    validate_prometheus_operator_object,
)
from tests.support.runbook_pages import ALERT_PAGES, RUNBOOK_BASE_URL, RUNBOOKS_DIR

# The alerts of issue 11 and their runbook pages (docs/runbooks/<page>): exactly these, no more.
RUNBOOK_PAGES = ALERT_PAGES
# Alerts on counters over a window: each reads its counters through rate()/increase().
WINDOWED_ALERTS = {"TemporalWorkflowFailureRatioHigh", "TenantProvisioningFailures", "EmailSendFailures",
                   "NmStoreErrors", "StripeErrors", "WorkerPodRestarting"}
MONITORING_ON = {"monitoring": {"podMonitor": {"enabled": True}, "prometheusRule": {"enabled": True},
                                "dashboard": {"enabled": True}}}
MONITORING_OFF = {"monitoring": {"podMonitor": {"enabled": False}, "prometheusRule": {"enabled": False},
                                 "dashboard": {"enabled": False}}}
MONITORING_KINDS = {"PodMonitor", "PrometheusRule"}
CHART_VALUES = load_yaml(CHART_DIR / "values.yaml")


@pytest.fixture(scope="session")
def promtool_bin(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """promtool from the Debian package, unpacked into pytest's cache (a temporary directory when the
    cache plugin is off)."""
    cache = getattr(request.config, "cache", None)
    cache_dir = Path(cache.mkdir("promtool")) if cache is not None else tmp_path_factory.mktemp("promtool")
    return promtool.obtain(cache_dir)


def monitoring_objects(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The PodMonitor, the PrometheusRule and the dashboard ConfigMap of a render."""
    return [o for o in objects if o["kind"] in MONITORING_KINDS
            or (o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-dashboard"))]


def dashboard_configmap(objects: list[dict[str, Any]]) -> dict[str, Any]:
    found = [o for o in monitoring_objects(objects) if o["kind"] == "ConfigMap"]
    assert len(found) == 1, f"expected one dashboard ConfigMap, found {len(found)}"
    return found[0]


def write_rule_file(path: Path, groups: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False), encoding="utf-8")
    return path


def nodes(expr: promql_parser.Expr) -> Iterator[tuple[promql_parser.Expr, tuple[promql_parser.Expr, ...]]]:
    """Every node of a PromQL AST with its ancestors (outermost first)."""
    stack: list[tuple[promql_parser.Expr, tuple[promql_parser.Expr, ...]]] = [(expr, ())]
    while stack:
        node, parents = stack.pop()
        yield node, parents
        here = (*parents, node)
        children: list[promql_parser.Expr] = []
        if isinstance(node, promql_parser.BinaryExpr):
            children = [node.lhs, node.rhs]
        elif isinstance(node, promql_parser.AggregateExpr):
            children = [node.expr] + ([node.param] if node.param is not None else [])
        elif isinstance(node, promql_parser.Call):
            children = list(node.args)
        elif isinstance(node, promql_parser.ParenExpr | promql_parser.UnaryExpr | promql_parser.SubqueryExpr):
            children = [node.expr]
        elif isinstance(node, promql_parser.MatrixSelector):
            children = [node.vector_selector]
        stack.extend((child, here) for child in children)


def unparen(node: promql_parser.Expr) -> promql_parser.Expr:
    while isinstance(node, promql_parser.ParenExpr):
        node = node.expr
    return node


MATCH_OPS = {"Equal": "=", "NotEqual": "!=", "Re": "=~", "NotRe": "!~"}


def matchers(selector: promql_parser.VectorSelector) -> dict[str, tuple[str, str]]:
    """Label matchers of a selector: label -> (operator as written, value)."""
    return {m.name: (MATCH_OPS[str(m.op).rsplit(".", 1)[-1]], m.value) for m in selector.matchers.matchers}


# ---------------------------------------------------------------- the rule file and its unit tests


def test_promtool_check_rules_accepts_the_rule_file(promtool_bin: Path) -> None:
    result = promtool.run(promtool_bin, "check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(RUNBOOK_PAGES)} rules found" in result.stdout


def test_promtool_unit_tests_pass(promtool_bin: Path) -> None:
    result = promtool.run(promtool_bin, "test", "rules", str(ALERT_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_alerts_are_exactly_the_listed_ones() -> None:
    names = [rule["alert"] for rule in alert_rules()]
    assert len(names) == len(set(names)), "an alert name is used twice"
    assert set(names) == set(RUNBOOK_PAGES)
    assert all(set(rule) == {"alert", "expr", "for", "labels", "annotations"} for rule in alert_rules())


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    cases = list(alert_test_cases())
    fires = {alert for _, alert, firing in cases if firing}
    quiet = {alert for _, alert, firing in cases if not firing}
    alerts = {rule["alert"] for rule in alert_rules()}
    assert {alert for _, alert, _ in cases} <= alerts, "a unit test names an alert that does not exist"
    assert alerts - fires == set(), "alerts without a case where they fire"
    assert alerts - quiet == set(), "alerts without a case where they stay quiet"
    assert load_yaml_file(ALERT_TESTS)["rule_files"] == [ALERTS.name]


def test_firing_cases_assert_severity_and_every_annotation() -> None:
    """A firing case that checks only that *something* fired would pass with a wrong label or link."""
    rules = {rule["alert"]: rule for rule in alert_rules()}
    for test in load_yaml_file(ALERT_TESTS)["tests"]:
        for case in test.get("alert_rule_test") or []:
            for alert in case.get("exp_alerts") or []:
                rule = rules[case["alertname"]]
                where = f"{test['name']} / {case['alertname']}"
                assert alert["exp_labels"]["severity"] == rule["labels"]["severity"], where
                assert set(alert["exp_annotations"]) == set(rule["annotations"]), where


@pytest.mark.parametrize("alert", list(RUNBOOK_PAGES))
def test_every_alert_has_severity_summary_and_an_existing_runbook(alert: str) -> None:
    rule = next(r for r in alert_rules() if r["alert"] == alert)
    assert rule["labels"]["severity"] in {"critical", "warning"}
    assert set(rule["annotations"]) == {"summary", "description", "runbook_url"}
    assert all(str(text).strip() for text in rule["annotations"].values())
    url = rule["annotations"]["runbook_url"]
    assert url == RUNBOOK_BASE_URL + RUNBOOK_PAGES[alert]
    page = RUNBOOKS_DIR / url.removeprefix(RUNBOOK_BASE_URL)
    assert page.is_file(), f"{alert}: runbook {page.relative_to(REPO_ROOT)} does not exist"


def test_for_durations_suit_production() -> None:
    """Every alert waits before firing (no page on one bad scrape) but not longer than 15 minutes."""
    for rule in alert_rules():
        match = re.fullmatch(r"(\d+)m", str(rule["for"]))
        assert match and 1 <= int(match.group(1)) <= 15, f"{rule['alert']}: for {rule['for']}"


def test_worker_series_are_selected_by_the_scrape_job_and_kube_series_by_the_worker_pods() -> None:
    """The chart rewrites job="alga-temporal-worker" and the pod pattern to the release's: every
    selector must use exactly these literals, or the rewrite would miss it."""
    for alert, expr in alert_exprs().items():
        for node, _ in nodes(promql_parser.parse(expr)):
            if not isinstance(node, promql_parser.VectorSelector):
                continue
            found = matchers(node)
            if (node.name or "").startswith(("alga_", "temporal_")) or node.name == "up":
                assert found.get("job") == ("=", JOB), f"{alert}: {node}"
            else:
                assert EXTERNAL_METRICS.get(node.name or "") == "kube-state-metrics", f"{alert}: {node.name}"
                assert found.get("pod") == ("=~", "temporal-worker-py-.+"), f"{alert}: {node}"


def test_every_division_is_guarded_against_a_zero_denominator() -> None:
    """x / (y > 0): with no traffic the ratio is absent (no alert), never NaN or +Inf."""
    for alert, expr in alert_exprs().items():
        for node, _ in nodes(promql_parser.parse(expr)):
            if isinstance(node, promql_parser.BinaryExpr) and str(node.op) == "/":
                guard = unparen(node.rhs)
                assert isinstance(guard, promql_parser.BinaryExpr) and str(guard.op) == ">", f"{alert}: {guard}"
                assert not (guard.modifier and guard.modifier.return_bool), f"{alert}: `> bool` filters nothing"
                assert isinstance(guard.rhs, promql_parser.NumberLiteral) and guard.rhs.val == 0, f"{alert}: {guard}"


def test_counters_are_read_only_through_rate_or_increase() -> None:
    """A counter's raw value depends on when the pod started; alerts and panels use rate()/increase()
    over a window (histogram buckets included)."""
    sources = {f"alert {k}": v for k, v in alert_exprs().items()}
    sources |= {f"panel {k}": v for k, v in dashboard_exprs().items()}
    for where, expr in sources.items():
        for node, parents in nodes(promql_parser.parse(expr)):
            if isinstance(node, promql_parser.VectorSelector) and (node.name or "").endswith(("_total", "_bucket")):
                assert len(parents) >= 2 and isinstance(parents[-1], promql_parser.MatrixSelector), f"{where}: {node}"
                call = parents[-2]
                assert isinstance(call, promql_parser.Call) and call.func.name in {"rate", "increase"}, where
    for alert in WINDOWED_ALERTS:
        calls = [n for n, _ in nodes(promql_parser.parse(alert_exprs()[alert])) if isinstance(n, promql_parser.Call)]
        assert any(c.func.name in {"rate", "increase"} for c in calls), alert


# ---------------------------------------------------------------- the chart's objects


@pytest.mark.parametrize("values_name", ["default", *[p.name for p in environment_values_files()]])
def test_with_the_flags_off_no_monitoring_object_is_rendered(values_name: str) -> None:
    path = HELM_DIR / values_name
    values = load_yaml(path) if values_name != "default" else {}
    namespace = str(values.get("requiredNamespace") or "alga")
    objects = render_objects(deep_merge(values, MONITORING_OFF), namespace, RELEASE)
    assert monitoring_objects(objects) == []


def test_defaults_leave_every_flag_off() -> None:
    assert monitoring_objects(render_objects({}, "alga", RELEASE)) == []
    assert CHART_VALUES["monitoring"]["podMonitor"]["enabled"] is False
    assert CHART_VALUES["monitoring"]["prometheusRule"]["enabled"] is False
    assert CHART_VALUES["monitoring"]["dashboard"]["enabled"] is False


@pytest.mark.parametrize("value_set", value_sets(), ids=lambda s: s.name)
def test_each_shipped_configuration_renders_what_its_flags_ask_for(value_set: Any) -> None:
    values = deep_merge(CHART_VALUES, value_set.values)["monitoring"]
    objects = monitoring_objects(render_objects(value_set.values, value_set.namespace, value_set.release))
    rendered = {o["kind"] for o in objects}
    assert ("PodMonitor" in rendered) == values["podMonitor"]["enabled"]
    assert ("PrometheusRule" in rendered) == values["prometheusRule"]["enabled"]
    assert ("ConfigMap" in rendered) == values["dashboard"]["enabled"]
    for obj in objects:
        if obj["kind"] in MONITORING_KINDS:
            validate_prometheus_operator_object(obj)


def test_hosted_installs_the_whole_kit() -> None:
    hosted = load_yaml(HELM_DIR / "values-hosted.yaml")["monitoring"]
    assert all(hosted[flag]["enabled"] is True for flag in ("podMonitor", "prometheusRule", "dashboard"))


@pytest.fixture(scope="module")
def kit() -> list[dict[str, Any]]:
    """The chart with the three flags on, as hosted installs it (namespace msp)."""
    return render_objects(deep_merge(load_yaml(HELM_DIR / "values-hosted.yaml"), MONITORING_ON), "msp", RELEASE)


def test_pod_monitor_and_rule_validate_against_the_operator_crd_models(kit: list[dict[str, Any]]) -> None:
    for kind in MONITORING_KINDS:
        validate_prometheus_operator_object(only(kit, kind))


def test_the_crd_validation_refuses_unknown_fields(kit: list[dict[str, Any]]) -> None:
    """The strict check is real: one misspelt field anywhere fails it."""
    monitor = copy.deepcopy(only(kit, "PodMonitor"))
    monitor["spec"]["podMetricsEndpoints"][0]["scrapeInterval"] = "30s"
    with pytest.raises(AssertionError, match=r"unknown field \.spec\.podMetricsEndpoints\[0\]\.scrapeInterval"):
        validate_prometheus_operator_object(monitor)
    # A ServiceMonitor's field on a PodMonitor is refused too.
    monitor = copy.deepcopy(only(kit, "PodMonitor"))
    monitor["spec"]["endpoints"] = monitor["spec"].pop("podMetricsEndpoints")
    with pytest.raises(AssertionError, match=r"unknown field \.spec\.endpoints"):
        validate_prometheus_operator_object(monitor)
    rule = copy.deepcopy(only(kit, "PrometheusRule"))
    rule["spec"]["groups"][0]["rules"][0]["severity"] = "critical"
    with pytest.raises(AssertionError, match="unknown field"):
        validate_prometheus_operator_object(rule)


def pod_templates(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every pod template of a render (the main and the draining Deployments), by its owner's name."""
    return {o["metadata"]["name"]: o["spec"]["template"] for o in objects
            if isinstance(o.get("spec"), dict) and "template" in o["spec"]}


def worker_ports(template: dict[str, Any]) -> dict[str, int]:
    """Container port name -> number of a pod template's worker container."""
    [worker] = [c for c in template["spec"]["containers"] if c["name"] == "worker"]
    return {p["name"]: p["containerPort"] for p in worker.get("ports", [])}


def pod_label_meta(label: str) -> str:
    """The discovery label Prometheus gives a pod label (kubernetes_sd, role pod): non [a-zA-Z0-9_] -> _."""
    return "__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", label)


def endpoint_of(objects: list[dict[str, Any]]) -> dict[str, Any]:
    [endpoint] = only(objects, "PodMonitor")["spec"]["podMetricsEndpoints"]
    return dict(endpoint)


def test_pod_monitor_scrapes_the_worker_pods_metrics_port_as_the_fixed_job(kit: list[dict[str, Any]]) -> None:
    monitor, deployment = only(kit, "PodMonitor"), only(kit, "Deployment")
    template = deployment["spec"]["template"]
    assert selects(monitor["spec"]["selector"], template["metadata"]["labels"])
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [deployment["metadata"]["namespace"]]}
    endpoint = endpoint_of(kit)
    assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics" and endpoint["scheme"] == "http"
    assert worker_ports(template)["metrics"] == int(only(kit, "ConfigMap")["data"]["METRICS_PORT"])
    assert (endpoint["interval"], endpoint["scrapeTimeout"]) == ("30s", "10s")
    assert endpoint["relabelings"][0] == {"action": "replace", "targetLabel": "job", "replacement": JOB}
    # The NetworkPolicy covers the same pods and lets the monitoring namespace reach that port.
    policy = only(kit, "NetworkPolicy")
    assert policy["spec"]["podSelector"] == monitor["spec"]["selector"]
    ports = {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}
    assert worker_ports(template)["metrics"] in ports


@pytest.fixture(scope="module")
def draining_kit() -> list[dict[str, Any]]:
    """Hosted with two earlier builds draining (versioning on), the three flags on."""
    value_set = draining_value_set()
    return render_objects(deep_merge(value_set.values, MONITORING_ON), value_set.namespace, value_set.release)


def test_pod_monitor_scrapes_the_main_and_every_draining_build_and_no_other_pod(
        draining_kit: list[dict[str, Any]]) -> None:
    """Draining builds' pods are not behind the Service: a ServiceMonitor would never see them. The
    PodMonitor must select every pod template of the release, and none of another release installed
    beside it in the same namespace (nor may that release's PodMonitor select ours)."""
    value_set = draining_value_set()
    ours = pod_templates(draining_kit)
    assert sorted(ours) == sorted([RELEASE, *(f"{RELEASE}-drain-{i[:12]}" for i in DRAINING_IDS)])
    other_objects = render_objects(deep_merge(value_set.values, MONITORING_ON), value_set.namespace, "eu-worker")
    theirs = pod_templates(other_objects)
    assert len(theirs) == len(ours) and not set(theirs) & set(ours)
    endpoint = endpoint_of(draining_kit)
    for objects, selected, other in ((draining_kit, ours, theirs), (other_objects, theirs, ours)):
        selector = only(objects, "PodMonitor")["spec"]["selector"]
        for name, template in selected.items():
            assert selects(selector, template["metadata"]["labels"]), f"{name} is not scraped"
            assert endpoint["port"] in worker_ports(template), f"{name}: no container port {endpoint['port']}"
        for name, template in other.items():
            assert not selects(selector, template["metadata"]["labels"]), f"{name} of another release is scraped"
    # Flags off: no PodMonitor, draining or not.
    off = render_objects(deep_merge(value_set.values, MONITORING_OFF), value_set.namespace, value_set.release)
    assert monitoring_objects(off) == [] and len(pod_templates(off)) == len(ours)


def test_every_target_carries_the_build_its_pod_runs_as_build_id(draining_kit: list[dict[str, Any]]) -> None:
    """build_id comes from a pod label both kinds of pod carry; its value is the BUILD_ID the worker in
    that pod runs with (env over the ConfigMap), so each Deployment's series are told apart."""
    relabel = [r for r in endpoint_of(draining_kit)["relabelings"] if r.get("targetLabel") == "build_id"]
    assert relabel == [{"action": "replace", "sourceLabels": [pod_label_meta("app.kubernetes.io/version")],
                        "targetLabel": "build_id"}]
    [source] = relabel[0]["sourceLabels"]
    configmap = only(draining_kit, "ConfigMap")["data"]
    build_ids = {}
    for name, template in pod_templates(draining_kit).items():
        labels = {pod_label_meta(k): v for k, v in template["metadata"]["labels"].items()}
        [worker] = [c for c in template["spec"]["containers"] if c["name"] == "worker"]
        env = {e["name"]: e.get("value") for e in worker.get("env", [])}
        build_ids[name] = labels.get(source)
        assert build_ids[name] == env.get("BUILD_ID", configmap["BUILD_ID"]), name
    assert build_ids == {RELEASE: "2222222222222222222222222222222222222222",
                         **{f"{RELEASE}-drain-{i[:12]}": i for i in DRAINING_IDS}}


def test_job_label_and_additional_labels_are_values() -> None:
    values = deep_merge(MONITORING_ON, {"monitoring": {"jobLabel": "alga-worker-eu",
                                                       "additionalLabels": {"release": "kube-prometheus-stack"}}})
    objects = render_objects(values, "alga", RELEASE)
    relabel = only(objects, "PodMonitor")["spec"]["podMetricsEndpoints"][0]["relabelings"]
    assert {"action": "replace", "targetLabel": "job", "replacement": "alga-worker-eu"} in relabel
    for obj in monitoring_objects(objects):
        assert obj["metadata"]["labels"]["release"] == "kube-prometheus-stack", obj["kind"]


def test_pod_monitor_needs_the_metrics_port() -> None:
    values = deep_merge(MONITORING_ON, {"config": {"METRICS_PORT": "0"}})
    with pytest.raises(helm_python.HelmError, match=r"monitoring\.podMonitor\.enabled .*METRICS_PORT is 0"):
        render_objects(values, "alga", RELEASE)


def test_the_prometheus_rule_holds_the_rule_files_groups(kit: list[dict[str, Any]]) -> None:
    """With the recommended release name and default values, the rendered groups are alerts.yaml's."""
    assert only(kit, "PrometheusRule")["spec"]["groups"] == load_yaml_file(ALERTS)["groups"]


def test_the_prometheus_rule_follows_job_release_and_runbook_base() -> None:
    values = deep_merge(MONITORING_ON, {"monitoring": {"jobLabel": "alga-worker-eu", "prometheusRule": {
        "runbookBaseUrl": "https://runbooks.example.com/alga"}}})
    groups = only(render_objects(values, "alga", "eu-worker"), "PrometheusRule")["spec"]["groups"]
    assert RUNBOOK_BASE_URL not in json.dumps(groups)
    rules = [r for g in groups for r in g["rules"]]
    assert [r["alert"] for r in rules] == [r["alert"] for r in alert_rules()]
    for rule in rules:
        assert f'job="{JOB}"' not in rule["expr"] and 'pod=~"temporal-worker-py-.+"' not in rule["expr"]
        assert rule["annotations"]["runbook_url"] == (
            "https://runbooks.example.com/alga/" + RUNBOOK_PAGES[rule["alert"]])
        for node, _ in nodes(promql_parser.parse(rule["expr"])):
            if isinstance(node, promql_parser.VectorSelector):
                found = matchers(node)
                assert found.get("job") == ("=", "alga-worker-eu") or found.get("pod") == (
                    "=~", "eu-worker-temporal-worker-py-.+"), f"{rule['alert']}: {node}"


def test_promtool_accepts_the_rules_as_rendered_and_their_unit_tests_pass(
        kit: list[dict[str, Any]], promtool_bin: Path, tmp_path: Path) -> None:
    """The rules inside the PrometheusRule, written back to a rule file: promtool checks them and runs
    alerts.test.yaml against them (same release, so the same expectations hold)."""
    rule_file = write_rule_file(tmp_path / ALERTS.name, only(kit, "PrometheusRule")["spec"]["groups"])
    shutil.copy(ALERT_TESTS, tmp_path / ALERT_TESTS.name)
    checked = promtool.run(promtool_bin, "check", "rules", str(rule_file))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool.run(promtool_bin, "test", "rules", str(tmp_path / ALERT_TESTS.name))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_promtool_accepts_the_rules_rendered_for_another_release(promtool_bin: Path, tmp_path: Path) -> None:
    values = deep_merge(MONITORING_ON, {"monitoring": {"jobLabel": "alga-worker-eu"}})
    groups = only(render_objects(values, "alga", "eu-worker"), "PrometheusRule")["spec"]["groups"]
    checked = promtool.run(promtool_bin, "check", "rules", str(write_rule_file(tmp_path / "rules.yaml", groups)))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_dashboard_configmap_carries_the_dashboard_and_the_sidecar_label(kit: list[dict[str, Any]]) -> None:
    configmap = dashboard_configmap(kit)
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    [(name, text)] = configmap["data"].items()
    assert name.endswith(".json") and json.loads(text) == dashboard()
    values = deep_merge(MONITORING_ON, {"monitoring": {"dashboard": {
        "label": "grafana.example.com/dashboard", "labelValue": "alga",
        "annotations": {"grafana_folder": "Alga PSA"}}}})
    custom = dashboard_configmap(render_objects(values, "alga", RELEASE))
    assert custom["metadata"]["labels"]["grafana.example.com/dashboard"] == "alga"
    assert "grafana_dashboard" not in custom["metadata"]["labels"]
    assert custom["metadata"]["annotations"] == {"grafana_folder": "Alga PSA"}


def test_one_copy_of_the_rules_and_the_dashboard(tmp_path: Path) -> None:
    """The chart's files/ are symlinks to deploy/monitoring/, and a packaged chart carries their content
    (Helm follows symlinks when it loads or packages a chart)."""
    for name in (ALERTS.name, DASHBOARD.name):
        link = CHART_DIR / "files" / name
        assert link.is_symlink(), f"{link} must be a symlink to deploy/monitoring/{name}"
        assert link.resolve() == (MONITORING_DIR / name).resolve()
        copies = [p for p in REPO_ROOT.joinpath("deploy").rglob(name) if not p.is_symlink()]
        assert copies == [MONITORING_DIR / name], f"copies of {name}: {copies}"
    archive = helm_python.package(CHART_DIR, destination=tmp_path)
    packaged = helm_python.Chart.load_archive(Path(archive).read_bytes())
    rendered = packaged.render(MONITORING_ON, name=RELEASE, namespace="alga")
    objects = [doc for path, text in rendered.items() if not path.endswith("NOTES.txt")
               for doc in yaml.safe_load_all(text) if doc]
    assert only(objects, "PrometheusRule")["spec"]["groups"] == load_yaml_file(ALERTS)["groups"]
    assert json.loads(next(iter(dashboard_configmap(objects)["data"].values()))) == dashboard()


# ---------------------------------------------------------------- the dashboard


@pytest.fixture(scope="module")
def grafana_model() -> Dashboard:
    """The dashboard as Grafana's model, with the panel and query plugins registered so that panel
    options and Prometheus queries are decoded into their typed models (not kept as raw dicts)."""
    plugins.register_default_plugins()
    return Dashboard.from_json(dashboard())


def model_json(model: Dashboard) -> dict[str, Any]:
    data = json.loads(json.dumps(model, cls=JSONEncoder))
    assert isinstance(data, dict)
    return data


def test_the_dashboard_loads_as_a_grafana_dashboard_model_and_loses_nothing(grafana_model: Dashboard) -> None:
    assert dropped_or_changed(dashboard(), model_json(grafana_model)) == []
    for panel in grafana_model.panels or []:
        if isinstance(panel, RowPanel):
            continue
        assert not isinstance(panel.options, dict), f"{panel.title}: options of an unknown panel type"
        for target in panel.targets or []:
            assert isinstance(target, prometheus.Dataquery), f"{panel.title}: {type(target).__name__}"
            assert not isinstance(target, UnknownDataquery)


def test_the_round_trip_catches_an_unknown_field() -> None:
    plugins.register_default_plugins()
    broken = dashboard()
    broken["panels"][1]["targets"][0]["legend"] = "{{pod}}"
    broken["panels"][1]["fieldConfig"]["defaults"]["colour"] = "red"
    problems = dropped_or_changed(broken, model_json(Dashboard.from_json(broken)))
    assert problems == ["unknown field .panels[1].fieldConfig.defaults.colour",
                        "unknown field .panels[1].targets[0].legend"]


def test_the_dashboard_is_for_grafana_11_with_datasource_namespace_and_task_queue_variables() -> None:
    data = dashboard()
    assert 39 <= data["schemaVersion"] <= 41  # Grafana 11.0 writes 39, 11.6 writes 41
    assert data["uid"] and data["title"]
    variables = {v["name"]: v for v in data["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for name in ("namespace", "task_queue"):
        assert variables[name]["type"] == "query"
        assert variables[name]["datasource"] == {"type": "prometheus", "uid": DATASOURCE_VARIABLE}
        promql_parser.parse(re.sub(r"^label_values\((.*),\s*\w+\)$", r"\1", variables[name]["query"]["query"]))


def test_every_panel_queries_the_datasource_variable() -> None:
    panels = [p for p in dashboard_panels() if p["type"] != "row"]
    assert len(panels) >= 20
    ids = [p["id"] for p in dashboard_panels()]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": DATASOURCE_VARIABLE}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"], panel["title"]


def test_every_dashboard_query_parses_and_filters_by_the_variables() -> None:
    for where, expr in dashboard_exprs().items():
        parsed = promql_parser.parse(expr)
        for node, _ in nodes(parsed):
            if isinstance(node, promql_parser.VectorSelector):
                found = matchers(node)
                assert found.get("namespace") == ("=~", "$namespace"), f"{where}: {node}"
                if (node.name or "").startswith(("alga_", "temporal_")):
                    assert found.get("task_queue") == ("=~", "$task_queue"), f"{where}: {node}"


def test_the_dashboard_shows_what_the_issue_asks_for() -> None:
    used = referenced_metric_names()
    on_dashboard = {name for name, places in used.items() if any(p.startswith("dashboard ") for p in places)}
    wanted = {
        "temporal_workflow_completed_total", "temporal_workflow_failed_total",  # workflow throughput, failures
        "temporal_activity_execution_latency_seconds_count", "temporal_activity_execution_failed_total",
        "temporal_workflow_task_schedule_to_start_latency_seconds_bucket",
        "temporal_activity_schedule_to_start_latency_seconds_bucket",
        "temporal_worker_task_slots_used", "temporal_worker_task_slots_available", "temporal_num_pollers",
        "alga_provisioning_duration_seconds_bucket", "alga_tenants_provisioned_total", "alga_tenants_failed_total",
        "alga_emails_sent_total", "alga_emails_failed_total", "alga_nmstore_requests_total",
        "alga_stripe_requests_total", "alga_database_errors_total", "alga_db_pool_connections_in_use",
        "alga_db_pool_requests_waiting", "alga_db_pool_connections_max", "alga_worker_ready", "alga_dependency_up",
        "container_cpu_usage_seconds_total", "container_memory_working_set_bytes",
        "kube_pod_container_status_restarts_total",
    }
    assert wanted - on_dashboard == set()
    quantiles = {expr.split(",")[0] for expr in dashboard_exprs().values()
                 if "alga_provisioning_duration_seconds_bucket" in expr and 'outcome="succeeded"' in expr}
    assert quantiles == {f"histogram_quantile({q}" for q in ("0.5", "0.95", "0.99")}


# ---------------------------------------------------------------- metric names from elsewhere


def test_the_allow_list_names_only_foreign_metrics_that_are_used() -> None:
    """Names outside the worker are allowed only when documented (monitoring_support.EXTERNAL_METRICS)
    and still used; the worker's own families (alga_, temporal_) must come from a real scrape."""
    used = referenced_metric_names()
    assert set(EXTERNAL_METRICS) - set(used) == set(), "allow-listed names nothing uses"
    assert not any(name.startswith(("alga_", "temporal_")) for name in EXTERNAL_METRICS)
    assert set(EXTERNAL_METRICS.values()) <= {"Prometheus", "kube-state-metrics", "cAdvisor"}

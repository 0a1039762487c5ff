"""Static checks of the Argo WorkflowTemplates under deploy/argo/templates.

The committed YAML is what Argo runs, and there is no Argo server in CI, so these
tests stand in for `argo template lint` and then some:

- every template validates against the Argo Workflows JSON schema, made strict
  (unknown properties rejected) because a misspelt key is otherwise silently
  ignored by Argo;
- every template a step or task names exists, locally or through templateRef into
  another committed WorkflowTemplate, and the arguments match its inputs;
- every `{{...}}` variable refers to something declared and in scope;
- the platform conventions hold (service accounts, deadlines, GC, resources,
  non-root, secrets only from Secrets, one shared exit handler);
- inline script snippets pass shellcheck like the script files do;
- the issue-10 defects stay fixed: default test arguments and values files name
  real paths, dind listens on loopback only, default names never touch the
  original TypeScript worker (release alga-psa);
- pipelines do not race or drift: release mutexes shared by deploy and rollback,
  a mutex per build cache, every image pinned by digest, build pods covered by the
  NetworkPolicy in deploy/argo/cluster/;
- staging first: hosted deploys pass a staging gate before helm, and only a
  verified staging deploy records its digest.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

REPO_ROOT = Path(__file__).resolve().parents[2]
ARGO_DIR = REPO_ROOT / "deploy" / "argo"
TEMPLATES_DIR = ARGO_DIR / "templates"
SCRIPTS_DIR = ARGO_DIR / "scripts"
CLUSTER_DIR = ARGO_DIR / "cluster"
HELM_DIR = REPO_ROOT / "deploy" / "helm"
# Vendored with its source and licence (tests/deploy/schemas/README.md): the tests read nothing
# outside the repository.
SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / "argo-workflows.schema.json"
VENV_BIN = Path(sys.executable).parent

WT_DEF = "io.argoproj.workflow.v1alpha1.WorkflowTemplate"
EXPECTED_TEMPLATES = {
    "temporal-worker-build",
    "temporal-worker-deploy",
    "temporal-worker-rollback",
    "alga-psa-build-migrate-deploy-with-temporal",
}
PLACEHOLDER = re.compile(r"\{\{\s*([^{}]+?)\s*\}\}")
# name[:tag]@sha256:<64 hex>: the digest decides what runs, the tag is for people.
PINNED_IMAGE = re.compile(r"[a-z0-9][a-z0-9./_-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?@sha256:[0-9a-f]{64}")
DIND_IMAGE_PREFIX = "docker:27.5.1-dind@sha256:"
# The original TypeScript worker's names (reference section 8): never ours to touch.
ORIGINAL_RELEASES = ("alga-psa", "alga-psa-temporal-worker")
ORIGINAL_DEPLOYMENT = "alga-psa-temporal-worker"
OUR_NAME = "temporal-worker-py"
NETWORK_POLICY_FILE = CLUSTER_DIR / "build-network-policy.yaml"
# Global variables Argo provides; anything else must be declared.
WORKFLOW_GLOBALS = {
    "workflow.name",
    "workflow.namespace",
    "workflow.uid",
    "workflow.status",
    "workflow.duration",
    "workflow.failures",
    "workflow.creationTimestamp",
}


def _load_templates() -> dict[str, dict[str, Any]]:
    """Load every WorkflowTemplate document, keyed by metadata.name."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(TEMPLATES_DIR.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is None:
                continue
            assert doc.get("kind") == "WorkflowTemplate", f"{path.name}: unexpected kind"
            name = doc["metadata"]["name"]
            assert name not in found, f"duplicate WorkflowTemplate {name}"
            doc["__file__"] = path.name
            found[name] = doc
    return found


TEMPLATES = _load_templates()


def _strip(doc: dict[str, Any]) -> dict[str, Any]:
    """The document without the bookkeeping key this module adds."""
    return {k: v for k, v in doc.items() if k != "__file__"}


def _by_name(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in doc["spec"]["templates"]}


def _strings(node: Any) -> Iterator[str]:
    """Every string value in a nested YAML structure."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def _param_names(section: dict[str, Any] | None) -> set[str]:
    return {p["name"] for p in (section or {}).get("parameters", [])}


def _calls(template: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], int]]:
    """(name, step-or-task, position) for every call in a steps or dag template.

    Position is the step group index for steps; for tasks it is 0 (ordering is
    checked through `depends`).
    """
    for index, group in enumerate(template.get("steps") or []):
        for step in group:
            yield step["name"], step, index
    for task in (template.get("dag") or {}).get("tasks", []):
        yield task["name"], task, 0


def _target(wt_name: str, call: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Resolve the template a step or task runs, following templateRef."""
    if "templateRef" in call:
        ref = call["templateRef"]
        assert ref["name"] in TEMPLATES, f"templateRef to unknown WorkflowTemplate {ref['name']}"
        targets = _by_name(TEMPLATES[ref["name"]])
        assert ref["template"] in targets, f"{ref['name']} has no template {ref['template']}"
        return ref["name"], targets[ref["template"]]
    targets = _by_name(TEMPLATES[wt_name])
    assert call["template"] in targets, f"{wt_name}: no template named {call['template']}"
    return wt_name, targets[call["template"]]


def _all_containers(template: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for key in ("container", "script"):
        if key in template:
            yield key, template[key]
    for key in ("sidecars", "initContainers"):
        for container in template.get(key) or []:
            yield f"{key}/{container['name']}", container


@pytest.fixture(scope="module")
def strict_validator() -> jsonschema.protocols.Validator:
    """A validator for WorkflowTemplate that rejects unknown properties.

    The upstream schema never sets additionalProperties, so a typo such as
    `retryStratgy` would pass; closing every object definition that lists its
    properties turns such typos into failures.
    """
    schema = json.loads(SCHEMA_PATH.read_text())
    definitions = copy.deepcopy(schema["definitions"])
    for definition in definitions.values():
        if "properties" in definition and "additionalProperties" not in definition:
            definition["additionalProperties"] = False
    # The file declares the unversioned "http://json-schema.org/schema#"; it uses
    # draft-07 keywords (const), so validate with draft 7 explicitly.
    strict = {
        "definitions": definitions,
        "allOf": [{"$ref": f"#/definitions/{WT_DEF}"}],
    }
    jsonschema.Draft7Validator.check_schema(strict)
    return jsonschema.Draft7Validator(strict)


def test_all_expected_templates_are_committed() -> None:
    assert set(TEMPLATES) == EXPECTED_TEMPLATES
    for doc in TEMPLATES.values():
        assert doc["metadata"]["namespace"] == "argo"


@pytest.mark.parametrize("name", sorted(EXPECTED_TEMPLATES))
def test_template_validates_against_strict_schema(name: str, strict_validator: jsonschema.protocols.Validator) -> None:
    errors = sorted(strict_validator.iter_errors(_strip(TEMPLATES[name])), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors[:20])


def test_strict_schema_rejects_unknown_properties(
    strict_validator: jsonschema.protocols.Validator,
) -> None:
    """Guard the guard: without this, a broken strictness patch would pass silently."""
    doc = copy.deepcopy(_strip(TEMPLATES["temporal-worker-build"]))
    doc["spec"]["templates"][0]["retryStratgy"] = {"limit": 1}
    assert not strict_validator.is_valid(doc)


@pytest.mark.parametrize("name", sorted(EXPECTED_TEMPLATES))
def test_named_templates_exist_and_arguments_match_inputs(name: str) -> None:
    doc = TEMPLATES[name]
    local = _by_name(doc)
    assert doc["spec"]["entrypoint"] in local
    assert doc["spec"]["onExit"] in local
    for template in doc["spec"]["templates"]:
        for call_name, call, _ in _calls(template):
            _, target = _target(name, call)
            passed = _param_names(call.get("arguments"))
            declared = {p["name"]: p for p in (target.get("inputs") or {}).get("parameters", [])}
            where = f"{name}/{template['name']}/{call_name}"
            assert passed <= set(declared), f"{where}: unknown arguments {passed - set(declared)}"
            required = {n for n, p in declared.items() if "default" not in p and "value" not in p}
            assert required <= passed, f"{where}: missing arguments {required - passed}"


@pytest.mark.parametrize("name", sorted(EXPECTED_TEMPLATES))
def test_every_variable_reference_is_declared_and_in_scope(name: str) -> None:
    doc = TEMPLATES[name]
    workflow_params = _param_names(doc["spec"].get("arguments"))
    for template in doc["spec"]["templates"]:
        where = f"{name}/{template['name']}"
        inputs = _param_names(template.get("inputs"))
        calls = {call_name: (call, pos) for call_name, call, pos in _calls(template)}
        for text in _strings(template):
            for expr in PLACEHOLDER.findall(text):
                parts = expr.split(".")
                if expr in WORKFLOW_GLOBALS:
                    continue
                if parts[:2] == ["inputs", "parameters"] and len(parts) == 3:
                    assert parts[2] in inputs, f"{where}: undeclared input {expr}"
                elif parts[:2] == ["workflow", "parameters"] and len(parts) == 3:
                    assert parts[2] in workflow_params, f"{where}: undeclared {expr}"
                elif parts[0] in ("steps", "tasks") and len(parts) in (3, 5):
                    kind_key = "steps" if parts[0] == "steps" else "dag"
                    assert kind_key in template, f"{where}: {expr} outside a {kind_key} template"
                    assert parts[1] in calls, f"{where}: {expr} names an unknown {parts[0][:-1]}"
                    if len(parts) == 3:
                        assert parts[2] in {"status", "id", "ip", "exitCode"}, expr
                    else:
                        assert parts[2:4] == ["outputs", "parameters"], expr
                        _, target = _target(name, calls[parts[1]][0])
                        outputs = _param_names(target.get("outputs"))
                        assert parts[4] in outputs, f"{where}: {expr}: no such output"
                else:
                    pytest.fail(f"{where}: unrecognised variable {{{{{expr}}}}}")


@pytest.mark.parametrize("name", sorted(EXPECTED_TEMPLATES))
def test_step_and_task_references_point_backwards(name: str) -> None:
    """A step may only read an earlier step group; a task only an ancestor task."""
    for template in TEMPLATES[name]["spec"]["templates"]:
        calls = {call_name: (call, pos) for call_name, call, pos in _calls(template)}
        parents: dict[str, set[str]] = {}
        for task in (template.get("dag") or {}).get("tasks", []):
            words = re.findall(r"[A-Za-z0-9][A-Za-z0-9-]*", task.get("depends", ""))
            parents[task["name"]] = {w for w in words if w in calls}

        def ancestors(task: str, parents: dict[str, set[str]] = parents) -> set[str]:
            seen: set[str] = set()
            stack = list(parents.get(task, ()))
            while stack:
                node = stack.pop()
                if node not in seen:
                    seen.add(node)
                    stack.extend(parents.get(node, ()))
            return seen

        for call_name, (call, pos) in calls.items():
            for text in _strings(call):
                for expr in PLACEHOLDER.findall(text):
                    parts = expr.split(".")
                    if parts[0] == "steps":
                        assert calls[parts[1]][1] < pos, f"{call_name} reads later step {expr}"
                    elif parts[0] == "tasks":
                        assert parts[1] in ancestors(call_name), (
                            f"{call_name} reads {expr} but does not depend on {parts[1]}"
                        )


@pytest.mark.parametrize("name", sorted(EXPECTED_TEMPLATES))
def test_entry_inputs_mirror_workflow_arguments(name: str) -> None:
    """`main` is also called through templateRef, so it declares the same parameters
    with the same defaults as the workflow; drift would make the two paths differ."""
    spec = TEMPLATES[name]["spec"]
    arguments = {p["name"]: p.get("value") for p in spec["arguments"]["parameters"]}
    main = _by_name(TEMPLATES[name])[spec["entrypoint"]]
    inputs = {p["name"]: p.get("default") for p in main["inputs"]["parameters"]}
    assert inputs == arguments


@pytest.mark.parametrize("name", sorted(EXPECTED_TEMPLATES))
def test_workflow_level_conventions(name: str) -> None:
    spec = TEMPLATES[name]["spec"]
    assert spec["serviceAccountName"] not in ("", "default")
    assert int(spec["activeDeadlineSeconds"]) > 0
    assert spec["podGC"]["strategy"]
    assert spec["ttlStrategy"]["secondsAfterSuccess"] > 0
    assert spec["ttlStrategy"]["secondsAfterFailure"] > 0
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] != 0


@pytest.mark.parametrize("name", sorted(EXPECTED_TEMPLATES))
def test_container_conventions(name: str) -> None:
    for template in TEMPLATES[name]["spec"]["templates"]:
        for key, container in _all_containers(template):
            where = f"{name}/{template['name']}/{key}"
            image = container["image"]
            assert PINNED_IMAGE.fullmatch(image), f"{where}: not pinned by digest: {image}"
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][kind]), where
            context = container.get("securityContext", {})
            if context.get("privileged"):
                # The only privileged container allowed is the dind sidecar.
                assert key == "sidecars/dind" and image.startswith(DIND_IMAGE_PREFIX), where
            else:
                assert context.get("allowPrivilegeEscalation") is False, where
                assert context.get("capabilities", {}).get("drop") == ["ALL"], where
                assert context.get("runAsUser", 1000) != 0, where
            for env in container.get("env", []):
                if re.search(r"TOKEN|PASSWORD|SECRET|API_KEY", env["name"]):
                    assert "valueFrom" in env and "value" not in env, f"{where}: {env['name']} must come from a Secret"


@pytest.mark.parametrize("name", sorted(EXPECTED_TEMPLATES))
def test_clones_are_retried_and_scripts_exist(name: str) -> None:
    for template in TEMPLATES[name]["spec"]["templates"]:
        where = f"{name}/{template['name']}"
        artifacts = (template.get("inputs") or {}).get("artifacts", [])
        if any("git" in a for a in artifacts):
            assert template.get("retryStrategy", {}).get("limit"), f"{where}: clone not retried"
            assert template.get("activeDeadlineSeconds"), f"{where}: no deadline"
        for _, container in _all_containers(template):
            for word in container.get("command", []):
                if word.startswith("/src/deploy/argo/scripts/"):
                    script = SCRIPTS_DIR / word.rsplit("/", 1)[1]
                    assert script.is_file(), f"{where}: {script} missing"


def test_exit_handler_is_identical_everywhere() -> None:
    handlers = {name: _by_name(doc)["exit-handler"] for name, doc in TEMPLATES.items()}
    first = next(iter(handlers.values()))
    assert all(h == first for h in handlers.values())


def test_build_pipeline_shape() -> None:
    """The issue's build requirements, pinned down so they do not erode."""
    templates = _by_name(TEMPLATES["temporal-worker-build"])
    main = templates["main"]
    assert [group[0]["name"] for group in main["steps"]] == ["test", "build-push", "scan", "promote"]
    assert _param_names(main["outputs"]) == {"digest", "image"}
    build = templates["build-push"]
    assert build["nodeSelector"]
    volumes = {v["name"]: v for v in build["volumes"]}
    assert volumes["buildx-cache"]["persistentVolumeClaim"]["claimName"]
    assert volumes["harbor-credentials"]["secret"]["secretName"] == "harbor-credentials"
    assert build["retryStrategy"]["retryPolicy"] == "Always"
    assert [s["name"] for s in build["sidecars"]] == ["dind"]
    assert build["sidecars"][0]["image"].startswith(DIND_IMAGE_PREFIX)
    env = {e["name"]: e.get("value") for e in build["container"]["env"]}
    assert env["PLATFORM"] == "{{inputs.parameters.platform}}"
    # What the step scripts do is tested by executing them (test_argo_scripts.py).


def test_deploy_pipeline_rolls_back_and_fails() -> None:
    steps = [group[0] for group in _by_name(TEMPLATES["temporal-worker-deploy"])["main"]["steps"]]
    names = [s["name"] for s in steps]
    # In this order; other steps (e.g. a Worker Versioning promotion) may sit in between.
    expected = ["refuse-original-release", "staging-gate", "current-revision", "upgrade", "verify",
                "record-staging", "rollback", "verify-rollback", "fail"]
    assert [n for n in names if n in expected] == expected
    assert names[-1] == "fail"
    by_name = {s["name"]: s for s in steps}
    assert "rollback-on-failure" in by_name["rollback"]["when"]
    assert "continueOn" not in by_name["fail"]


def _inline_scripts() -> Iterator[tuple[str, str]]:
    for name, doc in TEMPLATES.items():
        for template in doc["spec"]["templates"]:
            where = f"{name}/{template['name']}"
            if "script" in template:
                yield where, template["script"]["source"]
            command = (template.get("container") or {}).get("command", [])
            if command[:2] == ["sh", "-c"]:
                yield where, command[2]


def test_inline_scripts_pass_shellcheck(tmp_path: Path) -> None:
    """Inline snippets are few and short, but they run too; lint them like files."""
    files = []
    for index, (where, source) in enumerate(_inline_scripts()):
        body = PLACEHOLDER.sub("ARGO_VALUE", source)
        path = tmp_path / f"{index:02d}-{where.replace('/', '_')}.sh"
        path.write_text(f"#!/bin/sh\n{body}\n")
        files.append(path)
    assert files, "expected at least the exit handler"
    result = subprocess.run(
        [str(VENV_BIN / "shellcheck"), "--shell=sh", *map(str, files)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- issue 10: defects that would have failed on a real cluster --------------------------------------


def _param_defaults(doc: dict[str, Any]) -> dict[str, str | None]:
    return {p["name"]: p.get("value") for p in doc["spec"]["arguments"]["parameters"]}


def _main_inputs(doc: dict[str, Any]) -> dict[str, Any]:
    main = _by_name(doc)[doc["spec"]["entrypoint"]]
    return {p["name"]: p for p in main["inputs"]["parameters"]}


def _steps(wt_name: str, template: str = "main") -> dict[str, dict[str, Any]]:
    groups = _by_name(TEMPLATES[wt_name])[template]["steps"]
    return {step["name"]: step for group in groups for step in group}


def _order(wt_name: str, template: str = "main") -> list[str]:
    groups = _by_name(TEMPLATES[wt_name])[template]["steps"]
    return [step["name"] for group in groups for step in group]


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def _evaluate_when(expression: str, values: dict[str, str]) -> bool:
    """Evaluate an Argo `when` of the form used here ('a' == 'b' joined by || and &&).

    Every `{{...}}` must be given in values, so a test cannot pass by leaving a
    placeholder unresolved; the result must be a bool.
    """

    def substitute(match: re.Match[str]) -> str:
        key = match.group(1)
        assert key in values, f"no value for {{{{{key}}}}} in {expression!r}"
        assert "'" not in values[key]
        return values[key]

    text = PLACEHOLDER.sub(substitute, expression)
    assert re.fullmatch(r"[\s()'A-Za-z0-9_.:/@=!|&-]*", text), text
    python = text.replace("||", " or ").replace("&&", " and ")
    result = eval(python, {"__builtins__": {}}, {})  # quoted literals and comparisons only
    assert isinstance(result, bool), text
    return result


def test_default_test_args_name_real_paths_and_gate_on_replay() -> None:
    """The build ran `pytest tests/workflows`, a folder that never existed: red on its defaults."""
    doc = TEMPLATES["temporal-worker-build"]
    defaults = {_param_defaults(doc)["test-args"], _main_inputs(doc)["test-args"]["default"]}
    assert len(defaults) == 1
    words = shlex.split(defaults.pop() or "")
    paths = [w.split("::", 1)[0] for w in words if not w.startswith("-")]
    assert paths, "the default test arguments name no tests"
    for path in paths:
        assert (REPO_ROOT / path).exists(), f"default test-args name a missing path: {path}"
    # Replay of the committed histories against the commit being built gates the image.
    assert "tests/integration/test_replay.py" in paths
    assert any((REPO_ROOT / "tests/integration/histories").glob("*.json"))


def _environments(doc: dict[str, Any]) -> list[str]:
    spec = {p["name"]: p for p in doc["spec"]["arguments"]["parameters"]}
    return list(spec["environment"]["enum"])


@pytest.mark.parametrize("name", ["temporal-worker-deploy", "alga-psa-build-migrate-deploy-with-temporal"])
def test_every_values_file_a_template_names_exists(name: str) -> None:
    """The deploy read the main Alga chart's values (alga-psa/<env>.values.yaml from the config
    repository), which this chart's strict schema rejects. Now the environment selects
    deploy/helm/values-<environment>.yaml from the worker repository at the image's commit."""
    doc = TEMPLATES[name]
    environments = _environments(doc)
    assert set(environments) == {"staging", "hosted"}
    assert _param_defaults(doc)["environment"] in environments
    for environment in environments:
        values = HELM_DIR / f"values-{environment}.yaml"
        assert values.is_file(), f"environment {environment}: {values} missing"
    # No default points into the main Alga chart's values any more: the overlay is opt-in.
    assert _param_defaults(doc)["helm-values-file"] == ""
    text = yaml.safe_dump(_strip(doc))
    assert "alga-psa/" not in text.replace("alga-psa/alga-psa", "")
    for path in re.findall(r"deploy/helm/values-[A-Za-z0-9_-]+\.yaml", text):
        assert (REPO_ROOT / path).is_file(), path


def test_upgrade_reads_values_from_the_worker_repository() -> None:
    upgrade = _by_name(TEMPLATES["temporal-worker-deploy"])["upgrade"]
    env = _env(upgrade["container"])
    assert env["ENVIRONMENT"] == "{{inputs.parameters.environment}}"
    source = next(a for a in upgrade["inputs"]["artifacts"] if a["name"] == "source")
    # The worker repository is checked out at /src at the image's commit; its deploy/helm holds the
    # chart and values-<environment>.yaml.
    assert source["path"] == "/src"
    assert source["git"]["revision"] == "{{inputs.parameters.image-tag}}"
    assert env["ENV_VALUES_DIR"] == "/src/deploy/helm"
    assert env["CHART_DIR"] == "/src/deploy/helm/temporal-worker"
    assert (REPO_ROOT / "deploy/helm/temporal-worker/Chart.yaml").is_file()


def test_default_namespace_matches_the_default_environments_values() -> None:
    """Defaults that work together: the chart's requiredNamespace guard accepts them."""
    for name in ("temporal-worker-deploy", "alga-psa-build-migrate-deploy-with-temporal"):
        defaults = _param_defaults(TEMPLATES[name])
        values = yaml.safe_load((HELM_DIR / f"values-{defaults['environment']}.yaml").read_text())
        assert values.get("requiredNamespace") == defaults["namespace"], name


def _dind_listeners(sidecar: dict[str, Any]) -> list[str]:
    """The TCP listeners a dind sidecar will open; refuses a configuration that exposes the daemon.

    docker:dind's entrypoint adds --host=tcp://0.0.0.0:2375 (or :2376 with TLS) unless it is
    handed a `dockerd ...` command line, so anything else counts as listening on every address.
    """
    words = [*(sidecar.get("command") or []), *(sidecar.get("args") or [])]
    assert words and words[0] == "dockerd", "dind without an explicit dockerd command line listens on 0.0.0.0"
    hosts: list[str] = []
    for index, word in enumerate(words):
        if word.startswith("--host="):
            hosts.append(word.split("=", 1)[1])
        elif word in ("-H", "--host"):
            hosts.append(words[index + 1])
        elif word.startswith("-H") and len(word) > 2:
            hosts.append(word[2:])
    tls = "--tlsverify" in words or any(w.startswith("--tlsverify=true") for w in words)
    tcp = []
    for host in hosts:
        if host.startswith(("unix://", "fd://")):
            continue
        match = re.fullmatch(r"(?:tcp://)?\[?([^\]/]*?)\]?:(\d+)", host)
        assert match, f"unparseable dockerd listener {host}"
        address = match.group(1)
        if not tls:
            assert address == "localhost" or ipaddress.ip_address(address).is_loopback, (
                f"plain-TCP dockerd listener on a non-loopback address: {host}"
            )
        tcp.append(host if host.startswith("tcp://") else f"tcp://{host}")
    return tcp


def test_dind_listener_check_refuses_exposed_daemons() -> None:
    """Guard the guard: the image's default and an explicit 0.0.0.0 are both refused."""
    with pytest.raises(AssertionError):
        _dind_listeners({"name": "dind", "image": "docker:dind"})
    with pytest.raises(AssertionError):
        _dind_listeners({"name": "dind", "args": ["--host=tcp://127.0.0.1:2375"]})  # entrypoint adds 0.0.0.0
    with pytest.raises(AssertionError):
        _dind_listeners({"name": "dind", "args": ["dockerd", "--host=tcp://0.0.0.0:2375", "--tls=false"]})
    with pytest.raises(AssertionError):
        _dind_listeners({"name": "dind", "args": ["dockerd", "-H", "tcp://10.0.0.7:2375"]})
    assert _dind_listeners({"name": "dind", "args": ["dockerd", "-H", "tcp://0.0.0.0:2376", "--tlsverify"]})


def test_dind_sidecars_listen_on_loopback_only() -> None:
    found = 0
    for name, doc in TEMPLATES.items():
        for template in doc["spec"]["templates"]:
            for sidecar in template.get("sidecars") or []:
                if "dind" not in sidecar["image"]:
                    continue
                found += 1
                listeners = _dind_listeners(sidecar)
                docker_host = _env(template["container"]).get("DOCKER_HOST")
                assert docker_host in listeners, f"{name}/{template['name']}: DOCKER_HOST {docker_host} not served"
    assert found == 2  # build-push and promote


def test_every_image_is_pinned_by_digest() -> None:
    assert PINNED_IMAGE.fullmatch("docker:27.5.1-cli@sha256:" + "0" * 64)
    assert not PINNED_IMAGE.fullmatch("docker:27-cli")
    assert not PINNED_IMAGE.fullmatch("docker@sha256:" + "0" * 63)
    images = set()
    for name, doc in TEMPLATES.items():
        for template in doc["spec"]["templates"]:
            for key, container in _all_containers(template):
                assert PINNED_IMAGE.fullmatch(container["image"]), f"{name}/{template['name']}/{key}"
                images.add(container["image"].split("@", 1)[0])
    assert images, "no images found"


def test_default_names_never_touch_the_original_worker() -> None:
    for name, doc in TEMPLATES.items():
        defaults = _param_defaults(doc)
        inputs = _main_inputs(doc)
        for param in ("release-name", "deployment-name"):
            if param in defaults:
                assert defaults[param] == OUR_NAME, f"{name}: {param}"
                assert inputs[param]["default"] == OUR_NAME, f"{name}: main {param}"


@pytest.mark.parametrize("name", ["temporal-worker-deploy", "temporal-worker-rollback"])
def test_the_original_release_is_refused_before_anything_runs(name: str) -> None:
    order = _order(name)
    assert order[0] == "refuse-original-release"
    guard = _steps(name)["refuse-original-release"]
    _, target = _target(name, guard)
    assert target["container"]["command"][:2] == ["sh", "-c"] and "exit 1" in target["container"]["command"][2]
    assert "continueOn" not in guard

    def refused(release: str, deployment: str) -> bool:
        return _evaluate_when(
            guard["when"],
            {"inputs.parameters.release-name": release, "inputs.parameters.deployment-name": deployment},
        )

    assert not refused(OUR_NAME, OUR_NAME)
    for release in ORIGINAL_RELEASES:
        assert refused(release, OUR_NAME)
    assert refused(OUR_NAME, ORIGINAL_DEPLOYMENT)


def test_composite_never_names_the_original_worker() -> None:
    """The composite runs the Alga PSA pipeline (release alga-psa, which still carries the original
    worker), but its worker tasks only ever pass its own release and Deployment names."""
    doc = TEMPLATES["alga-psa-build-migrate-deploy-with-temporal"]
    main = _by_name(doc)["main"]
    for task in main["dag"]["tasks"]:
        for param in (task.get("arguments") or {}).get("parameters", []):
            if param["name"] in ("release-name", "deployment-name"):
                assert param["value"] == f"{{{{inputs.parameters.{param['name']}}}}}", task["name"]
    # No parameter anywhere (workflow arguments, inputs, task arguments) carries an original name.
    originals = {*ORIGINAL_RELEASES, ORIGINAL_DEPLOYMENT}

    def parameters(node: Any) -> Iterator[dict[str, Any]]:
        if isinstance(node, dict):
            if "name" in node and ("value" in node or "default" in node):
                yield node
            for value in node.values():
                yield from parameters(value)
        elif isinstance(node, list):
            for value in node:
                yield from parameters(value)

    found = list(parameters(doc["spec"]))
    assert len(found) > 20
    for param in found:
        assert param.get("value") not in originals and param.get("default") not in originals, param


# --- issue 10: pipelines that do not race -------------------------------------------------------------


def _mutex(template: dict[str, Any]) -> str | None:
    sync = template.get("synchronization") or {}
    return (sync.get("mutex") or {}).get("name")


def test_deploy_and_rollback_share_one_mutex_per_release() -> None:
    deploy = _by_name(TEMPLATES["temporal-worker-deploy"])["main"]
    rollback = _by_name(TEMPLATES["temporal-worker-rollback"])["main"]
    name = _mutex(deploy)
    assert name and name == _mutex(rollback)
    assert "{{inputs.parameters.namespace}}" in name and "{{inputs.parameters.release-name}}" in name
    rendered = {}
    for ns in ("msp", "msp-staging"):
        for rel in (OUR_NAME, "other"):
            lock = name.replace("{{inputs.parameters.namespace}}", ns)
            rendered[(ns, rel)] = lock.replace("{{inputs.parameters.release-name}}", rel)
    assert len(set(rendered.values())) == 4, "different releases must not share a lock"
    for lock in rendered.values():
        assert re.fullmatch(r"[a-z0-9][a-z0-9.-]*", lock), lock
    # The composite reaches the lock through templateRef to the deploy's main: it must not hold it
    # itself (a workflow holding the lock its child template waits for would deadlock).
    for doc in TEMPLATES.values():
        assert "synchronization" not in doc["spec"], doc["metadata"]["name"]
    composite = _by_name(TEMPLATES["alga-psa-build-migrate-deploy-with-temporal"])
    assert all(_mutex(t) is None for t in composite.values())
    deploy_calls = [
        t for t in composite["main"]["dag"]["tasks"]
        if t.get("templateRef") == {"name": "temporal-worker-deploy", "template": "main"}
    ]
    assert {t["name"] for t in deploy_calls} == {"deploy-temporal-worker", "promote-temporal-worker"}


def test_each_build_cache_is_used_by_one_build_at_a_time() -> None:
    claims = 0
    for name, doc in TEMPLATES.items():
        for template in doc["spec"]["templates"]:
            for volume in template.get("volumes") or []:
                claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
                if claim:
                    claims += 1
                    assert _mutex(template) == f"pvc-{claim}", f"{name}/{template['name']}"
    assert claims == 1
    cache = yaml.safe_load((CLUSTER_DIR / "buildx-cache-pvc.yaml").read_text())
    assert _mutex(_by_name(TEMPLATES["temporal-worker-build"])["build-push"]) == f"pvc-{cache['metadata']['name']}"


def _cluster_docs() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(CLUSTER_DIR.glob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def _creates_pod(template: dict[str, Any]) -> bool:
    return any(key in template for key in ("container", "script", "containerSet", "resource", "data"))


def test_build_pods_carry_the_label_the_network_policy_selects() -> None:
    policy = yaml.safe_load(NETWORK_POLICY_FILE.read_text())
    assert policy["kind"] == "NetworkPolicy" and policy["metadata"]["namespace"] == "argo"
    selector = policy["spec"]["podSelector"]["matchLabels"]
    assert selector and "matchExpressions" not in policy["spec"]["podSelector"]
    pods = 0
    for template in TEMPLATES["temporal-worker-build"]["spec"]["templates"]:
        if not _creates_pod(template) or template["name"] == "exit-handler":
            continue
        pods += 1
        labels = (template.get("metadata") or {}).get("labels") or {}
        assert selector.items() <= labels.items(), f"build template {template['name']} is not covered"
    assert pods == 4  # test, build-push, scan, promote


def test_build_network_policy_allows_only_dns_and_https_out_and_nothing_in() -> None:
    spec = yaml.safe_load(NETWORK_POLICY_FILE.read_text())["spec"]
    assert set(spec["policyTypes"]) == {"Ingress", "Egress"}
    assert spec.get("ingress", []) == []  # dind's listener is pod-local; nothing may connect in
    allowed = {("UDP", 53), ("TCP", 53), ("TCP", 443), ("TCP", 6443)}
    for rule in spec["egress"]:
        assert rule.get("ports"), "an egress rule without ports allows every port"
        for port in rule["ports"]:
            assert (port.get("protocol", "TCP"), port["port"]) in allowed, port
        assert rule.get("to"), "an egress rule without peers allows every destination"
        for peer in rule["to"]:
            block = peer.get("ipBlock")
            if block:
                network = ipaddress.ip_network(block["cidr"])
                metadata = ipaddress.ip_address("169.254.169.254" if network.version == 4 else "fe80::a9fe:a9fe")
                if metadata in network:
                    assert any(metadata in ipaddress.ip_network(e) for e in block.get("except", [])), block
    dns_rules = [r for r in spec["egress"] if {p["port"] for p in r["ports"]} == {53}]
    assert len(dns_rules) == 1
    assert all("ipBlock" not in peer for peer in dns_rules[0]["to"])


@pytest.mark.parametrize("kube_version", ["1.29.0", latest_version()])
def test_cluster_objects_validate_strictly(kube_version: str) -> None:
    docs = _cluster_docs()
    assert {"NetworkPolicy", "PersistentVolumeClaim", "Role", "RoleBinding", "ServiceAccount"} <= {
        d["kind"] for d in docs
    }
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, kube_version, strict=True)
        except kubernetes_validate.ValidationError as err:
            pytest.fail(f"{doc['kind']} {doc['metadata']['name']}: {err.message} at {err.path}")


def test_deployer_may_manage_everything_the_chart_renders_in_both_namespaces() -> None:
    """helm upgrade fails half-way on a kind the deployer cannot create (e.g. staging's ScaledObject)."""
    roles = {
        d["metadata"]["namespace"]: d
        for d in _cluster_docs()
        if d["kind"] == "Role" and d["metadata"]["name"] == "temporal-worker-deployer"
    }
    assert set(roles) == {"msp", "msp-staging"}
    rendered_kinds = set()
    for path in (REPO_ROOT / "deploy/helm/temporal-worker/templates").glob("*.yaml"):
        rendered_kinds |= set(re.findall(r"^kind: (\w+)", path.read_text(), flags=re.MULTILINE))
    plural = {"NetworkPolicy": "networkpolicies", "PodDisruptionBudget": "poddisruptionbudgets",
              "HorizontalPodAutoscaler": "horizontalpodautoscalers"}
    for namespace, role in roles.items():
        writable = {
            resource
            for rule in role["rules"]
            if {"create", "patch", "delete"} <= set(rule["verbs"])
            for resource in rule["resources"]
        }
        for kind in rendered_kinds:
            resource = plural.get(kind, kind.lower() + "s")
            assert resource in writable, f"{namespace}: deployer cannot manage {kind}"


# --- issue 10: staging first --------------------------------------------------------------------------


def test_staging_gate_runs_before_helm_for_every_environment_but_staging() -> None:
    order = _order("temporal-worker-deploy")
    assert order.index("staging-gate") < order.index("current-revision") < order.index("upgrade")
    gate = _steps("temporal-worker-deploy")["staging-gate"]
    assert "continueOn" not in gate  # a refused gate ends the workflow before helm
    for environment, gated in (("hosted", True), ("staging", False)):
        assert _evaluate_when(gate["when"], {"inputs.parameters.environment": environment}) is gated
    arguments = {p["name"]: p["value"] for p in gate["arguments"]["parameters"]}
    assert arguments["image-digest"] == "{{inputs.parameters.image-digest}}"
    template = _by_name(TEMPLATES["temporal-worker-deploy"])["staging-gate"]
    assert template["container"]["command"][-1].endswith("/check-staging-verified.sh")
    env = _env(template["container"])
    assert env["DIGEST"] == "{{inputs.parameters.image-digest}}"
    # Never lookup mode here: an empty digest must be refused, not replaced by "some verified digest".
    assert "IMAGE_TAG" not in env


def test_only_a_verified_staging_deploy_is_recorded() -> None:
    order = _order("temporal-worker-deploy")
    assert order.index("verify") < order.index("promote") < order.index("record-staging") < order.index("rollback")
    record = _steps("temporal-worker-deploy")["record-staging"]
    assert "continueOn" not in record

    def recorded(environment: str, digest: str, verify: str, promote: str = "Succeeded") -> bool:
        return _evaluate_when(
            record["when"],
            {
                "inputs.parameters.environment": environment,
                "inputs.parameters.image-digest": digest,
                "steps.verify.status": verify,
                "steps.promote.status": promote,
            },
        )

    digest = "sha256:" + "a" * 64
    assert recorded("staging", digest, "Succeeded")
    assert not recorded("staging", digest, "Failed")
    assert not recorded("staging", digest, "Skipped")  # upgrade failed
    assert not recorded("staging", digest, "Succeeded", promote="Failed")  # never current: not verified
    assert not recorded("staging", "", "Succeeded")
    assert not recorded("hosted", digest, "Succeeded")
    template = _by_name(TEMPLATES["temporal-worker-deploy"])["record-staging"]
    assert template["container"]["command"][-1].endswith("/record-staging-verified.sh")
    env = _env(template["container"])
    # The gate reads the records where the recorder writes them.
    gate_env = _env(_by_name(TEMPLATES["temporal-worker-deploy"])["staging-gate"]["container"])
    assert env["RECORD_NAMESPACE"] == gate_env["RECORD_NAMESPACE"] == "{{workflow.namespace}}"


def test_composite_builds_for_staging_and_promotes_to_hosted() -> None:
    doc = TEMPLATES["alga-psa-build-migrate-deploy-with-temporal"]
    tasks = {t["name"]: t for t in _by_name(doc)["main"]["dag"]["tasks"]}

    def runs(task: str, environment: str) -> bool:
        return _evaluate_when(
            tasks[task]["when"],
            {"tasks.decide.outputs.parameters.build": "true", "inputs.parameters.environment": environment},
        )

    assert runs("build-temporal-worker", "staging") and runs("deploy-temporal-worker", "staging")
    assert not runs("staging-digest", "staging") and not runs("promote-temporal-worker", "staging")
    # Hosted never rebuilds (a rebuild has another digest, which staging never verified).
    assert not runs("build-temporal-worker", "hosted") and not runs("deploy-temporal-worker", "hosted")
    assert runs("staging-digest", "hosted") and runs("promote-temporal-worker", "hosted")

    def digest_source(task: str) -> str:
        params = {p["name"]: p["value"] for p in tasks[task]["arguments"]["parameters"]}
        return str(params["image-digest"])

    assert digest_source("deploy-temporal-worker") == "{{tasks.build-temporal-worker.outputs.parameters.digest}}"
    assert digest_source("promote-temporal-worker") == "{{tasks.staging-digest.outputs.parameters.digest}}"
    lookup_target = tasks["staging-digest"]["templateRef"]
    lookup = _by_name(TEMPLATES[lookup_target["name"]])[lookup_target["template"]]
    assert lookup["container"]["command"][-1].endswith("/check-staging-verified.sh")
    assert "DIGEST" not in _env(lookup["container"])  # lookup mode by image tag
    for task in ("deploy-temporal-worker", "promote-temporal-worker"):
        assert "alga-psa" in re.findall(r"[A-Za-z0-9-]+", tasks[task]["depends"])  # migrations first


def test_the_version_is_promoted_only_after_verification_and_back_after_a_rollback() -> None:
    """Worker Versioning: a build becomes current only once verified; a failed promotion rolls back,
    and the rolled-back build is made current again (deploy and the manual rollback template)."""
    order = _order("temporal-worker-deploy")
    assert order.index("verify") < order.index("promote") < order.index("rollback")
    assert order.index("verify-rollback") < order.index("promote-rollback") < order.index("fail")
    steps = _steps("temporal-worker-deploy")
    statuses = ("Succeeded", "Failed", "Skipped")
    for verify in statuses:
        assert _evaluate_when(steps["promote"]["when"], {"steps.verify.status": verify}) == (verify == "Succeeded")
    build_ids = {p["name"]: p["value"] for p in steps["promote"]["arguments"]["parameters"]}
    assert build_ids["build-id"] == "{{inputs.parameters.image-tag}}"
    back = {p["name"]: p["value"] for p in steps["promote-rollback"]["arguments"]["parameters"]}
    assert back["build-id"] == ""  # the tag the Deployment runs after the rollback

    def rolls_back(promote: str) -> bool:
        return _evaluate_when(steps["rollback"]["when"], {
            "steps.upgrade.status": "Succeeded", "steps.verify.status": "Succeeded",
            "steps.promote.status": promote, "inputs.parameters.rollback-on-failure": "true",
            "steps.current-revision.outputs.parameters.revision": "4"})

    assert rolls_back("Failed") and not rolls_back("Succeeded")
    template = _by_name(TEMPLATES["temporal-worker-deploy"])["promote"]
    assert template["container"]["command"][-1].endswith("/promote-worker-version.sh")
    assert (REPO_ROOT / "deploy" / "argo" / "scripts" / "promote-worker-version.sh").exists()
    rollback_order = _order("temporal-worker-rollback")
    assert rollback_order.index("verify") < rollback_order.index("promote")
    ref = _steps("temporal-worker-rollback")["promote"]["templateRef"]
    assert ref == {"name": "temporal-worker-deploy", "template": "promote"}


def test_drained_builds_are_pruned_after_promote_and_a_failed_prune_never_rolls_back() -> None:
    order = _order("temporal-worker-deploy")
    assert order.index("promote") < order.index("prune-drained") < order.index("rollback")
    steps = _steps("temporal-worker-deploy")
    prune = steps["prune-drained"]
    assert prune["continueOn"] == {"failed": True, "error": True}
    assert _evaluate_when(prune["when"], {"steps.promote.status": "Succeeded"})
    assert not _evaluate_when(prune["when"], {"steps.promote.status": "Failed"})
    assert "prune-drained" not in steps["rollback"]["when"]
    template = _by_name(TEMPLATES["temporal-worker-deploy"])["prune-drained"]
    assert template["container"]["command"][-1].endswith("/prune-drained-versions.sh")

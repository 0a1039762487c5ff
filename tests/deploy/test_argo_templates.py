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
- inline script snippets pass shellcheck like the script files do.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
ARGO_DIR = REPO_ROOT / "deploy" / "argo"
TEMPLATES_DIR = ARGO_DIR / "templates"
SCRIPTS_DIR = ARGO_DIR / "scripts"
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
            assert ":" in image and not image.endswith(":latest"), f"{where}: unpinned {image}"
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][kind]), where
            context = container.get("securityContext", {})
            if context.get("privileged"):
                # The only privileged container allowed is the dind sidecar.
                assert key == "sidecars/dind" and image == "docker:27-dind", where
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
    assert [s["image"] for s in build["sidecars"]] == ["docker:27-dind"]
    env = {e["name"]: e.get("value") for e in build["container"]["env"]}
    assert env["PLATFORM"] == "{{inputs.parameters.platform}}"
    script = (SCRIPTS_DIR / "build-image.sh").read_text()
    for needle in ("--driver docker-container", "type=local", "mode=max", "--push"):
        assert needle in script
    scan_script = (SCRIPTS_DIR / "scan-image.sh").read_text()
    assert "--exit-code 1" in scan_script


def test_deploy_pipeline_rolls_back_and_fails() -> None:
    steps = [group[0] for group in _by_name(TEMPLATES["temporal-worker-deploy"])["main"]["steps"]]
    names = [s["name"] for s in steps]
    assert names == ["current-revision", "upgrade", "verify", "rollback", "verify-rollback", "fail"]
    by_name = {s["name"]: s for s in steps}
    assert "rollback-on-failure" in by_name["rollback"]["when"]
    assert "continueOn" not in by_name["fail"]
    script = (SCRIPTS_DIR / "helm-upgrade.sh").read_text()
    assert "--install" in script and "--wait" in script and "--timeout" in script
    verify = (SCRIPTS_DIR / "verify-deployment.sh").read_text()
    for needle in ("rollout status", "condition=Ready", "/readyz", "alga-worker health-check"):
        assert needle in verify


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

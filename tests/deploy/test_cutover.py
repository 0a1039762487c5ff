"""docs/cutover.md against what ships: the names, queues and commands the runbook relies on are true.

The runbook's one rule is that a TypeScript run never replays on this worker. What makes that hold in
the shipped configuration: the environments where the original worker runs (staging, hosted) never
poll one of the original's task queues, and the names of this chart's objects never equal the
original's, so both releases live side by side in one namespace.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from tests.deploy.helm_support import RELEASE, ValueSet, load_yaml, only, render_set, value_sets

REPO_ROOT = Path(__file__).resolve().parents[2]
CUTOVER = (REPO_ROOT / "docs" / "cutover.md").read_text(encoding="utf-8")
# The original's queues (reference section 1 and 8.3: TEMPORAL_TASK_QUEUES, chart taskQueue).
ORIGINAL_QUEUES = {"tenant-workflows", "portal-domain-workflows", "email-domain-workflows", "alga-jobs"}
ORIGINAL_NAMES = {"alga-psa", "alga-psa-temporal-worker", "alga-psa-temporal-worker-secrets"}
PRODUCTION_SETS = [s for s in value_sets() if s.name.split("-")[0] in {"staging", "hosted"}]


def test_there_are_production_value_sets() -> None:
    assert {s.name.split("-")[0] for s in PRODUCTION_SETS} == {"staging", "hosted"}


@pytest.mark.parametrize("value_set", PRODUCTION_SETS, ids=lambda s: s.name)
def test_staging_and_hosted_never_poll_a_queue_of_the_original(value_set: ValueSet) -> None:
    configmap = only(render_set(value_set), "ConfigMap")["data"]
    queue = configmap["TEMPORAL_TASK_QUEUE"]
    assert queue not in ORIGINAL_QUEUES
    assert f"`{queue}`" in CUTOVER, "the runbook names the queue the shipped values use"


@pytest.mark.parametrize("value_set", PRODUCTION_SETS, ids=lambda s: s.name)
def test_the_runbooks_names_are_the_rendered_ones(value_set: ValueSet) -> None:
    objects = render_set(value_set)
    deployment = only(objects, "Deployment")
    name = deployment["metadata"]["name"]
    assert name == RELEASE == "temporal-worker-py"
    assert f"`{name}`" in CUTOVER
    selector = deployment["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"]
    assert selector != "temporal-worker" and f"`{selector}`" in CUTOVER
    for obj in objects:
        assert obj["metadata"]["name"] not in ORIGINAL_NAMES, obj["kind"]


def test_the_runbooks_helm_values_keys_exist_in_the_chart() -> None:
    """`--set config.X=...` in the runbook must name a key the chart reads (a typo would be ignored)."""
    chart_values = load_yaml(REPO_ROOT / "deploy" / "helm" / "temporal-worker" / "values.yaml")
    for key in re.findall(r"--set (config\.[A-Z_]+)=", CUTOVER):
        assert key.split(".", 1)[1] in chart_values["config"], key


def test_the_runbooks_alga_worker_commands_exist() -> None:
    """Every `alga-worker <noun> <verb>` the runbook tells an operator to type is a real command."""
    from typer.main import get_command

    from alga_worker.cli import app

    root = get_command(app)
    commands = set(re.findall(r"alga-worker ([a-z-]+)(?: ([a-z-]+))?", CUTOVER))
    assert commands
    for noun, verb in commands:
        group = root.commands.get(noun)  # type: ignore[attr-defined]
        assert group is not None, noun
        if verb and hasattr(group, "commands"):
            assert verb in group.commands, f"{noun} {verb}"

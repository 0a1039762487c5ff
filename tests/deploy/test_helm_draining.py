"""Draining Deployments (versioning.draining): earlier builds keep running for the workflows pinned to them.

Each draining build id gets its own Deployment with the main pod spec but that image tag and BUILD_ID; its
pods are selected by nothing that belongs to the main Deployment (selector, Service, PDB, autoscaler), are
covered by the NetworkPolicy, and count against the database connection budget.
"""

from __future__ import annotations

from typing import Any

import helm_python
import kubernetes_validate
import pytest
from helm_support import (
    DRAINING_IDS,
    KUBE_MIN_VERSION,
    deep_merge,
    draining_value_set,
    only,
    render_objects,
    render_set,
    selects,
    validate_object,
    value_sets,
)
from kubernetes_validate.utils import latest_version

NEW_TAG = "2222222222222222222222222222222222222222"
DRAINING = draining_value_set()


@pytest.fixture(scope="module")
def objects() -> list[dict[str, Any]]:
    return render_set(DRAINING)


def deployments(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == "Deployment"}


def pod_labels(deployment: dict[str, Any]) -> dict[str, str]:
    return dict(deployment["spec"]["template"]["metadata"]["labels"])


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (worker,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(worker)


def build_id_env(deployment: dict[str, Any]) -> str | None:
    return next((e["value"] for e in container(deployment).get("env", []) if e["name"] == "BUILD_ID"), None)


def render_draining(**values: Any) -> list[dict[str, Any]]:
    return render_objects(deep_merge(DRAINING.values, values), DRAINING.namespace, DRAINING.release)


def test_each_draining_build_gets_a_deployment_with_its_image_and_build_id(objects: list[dict[str, Any]]) -> None:
    found = deployments(objects)
    main = found.pop("temporal-worker-py")
    assert sorted(found) == [f"temporal-worker-py-drain-{i[:12]}" for i in sorted(DRAINING_IDS)]
    repository = container(main)["image"].split(":")[0]
    for build_id in DRAINING_IDS:
        drain = found[f"temporal-worker-py-drain-{build_id[:12]}"]
        assert container(drain)["image"] == f"{repository}:{build_id}"
        assert build_id_env(drain) == build_id
        assert drain["spec"]["replicas"] == 1
        assert pod_labels(drain)["app.kubernetes.io/component"] == "draining-worker"
        assert pod_labels(drain)["temporal-worker.nineminds.com/build-id"] == build_id
        # Same pod spec otherwise: only the image and the BUILD_ID override differ.
        main_spec, drain_spec = main["spec"]["template"]["spec"], drain["spec"]["template"]["spec"]
        spread_keys = {"containers", "affinity", "topologySpreadConstraints"}
        assert {k for k in main_spec if main_spec[k] != drain_spec.get(k)} <= spread_keys
        # Anti-affinity and topology spread count the draining build's own pods.
        own = drain["spec"]["selector"]["matchLabels"]
        assert all(c["labelSelector"]["matchLabels"] == own for c in drain_spec["topologySpreadConstraints"])
        main_c, drain_c = container(main), container(drain)
        assert {k for k in main_c.keys() | drain_c.keys() if main_c.get(k) != drain_c.get(k)} == {"image", "env"}
        assert [e for e in drain_c["env"] if e["name"] != "BUILD_ID"] == main_c.get("env", [])
        assert drain["spec"]["template"]["metadata"]["annotations"] == main["spec"]["template"]["metadata"][
            "annotations"
        ]
    # The main Deployment runs the new tag, BUILD_ID from the ConfigMap.
    assert container(main)["image"].startswith(f"{repository}:{NEW_TAG}")
    assert build_id_env(main) is None
    assert only(objects, "ConfigMap")["data"]["BUILD_ID"] == NEW_TAG


def test_selectors_are_disjoint(objects: list[dict[str, Any]]) -> None:
    found = deployments(objects)
    for name, deployment in found.items():
        selector = deployment["spec"]["selector"]
        for other_name, other in found.items():
            assert selects(selector, pod_labels(other)) == (name == other_name), (name, other_name)
    main_pods = pod_labels(found["temporal-worker-py"])
    drain_pods = [pod_labels(d) for n, d in found.items() if n != "temporal-worker-py"]
    service = only(objects, "Service")["spec"]["selector"]
    pdb = only(objects, "PodDisruptionBudget")["spec"]["selector"]
    assert selects({"matchLabels": service}, main_pods) and selects(pdb, main_pods)
    assert not any(selects({"matchLabels": service}, p) or selects(pdb, p) for p in drain_pods)
    # The autoscaler scales the main Deployment only.
    assert only(objects, "ScaledObject")["spec"]["scaleTargetRef"]["name"] == "temporal-worker-py"


def test_network_policy_covers_the_draining_pods(objects: list[dict[str, Any]]) -> None:
    policy = only(objects, "NetworkPolicy")["spec"]["podSelector"]
    for deployment in deployments(objects).values():
        assert selects(policy, pod_labels(deployment))
    # ... and nothing of another release.
    assert not selects(policy, {**pod_labels(deployments(objects)["temporal-worker-py"]),
                                "app.kubernetes.io/instance": "alga-psa"})


@pytest.mark.parametrize("kube_version", [KUBE_MIN_VERSION, latest_version()])
def test_draining_objects_validate_strictly(objects: list[dict[str, Any]], kube_version: str) -> None:
    for obj in objects:
        try:
            validate_object(obj, kube_version)
        except kubernetes_validate.ValidationError as err:
            pytest.fail(f"{obj['kind']} {obj['metadata']['name']}: {err.message} at {err.path}")


def test_no_draining_renders_the_main_deployment_only() -> None:
    objects = render_draining(versioning={"draining": []})
    assert list(deployments(objects)) == ["temporal-worker-py"]


def test_connection_budget_counts_draining_pods() -> None:
    # hosted: (18 max + 1 surge) x (5 + 1) = 114; two draining builds x 2 replicas add 4 x 6 = 24.
    render_draining(versioning={"drainingReplicas": 2}, database={"connectionBudget": 138})
    with pytest.raises(helm_python.HelmError, match=r"4 draining.* = 138 exceeds database.connectionBudget 137"):
        render_draining(versioning={"drainingReplicas": 2}, database={"connectionBudget": 137})


@pytest.mark.parametrize(
    "draining",
    [
        ["-leading-dash"],
        ["has space"],
        ["UPPER/slash"],
        ["x" * 64],
        [""],
        ["a", "a"],
        [f"{n:040d}" for n in range(6)],
    ],
)
def test_schema_refuses_bad_draining_ids(draining: list[str]) -> None:
    with pytest.raises(helm_python.HelmError):
        render_draining(versioning={"draining": draining})


def test_refuses_draining_the_image_being_deployed_or_without_versioning() -> None:
    with pytest.raises(helm_python.HelmError, match="is the image being deployed"):
        render_draining(versioning={"draining": [NEW_TAG]})
    with pytest.raises(helm_python.HelmError, match="needs worker versioning"):
        render_draining(config={"TEMPORAL_WORKER_DEPLOYMENT_NAME": ""})
    # Ids that would share one Deployment name (truncated to 12) are refused, not silently merged.
    with pytest.raises(helm_python.HelmError, match="same Deployment name"):
        render_draining(versioning={"draining": ["abcdefabcdef1", "abcdefabcdef2"]})


@pytest.mark.parametrize("environment", ["staging", "hosted"])
def test_the_shipped_budgets_leave_room_for_two_draining_builds(environment: str) -> None:
    """A rollout with Worker Versioning keeps the replaced build's pods: staging and hosted must render
    (within their declared connection budget) with two earlier builds still draining."""
    shipped = next(v for v in value_sets() if v.name == environment)
    values = deep_merge(shipped.values, {"image": {"tag": "2222222222222222222222222222222222222222"},
                                         "versioning": {"draining": list(DRAINING_IDS)}})
    objects = render_objects(values, shipped.namespace, shipped.release)
    drains = [o for o in objects if o["kind"] == "Deployment" and "-drain-" in o["metadata"]["name"]]
    assert len(drains) == 2

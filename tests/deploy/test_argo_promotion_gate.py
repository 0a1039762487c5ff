"""The staging-first promotion gate, executed: record-staging-verified.sh and check-staging-verified.sh
run for real (POSIX sh, lib.sh) against a fake `kubectl` first on PATH.

The fake keeps ConfigMaps and Deployments in a JSON state file, answers `get` (by name or by label
selector, with the jsonpath forms the scripts use), `apply -f` (it parses the manifest the record script
wrote, as the API server would) and records every call. Failure modes model the cases that matter:
API unreachable, RBAC refusal, a failing apply. The tests assert outcomes: exit code, whether a record
exists, which digest a lookup promotes; never the command lines.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPTS_DIR = REPO_ROOT / "deploy" / "argo" / "scripts"
CHECK = SCRIPTS_DIR / "check-staging-verified.sh"
RECORD = SCRIPTS_DIR / "record-staging-verified.sh"

REPOSITORY = "harbor.nineminds.com/nineminds/temporal-worker"
TAG = "0123456789abcdef0123456789abcdef01234567"
DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64
STAGING_NS = "msp-staging"
DEPLOYMENT = "temporal-worker-py"

FAKE_KUBECTL = r'''
import json, os, re, sys

import yaml

state_path = os.environ["FAKE_KUBECTL_STATE"]
with open(os.environ["FAKE_KUBECTL_LOG"], "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\n")
fail = os.environ.get("FAKE_KUBECTL_FAIL", "")
if fail == "unreachable":
    sys.stderr.write("The connection to the server 10.0.0.1:6443 was refused"
                     " - did you specify the right host or port?\n")
    sys.exit(1)
if fail == "forbidden":
    sys.stderr.write('Error from server (Forbidden): configmaps is forbidden: User "system:serviceaccount:argo:x" '
                     'cannot get resource "configmaps" in API group "" in the namespace "argo"\n')
    sys.exit(1)

with open(state_path) as fh:
    state = json.load(fh)

positional, flags = [], {}
aliases = {"-n": "--namespace", "-o": "--output", "-l": "--selector", "-f": "--filename"}
args = sys.argv[1:]
i = 0
while i < len(args):
    arg = args[i]
    if arg.startswith("-"):
        if "=" in arg:
            key, value = arg.split("=", 1)
        else:
            key, value = arg, args[i + 1]
            i += 1
        flags[aliases.get(key, key)] = value
    else:
        positional.append(arg)
    i += 1


def lookup(obj, path):
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        if part.startswith("["):
            idx = int(part[1:-1])
            obj = obj[idx] if isinstance(obj, list) and len(obj) > idx else None
        else:
            obj = obj.get(part) if isinstance(obj, dict) else None
        if obj is None:
            return ""
    return obj


def render(obj, template):
    out = []
    for token in re.findall(r"\{([^{}]*)\}", template):
        if token.startswith('"'):
            out.append(json.loads(token))
        else:
            out.append(str(lookup(obj, token.lstrip("."))))
    return "".join(out)


def jsonpath(obj, expression):
    assert expression.startswith("jsonpath="), expression
    template = expression[len("jsonpath="):]
    match = re.fullmatch(r"\{range \.items\[\*\]\}(.*)\{end\}", template)
    if match:
        return "".join(render(item, match.group(1)) for item in obj["items"])
    return render(obj, template)


def save():
    with open(state_path, "w") as fh:
        json.dump(state, fh)


namespace = flags.get("--namespace", "default")
verb = positional[0]
if verb == "get":
    kind = positional[1]
    store = {"configmap": "configmaps", "configmaps": "configmaps", "deployment": "deployments"}[kind]
    objects = [o for o in state[store] if o["metadata"]["namespace"] == namespace]
    if len(positional) > 2:
        name = positional[2]
        found = [o for o in objects if o["metadata"]["name"] == name]
        if not found:
            sys.stderr.write(f'Error from server (NotFound): {store} "{name}" not found\n')
            sys.exit(1)
        print(jsonpath(found[0], flags["--output"]), end="")
    else:
        if "--selector" in flags:
            key, value = flags["--selector"].split("=", 1)
            objects = [o for o in objects if o["metadata"].get("labels", {}).get(key) == value]
        if flags.get("--sort-by") == ".metadata.creationTimestamp":
            objects.sort(key=lambda o: o["metadata"]["creationTimestamp"])
        print(jsonpath({"items": objects}, flags["--output"]), end="")
elif verb == "apply":
    if fail == "apply":
        sys.stderr.write("error: failed to create configmap: etcdserver: request timed out\n")
        sys.exit(1)
    with open(flags["--filename"]) as fh:
        doc = yaml.safe_load(fh)
    meta = doc["metadata"]
    store = state["configmaps"]
    key = (meta["namespace"], meta["name"])
    existing = [o for o in store if (o["metadata"]["namespace"], o["metadata"]["name"]) == key]
    state["clock"] += 1
    if existing:  # apply keeps the object's creation time
        meta["creationTimestamp"] = existing[0]["metadata"]["creationTimestamp"]
    else:
        meta["creationTimestamp"] = f"2030-01-01T00:00:{state['clock']:02d}Z"
    state["configmaps"] = [o for o in store if o not in existing] + [doc]
    save()
    print(f"configmap/{meta['name']} configured")
else:
    sys.stderr.write(f"fake kubectl: unsupported {args}\n")
    sys.exit(3)
'''


@dataclass
class Cluster:
    """A fake kubectl on PATH plus the state it serves."""

    root: Path
    bin_dir: Path
    state_file: Path
    log_file: Path

    def state(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.state_file.read_text())
        return data

    def set_state(self, data: dict[str, Any]) -> None:
        self.state_file.write_text(json.dumps(data))

    def deploy(self, image: str, namespace: str = STAGING_NS, name: str = DEPLOYMENT) -> None:
        data = self.state()
        data["deployments"] = [
            d for d in data["deployments"] if (d["metadata"]["namespace"], d["metadata"]["name"]) != (namespace, name)
        ]
        data["deployments"].append(
            {
                "metadata": {"namespace": namespace, "name": name},
                "spec": {"template": {"spec": {"containers": [{"name": "worker", "image": image}]}}},
            }
        )
        self.set_state(data)

    def records(self) -> list[dict[str, Any]]:
        return list(self.state()["configmaps"])

    def calls(self) -> list[list[str]]:
        if not self.log_file.exists():
            return []
        return [json.loads(line) for line in self.log_file.read_text().splitlines()]

    def run(self, script: Path, env: dict[str, str], fail: str = "") -> subprocess.CompletedProcess[str]:
        full = {
            "PATH": f"{self.bin_dir}{os.pathsep}{os.environ['PATH']}",
            "TMPDIR": str(self.root),
            "OUTPUT_DIR": str(self.root / "outputs"),
            "FAKE_KUBECTL_STATE": str(self.state_file),
            "FAKE_KUBECTL_LOG": str(self.log_file),
            "FAKE_KUBECTL_FAIL": fail,
            **env,
        }
        return subprocess.run(["sh", str(script)], env=full, capture_output=True, text=True, timeout=60)

    def output(self, name: str) -> str | None:
        path = self.root / "outputs" / name
        return path.read_text() if path.exists() else None


@pytest.fixture
def cluster(tmp_path: Path) -> Cluster:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    kubectl = bin_dir / "kubectl"
    kubectl.write_text(f"#!{sys.executable}\n{FAKE_KUBECTL}")
    kubectl.chmod(0o755)
    created = Cluster(tmp_path, bin_dir, tmp_path / "state.json", tmp_path / "calls.jsonl")
    created.set_state({"configmaps": [], "deployments": [], "clock": 0})
    return created


def record_env(digest: str, tag: str = TAG) -> dict[str, str]:
    return {
        "DIGEST": digest,
        "IMAGE_REPOSITORY": REPOSITORY,
        "IMAGE_TAG": tag,
        "NAMESPACE": STAGING_NS,
        "DEPLOYMENT": DEPLOYMENT,
        "RELEASE": "temporal-worker-py",
        "WORKFLOW_NAME": "temporal-worker-deploy-abcde",
    }


def record(cluster: Cluster, digest: str, tag: str = TAG) -> subprocess.CompletedProcess[str]:
    """A verified staging deploy of digest, then the record step."""
    cluster.deploy(f"{REPOSITORY}:{tag}@{digest}")
    return cluster.run(RECORD, record_env(digest, tag))


def test_verified_digest_passes_the_gate(cluster: Cluster) -> None:
    recorded = record(cluster, DIGEST_A)
    assert recorded.returncode == 0, recorded.stderr
    result = cluster.run(CHECK, {"DIGEST": DIGEST_A})
    assert result.returncode == 0, result.stderr
    assert cluster.calls(), "the fake kubectl was not used"


def test_record_holds_what_was_verified(cluster: Cluster) -> None:
    assert record(cluster, DIGEST_A).returncode == 0
    [cm] = cluster.records()
    assert cm["metadata"]["namespace"] == "argo"
    assert cm["data"]["digest"] == DIGEST_A
    assert cm["data"]["tag"] == TAG
    assert cm["data"]["namespace"] == STAGING_NS
    assert cm["data"]["image"] == f"{REPOSITORY}:{TAG}@{DIGEST_A}"


def test_other_digest_is_refused(cluster: Cluster) -> None:
    assert record(cluster, DIGEST_A).returncode == 0
    result = cluster.run(CHECK, {"DIGEST": DIGEST_B})
    assert result.returncode == 1
    assert "REFUSED" in result.stderr


def test_no_record_at_all_is_refused(cluster: Cluster) -> None:
    result = cluster.run(CHECK, {"DIGEST": DIGEST_A})
    assert result.returncode == 1
    assert "REFUSED" in result.stderr


@pytest.mark.parametrize("fail", ["unreachable", "forbidden"])
def test_kubectl_error_is_never_verified(cluster: Cluster, fail: str) -> None:
    assert record(cluster, DIGEST_A).returncode == 0
    result = cluster.run(CHECK, {"DIGEST": DIGEST_A}, fail=fail)
    assert result.returncode not in (0, 1), result.stderr  # an error, distinct from "not verified"
    assert "staging verified" not in result.stderr


def test_tampered_record_is_refused(cluster: Cluster) -> None:
    """A record under digest A's name that holds another digest does not verify A."""
    assert record(cluster, DIGEST_A).returncode == 0
    data = cluster.state()
    data["configmaps"][0]["data"]["digest"] = DIGEST_B
    cluster.set_state(data)
    assert cluster.run(CHECK, {"DIGEST": DIGEST_A}).returncode == 1


@pytest.mark.parametrize("digest", ["", "sha256:abc", "sha256:" + "A" * 64, "md5:" + "a" * 64, DIGEST_A + "\nx"])
def test_malformed_digest_is_rejected_by_both_scripts(cluster: Cluster, digest: str) -> None:
    if digest:
        assert cluster.run(CHECK, {"DIGEST": digest}).returncode != 0
    cluster.deploy(f"{REPOSITORY}:{TAG}@{digest}")
    assert cluster.run(RECORD, record_env(digest)).returncode != 0
    assert cluster.records() == []


def test_record_refuses_when_staging_runs_another_digest(cluster: Cluster) -> None:
    cluster.deploy(f"{REPOSITORY}:{TAG}@{DIGEST_B}")
    result = cluster.run(RECORD, record_env(DIGEST_A))
    assert result.returncode != 0
    assert cluster.records() == []
    assert cluster.run(CHECK, {"DIGEST": DIGEST_A}).returncode == 1


def test_record_refuses_when_the_deployment_is_missing(cluster: Cluster) -> None:
    result = cluster.run(RECORD, record_env(DIGEST_A))
    assert result.returncode != 0
    assert cluster.records() == []


@pytest.mark.parametrize("fail", ["unreachable", "apply"])
def test_record_fails_loudly_on_kubectl_errors(cluster: Cluster, fail: str) -> None:
    cluster.deploy(f"{REPOSITORY}:{TAG}@{DIGEST_A}")
    result = cluster.run(RECORD, record_env(DIGEST_A), fail=fail)
    assert result.returncode != 0
    assert cluster.records() == []
    assert cluster.run(CHECK, {"DIGEST": DIGEST_A}).returncode == 1


def test_record_rejects_values_that_would_break_the_manifest(cluster: Cluster) -> None:
    cluster.deploy(f"{REPOSITORY}:{TAG}@{DIGEST_A}")
    env = record_env(DIGEST_A) | {"WORKFLOW_NAME": 'x"\n  digest: "sha256:' + "b" * 64}
    assert cluster.run(RECORD, env).returncode != 0
    assert cluster.records() == []


def test_lookup_promotes_the_newest_verified_digest_of_a_tag(cluster: Cluster) -> None:
    assert record(cluster, DIGEST_A).returncode == 0
    assert record(cluster, DIGEST_B).returncode == 0  # a rebuild of the same commit, verified later
    assert record(cluster, "sha256:" + "c" * 64, tag="f" * 40).returncode == 0  # another commit
    result = cluster.run(CHECK, {"IMAGE_TAG": TAG})
    assert result.returncode == 0, result.stderr
    assert cluster.output("digest") == DIGEST_B


def test_lookup_of_an_unverified_tag_is_refused(cluster: Cluster) -> None:
    assert record(cluster, DIGEST_A).returncode == 0
    result = cluster.run(CHECK, {"IMAGE_TAG": "e" * 40})
    assert result.returncode == 1
    assert cluster.output("digest") is None


def test_lookup_with_kubectl_error_promotes_nothing(cluster: Cluster) -> None:
    assert record(cluster, DIGEST_A).returncode == 0
    result = cluster.run(CHECK, {"IMAGE_TAG": TAG}, fail="unreachable")
    assert result.returncode not in (0, 1)
    assert cluster.output("digest") is None


def test_check_needs_a_digest_or_a_tag(cluster: Cluster) -> None:
    assert cluster.run(CHECK, {}).returncode != 0

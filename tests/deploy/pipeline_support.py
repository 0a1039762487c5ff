"""Running the Argo step scripts against the fake tools in tests/deploy/fakes/.

`Pipeline` holds the fakes' state (cluster, helm releases, registry, findings), runs one script with the
fakes first on PATH, and reads the state back afterwards, so a test asserts what the script *did* (which
revision is deployed, what the registry holds, which output files exist), not which commands it typed.
The builders below produce Kubernetes objects shaped like the API server's answers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPTS_DIR = REPO_ROOT / "deploy" / "argo" / "scripts"
FAKES_DIR = Path(__file__).resolve().parent / "fakes"
VENV_BIN = Path(sys.executable).parent

NAMESPACE = "msp"
RELEASE = "temporal-worker-py"
DEPLOYMENT = "temporal-worker-py"
IMAGE_REPOSITORY = "harbor.nineminds.com/nineminds/temporal-worker"
CONTAINER = "worker"
OLD_SHA = "1111111111111111111111111111111111111111"
NEW_SHA = "2222222222222222222222222222222222222222"
DIGEST = "sha256:" + "ab" * 32

# What helm answers when it cannot reach or may not read the release storage (helm 3.16 wording).
HELM_UNREACHABLE = (
    'Kubernetes cluster unreachable: Get "https://10.43.0.1:443/version": dial tcp 10.43.0.1:443: '
    "connect: connection refused"
)
HELM_FORBIDDEN = (
    'query: failed to query with labels: secrets is forbidden: User "system:serviceaccount:argo:'
    'temporal-worker-deployer" cannot list resource "secrets" in API group "" in the namespace "msp"'
)
KUBECTL_FORBIDDEN = (
    'Error from server (Forbidden): deployments.apps "temporal-worker-py" is forbidden: User '
    '"system:serviceaccount:argo:temporal-worker-deployer" cannot get resource "deployments" in API group '
    '"apps" in the namespace "msp"'
)
KUBECTL_UNREACHABLE = "The connection to the server 10.43.0.1:443 was refused - did you specify the right host or port?"


@dataclass
class Pipeline:
    root: Path
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def state_path(self) -> Path:
        return self.root / "fake-state.json"

    @property
    def log_path(self) -> Path:
        return self.root / "fake-calls.jsonl"

    @property
    def out(self) -> Path:
        return self.root / "outputs"

    def run(
        self, script: str, env: dict[str, str] | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run deploy/argo/scripts/<script> with the fakes; the state is read back afterwards."""
        self.state_path.write_text(json.dumps(self.state))
        tmp = self.root / "tmp"
        tmp.mkdir(exist_ok=True)
        full_env = {
            "PATH": os.pathsep.join([str(FAKES_DIR), str(VENV_BIN), os.environ.get("PATH", "/usr/bin:/bin")]),
            "HOME": str(self.root),
            "TMPDIR": str(tmp),
            "LANG": "C.UTF-8",
            "FAKE_PYTHON": sys.executable,
            "FAKE_STATE": str(self.state_path),
            "FAKE_LOG": str(self.log_path),
            "OUTPUT_DIR": str(self.out),
            "RETRY_DELAY": "0",
            **(env or {}),
        }
        result = subprocess.run(
            ["sh", str(SCRIPTS_DIR / script)],
            env=full_env,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
            check=False,
        )
        self.state = json.loads(self.state_path.read_text())
        return result

    def calls(self, tool: str) -> list[list[str]]:
        if not self.log_path.exists():
            return []
        entries = [json.loads(line) for line in self.log_path.read_text().splitlines()]
        return [entry["argv"] for entry in entries if entry["tool"] == tool]

    def output(self, name: str) -> str | None:
        path = self.out / name
        return path.read_text() if path.exists() else None

    # --- helm releases ---------------------------------------------------------------------------------

    def release(self, *statuses: str, name: str = RELEASE, namespace: str = NAMESPACE) -> None:
        """A helm release whose revisions 1..n have these statuses; revision n runs image tag 'sha-<n>'."""
        history = [
            {
                "revision": n,
                "updated": f"2025-01-0{n}",
                "status": status,
                "chart": "temporal-worker-0.3.0",
                "app_version": f"sha-{n}",
                "description": "Upgrade complete" if n > 1 else "Install complete",
            }
            for n, status in enumerate(statuses, start=1)
        ]
        self.state.setdefault("helm", {}).setdefault("releases", {})[name] = {
            "namespace": namespace,
            "history": history,
        }

    def history(self, name: str = RELEASE) -> list[dict[str, Any]]:
        releases = self.state.get("helm", {}).get("releases", {})
        return list(releases[name]["history"]) if name in releases else []

    def deployed(self, name: str = RELEASE) -> dict[str, Any] | None:
        return next((r for r in self.history(name) if r["status"] == "deployed"), None)


# --- Kubernetes objects -----------------------------------------------------------------------------------

SELECTOR = {"app.kubernetes.io/name": "temporal-worker-py", "app.kubernetes.io/instance": RELEASE}
DEPLOYMENT_UID = "5b0c1d9e-7f43-4f0a-9c55-0d6a4f1e2a10"


def image(tag: str) -> str:
    return f"{IMAGE_REPOSITORY}:{tag}"


def deployment(tag: str, revision: int, replicas: int = 2) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": DEPLOYMENT,
            "namespace": NAMESPACE,
            "uid": DEPLOYMENT_UID,
            "generation": revision,
            "annotations": {"deployment.kubernetes.io/revision": str(revision), "meta.helm.sh/release-name": RELEASE},
            "labels": dict(SELECTOR),
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": dict(SELECTOR)},
            "template": {
                "metadata": {"labels": dict(SELECTOR)},
                "spec": {
                    "terminationGracePeriodSeconds": 60,
                    "containers": [{"name": CONTAINER, "image": f"{image(tag)}@{DIGEST}"}],
                },
            },
        },
        "status": {"observedGeneration": revision, "replicas": replicas, "updatedReplicas": replicas},
    }


def replicaset(revision: int, pod_hash: str, replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": f"{DEPLOYMENT}-{pod_hash}",
            "namespace": NAMESPACE,
            "annotations": {"deployment.kubernetes.io/revision": str(revision)},
            "labels": {**SELECTOR, "pod-template-hash": pod_hash},
            "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "Deployment", "name": DEPLOYMENT, "uid": DEPLOYMENT_UID}
            ],
        },
        "spec": {"replicas": replicas},
    }


def pod(
    suffix: str,
    pod_hash: str,
    tag: str,
    *,
    ready: bool = True,
    terminating: bool = False,
    waiting: str | None = None,
) -> dict[str, Any]:
    state: dict[str, Any] = {"running": {"startedAt": "2025-01-01T00:00:00Z"}}
    if waiting:
        state = {"waiting": {"reason": waiting, "message": f"back-off restarting failed container {CONTAINER}"}}
    metadata: dict[str, Any] = {
        "name": f"{DEPLOYMENT}-{pod_hash}-{suffix}",
        "namespace": NAMESPACE,
        "labels": {**SELECTOR, "pod-template-hash": pod_hash},
    }
    if terminating:
        metadata["deletionTimestamp"] = "2025-01-01T00:05:00Z"
        metadata["deletionGracePeriodSeconds"] = 60
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {"containers": [{"name": CONTAINER, "image": f"{image(tag)}@{DIGEST}"}]},
        "status": {
            "phase": "Running",
            "conditions": [
                {"type": "Initialized", "status": "True"},
                {"type": "Ready", "status": "True" if ready else "False"},
                {"type": "ContainersReady", "status": "True" if ready else "False"},
            ],
            "containerStatuses": [
                {
                    "name": CONTAINER,
                    "ready": ready,
                    "restartCount": 4 if waiting else 0,
                    "image": image(tag),
                    "state": state,
                }
            ],
        },
    }

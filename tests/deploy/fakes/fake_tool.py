"""Fakes of the tools the Argo step scripts call: kubectl, helm, docker (buildx), trivy, git, temporal, python3.

Each fake is a small sh shim in this folder (``kubectl``, ``helm``, ...) that runs this file with the tool's
name; the tests put the folder first on PATH. A fake

- reads and updates one JSON state file (``FAKE_STATE``): the cluster, the helm releases, the registry, the
  vulnerability findings, ... A call that changes something (``helm upgrade``, ``helm rollback``, ``docker
  buildx build --push``, ``imagetools create``) changes the state, so later calls see it, as on a real cluster;
- appends every call as one JSON line to ``FAKE_LOG``: ``{"tool": ..., "argv": [...]}``;
- answers the way the real tool does, with its real messages and exit codes, for the cases the scripts must
  tell apart: ``Error: release: not found`` from helm versus an unreachable API server or an RBAC refusal,
  terminating pods of the old ReplicaSet next to the new ReplicaSet's pods, buildx's metadata file, trivy's
  ``--severity``/``--ignore-unfixed``/``--exit-code`` semantics, pytest's exit code 4 for a missing path.

``state["rules"]`` injects failures anywhere: the first rule whose ``tool`` matches and whose ``args`` are all
arguments of the call answers instead of the model (``exit``, ``stdout``, ``stderr``), at most ``times`` times.
Anything a fake does not model exits 2 with ``fake <tool>: unsupported``, so a script that starts calling
something new fails its test instead of passing by accident.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any


class Exit(Exception):
    def __init__(self, code: int, stdout: str = "", stderr: str = "") -> None:
        super().__init__(code)
        self.code, self.stdout, self.stderr = code, stdout, stderr


def fail(stderr: str, code: int = 1) -> Exit:
    return Exit(code, stderr=stderr if stderr.endswith("\n") else stderr + "\n")


def unsupported(tool: str, argv: list[str]) -> Exit:
    return fail(f"fake {tool}: unsupported: {' '.join(argv)}", 2)


class Args:
    """argv split into positionals and options; ``valued`` names the options that take a value."""

    def __init__(self, argv: list[str], valued: set[str]) -> None:
        self.pos: list[str] = []
        self.opts: dict[str, list[str]] = {}
        self.rest: list[str] = []
        i = 0
        while i < len(argv):
            arg = argv[i]
            if arg == "--":
                self.rest = argv[i + 1 :]
                break
            if arg.startswith("-") and len(arg) > 1:
                name, eq, value = arg.partition("=")
                if eq:
                    self.opts.setdefault(name, []).append(value)
                elif name in valued and i + 1 < len(argv):
                    self.opts.setdefault(name, []).append(argv[i + 1])
                    i += 1
                else:
                    self.opts.setdefault(name, []).append("")
            else:
                self.pos.append(arg)
            i += 1

    def get(self, *names: str, default: str | None = None) -> str | None:
        for name in names:
            if name in self.opts:
                return self.opts[name][-1]
        return default

    def all(self, *names: str) -> list[str]:
        return [v for name in names for v in self.opts.get(name, [])]

    def has(self, *names: str) -> bool:
        return any(name in self.opts for name in names)


# --- kubectl ------------------------------------------------------------------------------------------


def _selector_matches(selector: str | None, labels: dict[str, str]) -> bool:
    if not selector:
        return True
    for term in selector.split(","):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


def _k8s_list(items: list[dict[str, Any]]) -> str:
    return json.dumps(
        {"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": items}, indent=4
    )


def kubectl(argv: list[str], state: dict[str, Any]) -> Exit:
    kube = state.setdefault("kubectl", {})
    a = Args(argv, {"--namespace", "-n", "-o", "--output", "--selector", "-l", "--timeout", "--container", "-c"})
    if kube.get("error"):
        return fail(kube["error"])
    ns = a.get("--namespace", "-n", default="default")
    verb = a.pos[0] if a.pos else ""
    output = a.get("-o", "--output")

    def in_ns(obj: dict[str, Any]) -> bool:
        return obj.get("metadata", {}).get("namespace", "default") == ns

    if verb == "rollout" and a.pos[1:2] == ["status"]:
        name = a.pos[2].split("/", 1)[1]
        rollout = kube.get("rollout", {})
        if rollout.get("exit", 0):
            return fail(rollout.get("stderr", f"error: timed out waiting for the condition on deployments/{name}"))
        return Exit(0, stdout=f'deployment "{name}" successfully rolled out\n')

    if verb == "get" and output == "json":
        kind = a.pos[1]
        selector = a.get("--selector", "-l")
        if kind in ("deployment", "deployments", "deploy") and len(a.pos) > 2:
            name = a.pos[2]
            found = [d for d in kube.get("deployments", []) if d["metadata"]["name"] == name and in_ns(d)]
            if not found:
                if a.has("--ignore-not-found"):
                    return Exit(0)
                return fail(f'Error from server (NotFound): deployments.apps "{name}" not found')
            return Exit(0, stdout=json.dumps(found[0], indent=4) + "\n")
        if kind in ("replicasets", "replicaset", "rs"):
            items = [r for r in kube.get("replicasets", []) if in_ns(r)]
            return Exit(0, stdout=_k8s_list([r for r in items if _selector_matches(selector, r["metadata"]["labels"])]))
        if kind in ("pods", "pod", "po"):
            snapshots = kube.get("pod_snapshots", [[]])
            served = kube.get("pod_snapshot_served", -1)
            index = min(served + 1, len(snapshots) - 1)
            kube["pod_snapshot_served"] = index
            pods = [p for p in snapshots[index] if in_ns(p) and _selector_matches(selector, p["metadata"]["labels"])]
            return Exit(0, stdout=_k8s_list(pods))
        return unsupported("kubectl", argv)

    if verb == "exec":
        target = a.pos[1]
        snapshots = kube.get("pod_snapshots", [[]])
        current = snapshots[max(kube.get("pod_snapshot_served", 0), 0)]
        pod = next((p for p in current if p["metadata"]["name"] == target and in_ns(p)), None)
        if pod is None:
            return fail(f'Error from server (NotFound): pods "{target}" not found')
        kube.setdefault("execs", []).append({"pod": target, "command": a.rest})
        command = a.rest
        if command[:2] == ["python", "-c"] and "/readyz" in command[2]:
            ready = any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))
            draining = bool(pod["metadata"].get("deletionTimestamp"))
            code = kube.get("readyz", {}).get(target, 0 if ready and not draining else 1)
            if code:
                return fail(
                    "urllib.error.HTTPError: HTTP Error 503: Service Unavailable\ncommand terminated with exit code 1"
                )
            return Exit(0)
        if command[:2] == ["alga-worker", "deployment"]:
            return _alga_worker_deployment(command[2:], state)
        if command[:2] == ["alga-worker", "health-check"]:
            expected = command[command.index("--expect-build-id") + 1]
            answered = kube.get("health_build_id")
            if "--routed" in command and state.get("temporal", {}).get("worker_deployment"):
                # A routed start goes to the deployment's current version (pinned checks: health_build_id).
                t = state["temporal"]
                answered = t.get("deployments", {}).get(t["worker_deployment"], {}).get("current")
            if answered is None:
                return fail("healthCheckWorkflow timed out: no worker answered\ncommand terminated with exit code 1")
            if answered != expected:
                return fail(
                    f"healthCheckWorkflow answered by build {answered}, expected {expected}\n"
                    "command terminated with exit code 1"
                )
            return Exit(0, stdout=json.dumps({"status": "healthy", "buildId": answered}) + "\n")
        return unsupported("kubectl", argv)

    return unsupported("kubectl", argv)


# --- helm ---------------------------------------------------------------------------------------------


def _chart_version(chart_dir: Path) -> str:
    fields: dict[str, str] = {}
    for line in (chart_dir / "Chart.yaml").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("name", "version", "appVersion"):
            fields[key] = value.strip().strip("\"'")
    return f"{fields.get('name', 'chart')}-{fields.get('version', '0.0.0')}"


def _computed_values(release: dict[str, Any]) -> dict[str, Any]:
    """`helm get values --all`: the release's values (``release["computed"]``: what its values files give)
    with the last revision's image tag and ``--set-json`` values on top."""
    values: dict[str, Any] = json.loads(json.dumps(release.get("computed", {})))
    last = release["history"][-1] if release.get("history") else {}
    if last.get("app_version"):
        values.setdefault("image", {})["tag"] = last["app_version"]
    for assignment in last.get("set_json", []):
        path, _, raw = assignment.partition("=")
        *parents, leaf = path.split(".")
        node = values
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = json.loads(raw)
    return values


def helm(argv: list[str], state: dict[str, Any]) -> Exit:
    h = state.setdefault("helm", {})
    a = Args(
        argv,
        {
            "--namespace",
            "-n",
            "--output",
            "-o",
            "--max",
            "--timeout",
            "--values",
            "-f",
            "--set-string",
            "--set",
            "--description",
            "--history-max",
            "--set-json",
        },
    )
    verb = a.pos[0] if a.pos else ""
    if verb == "dependency":
        return Exit(0, stdout="Saving 0 charts\n")
    if h.get("error"):
        return fail(f"Error: {h['error']}")
    ns = a.get("--namespace", "-n", default="default")
    releases: dict[str, Any] = h.setdefault("releases", {})
    if a.pos[:2] == ["get", "values"] and a.has("--all") and a.get("--output", "-o") == "json":
        found = releases.get(a.pos[2] if len(a.pos) > 2 else "")
        if found is None or found.get("namespace", "default") != ns:
            return fail("Error: release: not found")
        return Exit(0, stdout=json.dumps(_computed_values(found)) + "\n")
    name = a.pos[1] if len(a.pos) > 1 else ""
    release = releases.get(name)
    if release is not None and release.get("namespace", "default") != ns:
        release = None
    history: list[dict[str, Any]] = release["history"] if release else []
    failures: dict[str, str] = h.get("fail", {})

    if verb == "history":
        if release is None:
            return fail("Error: release: not found")
        shown = history[-int(a.get("--max", default="256") or 256) :]
        if a.get("--output", "-o") == "json":
            keys = ("revision", "updated", "status", "chart", "app_version", "description")
            return Exit(0, stdout=json.dumps([{k: r.get(k, "") for k in keys} for r in shown]) + "\n")
        lines = ["REVISION\tUPDATED\tSTATUS\tCHART\tAPP VERSION\tDESCRIPTION"]
        lines += [
            f"{r['revision']}\t{r.get('updated', '')}\t{r['status']}\t{r.get('chart', '')}\t"
            f"{r.get('app_version', '')}\t{r.get('description', '')}"
            for r in shown
        ]
        return Exit(0, stdout="\n".join(lines) + "\n")

    if verb == "status":
        if release is None:
            return fail("Error: release: not found")
        last = history[-1]
        return Exit(
            0, stdout=f"NAME: {name}\nNAMESPACE: {ns}\nSTATUS: {last['status']}\nREVISION: {last['revision']}\n"
        )

    def add_revision(entry: dict[str, Any]) -> int:
        number = (history[-1]["revision"] if history else 0) + 1
        if entry["status"] == "deployed":
            for old in history:
                if old["status"] == "deployed":
                    old["status"] = "superseded"
        history.append({"revision": number, "updated": f"rev-{number}", **entry})
        return number

    if verb == "rollback":
        if release is None:
            return fail("Error: release: not found")
        wanted = int(a.pos[2]) if len(a.pos) > 2 else 0
        target_number = wanted or history[-1]["revision"] - 1
        target = next((r for r in history if r["revision"] == target_number), None)
        if target is None:
            return fail(f"Error: release has no {target_number} version")
        entry = {
            "chart": target.get("chart", ""),
            "app_version": target.get("app_version", ""),
            "values": target.get("values", []),
            "set": target.get("set", []),
            "description": f"Rollback to {target_number}",
        }
        if "rollback" in failures:
            add_revision(
                {**entry, "status": "failed", "description": f'Rollback "{name}" failed: {failures["rollback"]}'}
            )
            return fail(f"Error: {failures['rollback']}")
        add_revision({**entry, "status": "deployed"})
        return Exit(0, stdout="Rollback was a success! Happy Helming!\n")

    if verb == "upgrade":
        chart = Path(a.pos[2])
        if not (chart / "Chart.yaml").is_file():
            return fail(f'Error: path "{chart}" not found')
        values = a.all("--values", "-f")
        for path in values:
            if not Path(path).is_file():
                return fail(f"Error: open {path}: no such file or directory")
        sets = a.all("--set-string")
        set_json = a.all("--set-json")
        tag = next((s.split("=", 1)[1] for s in sets if s.startswith("image.tag=")), "")
        if release is None:
            if not a.has("--install"):
                return fail(f'Error: UPGRADE FAILED: "{name}" has no deployed releases')
            release = releases[name] = {"namespace": ns, "history": []}
            history = release["history"]
        if a.has("--reuse-values") and history:
            # The last release's user-supplied values, with this call's on top.
            last = history[-1]
            values, sets, tag = last.get("values", []) + values, last.get("set", []) + sets, tag or last["app_version"]
            set_json = last.get("set_json", []) + set_json
        entry = {
            "chart": _chart_version(chart),
            "app_version": tag,
            "values": values,
            "set": sets,
            "set_json": set_json,
            "description": a.get("--description", default="Upgrade complete"),
        }
        if "upgrade" in failures:
            add_revision(
                {**entry, "status": "failed", "description": f'Upgrade "{name}" failed: {failures["upgrade"]}'}
            )
            return fail(f"Error: UPGRADE FAILED: {failures['upgrade']}")
        number = add_revision({**entry, "status": "deployed"})
        return Exit(0, stdout=f'Release "{name}" has been upgraded. Happy Helming!\nREVISION: {number}\n')

    return unsupported("helm", argv)


# --- docker (buildx) ----------------------------------------------------------------------------------


def _digest_of(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def docker(argv: list[str], state: dict[str, Any], stdin: str) -> Exit:
    d = state.setdefault("docker", {})
    registry: dict[str, str] = d.setdefault("registry", {})
    if argv[:1] == ["info"]:
        if d.get("info_failures", 0) > 0:
            d["info_failures"] -= 1
            return fail("Cannot connect to the Docker daemon at tcp://localhost:2375. Is the docker daemon running?")
        return Exit(0, stdout="Server Version: 27.4.1\n")
    if argv[:1] == ["login"]:
        a = Args(argv[1:], {"--username", "-u"})
        expected = d.get("login_password")
        if expected is not None and stdin != expected:
            return fail(f'Error response from daemon: Get "https://{a.pos[0]}/v2/": denied: denied')
        d.setdefault("logins", []).append({"registry": a.pos[0], "username": a.get("--username", "-u")})
        return Exit(0, stdout="Login Succeeded\n")
    if argv[:1] != ["buildx"]:
        return unsupported("docker", argv)
    sub = argv[1:]
    builders: list[str] = d.setdefault("builders", [])
    if sub[:1] == ["inspect"]:
        name = sub[1]
        if name not in builders:
            return fail(f'ERROR: no builder "{name}" found')
        return Exit(0, stdout=f"Name: {name}\nDriver: docker-container\n")
    if sub[:1] == ["create"]:
        name = Args(sub[1:], {"--name", "--driver", "--driver-opt"}).get("--name") or "builder"
        builders.append(name)
        return Exit(0, stdout=name + "\n")
    if sub[:1] == ["build"]:
        a = Args(
            sub[1:],
            {
                "--builder",
                "--platform",
                "--file",
                "-f",
                "--build-arg",
                "--label",
                "--cache-from",
                "--cache-to",
                "--metadata-file",
                "--tag",
                "-t",
                "--provenance",
            },
        )
        builder = a.get("--builder")
        if builder and builder not in builders:
            return fail(f'ERROR: no builder "{builder}" found')
        dockerfile = a.get("--file", "-f") or ""
        if not Path(dockerfile).is_file():
            return fail(
                f"ERROR: failed to solve: failed to read dockerfile: open {dockerfile}: no such file or directory"
            )
        build = d.get("build", {})
        if build.get("fail"):
            return fail(f"ERROR: failed to solve: {build['fail']}")
        tags = a.all("--tag", "-t")
        digest = build.get("digest") or _digest_of("|".join(tags))
        d.setdefault("builds", []).append(
            {
                "tags": tags,
                "build_args": a.all("--build-arg"),
                "cache_from": a.all("--cache-from"),
                "push": a.has("--push"),
            }
        )
        for cache in a.all("--cache-to"):
            opts = dict(part.split("=", 1) for part in cache.split(",") if "=" in part)
            if opts.get("type") == "local" and build.get("cache", True):
                Path(opts["dest"]).mkdir(parents=True, exist_ok=True)
                (Path(opts["dest"]) / "index.json").write_text(json.dumps({"manifests": [{"digest": digest}]}))
        if a.has("--push"):
            for tag in tags:
                registry[tag] = digest
        metadata_file = a.get("--metadata-file")
        if metadata_file and build.get("metadata", True):
            metadata = {
                "buildx.build.ref": f"{builder}/{builder}0/abcdefghijklmnopqrstuvwxy",
                "containerimage.config.digest": _digest_of("config" + digest),
                "containerimage.descriptor": {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": digest,
                    "size": 2134,
                    "platform": {"architecture": "amd64", "os": "linux"},
                },
                "containerimage.digest": digest,
                "image.name": ",".join(tags),
            }
            Path(metadata_file).write_text(json.dumps(metadata, indent=2))
        return Exit(0, stderr="#12 pushing layers done\n")
    if sub[:2] == ["imagetools", "create"]:
        a = Args(sub[2:], {"--tag", "-t"})
        source = a.pos[0]
        repository, _, digest = source.partition("@")
        known = any(ref.rsplit(":", 1)[0] == repository and value == digest for ref, value in registry.items())
        if not known:
            return fail(f"ERROR: {source}: not found")
        for tag in a.all("--tag", "-t"):
            registry[tag] = digest
        return Exit(0)
    return unsupported("docker", argv)


# --- trivy --------------------------------------------------------------------------------------------


def trivy(argv: list[str], state: dict[str, Any]) -> Exit:
    t = state.setdefault("trivy", {})
    if argv[:1] != ["image"]:
        return unsupported("trivy", argv)
    a = Args(argv[1:], {"--severity", "--exit-code", "--scanners", "--format", "--output"})
    if a.has("--download-db-only"):
        if t.get("db_failures", 0) > 0:
            t["db_failures"] -= 1
            return fail(
                "FATAL\tFatal error\tinit error: DB error: failed to download vulnerability DB: "
                "OCI artifact error: failed to download vulnerability DB: GET https://mirror.gcr.io/v2/: "
                "TOOMANYREQUESTS"
            )
        t["db"] = True
        return Exit(0)
    if a.has("--skip-db-update") and not t.get("db"):
        return fail("FATAL\tFatal error\tinit error: DB error: --skip-db-update cannot be specified on the first run")
    if t.get("error"):
        return fail(f"FATAL\tFatal error\t{t['error']}")
    ref = a.pos[0]
    images: dict[str, list[dict[str, str]]] = t.get("images", {})
    if ref not in images:
        return fail(
            f"FATAL\tFatal error\timage scan error: scan error: unable to initialize a scanner: "
            f'unable to initialize an image scanner: unable to find the specified image "{ref}"'
        )
    severities = (a.get("--severity") or "UNKNOWN,LOW,MEDIUM,HIGH,CRITICAL").split(",")
    found = [v for v in images[ref] if v["severity"] in severities]
    if a.has("--ignore-unfixed"):
        found = [v for v in found if v.get("fixed")]
    lines = [f"{ref} (debian 12.8)", f"Total: {len(found)}", "Library | Vulnerability | Severity | Fixed Version"]
    lines += [f"{v.get('package', 'libx')} | {v['id']} | {v['severity']} | {v.get('fixed', '')}" for v in found]
    t.setdefault("scans", []).append(ref)
    code = int(a.get("--exit-code", default="0") or 0) if found else 0
    return Exit(code, stdout="\n".join(lines) + "\n")


# --- git (the real git, with failures injected per subcommand) ----------------------------------------


def git(argv: list[str], state: dict[str, Any]) -> Exit:
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        i += 2 if argv[i] in ("-C", "-c") else 1
    subcommand = argv[i] if i < len(argv) else ""
    injected = state.get("git", {}).get("fail", {}).get(subcommand)
    if injected:
        return fail(injected.get("stderr", "fatal: injected failure"), injected.get("exit", 128))
    here = str(Path(__file__).resolve().parent)
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if Path(p).resolve() != Path(here))
    real = shutil.which("git", path=path)
    if real is None:
        return fail("fake git: no real git on PATH", 2)
    result = subprocess.run([real, *argv], capture_output=True, text=True, check=False)
    return Exit(result.returncode, result.stdout, result.stderr)


# --- temporal (Worker Deployment versions) -----------------------------------------------------------


def temporal(argv: list[str], state: dict[str, Any]) -> Exit:
    deployments: dict[str, Any] = state.setdefault("temporal", {}).setdefault("deployments", {})
    if argv[:2] != ["worker", "deployment"] or len(argv) < 3:
        return unsupported("temporal", argv)
    a = Args(
        argv[3:],
        {
            "--name",
            "--deployment-name",
            "--build-id",
            "--address",
            "--namespace",
            "-n",
            "--output",
            "-o",
            "--identity",
            "--reason",
        },
    )
    name = a.get("--deployment-name", "--name") or ""
    deployment = deployments.get(name)
    if deployment is None:
        return fail(f"Error: worker deployment not found: {name}")
    if argv[2] == "describe":
        return Exit(
            0,
            stdout=json.dumps(
                {"name": name, "currentVersion": deployment.get("current"), "versions": deployment.get("versions", [])}
            )
            + "\n",
        )
    if argv[2] == "set-current-version":
        build_id = a.get("--build-id")
        if build_id not in deployment.get("versions", []):
            return fail(f"Error: version {name}.{build_id} has no pollers / not found")
        deployment["previous"] = deployment.get("current")
        deployment["current"] = build_id
        return Exit(0, stdout=f"Successfully set the current version of {name} to {build_id}\n")
    return unsupported("temporal", argv)


def _alga_worker_deployment(argv: list[str], state: dict[str, Any]) -> Exit:
    """`alga-worker deployment set-current <build-id>` run in a worker pod (src/alga_worker/cli/deployment.py):
    the pod's TEMPORAL_WORKER_DEPLOYMENT_NAME is ``state["temporal"]["worker_deployment"]`` (absent: versioning
    off, exit 8); the versions that have polled are ``deployments[name]["versions"]`` (else exit 6)."""
    t = state.setdefault("temporal", {})
    name = t.get("worker_deployment")
    if not name:
        return fail("✗ worker versioning is off: TEMPORAL_WORKER_DEPLOYMENT_NAME is unset\n"
                    "command terminated with exit code 8", 8)
    if argv == ["status", "--json"]:
        return _alga_worker_status(name, t)
    if argv[:1] != ["set-current"] or len(argv) < 2:
        return unsupported("kubectl", ["exec", "--", "alga-worker", "deployment", *argv])
    build_id = argv[1]
    deployment = t.setdefault("deployments", {}).get(name)
    if deployment is None or build_id not in deployment.get("versions", []):
        return fail(f"✗ version {name}:{build_id} not found after 120 s: no worker of that build has polled\n"
                    "command terminated with exit code 6", 6)
    previous = deployment.get("current")
    if previous == build_id:
        return Exit(0, stdout=f"{name}: {build_id} was already current\n")
    deployment["previous"], deployment["current"] = previous, build_id
    return Exit(0, stdout=f"{name}: current version {previous or '(unversioned workers)'} -> {build_id}\n")


def _alga_worker_status(name: str, t: dict[str, Any]) -> Exit:
    """`alga-worker deployment status --json`: DeploymentView's JSON; a version's drainage is
    ``deployments[name]["drainage"][build_id]`` (draining / drained), else inactive."""
    deployment = t.get("deployments", {}).get(name)
    if deployment is None:
        return fail(f"✗ deployment {name} not found: no versioned worker has polled yet\n"
                    "command terminated with exit code 6", 6)
    versions = []
    for build_id in deployment.get("versions", []):
        drainage = deployment.get("drainage", {}).get(build_id)
        status = "current" if build_id == deployment.get("current") else drainage or "inactive"
        versions.append({"build_id": build_id, "status": status, "drainage": drainage,
                         "created": "2025-01-01T00:00:00.000000Z", "last_current": None})
    view = {"deployment": name, "current": deployment.get("current"), "ramping": None,
            "ramping_percentage": 0.0, "versions": versions}
    return Exit(0, stdout=json.dumps(view, indent=2) + "\n")


# --- python3 (run-tests.sh: venv, pip, pytest) --------------------------------------------------------


def python(tool: str, argv: list[str], state: dict[str, Any]) -> Exit:
    p = state.setdefault("python", {})
    if tool == "python3" and argv[:2] == ["-m", "venv"]:
        bin_dir = Path(argv[2]) / "bin"
        bin_dir.mkdir(parents=True, exist_ok=True)
        here = Path(__file__).resolve().parent
        for name in ("pip", "python"):
            shim = bin_dir / name
            shim.write_text(f'#!/bin/sh\nexec "$FAKE_PYTHON" "{here / "fake_tool.py"}" {name} "$@"\n')
            shim.chmod(0o755)
        return Exit(0)
    if tool == "pip" and argv[:1] == ["install"]:
        if p.get("pip_failures", 0) > 0:
            p["pip_failures"] -= 1
            return fail("ERROR: Could not find a version that satisfies the requirement temporalio==1.9.0")
        p.setdefault("installs", []).append(argv[1:])
        return Exit(0)
    if tool == "python" and argv[:2] == ["-m", "pytest"]:
        paths = [arg for arg in argv[2:] if not arg.startswith("-")]
        for path in paths:
            if not Path(path.split("::")[0]).exists():
                return Exit(4, stdout=f"ERROR: file or directory not found: {path}\n\nno tests ran in 0.01s\n")
        p.setdefault("pytest_runs", []).append({"args": argv[2:], "cwd": os.getcwd()})
        code = p.get("pytest_exit", 0)
        return Exit(code, stdout="1 failed, 41 passed in 3.21s\n" if code else "42 passed in 3.21s\n")
    return unsupported(tool, argv)


# --- dispatch -----------------------------------------------------------------------------------------


def _rule_answer(tool: str, argv: list[str], state: dict[str, Any]) -> Exit | None:
    for rule in state.get("rules", []):
        if rule.get("tool") != tool or rule.get("times", 1) <= 0:
            continue
        if all(token in argv for token in rule.get("args", [])):
            if "times" in rule:
                rule["times"] -= 1
            return Exit(rule.get("exit", 0), rule.get("stdout", ""), rule.get("stderr", ""))
    return None


def main() -> int:
    tool, argv = sys.argv[1], sys.argv[2:]
    state_path = Path(os.environ["FAKE_STATE"])
    stdin = sys.stdin.read() if tool == "docker" and argv[:1] == ["login"] else ""
    state: dict[str, Any] = json.loads(state_path.read_text())
    with open(os.environ["FAKE_LOG"], "a", encoding="utf-8") as log:
        log.write(json.dumps({"tool": tool, "argv": argv}) + "\n")
    answer = _rule_answer(tool, argv, state)
    if answer is None:
        try:
            if tool == "kubectl":
                answer = kubectl(argv, state)
            elif tool == "helm":
                answer = helm(argv, state)
            elif tool == "docker":
                answer = docker(argv, state, stdin)
            elif tool == "trivy":
                answer = trivy(argv, state)
            elif tool == "git":
                answer = git(argv, state)
            elif tool == "temporal":
                answer = temporal(argv, state)
            else:
                answer = python(tool, argv, state)
        except Exit as raised:
            answer = raised
    state_path.write_text(json.dumps(state, indent=1))
    sys.stdout.write(answer.stdout)
    sys.stderr.write(answer.stderr)
    return answer.code


if __name__ == "__main__":
    sys.exit(main())

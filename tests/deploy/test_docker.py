"""The image definition: lint-clean, non-root, PID 1 worker, healthcheck, pinned dependencies.

Why static checks: there is no Docker engine in CI's test stage, so the build is checked by hadolint
(and checkov, in test_helm_checkov.py) and by reading the Dockerfile for the properties production
relies on: the exec-form ENTRYPOINT that lets SIGTERM reach the worker, a uid the chart's
runAsUser matches, and a build context that contains what the COPY lines need.
"""

from __future__ import annotations

import fnmatch
import http.server
import json
import re
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from helm_support import CHART_DIR, DOCKERFILE, REPO_ROOT, load_yaml, tool_next_to_python

DOCKER_DIR = DOCKERFILE.parent
HADOLINT_CONFIG = DOCKER_DIR / ".hadolint.yaml"


def instructions() -> list[tuple[str, str]]:
    """Dockerfile instructions (keyword, arguments) with continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    out: list[tuple[str, str]] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def final_stage() -> list[tuple[str, str]]:
    """Instructions of the last stage (what the image runs)."""
    steps = instructions()
    last_from = max(i for i, (k, _) in enumerate(steps) if k == "FROM")
    return steps[last_from:]


def test_hadolint_clean() -> None:
    """hadolint with the project's config (ignores, if any, are listed there with reasons)."""
    proc = subprocess.run(
        [
            str(tool_next_to_python("hadolint")),
            "--config",
            str(HADOLINT_CONFIG),
            "--format",
            "json",
            str(DOCKERFILE),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    findings = json.loads(proc.stdout or "[]")
    assert proc.returncode == 0 and findings == [], findings or proc.stderr


def test_hadolint_ignores_have_reasons() -> None:
    """Every ignored rule is explained in a comment right above it."""
    config = load_yaml(HADOLINT_CONFIG)
    lines = HADOLINT_CONFIG.read_text(encoding="utf-8").splitlines()
    for rule in config.get("ignored") or []:
        index = next(i for i, line in enumerate(lines) if line.strip() == f"- {rule}")
        assert lines[index - 1].strip().startswith("#"), f"{rule} has no reason"


def test_multi_stage_with_pinned_slim_python() -> None:
    """Two stages from the same slim Python image pinned to a patch version; never `latest`."""
    froms = [args for keyword, args in instructions() if keyword == "FROM"]
    assert len(froms) >= 2
    images = {f.split()[0] for f in froms}
    assert len(images) == 1
    [image] = images
    assert re.fullmatch(r"python:3\.11\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?", image), image
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["requires-python"] == ">=3.11"


def test_runs_as_non_root_uid_matching_the_chart() -> None:
    """USER is numeric, at least 10000, and equal to the chart's runAsUser/runAsGroup."""
    users = [args for keyword, args in final_stage() if keyword == "USER"]
    assert users, "no USER in the final stage"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) >= 10000
    values = load_yaml(CHART_DIR / "values.yaml")
    assert int(uid) == values["podSecurityContext"]["runAsUser"] == values["securityContext"]["runAsUser"]
    assert int(gid) == values["podSecurityContext"]["runAsGroup"]


def test_worker_is_pid_1_via_exec_form_entrypoint() -> None:
    """Exec-form ENTRYPOINT alga-worker + CMD run: no shell, so SIGTERM reaches the worker."""
    stage = dict(final_stage())
    assert json.loads(stage["ENTRYPOINT"]) == ["alga-worker"]
    assert json.loads(stage["CMD"]) == ["run"]
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "alga-worker" in pyproject["project"]["scripts"]
    assert "source" not in DOCKERFILE.read_text(encoding="utf-8").split("ENTRYPOINT")[1]


def test_healthcheck_labels_ports_and_read_only_root_settings() -> None:
    """HEALTHCHECK probes /healthz; OCI labels; ports exposed; no runtime writes outside /tmp."""
    stage = final_stage()
    text = " ".join(f"{k} {a}" for k, a in stage)
    healthcheck = [a for k, a in stage if k == "HEALTHCHECK"]
    assert healthcheck and "/opt/alga/healthcheck.py" in healthcheck[0]
    assert "/healthz" in (DOCKER_DIR / "healthcheck.py").read_text(encoding="utf-8")
    for label in ("title", "description", "source", "version", "revision", "created", "licenses"):
        assert f"org.opencontainers.image.{label}=" in text, label
    assert "EXPOSE 8080 9464" in text
    for setting in ("PYTHONDONTWRITEBYTECODE=1", "HOME=/tmp", "BUILD_ID=${BUILD_ID}"):
        assert setting in text, setting


def test_runtime_dependencies_only_from_the_pins() -> None:
    """`pip install` of the project with the constraints file; no extras; constraints match pyproject."""
    runs = [a for k, a in instructions() if k == "RUN" and "pip install" in a]
    assert len(runs) == 1
    assert "--constraint /src/deploy/docker/constraints.txt /src " in runs[0] + " "
    assert "[" not in runs[0], "no extras in the image"
    pins = {}
    for line in (DOCKER_DIR / "constraints.txt").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    for requirement in pyproject["project"]["dependencies"]:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[^\]]*\])?==([^;\s]+)", requirement)
        assert match, f"pyproject dependency not pinned exactly: {requirement}"
        name = re.sub(r"[-_.]+", "-", match.group(1)).lower()
        assert pins.get(name) == match.group(3), (
            f"{name}: pyproject pins {match.group(3)}, constraints.txt has {pins.get(name)}; "
            "run deploy/docker/update-constraints.sh"
        )


def dockerignore_excludes(path: str) -> bool:
    """Docker's .dockerignore rule for one path: the last matching pattern wins; `!` re-includes.

    Parents count: a path is excluded when it or a parent directory matches an exclude pattern and
    no later `!` pattern matches it.
    """
    excluded = False
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for raw in (REPO_ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").rstrip("/")
        regex = fnmatch.translate(pattern).replace(".*", "[^/]*").replace("[^/]*[^/]*", ".*")
        if pattern.startswith("**/"):
            regex = "(?:.*/)?" + fnmatch.translate(pattern[3:])
        if any(re.fullmatch(regex, c) for c in candidates):
            excluded = not negate
    return excluded


def test_build_context_contains_exactly_what_copy_needs() -> None:
    """Every COPY source is in the build context; .git, venvs, tests and caches are not."""
    sources: list[str] = []
    for keyword, args in instructions():
        if keyword == "COPY" and "--from=" not in args:
            sources.extend(args.split()[:-1])
    assert sources, "no COPY from the build context"
    for source in sources:
        assert (REPO_ROOT / source).exists(), f"COPY source {source} missing in the repository"
        assert not dockerignore_excludes(source), f".dockerignore excludes COPY source {source}"
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["readme"] in sources, "setuptools needs the readme to build"
    for private in (
        ".git/config",
        ".venv/bin/python",
        ".venv-checkov/bin/checkov",
        "tests/deploy/test_docker.py",
        "src/alga_worker/__pycache__/config.cpython-311.pyc",
        "deploy/helm/values-hosted.yaml",
    ):
        assert dockerignore_excludes(private), f"{private} would be sent to the builder"


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[tuple[http.server.HTTPServer, type[_Health]]]:
    """A stand-in worker health endpoint on a free port."""
    handler = type("Handler", (_Health,), {})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, handler
    server.shutdown()
    server.server_close()


def run_healthcheck(port: int) -> int:
    """The image's HEALTHCHECK command, as Docker would run it (isolated mode)."""
    proc = subprocess.run(
        [sys.executable, "-I", str(DOCKER_DIR / "healthcheck.py")],
        env={"HEALTH_CHECK_PORT": str(port)},
        capture_output=True,
        timeout=20,
        check=False,
    )
    return proc.returncode


def test_healthcheck_script_follows_healthz(
    health_server: tuple[http.server.HTTPServer, type[_Health]],
) -> None:
    """Exit 0 on 200, 1 on 503 and on a closed port."""
    server, handler = health_server
    port = server.server_address[1]
    assert run_healthcheck(port) == 0
    handler.status = 503
    assert run_healthcheck(port) == 1
    server.shutdown()
    server.server_close()
    assert run_healthcheck(port) == 1


def test_docker_scripts_pass_shellcheck() -> None:
    """Shell scripts under deploy/docker are shellcheck-clean and strict."""
    scripts = sorted(Path(DOCKER_DIR).glob("*.sh"))
    assert scripts
    for script in scripts:
        assert "set -euo pipefail" in script.read_text(encoding="utf-8"), script.name
    proc = subprocess.run(
        [str(tool_next_to_python("shellcheck")), *map(str, scripts)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr

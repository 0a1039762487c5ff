"""Tests of the shell scripts behind the Argo pipelines.

The scripts run inside cluster pods that CI cannot start, so what can be checked
locally is checked here: shellcheck over every script, the worker change detection
on real temporary git repositories, the composite's build decision with a fake
kubectl, and the submission helper's safety checks with a fake argo.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
ARGO_DIR = REPO_ROOT / "deploy" / "argo"
SCRIPTS_DIR = ARGO_DIR / "scripts"
DETECT = SCRIPTS_DIR / "detect-worker-changes.sh"
DECIDE = SCRIPTS_DIR / "decide-worker-build.sh"
SUBMIT = ARGO_DIR / "submit.sh"
VENV_BIN = Path(sys.executable).parent


def _git_env(home: Path) -> dict[str, str]:
    """An environment where git ignores the developer's and the system's config."""
    env = dict(os.environ)
    env.update(
        HOME=str(home),
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=str(home / "gitconfig"),
        GIT_AUTHOR_NAME="CI",
        GIT_AUTHOR_EMAIL="ci@example.invalid",
        GIT_COMMITTER_NAME="CI",
        GIT_COMMITTER_EMAIL="ci@example.invalid",
    )
    return env


@dataclass
class Repo:
    """A throwaway git repository with helpers to commit files."""

    path: Path
    env: dict[str, str]

    def git(self, *args: str) -> str:
        result = subprocess.run(
            ["git", *args],
            cwd=self.path,
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        return result.stdout.strip()

    def commit(self, files: dict[str, str], message: str) -> str:
        for name, content in files.items():
            target = self.path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
        self.git("add", "--all")
        self.git("commit", "--quiet", "-m", message)
        return self.git("rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    home = tmp_path / "home"
    home.mkdir()
    path = tmp_path / "repo"
    path.mkdir()
    created = Repo(path, _git_env(home))
    created.git("init", "--quiet", "--initial-branch=main")
    return created


def _run(
    cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, timeout=60)


def test_all_scripts_pass_shellcheck() -> None:
    scripts = sorted(ARGO_DIR.rglob("*.sh"))
    assert DETECT in scripts and SUBMIT in scripts
    result = _run([str(VENV_BIN / "shellcheck"), "--external-sources", *map(str, scripts)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_step_scripts_are_executable_posix_sh() -> None:
    """Step images (docker:cli, trivy, alpine/k8s) have no bash; lib.sh is sourced only."""
    for script in sorted(ARGO_DIR.rglob("*.sh")):
        first = script.read_text().splitlines()[0]
        if script.name == "lib.sh":
            assert first == "# shellcheck shell=sh"
        else:
            assert first == "#!/bin/sh", script
            assert os.access(script, os.X_OK), f"{script} is not executable"


# --- detect-worker-changes.sh -------------------------------------------------

BASE_FILES = {
    "README.md": "readme\n",
    "pyproject.toml": "[project]\nname = 'x'\n",
    "src/alga_worker/__init__.py": "",
    "deploy/docker/Dockerfile": "FROM python:3.11-slim\n",
    "deploy/helm/temporal-worker/Chart.yaml": "name: temporal-worker\n",
    "deploy/argo/templates/x.yaml": "kind: WorkflowTemplate\n",
    "tests/test_x.py": "",
    "docs/cicd.md": "docs\n",
}


def _detect(repo: Repo, deployed: str, new: str) -> subprocess.CompletedProcess[str]:
    return _run(["sh", str(DETECT), str(repo.path), deployed, new], env=repo.env)


@pytest.mark.parametrize(
    ("changed_file", "expected"),
    [
        ("src/alga_worker/__init__.py", "true"),
        ("deploy/docker/Dockerfile", "true"),
        ("deploy/helm/temporal-worker/Chart.yaml", "true"),
        ("pyproject.toml", "true"),
        ("README.md", "false"),
        ("docs/cicd.md", "false"),
        ("tests/test_x.py", "false"),
        ("deploy/argo/templates/x.yaml", "false"),
    ],
)
def test_detect_changes_by_path(repo: Repo, changed_file: str, expected: str) -> None:
    deployed = repo.commit(BASE_FILES, "base")
    new = repo.commit({changed_file: "changed\n"}, f"touch {changed_file}")
    result = _detect(repo, deployed, new)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{expected}\n"


def test_detect_unchanged_same_commit(repo: Repo) -> None:
    sha = repo.commit(BASE_FILES, "base")
    result = _detect(repo, sha, sha)
    assert (result.returncode, result.stdout) == (0, "false\n")


def test_detect_looks_at_the_whole_range(repo: Repo) -> None:
    """A worker change in the middle of the range counts even if later commits are docs."""
    deployed = repo.commit(BASE_FILES, "base")
    repo.commit({"src/alga_worker/new.py": "x = 1\n"}, "code")
    new = repo.commit({"README.md": "more\n"}, "docs")
    assert _detect(repo, deployed, new).stdout == "true\n"


def test_detect_first_deploy_without_previous_commit(repo: Repo) -> None:
    new = repo.commit(BASE_FILES, "base")
    result = _detect(repo, "", new)
    assert (result.returncode, result.stdout) == (0, "true\n")
    assert "first deploy" in result.stderr


@pytest.mark.parametrize("deployed", ["latest", "0123456789abcdef0123456789abcdef01234567"])
def test_detect_unknown_deployed_version_builds(repo: Repo, deployed: str) -> None:
    new = repo.commit(BASE_FILES, "base")
    result = _detect(repo, deployed, new)
    assert (result.returncode, result.stdout) == (0, "true\n")


def test_detect_accepts_short_shas(repo: Repo) -> None:
    deployed = repo.commit(BASE_FILES, "base")
    new = repo.commit({"README.md": "x\n"}, "docs")
    assert _detect(repo, deployed[:12], new[:12]).stdout == "false\n"


def test_detect_rejects_unknown_new_commit(repo: Repo) -> None:
    deployed = repo.commit(BASE_FILES, "base")
    result = _detect(repo, deployed, "f" * 40)
    assert result.returncode == 1
    assert result.stdout == ""


def test_detect_rejects_non_repository(tmp_path: Path) -> None:
    result = _run(["sh", str(DETECT), str(tmp_path), "", "HEAD"])
    assert result.returncode == 1
    assert "not a git repository" in result.stderr


def test_detect_usage_error() -> None:
    result = _run(["sh", str(DETECT), "only-one-arg"])
    assert result.returncode == 2
    assert "usage" in result.stderr


# --- decide-worker-build.sh (composite step) ----------------------------------


@pytest.fixture
def fake_kubectl(tmp_path: Path) -> Callable[[str], dict[str, str]]:
    """Put a kubectl on PATH that reports a Deployment with a given image ("" = no Deployment)."""

    def install(image: str) -> dict[str, str]:
        bin_dir = tmp_path / "fakebin"
        bin_dir.mkdir(exist_ok=True)
        kubectl = bin_dir / "kubectl"
        containers = [{"name": "worker", "image": image}]
        answer = {"kind": "Deployment", "spec": {"template": {"spec": {"containers": containers}}}}
        kubectl.write_text(f"#!/bin/sh\nprintf '%s' '{json.dumps(answer) if image else ''}'\n")
        kubectl.chmod(0o755)
        return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}

    return install


def _decide(
    repo: Repo, mode: str, commit: str, out: Path, extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = dict(repo.env)
    env.update(
        MODE=mode,
        COMMIT_SHA=commit,
        SRC_DIR=str(repo.path),
        NAMESPACE="msp",
        DEPLOYMENT="alga-psa-temporal-worker",
        OUTPUT_DIR=str(out),
    )
    env.update(extra or {})
    return _run(["sh", str(DECIDE)], env=env)


@pytest.mark.parametrize("mode", ["true", "false"])
def test_decide_explicit_mode_skips_detection(repo: Repo, tmp_path: Path, mode: str) -> None:
    sha = repo.commit(BASE_FILES, "base")
    result = _decide(repo, mode, sha, tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{mode}\n"
    assert (tmp_path / "out" / "build").read_text() == mode


def test_decide_auto_uses_deployed_image_tag(
    repo: Repo, tmp_path: Path, fake_kubectl: Callable[[str], dict[str, str]]
) -> None:
    deployed = repo.commit(BASE_FILES, "base")
    docs = repo.commit({"README.md": "x\n"}, "docs")
    image = f"harbor.nineminds.com/nineminds/temporal-worker:{deployed}"
    unchanged = _decide(repo, "auto", docs, tmp_path / "a", fake_kubectl(image))
    assert (unchanged.returncode, unchanged.stdout) == (0, "false\n"), unchanged.stderr
    code = repo.commit({"src/alga_worker/x.py": "y = 2\n"}, "code")
    changed = _decide(repo, "auto", code, tmp_path / "b", fake_kubectl(image))
    assert changed.stdout == "true\n"
    assert (tmp_path / "b" / "build").read_text() == "true"


def test_decide_auto_handles_registry_port_and_digest(
    repo: Repo, tmp_path: Path, fake_kubectl: Callable[[str], dict[str, str]]
) -> None:
    deployed = repo.commit(BASE_FILES, "base")
    docs = repo.commit({"README.md": "x\n"}, "docs")
    image = f"registry.local:5000/nineminds/temporal-worker:{deployed}@sha256:{'a' * 64}"
    result = _decide(repo, "auto", docs, tmp_path / "o", fake_kubectl(image))
    assert result.stdout == "false\n", result.stderr


@pytest.mark.parametrize("image", ["", "registry.local:5000/nineminds/temporal-worker"], ids=["absent", "untagged"])
def test_decide_auto_first_deploy_builds(
    repo: Repo, tmp_path: Path, fake_kubectl: Callable[[str], dict[str, str]], image: str
) -> None:
    sha = repo.commit(BASE_FILES, "base")
    result = _decide(repo, "auto", sha, tmp_path / "o", fake_kubectl(image))
    assert (result.returncode, result.stdout) == (0, "true\n"), result.stderr


def test_decide_rejects_unknown_mode(repo: Repo, tmp_path: Path) -> None:
    sha = repo.commit(BASE_FILES, "base")
    result = _decide(repo, "sometimes", sha, tmp_path / "o")
    assert result.returncode == 1
    assert "auto, true or false" in result.stderr


# --- submit.sh ----------------------------------------------------------------


@dataclass
class Checkout:
    """A clone with a bare 'origin' and a fake argo that records its arguments."""

    repo: Repo
    argo_log: Path
    env: dict[str, str]

    def submit(self, *args: str) -> subprocess.CompletedProcess[str]:
        return _run(["sh", str(SUBMIT), *args], env=self.env, cwd=self.repo.path)

    def argo_args(self) -> list[str]:
        return self.argo_log.read_text().splitlines()


@pytest.fixture
def checkout(tmp_path: Path) -> Checkout:
    home = tmp_path / "home"
    home.mkdir()
    env = _git_env(home)
    remote = tmp_path / "remote.git"
    subprocess.run(
        ["git", "init", "--quiet", "--bare", "--initial-branch=main", str(remote)],
        env=env,
        check=True,
        timeout=30,
    )
    path = tmp_path / "work"
    subprocess.run(
        ["git", "clone", "--quiet", str(remote), str(path)],
        env=env,
        check=True,
        timeout=30,
        capture_output=True,
    )
    repo = Repo(path, env)
    repo.commit(BASE_FILES, "base")
    repo.git("push", "--quiet", "origin", "HEAD:main")
    argo_log = tmp_path / "argo.args"
    argo = tmp_path / "argo"
    argo.write_text(f'#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done > "{argo_log}"\n')
    argo.chmod(0o755)
    submit_env = dict(env, ARGO_BIN=str(argo))
    return Checkout(repo, argo_log, submit_env)


def test_submit_build_passes_head_and_remote(checkout: Checkout) -> None:
    head = checkout.repo.git("rev-parse", "HEAD")
    result = checkout.submit("build", "--watch")
    assert result.returncode == 0, result.stderr
    args = checkout.argo_args()
    assert args[:5] == ["submit", "--namespace", "argo", "--from", "workflowtemplate/temporal-worker-build"]
    assert "--watch" in args
    assert f"commit-sha={head}" in args
    remote = checkout.repo.git("remote", "get-url", "origin")
    assert f"repo-url={remote}" in args


def test_submit_refuses_dirty_tree(checkout: Checkout) -> None:
    (checkout.repo.path / "src" / "alga_worker" / "__init__.py").write_text("dirty = True\n")
    result = checkout.submit("build")
    assert result.returncode == 1
    assert "not clean" in result.stderr
    assert not checkout.argo_log.exists()


def test_submit_refuses_untracked_files(checkout: Checkout) -> None:
    (checkout.repo.path / "forgotten.py").write_text("x = 1\n")
    result = checkout.submit("pipeline")
    assert result.returncode == 1
    assert "not clean" in result.stderr


def test_submit_refuses_unpushed_head(checkout: Checkout) -> None:
    checkout.repo.commit({"src/alga_worker/new.py": "x = 1\n"}, "local only")
    result = checkout.submit("pipeline")
    assert result.returncode == 1
    assert "push it first" in result.stderr
    assert not checkout.argo_log.exists()


def test_submit_deploy_defaults_image_tag_to_head(checkout: Checkout) -> None:
    head = checkout.repo.git("rev-parse", "HEAD")
    result = checkout.submit("deploy", "-p", "environment=staging")
    assert result.returncode == 0, result.stderr
    args = checkout.argo_args()
    assert "workflowtemplate/temporal-worker-deploy" in args
    assert f"image-tag={head}" in args
    assert "environment=staging" in args


def test_submit_user_parameters_override_defaults(checkout: Checkout) -> None:
    result = checkout.submit("pipeline", "-p", "commit-sha=abc123", "-p", "build-temporal-worker=true")
    assert result.returncode == 0, result.stderr
    args = checkout.argo_args()
    assert "commit-sha=abc123" in args
    assert not any(a.startswith("commit-sha=") and a != "commit-sha=abc123" for a in args)
    assert "build-temporal-worker=true" in args
    assert "workflowtemplate/alga-psa-build-migrate-deploy-with-temporal" in args


def test_submit_rollback_needs_no_clean_tree(checkout: Checkout) -> None:
    (checkout.repo.path / "scratch.txt").write_text("wip\n")
    result = checkout.submit("rollback", "-p", "revision=7")
    assert result.returncode == 0, result.stderr
    args = checkout.argo_args()
    assert "workflowtemplate/temporal-worker-rollback" in args
    assert "revision=7" in args
    assert not any(a.startswith("commit-sha=") for a in args)


def test_submit_converts_ssh_remote_to_https(checkout: Checkout) -> None:
    checkout.repo.git("config", "remote.origin.url", "git@github.com:Nine-Minds/x.git")
    # Keep fetching from the local bare repository under the ssh-looking name.
    remote = checkout.repo.path.parent / "remote.git"
    checkout.repo.git("config", f"url.{remote}.insteadOf", "git@github.com:Nine-Minds/x.git")
    result = checkout.submit("build", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "repo-url=https://github.com/Nine-Minds/x.git" in result.stdout
    assert not checkout.argo_log.exists()


def test_submit_rejects_unknown_pipeline(checkout: Checkout) -> None:
    result = checkout.submit("launch")
    assert result.returncode == 2
    assert "unknown pipeline" in result.stderr


# helm-upgrade.sh and the other step scripts: test_pipeline_scripts.py runs them against fake tools.

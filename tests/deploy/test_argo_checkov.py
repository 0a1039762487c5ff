"""checkov's argo_workflows checks over deploy/argo.

checkov takes seconds to import, so it runs once per session over the whole
directory and the tests read its JSON report. Skips, if any are ever needed, live
only in deploy/argo/.checkov.yaml, each with its reason on the same line.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.deploy.helm_support import checkov_bin

REPO_ROOT = Path(__file__).resolve().parents[2]
ARGO_DIR = REPO_ROOT / "deploy" / "argo"
CONFIG = ARGO_DIR / ".checkov.yaml"


@pytest.fixture(scope="session")
def checkov_report() -> dict[str, Any]:
    """Run checkov once (offline: --skip-download in the config) and parse its report."""
    checkov = checkov_bin()  # its own venv: checkov pins packaging<24, pytest needs >=24
    result = subprocess.run(
        [
            str(checkov),
            "--config-file",
            str(CONFIG),
            "--directory",
            str(ARGO_DIR),
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=180,
    )
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"checkov did not produce JSON (rc={result.returncode}):\n{result.stderr}")
    reports = report if isinstance(report, list) else [report]
    by_type = {r["check_type"]: r for r in reports}
    assert "argo_workflows" in by_type, f"no argo_workflows report: {sorted(by_type)}"
    return by_type["argo_workflows"]


def test_checkov_argo_checks_pass(checkov_report: dict[str, Any]) -> None:
    failed = checkov_report["results"]["failed_checks"]
    assert not failed, "\n".join(f"{c['check_id']} {c['check_name']}: {c['file_path']}" for c in failed)
    assert checkov_report["summary"]["parsing_errors"] == 0


def test_checkov_scanned_every_template(checkov_report: dict[str, Any]) -> None:
    scanned = {
        Path(c["file_path"]).name
        for c in checkov_report["results"]["passed_checks"] + checkov_report["results"]["skipped_checks"]
    }
    committed = {p.name for p in (ARGO_DIR / "templates").glob("*.yaml")}
    assert committed and committed <= scanned


def test_skips_are_only_in_the_config_file_and_have_reasons() -> None:
    config = yaml.safe_load(CONFIG.read_text())
    skip_lines = [
        line
        for line in CONFIG.read_text().splitlines()
        if line.lstrip().startswith("- CKV") and not line.lstrip().startswith("#")
    ]
    assert len(skip_lines) == len(config.get("skip-check") or [])
    for line in skip_lines:
        assert "#" in line and line.split("#", 1)[1].strip(), f"skip without reason: {line}"
    for path in ARGO_DIR.rglob("*.yaml"):
        assert "checkov:skip" not in path.read_text(), f"inline checkov skip in {path}"

"""checkov finds nothing in the rendered manifests (every shipped configuration) or the Dockerfile.

Why checkov on rendered output rather than the templates: it checks what Kubernetes will actually
receive for each values file. Skips live in one file, deploy/checkov-skips.yaml, each with a reason.
"""

from __future__ import annotations

from typing import Any

from helm_support import checkov_report, checkov_skips


def reports_by_type() -> dict[str, dict[str, Any]]:
    """The session's single checkov run, by framework."""
    return {str(r["check_type"]): r for r in checkov_report()}


def test_skips_file_gives_a_reason_for_every_skip() -> None:
    """A skip without a reason is not a decision; ids must look like checkov ids."""
    for check_id, reason in checkov_skips().items():
        assert check_id.startswith(("CKV_", "CKV2_")), check_id
        assert len(reason) >= 40, f"{check_id}: reason too short"


def test_checkov_scanned_both_frameworks() -> None:
    """The run covered the manifests and the Dockerfile and parsed everything."""
    reports = reports_by_type()
    assert set(reports) == {"kubernetes", "dockerfile"}
    for check_type, report in reports.items():
        summary = report["summary"]
        assert summary["parsing_errors"] == 0, check_type
        assert summary["passed"] > 0, check_type
    assert reports["kubernetes"]["summary"]["resource_count"] >= 6 * 5


def test_checkov_kubernetes_has_no_failed_checks() -> None:
    """Zero failed checks on the rendered manifests."""
    failed = reports_by_type()["kubernetes"]["results"]["failed_checks"]
    assert not failed, "\n".join(
        f"{f['check_id']} {f['check_name']} {f['file_path']} {f['resource']}" for f in failed
    )


def test_checkov_dockerfile_has_no_failed_checks() -> None:
    """Zero failed checks on deploy/docker/Dockerfile."""
    failed = reports_by_type()["dockerfile"]["results"]["failed_checks"]
    assert not failed, "\n".join(f"{f['check_id']} {f['check_name']}" for f in failed)

"""The alerts and situations that have a runbook, and where each page lives: one list for every test.

The alert rules (deploy/monitoring/alerts.yaml), their runbook_url annotations and the pages under
docs/runbooks/ must agree; the monitoring tests and the runbook tests both read this mapping.
"""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
RUNBOOKS_DIR = REPO_ROOT / "docs" / "runbooks"
RUNBOOK_BASE_URL = "https://github.com/Nine-Minds/alga-temporal-worker/blob/main/docs/runbooks/"

# Alert name -> its page.
ALERT_PAGES: dict[str, str] = {
    "TemporalWorkerDown": "worker-down.md",
    "TemporalWorkerNoPollers": "no-pollers.md",
    "TemporalWorkerNotReady": "worker-not-ready.md",
    "TemporalScheduleToStartLatencyHigh": "schedule-to-start-latency.md",
    "TemporalWorkflowFailureRatioHigh": "workflow-failure-ratio.md",
    "TenantProvisioningFailures": "provisioning-failures.md",
    "EmailSendFailures": "email-failures.md",
    "NmStoreErrors": "nm-store-errors.md",
    "StripeErrors": "stripe-errors.md",
    "DatabasePoolExhausted": "db-pool-exhausted.md",
    "DatabaseUnreachable": "database-unreachable.md",
    "WorkerPodRestarting": "pod-restarts.md",
    "VaultAgentInitFailing": "vault-agent-init.md",
}
# Situations without an alert of their own (linked from the alert pages).
SITUATION_PAGES: tuple[str, ...] = ("worker-not-polling.md", "stuck-provisioning.md", "email-provider-outage.md",
                                    "nm-store-outage.md", "database-failover.md", "secret-rotation.md",
                                    "rollback.md", "payload-key-rotation.md", "payload-key-lost.md")

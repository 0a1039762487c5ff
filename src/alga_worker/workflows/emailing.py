"""How a workflow sends an email: through the one ``send_email`` activity, keyed per run and purpose.

Why one helper: every workflow (tenant creation, user management, sendEmailWorkflow) must send the
same way, so a retried send is deduplicated by the provider and two different emails of one run never
share a key. The key is ``<workflow type>/<workflow id>/<run id>/<purpose>``: a new run of the same
workflow id (a re-run after completion) is a new email, a retry of the activity is the same one.
Deterministic; imported inside workflows only.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from alga_worker.activities.notifications import NotificationActivities
    from alga_worker.models import SendEmailRequest, SendEmailResult
    from alga_worker.workflows.policies import ACTIVITY_TIMEOUT, EMAIL_RETRY, HEARTBEAT_TIMEOUT


def email_key(purpose: str) -> str:
    """The idempotency key of this run's email for ``purpose`` (e.g. ``invitation``)."""
    info = workflow.info()
    return f"{info.workflow_type}/{info.workflow_id}/{info.run_id}/{purpose}"


def seal_binding(subject: str) -> str:
    """What a sealed secret of this run is bound to: it opens for this run and ``subject`` only."""
    info = workflow.info()
    return f"{info.workflow_id}/{info.run_id}/{subject}"


async def send_email(req: SendEmailRequest) -> SendEmailResult:
    """Run ``send_email``: provider outages retried with backoff, rejections final (``EmailRejected``)."""
    result: SendEmailResult = await workflow.execute_activity_method(
        NotificationActivities.send_email, req,
        start_to_close_timeout=ACTIVITY_TIMEOUT, heartbeat_timeout=HEARTBEAT_TIMEOUT, retry_policy=EMAIL_RETRY,
    )
    return result

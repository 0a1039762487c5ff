"""``sendEmailWorkflow`` and ``testEmailWorkflow``: a templated email through the one ``send_email`` activity.

``sendEmailWorkflow`` lets the Alga web app or an operator send any template that carries no secret
(``account_deactivated``, ``provisioning_failed``): the input (``{template, to, toOperations,
variables}``) is decoded strictly and checked against the template's context model *in the workflow*,
so an unknown template, a bad address or an unknown, missing or mistyped variable ends the run
``Failed`` with ``ValidationError`` after its first workflow task, with nothing sent. Templates with a
secret are refused: their temporary password would have to sit in this input, that is in workflow
history; the user workflows (``createUserWorkflow``, ``resetUserPasswordWorkflow``,
``resendWelcomeEmailWorkflow``) generate the password in an activity and pass it sealed.

``testEmailWorkflow`` is the original's smoke test (reference 2.3) with its input shape
(``SendWelcomeEmailActivityInput``): the welcome email to the given admin with a throwaway temporary
password. The original generated the password in an activity, carried it through history in clear and
returned it in the result (a flaw: anyone who can read the run reads the password). Here
``seal_test_password`` returns it sealed to the run and only ``send_email`` opens it; the result has
the email outcome and no password. An invalid address is a ``ValidationError`` at start (the original
completed with ``emailSent: false``), like every other malformed start.

Both send with the idempotency key ``<type>/<workflow id>/<run id>/<purpose>``
(``workflows/emailing.py``): a retried send is one email. Deterministic; no side effects at import.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.common import RawValue

with workflow.unsafe.imports_passed_through():
    from alga_worker import errors
    from alga_worker.activities.notifications import NotificationActivities
    from alga_worker.email.templates import spec_of, variable_problems
    from alga_worker.models import (
        WORKFLOW_TYPE_SEND_EMAIL,
        WORKFLOW_TYPE_TEST_EMAIL,
        EmailSmokeTestOutcome,
        EmailSmokeTestRequest,
        EmailSmokeTestResult,
        EmailTemplate,
        SendEmailRequest,
        SendEmailWorkflowRequest,
        SendEmailWorkflowResult,
    )
    from alga_worker.workflows.emailing import email_key, seal_binding, send_email
    from alga_worker.workflows.policies import ACTIVITY_TIMEOUT, EMAIL_RETRY
    from alga_worker.workflows.run_marks import mark_run, worker_capabilities
    from alga_worker.workflows.wire import decode_start

# Which user workflow sends each secret-carrying template (named in the refusal).
_SECRET_TEMPLATE_SENDERS = {
    EmailTemplate.TENANT_WELCOME: "tenantCreationWorkflow or resendWelcomeEmailWorkflow",
    EmailTemplate.PORTAL_ACCESS: "customerTrackingWorkflow",
    EmailTemplate.USER_INVITATION: "createUserWorkflow",
    EmailTemplate.PASSWORD_RESET: "resetUserPasswordWorkflow",
}


@workflow.defn(name=WORKFLOW_TYPE_SEND_EMAIL)
class SendEmailWorkflow:
    @workflow.run
    async def run(self, request: RawValue) -> SendEmailWorkflowResult:
        req = decode_start(request, SendEmailWorkflowRequest, "send email")
        self._refuse_bad_input(req)
        tenant_id = req.variables.get("tenant_id")
        if isinstance(tenant_id, str):
            mark_run(await worker_capabilities(), tenant_id=tenant_id)
        result = await send_email(SendEmailRequest(
            template=req.template, to=req.to, to_operations=req.to_operations, variables=req.variables,
            idempotency_key=email_key("send")))
        workflow.logger.info("email sent", extra={"template": req.template.value, "provider": result.provider,
                                                  "duplicate": result.duplicate})
        return SendEmailWorkflowResult(
            template=result.template, email_sent=result.email_sent, provider=result.provider,
            message_id=result.message_id, destination=result.destination, duplicate=result.duplicate,
            recipients=len(set(req.to)) + (1 if req.to_operations else 0))

    @staticmethod
    def _refuse_bad_input(req: SendEmailWorkflowRequest) -> None:
        """Everything checkable without I/O, before any activity: a refusal sends nothing."""
        spec = spec_of(req.template)
        if spec.secrets:
            sender = _SECRET_TEMPLATE_SENDERS.get(req.template, "the user workflows")
            raise errors.validation_error(
                f"template {req.template.value} carries a temporary password, which would be stored in this "
                f"run's history: sendEmailWorkflow does not send it; use {sender} instead",
                [{"field": "template", "problem": "carries a secret; use the user workflows instead"}])
        problems = variable_problems(req.template, req.variables)
        if not req.to and not req.to_operations:
            problems.append({"field": "to", "problem": "no recipient: give to or toOperations"})
        if problems:
            described = "; ".join(f"{p['field']}: {p['problem']}" for p in problems)
            raise errors.validation_error(f"invalid send email input: {described}", problems)


@workflow.defn(name=WORKFLOW_TYPE_TEST_EMAIL)
class TestEmailWorkflow:
    __test__ = False  # not a pytest class

    @workflow.run
    async def run(self, request: RawValue) -> EmailSmokeTestResult:
        req = decode_start(request, EmailSmokeTestRequest, "test email")
        binding = seal_binding("test-password")
        sealed: str = await workflow.execute_activity_method(
            NotificationActivities.seal_test_password, binding,
            start_to_close_timeout=ACTIVITY_TIMEOUT, retry_policy=EMAIL_RETRY)
        admin = req.admin_user
        result = await send_email(SendEmailRequest(
            template=EmailTemplate.TENANT_WELCOME, to=[admin.email],
            variables={"tenant_name": req.tenant_name, "client_name": req.client_name or req.company_name,
                       "first_name": admin.first_name, "last_name": admin.last_name, "email": admin.email},
            sealed={"temporary_password": sealed}, seal_binding=binding,
            idempotency_key=email_key("test"), tags={"smoke_test": "true"}))
        return EmailSmokeTestResult(template=result.template, email_result=EmailSmokeTestOutcome(
            email_sent=result.email_sent, message_id=result.message_id, provider=result.provider,
            destination=result.destination, duplicate=result.duplicate))

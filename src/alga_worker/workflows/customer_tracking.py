"""``customerTrackingWorkflow``: an operator's retry of customer tracking for an existing tenant.

Tenant creation records each new customer in the management tenant (client, contact, ``PSA Customer``
tag, client-portal user) as a non-fatal step. When that step failed (an ``AmbiguousCustomerError`` an
operator has since resolved, ``MANAGEMENT_TENANT_ID`` unset at the time, an outage longer than the
retries), ``alga-worker customer track <tenant-id>`` runs this workflow. Deterministic code only; the
module has no side effects at import.

Shape:

1. decode the start argument (any malformed start ends the run with ``ValidationError``);
2. ``load_customer_facts``: the tenant's name, its default client's name and its first active MSP
   admin, read from the database, so an operator cannot record a customer under a mistyped name;
3. with ids minted by this run (a retried activity finds its own rows), one of:

   - **default**: ``track_customer_records``: client, contact and tag; the portal user is only looked
     up. Nothing is emailed and no credential is made: a portal user created here would have a
     temporary password that reaches nobody (the welcome email went out long ago). A missing portal
     user is reported ``skipped``, saying how to create it;
   - **createPortalUser**: ``track_customer``, which also creates the portal user when it is missing,
     with its own temporary password (never the admin's), sealed and bound to this run; then
     ``send_email`` (template ``portal_access``, the one mailer) opens it and emails it to the admin,
     deduplicated per run and purpose (runs started before the one mailer use
     ``send_portal_access_email``, same template, same code: ``workflow.patched``).
     A portal user that already exists is reused untouched and nothing is sent;

4. the result: ids and one outcome per stage, never a password, sealed or not.

A collision (``AmbiguousCustomerError``), missing configuration (``ConfigurationError``) or an unknown
tenant (``ValidationError``) fails the run in the activity's first attempt, with nothing written. A
portal-access email that cannot be delivered does not fail the run (the records stand); its outcome
says so, and the customer can still set a password with the client portal's "forgot password".
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow
from temporalio.common import RawValue
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from alga_worker.activities.customers import CustomerActivities
    from alga_worker.activities.notifications import NotificationActivities
    from alga_worker.models import (
        WORKFLOW_TYPE_CUSTOMER_TRACKING,
        CustomerFacts,
        CustomerFactsInput,
        CustomerRecordsInput,
        CustomerTrackingInput,
        CustomerTrackingOutput,
        CustomerTrackingRequest,
        CustomerTrackingResult,
        EmailTemplate,
        OutcomeStatus,
        PortalAccessEmailInput,
        SendEmailRequest,
        SendEmailResult,
        StepOutcome,
        WelcomeEmailOutput,
    )
    from alga_worker.workflows.emailing import email_key
    from alga_worker.workflows.failures import describe_failure as _describe
    from alga_worker.workflows.policies import ACTIVITY_TIMEOUT, DB_RETRY, EMAIL_RETRY, HEARTBEAT_TIMEOUT
    from alga_worker.workflows.run_marks import mark_run, worker_capabilities
    from alga_worker.workflows.wire import decode_start


PORTAL_EMAIL = "portal_access_email"
# Runs started before the one mailer send the portal email with send_portal_access_email.
ONE_MAILER_PATCH = "one-mailer-v1"
# Runs started before search attributes were set on customer tracking replay without the lookup.
MARK_PATCH = "search-attributes-v1"


@workflow.defn(name=WORKFLOW_TYPE_CUSTOMER_TRACKING)
class CustomerTrackingWorkflow:
    @workflow.run
    async def run(self, request: RawValue) -> CustomerTrackingResult:
        req = decode_start(request, CustomerTrackingRequest, "customer tracking")
        if workflow.patched(MARK_PATCH):
            mark_run(await worker_capabilities(), tenant_id=req.tenant_id)
        facts: CustomerFacts = await workflow.execute_activity_method(
            CustomerActivities.load_customer_facts, CustomerFactsInput(tenant_id=req.tenant_id),
            start_to_close_timeout=ACTIVITY_TIMEOUT, heartbeat_timeout=HEARTBEAT_TIMEOUT, retry_policy=DB_RETRY,
        )
        if req.create_portal_user:
            tracked, email = await self._track_with_portal_user(facts)
        else:
            tracked = await self._track_records(facts)
            email = StepOutcome(status=OutcomeStatus.SKIPPED, detail="not asked to create a portal user")
        workflow.logger.info("customer tracked", extra={"tenant_id": str(req.tenant_id),
                                                        "customer_client_id": str(tracked.customer_client_id)})
        return CustomerTrackingResult(
            tenant_id=str(req.tenant_id), customer_client_id=str(tracked.customer_client_id),
            contact_id=str(tracked.contact_id), tag_id=str(tracked.tag_id),
            portal_user_id=None if tracked.portal_user_id is None else str(tracked.portal_user_id),
            portal_email_sent=email.status is OutcomeStatus.DONE, repairs_workflow_id=req.workflow_id,
            outcomes={**tracked.outcomes, PORTAL_EMAIL: email},
        )

    # ---- steps ----

    async def _track_records(self, facts: CustomerFacts) -> CustomerTrackingOutput:
        """Client, contact and tag; the portal user only looked up (nothing to deliver, nothing made)."""
        return await workflow.execute_activity_method(
            CustomerActivities.track_customer_records,
            CustomerRecordsInput(
                tenant_id=facts.tenant_id, tenant_name=facts.tenant_name, client_name=facts.client_name,
                admin=facts.admin, customer_client_id=workflow.uuid4(), contact_id=workflow.uuid4(),
            ),
            start_to_close_timeout=ACTIVITY_TIMEOUT, heartbeat_timeout=HEARTBEAT_TIMEOUT, retry_policy=DB_RETRY,
        )

    async def _track_with_portal_user(self, facts: CustomerFacts) -> tuple[CustomerTrackingOutput, StepOutcome]:
        """Everything, the portal user included; a new portal password is emailed to the admin at once."""
        info = workflow.info()
        binding = f"{info.workflow_id}/{info.run_id}/{facts.tenant_id}"
        tracked: CustomerTrackingOutput = await workflow.execute_activity_method(
            CustomerActivities.track_customer,
            CustomerTrackingInput(
                tenant_id=facts.tenant_id, tenant_name=facts.tenant_name, client_name=facts.client_name,
                admin=facts.admin, customer_client_id=workflow.uuid4(), contact_id=workflow.uuid4(),
                portal_user_id=workflow.uuid4(), seal_binding=binding,
            ),
            start_to_close_timeout=ACTIVITY_TIMEOUT, heartbeat_timeout=HEARTBEAT_TIMEOUT, retry_policy=DB_RETRY,
        )
        if tracked.sealed_portal_password is None or tracked.portal_user_id is None:
            return tracked, StepOutcome(status=OutcomeStatus.SKIPPED,
                                        detail="no new portal password: the portal user already existed")
        options: dict[str, Any] = {"start_to_close_timeout": ACTIVITY_TIMEOUT, "heartbeat_timeout": HEARTBEAT_TIMEOUT,
                                   "retry_policy": EMAIL_RETRY}
        admin = facts.admin
        try:
            sent: WelcomeEmailOutput | SendEmailResult
            if workflow.patched(ONE_MAILER_PATCH):
                sent = await workflow.execute_activity_method(
                    NotificationActivities.send_email,
                    SendEmailRequest(
                        template=EmailTemplate.PORTAL_ACCESS, to=[admin.email],
                        variables={"tenant_name": facts.tenant_name, "first_name": admin.first_name,
                                   "last_name": admin.last_name, "email": admin.email},
                        sealed={"portal_temporary_password": tracked.sealed_portal_password}, seal_binding=binding,
                        idempotency_key=email_key("portal-access"), tags={"tenant_id": str(facts.tenant_id)},
                    ), **options)
            else:
                sent = await workflow.execute_activity_method(
                    NotificationActivities.send_portal_access_email,
                    PortalAccessEmailInput(
                        tenant_id=facts.tenant_id, portal_user_id=tracked.portal_user_id,
                        tenant_name=facts.tenant_name, admin=admin,
                        sealed_portal_password=tracked.sealed_portal_password, seal_binding=binding,
                    ), **options)
        except ActivityError as err:
            workflow.logger.warning("client portal access email failed", extra={"tenant_id": str(facts.tenant_id)})
            return tracked, StepOutcome(status=OutcomeStatus.FAILED, detail=_describe(err))
        return tracked, StepOutcome(status=OutcomeStatus.DONE, detail=f"{sent.provider}: {sent.destination}")

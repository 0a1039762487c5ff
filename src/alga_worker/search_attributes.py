"""The custom search attributes every tenant-creation run carries, declared once.

Operators find a run by the checkout session it came from or the tenant it created, in the Web UI
(``CheckoutSessionId = "cs_..."``) and in the CLI (``alga-worker checkout status``). Values are ids,
never emails or names: search attributes are stored unencrypted and indexed by the Temporal cluster.

A cluster must have them registered (``Keyword`` type) before a run may set them, or the server
rejects the workflow task; the dev stack registers them, and ``docs/checkout.md`` gives the command
for clusters. Runs set them only when the worker found them registered (asked once per process and
cached), so a cluster without them loses searchability, never tenants.
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

CHECKOUT_SESSION_ID = SearchAttributeKey.for_keyword("CheckoutSessionId")
TENANT_ID = SearchAttributeKey.for_keyword("TenantId")
# User workflows (createUser, resendWelcomeEmail, resetUserPassword, (de|re)activateUser): the user acted on.
USER_ID = SearchAttributeKey.for_keyword("UserId")
# tenantDeletionWorkflow: the deletion's id (pending_tenant_deletions.deletion_id).
DELETION_ID = SearchAttributeKey.for_keyword("DeletionId")

ALL = (CHECKOUT_SESSION_ID, TENANT_ID, USER_ID, DELETION_ID)

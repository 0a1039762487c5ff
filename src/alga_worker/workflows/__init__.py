"""Workflow definitions. Import-side-effect free: the sandbox re-imports these modules per run.

Worker Versioning (``TEMPORAL_WORKER_DEPLOYMENT_NAME``): every workflow here is PINNED, through the
worker's default behaviour (:data:`VERSIONING_BEHAVIOR`, set in ``runtime/worker.py``), so no
``@workflow.defn`` names one and none may choose another (a test holds that). Why pinned: a run
finishes on the code that started it. These workflows are short (minutes, tenant creation's checkout
reports at most a day), so keeping the old version's pods until its runs drain is cheap, and pinning
removes a whole class of rollout failure: a nondeterministic edit can never meet a run in flight,
and a rollback never replays a new build's run on old code. AUTO_UPGRADE would move open runs to
the new version at their next task; the replay test (tests/integration/test_replay.py) still gates
every build, because a run pinned to a version whose pods are gone must be moved by hand
(docs/deployment.md, "Worker Versioning").
"""

from temporalio.common import VersioningBehavior

from alga_worker.workflows.customer_tracking import CustomerTrackingWorkflow
from alga_worker.workflows.email import SendEmailWorkflow, TestEmailWorkflow
from alga_worker.workflows.health_check import HealthCheckWorkflow
from alga_worker.workflows.licenses import UpdateTenantLicenseCountWorkflow
from alga_worker.workflows.tenant_creation import TenantCreationWorkflow
from alga_worker.workflows.tenant_deletion import TenantDeletionWorkflow
from alga_worker.workflows.tenant_export import TenantExportWorkflow
from alga_worker.workflows.tenant_suspension import ResumeTenantWorkflow, SuspendTenantWorkflow
from alga_worker.workflows.users import (
    CreateUserWorkflow,
    DeactivateUserWorkflow,
    ReactivateUserWorkflow,
    ResendWelcomeEmailWorkflow,
    ResetUserPasswordWorkflow,
)

WORKFLOWS = (TenantCreationWorkflow, HealthCheckWorkflow, CustomerTrackingWorkflow, UpdateTenantLicenseCountWorkflow,
             CreateUserWorkflow, ResendWelcomeEmailWorkflow, ResetUserPasswordWorkflow, DeactivateUserWorkflow,
             ReactivateUserWorkflow, SendEmailWorkflow, TestEmailWorkflow,
             SuspendTenantWorkflow, ResumeTenantWorkflow, TenantExportWorkflow, TenantDeletionWorkflow)

# The worker's default versioning behaviour when it joins a Worker Deployment (see the docstring).
VERSIONING_BEHAVIOR = VersioningBehavior.PINNED

__all__ = ["VERSIONING_BEHAVIOR", "WORKFLOWS", "CreateUserWorkflow", "CustomerTrackingWorkflow",
           "DeactivateUserWorkflow", "HealthCheckWorkflow", "ReactivateUserWorkflow", "ResendWelcomeEmailWorkflow",
           "ResetUserPasswordWorkflow", "ResumeTenantWorkflow", "SendEmailWorkflow", "SuspendTenantWorkflow",
           "TenantCreationWorkflow", "TenantDeletionWorkflow",
           "TenantExportWorkflow", "TestEmailWorkflow", "UpdateTenantLicenseCountWorkflow"]

"""Workflow definitions. Import-side-effect free: the sandbox re-imports these modules per run."""

from alga_worker.workflows.customer_tracking import CustomerTrackingWorkflow
from alga_worker.workflows.email import SendEmailWorkflow, TestEmailWorkflow
from alga_worker.workflows.health_check import HealthCheckWorkflow
from alga_worker.workflows.licenses import UpdateTenantLicenseCountWorkflow
from alga_worker.workflows.tenant_creation import TenantCreationWorkflow
from alga_worker.workflows.users import (
    CreateUserWorkflow,
    DeactivateUserWorkflow,
    ReactivateUserWorkflow,
    ResendWelcomeEmailWorkflow,
    ResetUserPasswordWorkflow,
)

WORKFLOWS = (TenantCreationWorkflow, HealthCheckWorkflow, CustomerTrackingWorkflow, UpdateTenantLicenseCountWorkflow,
             CreateUserWorkflow, ResendWelcomeEmailWorkflow, ResetUserPasswordWorkflow, DeactivateUserWorkflow,
             ReactivateUserWorkflow, SendEmailWorkflow, TestEmailWorkflow)

__all__ = ["WORKFLOWS", "CreateUserWorkflow", "CustomerTrackingWorkflow", "DeactivateUserWorkflow",
           "HealthCheckWorkflow", "ReactivateUserWorkflow", "ResendWelcomeEmailWorkflow",
           "ResetUserPasswordWorkflow", "SendEmailWorkflow", "TenantCreationWorkflow", "TestEmailWorkflow",
           "UpdateTenantLicenseCountWorkflow"]

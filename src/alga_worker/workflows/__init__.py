"""Workflow definitions. Import-side-effect free: the sandbox re-imports these modules per run."""

from alga_worker.workflows.customer_tracking import CustomerTrackingWorkflow
from alga_worker.workflows.health_check import HealthCheckWorkflow
from alga_worker.workflows.licenses import UpdateTenantLicenseCountWorkflow
from alga_worker.workflows.tenant_creation import TenantCreationWorkflow

WORKFLOWS = (TenantCreationWorkflow, HealthCheckWorkflow, CustomerTrackingWorkflow, UpdateTenantLicenseCountWorkflow)

__all__ = ["WORKFLOWS", "CustomerTrackingWorkflow", "HealthCheckWorkflow", "TenantCreationWorkflow",
           "UpdateTenantLicenseCountWorkflow"]

"""Workflow definitions. Import-side-effect free: the sandbox re-imports these modules per run."""

from alga_worker.workflows.health_check import HealthCheckWorkflow
from alga_worker.workflows.tenant_creation import TenantCreationWorkflow

WORKFLOWS = (TenantCreationWorkflow, HealthCheckWorkflow)

__all__ = ["WORKFLOWS", "HealthCheckWorkflow", "TenantCreationWorkflow"]

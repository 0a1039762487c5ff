"""``healthCheckWorkflow``: an end-to-end probe for deploy pipelines (worker, queue, database).

The original slept 100 ms and returned "healthy" without touching anything; this one runs an activity
on the task queue, so a success proves a worker of this build is polling and its database answers.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from alga_worker.activities.health import HealthActivities
    from alga_worker.models import WORKFLOW_TYPE_HEALTH_CHECK, HealthCheckResult


@workflow.defn(name=WORKFLOW_TYPE_HEALTH_CHECK)
class HealthCheckWorkflow:
    @workflow.run
    async def run(self) -> HealthCheckResult:
        return await workflow.execute_activity_method(
            HealthActivities.health_probe,
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RetryPolicy(maximum_attempts=3),
        )

"""Retry policies and timeouts shared by the workflows: one definition, so a change reaches them all.

Every policy lists the project's non-retryable failure types (``errors.NON_RETRYABLE_TYPES``): a typed
refusal ends the step at once instead of spending its retry budget.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy

from alga_worker import errors

# Database work (provisioning, customer records): ten attempts over a few minutes.
DB_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), backoff_coefficient=2.0, maximum_interval=timedelta(seconds=30),
    maximum_attempts=10, non_retryable_error_types=list(errors.NON_RETRYABLE_TYPES),
)
EMAIL_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2), backoff_coefficient=2.0, maximum_interval=timedelta(seconds=60),
    maximum_attempts=8, non_retryable_error_types=list(errors.NON_RETRYABLE_TYPES),
)
# Compensation must eventually succeed: retried until its schedule-to-close timeout.
# Side steps (Stripe, customer records, tags): a few retries, then the run goes on without them.
SIDE_STEP_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), backoff_coefficient=2.0, maximum_interval=timedelta(seconds=30),
    maximum_attempts=6, non_retryable_error_types=list(errors.NON_RETRYABLE_TYPES),
)
CLEANUP_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30))
# Activities heartbeat every 2 s: a dead worker's attempt is retried elsewhere within this.
HEARTBEAT_TIMEOUT = timedelta(seconds=10)
ACTIVITY_TIMEOUT = timedelta(seconds=60)

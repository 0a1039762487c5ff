"""Reporting a tenant creation's progress to nm-store, in order (deterministic workflow code).

nm-store shows its customer where the signup stands, from ``in_progress`` to ``completed`` or
``failed``, and learns the new tenant's id from the signed callback. Two rules shape this class:

- **Order.** ``in_progress`` is reported in the background while provisioning runs (an nm-store
  outage must not delay a tenant). Before the final status is sent, that report is settled: if it is
  still pending (nm-store down, retrying), it is cancelled and waited for, so a late ``in_progress``
  can never land after ``completed`` or ``failed``. A stale ``in_progress`` is dropped, not replayed.
- **Patience.** The final status and the callback retry with capped backoff for up to a day (an
  nm-store outage ends, the reports then arrive, in order: status first, then callback). A
  non-retryable refusal (a wrong secret) is recorded in state for operators
  (``alga-worker checkout status`` / ``resend``); the tenant itself is not failed for it.

What was sent and how nm-store answered is kept in :class:`CheckoutState` for ``getState``.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, CancelledError
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from alga_worker import errors
    from alga_worker.models import (
        CheckoutState,
        CheckoutStatus,
        CheckoutStatusReport,
        NmStoreCallback,
        NmStoreDelivery,
    )
    from alga_worker.workflows.handles import activity_resolved

REPORT_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), backoff_coefficient=2.0, maximum_interval=timedelta(minutes=5),
    maximum_attempts=0, non_retryable_error_types=list(errors.NON_RETRYABLE_TYPES),
)
REPORT_WINDOW = timedelta(hours=24)
REPORT_ATTEMPT_TIMEOUT = timedelta(seconds=30)
REPORT_HEARTBEAT_TIMEOUT = timedelta(seconds=10)  # the activities beat every 2 s
ERROR_SUMMARY_LIMIT = 500


class CheckoutReporter:
    """The nm-store side of one run: ``start()`` once validated, ``finish()`` once, at the end."""

    def __init__(self, checkout_session_id: str, workflow_id: str) -> None:
        self.state = CheckoutState(checkout_session_id=checkout_session_id)
        self._workflow_id = workflow_id
        self._in_progress: Any = None
        self._finished = False

    def start(self) -> None:
        self._in_progress = workflow.start_activity(
            "report_checkout_status", self._report(CheckoutStatus.IN_PROGRESS, None),
            result_type=NmStoreDelivery, start_to_close_timeout=REPORT_ATTEMPT_TIMEOUT,
            heartbeat_timeout=REPORT_HEARTBEAT_TIMEOUT, schedule_to_close_timeout=REPORT_WINDOW,
            retry_policy=REPORT_RETRY, cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        )

    async def finish(self, status: CheckoutStatus, tenant_id: str | None, error: str | None) -> None:
        """Settle ``in_progress``, then send the final status, then the signed callback."""
        if self._finished:
            return
        self._finished = True
        error = None if error is None else error[:ERROR_SUMMARY_LIMIT]
        await self._settle_in_progress()
        self.state.last_status = status
        delivery = await self._deliver("report_checkout_status", self._report(status, error))
        if delivery is not None:
            self.state.status_delivery = delivery
        callback = NmStoreCallback(session_id=self.state.checkout_session_id, alga_tenant_id=tenant_id,
                                   status=status, error=error, workflow_id=self._workflow_id)
        delivery = await self._deliver("send_nm_store_callback", callback)
        if delivery is not None:
            self.state.callback_delivery = delivery

    async def _settle_in_progress(self) -> None:
        handle = self._in_progress
        if handle is None:
            return
        if not activity_resolved(handle):
            handle.cancel()
        try:
            self.state.status_delivery = await handle
            self.state.last_status = CheckoutStatus.IN_PROGRESS
        except asyncio.CancelledError:  # resolved and cancelled in one activation: stale either way
            pass
        except ActivityError as err:  # cancelled (stale, dropped) or refused: the final report decides
            if not isinstance(err.cause, CancelledError):
                self.state.last_error = _describe(err)

    async def _deliver(self, activity: str, arg: Any) -> NmStoreDelivery | None:
        try:
            result: NmStoreDelivery = await workflow.execute_activity(
                activity, arg, result_type=NmStoreDelivery, start_to_close_timeout=REPORT_ATTEMPT_TIMEOUT,
                heartbeat_timeout=REPORT_HEARTBEAT_TIMEOUT, schedule_to_close_timeout=REPORT_WINDOW,
                retry_policy=REPORT_RETRY,
            )
        except ActivityError as err:
            self.state.last_error = _describe(err)
            workflow.logger.warning("nm-store report not delivered", extra={"activity": activity})
            return None
        return result

    def _report(self, status: CheckoutStatus, error: str | None) -> CheckoutStatusReport:
        return CheckoutStatusReport(
            checkout_session_id=self.state.checkout_session_id, workflow_status=status,
            workflow_id=self._workflow_id, error=error,
            workflow_completed_at=workflow.now() if status is CheckoutStatus.COMPLETED else None,
        )


def _describe(err: BaseException) -> str:
    while isinstance(err, ActivityError) and err.cause is not None:
        err = err.cause
    return f"{type(err).__name__}: {err}"[:ERROR_SUMMARY_LIMIT]

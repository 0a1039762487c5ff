"""Which tenant a log line is about, and one line per workflow outcome, for every activity and workflow.

The SDK puts workflow and activity ids on records (``temporal_workflow`` / ``temporal_activity``
extras, and :class:`~alga_worker.runtime.logging.TemporalContextFilter` for plain loggers), but it does
not know the tenant. Writing ``extra={"tenant_id": ...}`` into every log call would miss the SDK's own
lines (an activity's "Completing activity as failed" warning) and every call someone forgets, so the
tenant is found once, generally:

* **activities**: :class:`LogContextInterceptor` reads the activity's input before it runs: a top-level
  ``tenant_id`` attribute (every pydantic input that targets a tenant has one, ``models.py``) or, for
  ``send_email``, ``tags["tenant_id"]``. It is kept in a context variable keyed by the activity
  attempt (run id, activity id, attempt), so the SDK's failure line, logged in the same task after the
  interceptor has returned, still carries it, and no other activity can ever see it;
* **workflows**: the run's ``TenantId`` search attribute (``search_attributes.py``), read from
  ``workflow.info()`` when a record is logged inside the run. It is known from the moment the run
  upserts it (tenant creation: once the id is minted; user workflows: at their start).

The same interceptor logs each workflow run's end through ``workflow.logger``, which is silent while
history is replayed: the SDK logs nothing when a run completes or fails, so without it a failed
provisioning would leave only activity warnings, and a successful one no workflow line at all.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Mapping, Sequence
from typing import Any

from temporalio import activity, workflow
from temporalio.exceptions import ApplicationError, FailureError
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    ExecuteWorkflowInput,
    Interceptor,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
)

from alga_worker import search_attributes
from alga_worker.runtime.metrics import root_cause

__all__ = ["LogContextInterceptor", "activity_tenant_id", "tenant_id_of", "workflow_tenant_id"]

# (workflow run id, activity id, attempt) of the activity attempt the tenant belongs to, and the tenant.
_ActivityKey = tuple[str, str, int]
_activity_tenant: contextvars.ContextVar[tuple[_ActivityKey, str] | None] = contextvars.ContextVar(
    "alga_activity_tenant", default=None)


def tenant_id_of(args: Sequence[Any]) -> str | None:
    """The tenant an activity's arguments name: the first ``tenant_id`` attribute (or mapping key) of an
    argument, else a ``tags["tenant_id"]`` (the one mailer's input). None when no argument names one."""
    for arg in args:
        value = arg.get("tenant_id") if isinstance(arg, Mapping) else getattr(arg, "tenant_id", None)
        if value is None:
            tags = getattr(arg, "tags", None)
            value = tags.get("tenant_id") if isinstance(tags, Mapping) else None
        if value is not None and str(value):
            return str(value)
    return None


def _activity_key(info: activity.Info) -> _ActivityKey:
    return (info.workflow_run_id or "", info.activity_id, info.attempt)


def activity_tenant_id() -> str | None:
    """The tenant of the activity attempt running in this task, if its input named one."""
    held = _activity_tenant.get()
    if held is None or not activity.in_activity():
        return None
    key, tenant = held
    return tenant if key == _activity_key(activity.info()) else None


def workflow_tenant_id() -> str | None:
    """The ``TenantId`` search attribute of the workflow run logging right now, if it is set."""
    try:
        if not workflow.in_workflow():
            return None
        return workflow.info().typed_search_attributes.get(search_attributes.TENANT_ID)
    except Exception:  # a log line must never fail over its context
        return None


class _TenantActivityInbound(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        tenant = tenant_id_of(input.args)
        if tenant is not None:
            # Not reset on exit, on purpose: the SDK logs the attempt's failure in this same task after
            # this returns. Each attempt runs in its own task, and the key confines the value to it.
            _activity_tenant.set((_activity_key(activity.info()), tenant))
        return await super().execute_activity(input)


def _error_type(err: BaseException) -> str:
    """The failure's type as Temporal reports it: the innermost cause's ApplicationError type, else
    the exception class. Never the message: messages may quote names and addresses."""
    cause = root_cause(err)
    if isinstance(cause, ApplicationError) and cause.type:
        return cause.type
    return type(cause).__name__


class _OutcomeLogInbound(WorkflowInboundInterceptor):
    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        try:
            result = await super().execute_workflow(input)
        except workflow.ContinueAsNewError:
            workflow.logger.info("workflow continued as new", extra=_elapsed())
            raise
        except asyncio.CancelledError:
            workflow.logger.info("workflow cancelled", extra=_elapsed())
            raise
        except FailureError as err:
            # Only what fails the run (the worker sets no other failure types). Any other exception
            # fails the workflow *task*, which the SDK logs itself and Temporal retries.
            workflow.logger.warning("workflow failed", extra={**_elapsed(), "error_type": _error_type(err)})
            raise
        workflow.logger.info("workflow completed", extra=_elapsed())
        return result


def _elapsed() -> dict[str, Any]:
    """Seconds since the run started, on the run's own (history) clock."""
    seconds = (workflow.now() - workflow.info().start_time).total_seconds()
    return {"duration_seconds": round(max(seconds, 0.0), 3)}


class LogContextInterceptor(Interceptor):
    """Registered on the worker: tenant ids for activity log lines, one outcome line per workflow run."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _TenantActivityInbound(next)

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor] | None:
        return _OutcomeLogInbound

"""Wrong argument counts end the run with ``ValidationError``, for every workflow the worker registers.

A start with no argument, or with two, reaches the workflow's ``run`` as a ``TypeError`` inside the
SDK, which fails the workflow *task*: Temporal retries it for ever and the run stays Running with no
failure anyone can match on. This worker interceptor compares the argument count with the ``run``
method's signature before calling it and fails the *run* instead, non-retryably and typed.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from temporalio import workflow
from temporalio.worker import (
    ExecuteWorkflowInput,
    Interceptor,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
)

from alga_worker import errors


@functools.cache
def positional_arity(run_fn: Callable[..., Any]) -> tuple[int, int]:
    """(required, maximum) positional arguments of an unbound ``run`` method, ``self`` excluded."""
    params = list(inspect.signature(run_fn).parameters.values())[1:]
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = sum(1 for p in positional if p.default is p.empty)
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return required, 1 << 30
    return required, len(positional)


class _StrictStartInbound(WorkflowInboundInterceptor):
    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        required, maximum = positional_arity(input.run_fn)
        given = len(input.args)
        if not required <= given <= maximum:
            expected = str(required) if required == maximum else f"{required} to {maximum}"
            problem = f"expected {expected} argument(s), got {given}"
            raise errors.validation_error(
                f"invalid {workflow.info().workflow_type} start: {problem}",
                [{"field": "(arguments)", "problem": problem}],
            )
        return await super().execute_workflow(input)


class StrictStartInterceptor(Interceptor):
    """Registered on the worker: applies to every workflow type it runs."""

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor] | None:
        return _StrictStartInbound

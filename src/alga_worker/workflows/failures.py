"""Failure chains in workflow code, told in one line.

Why: an activity's failure reaches the workflow as ``ActivityError`` wrapping the activity's typed
``ApplicationError`` (and retry state); state, outcomes, logs and audit rows want the innermost
``Type: message``, the error class a caller or operator acts on. Deterministic, no I/O.
"""

from __future__ import annotations

from temporalio.exceptions import ActivityError, ApplicationError


def describe_failure(err: BaseException) -> str:
    """``Type: message`` of the innermost failure of an activity chain (the ApplicationError's type when
    it has one, else the exception class)."""
    while isinstance(err, ActivityError) and err.cause is not None:
        err = err.cause
    kind = err.type if isinstance(err, ApplicationError) and err.type else type(err).__name__
    return f"{kind}: {err}"

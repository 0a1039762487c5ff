"""Helpers for activity handles in workflow code."""

from __future__ import annotations

from typing import Any


def activity_resolved(handle: Any) -> bool:
    """True once Temporal has told this worker how the activity ended, even if the handle has not yet
    run to pick the outcome up.

    Why not ``handle.done()``: when the activity's completion and a cancel arrive in the same workflow
    activation, the handle task has not run yet, and cancelling it then makes it raise a bare
    ``CancelledError`` *instead of the result* (the SDK's documented choice). A welcome email that the
    provider accepted would read as cancelled and its tenant would be removed. The SDK has no public
    accessor for this; the attribute is read defensively and the SDK version is pinned.
    """
    result = getattr(handle, "_result_fut", None)
    return bool(handle.done() or (result is not None and result.done()))

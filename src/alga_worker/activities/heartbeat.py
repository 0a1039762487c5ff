"""Heartbeat in the background while an activity awaits I/O.

Why: the workflows give their activities a short ``heartbeat_timeout``, so a worker that dies
(SIGKILL, node loss) is noticed in seconds instead of after ``start_to_close_timeout``, and its
activity is retried on another worker. A provisioning transaction that waits on a lock is alive,
not dead: the background beat says so.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from temporalio import activity

DEFAULT_INTERVAL_SECONDS = 2.0


@contextlib.asynccontextmanager
async def heartbeating(interval: float = DEFAULT_INTERVAL_SECONDS,
                      details: Callable[[], Any] | None = None) -> AsyncIterator[None]:
    """Beat every ``interval`` seconds until the block ends; with ``details``, each beat carries what it
    returns then (progress an operator's tool reads from the activity's pending heartbeat)."""
    async def beat() -> None:
        while True:
            if details is None:
                activity.heartbeat()
            else:
                activity.heartbeat(details())
            await asyncio.sleep(interval)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

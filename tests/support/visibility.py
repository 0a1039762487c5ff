"""Wait for Temporal's visibility store to show runs: it is eventually consistent (the dev server's
SQLite visibility lags the run by up to a second), so tests poll with a bound instead of sleeping."""

from __future__ import annotations

import asyncio

from temporalio.client import Client


async def workflow_ids_matching(client: Client, query: str, expected: set[str], *, attempts: int = 100) -> set[str]:
    """Ids of runs matching ``query``, polled every 0.1 s until ``expected`` are all there (or give up
    after ``attempts`` and return what is there, so the caller's assertion shows the difference)."""
    found: set[str] = set()
    for _ in range(attempts):
        found = {wf.id async for wf in client.list_workflows(query)}
        if expected <= found:
            return found
        await asyncio.sleep(0.1)
    return found

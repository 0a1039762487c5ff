"""What the Temporal cluster offers this worker: its registered search attributes.

Why: a run that upserts a search attribute the namespace does not know fails its workflow task on
the server, and keeps failing: a missing registration must cost searchability, never tenants. The
answer is cached per process for a few minutes, so a busy worker asks the cluster rarely; it reaches
workflows through ``worker_capabilities`` (one local activity per run).
"""

from __future__ import annotations

import logging
import time

from temporalio import activity
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest

from alga_worker import search_attributes

log = logging.getLogger(__name__)

CACHE_SECONDS = 300.0


class SearchAttributeLookup:
    def __init__(self) -> None:
        self._cached: tuple[float, list[str]] | None = None

    async def registered(self) -> list[str]:
        """Names of the project's search attributes that the namespace has registered ([] if unknown).

        Call from inside an activity (it uses the activity's Temporal client)."""
        now = time.monotonic()
        if self._cached is not None and now - self._cached[0] < CACHE_SECONDS:
            return self._cached[1]
        try:
            client = activity.client()
            response = await client.operator_service.list_search_attributes(
                ListSearchAttributesRequest(namespace=client.namespace))
        except Exception as err:  # no client (tests), or an API key without operator rights
            log.warning("cannot list search attributes; runs will not set them",
                        extra={"error": type(err).__name__})
            return []
        registered = set(response.custom_attributes)
        found = [key.name for key in search_attributes.ALL if key.name in registered]
        missing = [key.name for key in search_attributes.ALL if key.name not in registered]
        if missing:
            log.warning("search attributes not registered; runs will not set them", extra={"missing": missing})
        self._cached = (now, found)
        return found

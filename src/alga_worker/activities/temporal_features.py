"""What the Temporal cluster offers this worker, asked from a workflow as a local activity.

Why: a run that upserts a search attribute the namespace does not know fails its workflow task on
the server, and keeps failing: a missing registration must cost searchability, never tenants. The
answer is cached per process for a few minutes, so a busy worker asks the cluster rarely.
"""

from __future__ import annotations

import logging
import time

from temporalio import activity
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest

from alga_worker import search_attributes

log = logging.getLogger(__name__)

CACHE_SECONDS = 300.0


class TemporalFeatureActivities:
    def __init__(self) -> None:
        self._cached: tuple[float, list[str]] | None = None

    @activity.defn(name="registered_search_attributes")
    async def registered_search_attributes(self) -> list[str]:
        """Names of the project's search attributes that the namespace has registered."""
        now = time.monotonic()
        if self._cached is not None and now - self._cached[0] < CACHE_SECONDS:
            return self._cached[1]
        client = activity.client()
        try:
            response = await client.operator_service.list_search_attributes(
                ListSearchAttributesRequest(namespace=client.namespace))
        except Exception as err:  # e.g. an API key without operator rights on Temporal Cloud
            log.warning("cannot list search attributes; runs will not set them",
                        extra={"error": type(err).__name__})
            found: list[str] = []
        else:
            registered = set(response.custom_attributes)
            found = [key.name for key in search_attributes.ALL if key.name in registered]
            missing = [key.name for key in search_attributes.ALL if key.name not in registered]
            if missing:
                log.warning("search attributes not registered; runs will not set them",
                            extra={"missing": missing})
        self._cached = (now, found)
        return found

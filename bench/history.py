"""What a run cost Temporal, and where its time went on the server's clock, read from its history
without assuming its shape.

Events are counted by type (whatever the workflow does today or after a change), activities as
``ACTIVITY_TASK_SCHEDULED`` events, local activities as ``MARKER_RECORDED`` events whose marker is
``core_local_activity``, workflow tasks as ``WORKFLOW_TASK_COMPLETED`` events. A drain's duration is
taken from the server's own timestamps: from the first workflow task started in any run to the last
run's closing event, so a worker process's start-up (imports, connecting, the schema check) is not
counted and the ceiling and the provisioning drain are measured alike. A run's timeline is the time
between consecutive events, so it shows, for any shape, how long each workflow task waited to be
picked up, each workflow task and activity ran, and what happened in between.
"""

from __future__ import annotations

import asyncio
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHandle

LOCAL_ACTIVITY_MARKER = "core_local_activity"


@dataclass(frozen=True)
class RunCost:
    events: int
    activities: int
    local_activities: int
    workflow_tasks: int
    event_types: dict[str, int]
    first_task_started: datetime | None
    closed: datetime
    timeline: list[tuple[str, float]]  # (event label, seconds since the previous event)

    def as_dict(self) -> dict[str, Any]:
        return {"history_events": self.events, "activities": self.activities,
                "local_activities": self.local_activities, "workflow_tasks": self.workflow_tasks,
                "event_types": self.event_types}


def _type_name(value: int) -> str:
    return EventType.Name(value).removeprefix("EVENT_TYPE_")  # type: ignore[arg-type]


def _label(event: HistoryEvent, name: str) -> str:
    """The event type, with the activity type or marker name where there is one."""
    if name == "ACTIVITY_TASK_SCHEDULED":
        return f"{name} {event.activity_task_scheduled_event_attributes.activity_type.name}"
    if name == "MARKER_RECORDED":
        return f"{name} {event.marker_recorded_event_attributes.marker_name}"
    return name


async def run_cost(handle: WorkflowHandle[Any, Any]) -> RunCost:
    history = await handle.fetch_history()
    types: Counter[str] = Counter()
    timeline: list[tuple[str, float]] = []
    local = 0
    first_task: datetime | None = None
    previous: datetime | None = None
    for event in history.events:
        name = _type_name(event.event_type)
        at = event.event_time.ToDatetime()
        types[name] += 1
        timeline.append((_label(event, name), 0.0 if previous is None else (at - previous).total_seconds()))
        previous = at
        if name == "MARKER_RECORDED" and event.marker_recorded_event_attributes.marker_name == LOCAL_ACTIVITY_MARKER:
            local += 1
        if name == "WORKFLOW_TASK_STARTED" and first_task is None:
            first_task = at
    return RunCost(events=len(history.events), activities=types["ACTIVITY_TASK_SCHEDULED"], local_activities=local,
                   workflow_tasks=types["WORKFLOW_TASK_COMPLETED"], event_types=dict(sorted(types.items())),
                   first_task_started=first_task, closed=history.events[-1].event_time.ToDatetime(),
                   timeline=timeline)


async def run_costs(handles: Sequence[WorkflowHandle[Any, Any]], concurrency: int = 20) -> list[RunCost]:
    gate = asyncio.Semaphore(concurrency)

    async def one(handle: WorkflowHandle[Any, Any]) -> RunCost:
        async with gate:
            return await run_cost(handle)

    return list(await asyncio.gather(*(one(h) for h in handles)))


def drain_seconds(costs: Iterable[RunCost]) -> float:
    """First workflow task started (any run) → last run closed, on the server's clock."""
    costs = list(costs)
    starts = [c.first_task_started for c in costs if c.first_task_started is not None]
    return (max(c.closed for c in costs) - min(starts)).total_seconds()


def median_timeline(costs: Sequence[RunCost]) -> dict[str, Any]:
    """The median gap before each event, over the runs of the most common shape (all of them when the
    workflow's code did not change mid-bench)."""
    shapes = Counter(tuple(label for label, _ in c.timeline) for c in costs)
    shape, runs = shapes.most_common(1)[0]
    same = [c for c in costs if tuple(label for label, _ in c.timeline) == shape]
    events = []
    at = 0.0
    for i, label in enumerate(shape):
        gap = statistics.median(c.timeline[i][1] for c in same)
        at += gap
        events.append({"event": label, "gap_ms": 1000 * gap, "at_ms": 1000 * at})
    return {"runs": runs, "of": len(costs), "events": events}

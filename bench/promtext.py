"""Histogram sums and counts from a worker's /metrics, and their change between two scrapes.

The SDK's own families (``temporal_workflow_task_execution_latency_seconds``,
``temporal_activity_execution_latency_seconds`` by ``activity_type``, the schedule-to-start latencies
...) are what the worker measured itself, without tracing: the change across the sequential runs,
divided by the runs, is the mean cost of one provisioning's workflow tasks and activities.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

Key = tuple[str, tuple[tuple[str, str], ...]]  # (family, sorted labels minus the constant ones)
_CONSTANT_LABELS = {"service", "environment", "namespace", "task_queue", "le"}


@dataclass(frozen=True)
class Histogram:
    sum: float
    count: float


def histograms(text: str) -> dict[Key, Histogram]:
    """Every histogram's ``_sum``/``_count`` per label set (bucket series ignored)."""
    sums: dict[Key, float] = {}
    counts: dict[Key, float] = {}
    for family in text_string_to_metric_families(text):
        if family.type != "histogram":
            continue
        for sample in family.samples:
            labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k not in _CONSTANT_LABELS))
            if sample.name.endswith("_sum"):
                sums[(family.name, labels)] = sums.get((family.name, labels), 0.0) + sample.value
            elif sample.name.endswith("_count"):
                counts[(family.name, labels)] = counts.get((family.name, labels), 0.0) + sample.value
    return {key: Histogram(sums.get(key, 0.0), counts[key]) for key in counts}


def delta(before: Mapping[Key, Histogram], after: Mapping[Key, Histogram]) -> dict[Key, Histogram]:
    """What happened between two scrapes (label sets that did not move are left out)."""
    out = {}
    for key, value in after.items():
        old = before.get(key, Histogram(0.0, 0.0))
        if value.count - old.count > 0:
            out[key] = Histogram(value.sum - old.sum, value.count - old.count)
    return out


def family(changes: Mapping[Key, Histogram], name: str, label: str | None = None) -> dict[str, Histogram]:
    """One family's changes, by the value of ``label`` (or all summed under "" when ``label`` is None)."""
    out: dict[str, Histogram] = {}
    for (fam, labels), value in changes.items():
        if fam != name:
            continue
        key = dict(labels).get(label, "") if label else ""
        old = out.get(key, Histogram(0.0, 0.0))
        out[key] = Histogram(old.sum + value.sum, old.count + value.count)
    return out

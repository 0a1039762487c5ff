"""Reading a worker's /metrics the way Prometheus does (prometheus_client's text-format parser)."""

from __future__ import annotations

import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

# Labels every series of a worker carries, which say nothing about the event counted.
_CONTEXT_LABELS = frozenset({"service", "service_name", "environment", "namespace", "task_queue"})

SeriesKey = tuple[str, frozenset[tuple[str, str]]]


@dataclass(frozen=True)
class Scrape:
    """One scrape: family names, family types, and every sample keyed by name and labels."""

    families: Mapping[str, str]  # exposed family name -> type
    samples: Mapping[SeriesKey, float]
    text: str

    def value(self, name: str, **labels: str) -> float:
        """The sum of every sample named ``name`` whose labels include ``labels`` (0 when none)."""
        wanted = set(labels.items())
        return sum(v for (n, ls), v in self.samples.items() if n == name and wanted <= ls)

    def event_samples(self, prefix: str) -> dict[SeriesKey, float]:
        """Samples whose name starts with ``prefix``, keyed without the context labels."""
        return {(n, frozenset((k, v) for k, v in ls if k not in _CONTEXT_LABELS)): value
                for (n, ls), value in self.samples.items() if n.startswith(prefix)}


def parse(text: str) -> Scrape:
    families: dict[str, str] = {}
    samples: dict[SeriesKey, float] = {}
    for family in text_string_to_metric_families(text):
        # The parser strips "_total" from counter family names; the exposed name keeps it.
        exposed = f"{family.name}_total" if family.type == "counter" else family.name
        families[exposed] = family.type
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return Scrape(families=families, samples=samples, text=text)


def scrape(port: int, host: str = "127.0.0.1") -> Scrape:
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as response:
        return parse(response.read().decode())


def changes(before: Scrape, after: Scrape, prefix: str) -> dict[SeriesKey, float]:
    """Every series under ``prefix`` whose value moved, with how much (new series count from 0)."""
    old, new = before.event_samples(prefix), after.event_samples(prefix)
    return {key: value - old.get(key, 0.0) for key, value in new.items() if value != old.get(key, 0.0)}


def key(name: str, **labels: str) -> SeriesKey:
    return name, frozenset(labels.items())

"""CPU seconds per process across a phase: the worker, the Temporal dev server, PostgreSQL, the client.

Why: on a small box the worker, the dev server and PostgreSQL share the same CPUs, so a drain's rate is
set by the CPU one run costs all of them together. Measured over the one-at-a-time runs (no start-up,
no contention), it says where that CPU goes, for a provisioning and for the no-op floor run, and so what
the drain can reach relative to the ceiling. Read from ``/proc/<pid>/stat`` (utime + stime, in clock
ticks of 10 ms: over 50 runs the error is well under a millisecond per run).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[str, int, float] | None:
    """(comm, ppid, CPU seconds) of ``pid``, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = text[text.index("(") + 1:text.rindex(")")]
    fields = text[text.rindex(")") + 2:].split()
    # fields[0] is the state (field 3 of stat(5)); utime and stime are fields 14 and 15.
    return comm, int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICKS


def _all() -> dict[int, tuple[str, int, float]]:
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None:
                found[int(entry)] = stat
    return found


@dataclass(frozen=True)
class Processes:
    """Which processes count as what: the worker's pid, and how to find the stack's servers."""

    worker_pid: int
    postmaster_pid: int

    def sample(self) -> dict[int, tuple[str, float]]:
        """Group and CPU seconds of every process in one of the groups, by pid."""
        me = os.getpid()
        sample: dict[int, tuple[str, float]] = {}
        for pid, (comm, ppid, seconds) in _all().items():
            if pid == self.worker_pid:
                sample[pid] = ("worker", seconds)
            elif pid == me:
                sample[pid] = ("client", seconds)
            elif comm == "temporal" and ppid == me:  # the dev server the SDK started for this stack
                sample[pid] = ("temporal", seconds)
            elif pid == self.postmaster_pid or ppid == self.postmaster_pid:  # its backends and helpers
                sample[pid] = ("postgresql", seconds)
        return sample


def delta_per_run(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]],
                  runs: int) -> dict[str, float]:
    """Milliseconds of CPU per run by group (a process that started in between counts from zero)."""
    totals = {"worker": 0.0, "temporal": 0.0, "postgresql": 0.0, "client": 0.0}
    for pid, (group, seconds) in after.items():
        start = before.get(pid, (group, 0.0))[1]
        totals[group] += seconds - start
    per_run = {group: 1000 * seconds / runs for group, seconds in totals.items()}
    per_run["total"] = sum(per_run.values())
    return per_run


def postmaster_pid(pgdata: Path) -> int:
    """The running PostgreSQL's pid: the first line of ``postmaster.pid``."""
    return int((pgdata / "postmaster.pid").read_text().splitlines()[0])

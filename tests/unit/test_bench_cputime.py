"""``bench.cputime``: CPU per run is counted for the right process group, from ``/proc``.

The bench's claim about where a drain's CPU goes (docs/performance.md) rests on this attribution:
the worker's pid is the worker, this process is the client, a process that started in between counts
from zero, and every group is divided by the runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bench import cputime

# Enough work to show up in clock ticks (10 ms each) on any machine, and nothing else.
_BURN = "x = 0\nfor i in range(3_000_000):\n    x += i\nprint('done', flush=True)\nimport sys; sys.stdin.read()"


def test_a_workers_cpu_is_its_own_and_counts_from_zero_when_it_started_in_between(tmp_path: Path) -> None:
    pgdata = tmp_path / "pgdata"
    pgdata.mkdir()
    (pgdata / "postmaster.pid").write_text(f"{2**22 + 1}\n{pgdata}\n")  # a pid no process has
    before = cputime.Processes(worker_pid=-1, postmaster_pid=cputime.postmaster_pid(pgdata)).sample()
    child = subprocess.Popen([sys.executable, "-c", _BURN], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline() == b"done\n"  # its loop is over
        processes = cputime.Processes(worker_pid=child.pid, postmaster_pid=cputime.postmaster_pid(pgdata))
        after = processes.sample()
    finally:
        child.communicate(b"")
    per_run = cputime.delta_per_run(before, after, runs=2)
    assert after[child.pid][0] == "worker" and after[os.getpid()][0] == "client"
    assert per_run["worker"] == 1000 * after[child.pid][1] / 2 > 0
    # The session's dev server may be this process's child: a `temporal` child is counted, nothing else is.
    for pid, (group, _) in after.items():
        if group == "temporal":
            status = Path(f"/proc/{pid}/status").read_text()
            assert "Name:\ttemporal\n" in status and f"PPid:\t{os.getpid()}\n" in status
    assert per_run["postgresql"] == 0  # no process has the postmaster pid given
    assert per_run["total"] == sum(v for k, v in per_run.items() if k != "total")


def test_postmaster_pid_is_the_first_line_of_postmaster_pid(tmp_path: Path) -> None:
    (tmp_path / "postmaster.pid").write_text("4242\n/var/lib/pgdata\n1764590000\n5432\n")
    assert cputime.postmaster_pid(tmp_path) == 4242

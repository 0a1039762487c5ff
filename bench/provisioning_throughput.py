"""The former ``make bench`` entry point, kept for muscle memory: it now runs ``python -m bench``.

    .venv/bin/python -m bench.provisioning_throughput --tenants 200 --sequential 20

What it measured (a backlog of N tenant creations drained by one worker, then tenants one after
another, plus history events and activities per tenant) is part of ``python -m bench``, now on a real
``alga-worker run`` process instead of an in-process worker, next to the ceiling; the options map
one to one. See docs/performance.md.
"""

from __future__ import annotations

import argparse

from bench.__main__ import main as bench_main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tenants", type=int, default=200)
    parser.add_argument("--sequential", type=int, default=50)
    args = parser.parse_args()
    bench_main(["--tenants", str(args.tenants), "--sequential", str(args.sequential)])


if __name__ == "__main__":
    main()

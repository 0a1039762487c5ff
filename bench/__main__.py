"""`make bench`: throughput, latency and cost of provisioning on one embedded stack, in one run.

    .venv/bin/python -m bench [--tenants 200] [--ceiling N] [--sequential 50] [--scale 10000]
                              [--json .bench/results.json]

On one ephemeral DevStack (Temporal dev server + embedded PostgreSQL), in this order:
(a) the ceiling: N no-op workflows of one no-op activity each, started first, then drained by
    ``python -m bench.noop_worker`` (the real worker's runtime settings, none of its work), then
    no-op runs one at a time (the stack's latency floor);
(b) N provisionings started first, then drained by a real ``alga-worker run`` process;
(c) provisionings one at a time on the idle stack, on that (warm) worker: p50/p95/p99 start → result;
    with ``--scale N``: ``bench.scale.fill`` adds N tenants, then (c) again;
(a) the ceiling again (the drain is compared with the mean of both);
then traced provisionings on worker processes with tracing on: one plain, and with the checkout
configuration (nm-store and Stripe fakes) one plain and one checkout: history events, activities,
SQL statements and round trips per tenant, and where one provisioning's time goes.
docs/performance.md explains each figure's method.
Prints a table (with issue 12's targets, PASS/FAIL, never failing the command) and writes JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from temporalio.client import Client

from alga_worker.config import load_client_settings
from alga_worker.payload_codec import data_converter
from alga_worker.runtime.devstack import DevStack
from bench import codec_cost, measure, report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tenants", type=int, default=200, help="provisionings in the drain (b) (default 200)")
    parser.add_argument("--ceiling", type=int, default=None,
                        help="no-op workflows in the ceiling's drain (a) (default: as --tenants)")
    parser.add_argument("--sequential", type=int, default=50, help="provisionings one at a time (c) (default 50)")
    parser.add_argument("--scale", type=int, default=None, metavar="N",
                        help="after (c), fill the database with N tenants (bench/scale.py) and measure (c) again")
    parser.add_argument("--json", type=Path, default=Path(".bench/results.json"),
                        help="where to write the results (default .bench/results.json)")
    args = parser.parse_args(argv)
    if args.tenants < 1 or args.sequential < 1 or (args.ceiling is not None and args.ceiling < 1):
        parser.error("--tenants, --ceiling and --sequential must be at least 1")
    return args


async def run(args: argparse.Namespace) -> dict[str, Any]:
    wall = time.perf_counter()
    results: dict[str, Any] = {"started_at": datetime.now(UTC).isoformat(timespec="seconds"),
                               "machine": report.machine(),
                               "options": {"tenants": args.tenants, "ceiling": args.ceiling or args.tenants,
                                           "sequential": args.sequential, "scale": args.scale}}
    with tempfile.TemporaryDirectory(prefix="alga-bench-") as tmp:
        root = Path(tmp)
        root.chmod(0o755)
        async with DevStack(root / "stack", ephemeral=True) as stack:
            # The converter the workers' settings give (the embedded stack's: plain unless PAYLOAD_KEYS is set).
            client_settings = load_client_settings(stack.worker_environment(SECRETS_DIR=str(root / "secrets")))
            converter = data_converter(client_settings)
            client = await Client.connect(stack.temporal_address, data_converter=converter)
            ctx = measure.Context(stack=stack, client=client, root=root)
            step("(a) ceiling: no-op drain")
            ceilings = [await measure.ceiling(ctx, args.ceiling or args.tenants, "bench-noop-1", args.sequential)]
            step(f"(b) drain of {args.tenants} provisionings")
            results["drain"], worker = await measure.drain(ctx, args.tenants)
            try:
                step(f"(c) {args.sequential} provisionings one at a time")
                results["latency"] = await measure.one_at_a_time(ctx, worker, args.sequential)
                if args.scale:
                    step(f"scale: {args.scale} existing tenants, then (c) again")
                    results["scale"] = await measure.scale_step(ctx, worker, args.scale, args.sequential,
                                                                results["latency"]["p50_ms"])
            finally:
                await worker.terminate()
            # The ceiling again, after: the box's other load moves both, so the drain is compared with
            # the mean of a ceiling measured just before it and one just after.
            step("(a) ceiling again: no-op drain")
            ceilings.append(await measure.ceiling(ctx, args.ceiling or args.tenants, "bench-noop-2"))
            results["ceiling"] = measure.combine_ceilings(ceilings)
            results["drain"]["ratio_to_ceiling"] = results["drain"]["per_second"] / results["ceiling"]["per_second"]
            step("probe: traced provisionings (plain, checkout)")
            results["probe"] = await measure.probe(ctx)
            results["pbkdf2"] = measure.pbkdf2(ctx)
    # The payload codec's cost per tenant (issue 14), on a stack of its own: the payloads of one plain
    # and one checkout provisioning through AES-256-GCM (bench/codec_cost.py; about 4 s).
    step("payload codec: encode/decode of one provisioning's payloads")
    results["codec"] = await codec_cost.run(repeats=200)
    results["machine"]["load_average_at_end"] = report.load_average()
    results["targets"] = report.targets(results)
    results["wall_seconds"] = time.perf_counter() - wall
    return results


def step(text: str) -> None:
    print(f"… {text}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    results = asyncio.run(run(args))
    print(report.render(results))
    print("\n" + codec_cost.render(results["codec"]))
    report.write_json(results, args.json)
    print(f"\nwall time {results['wall_seconds']:.0f} s; results in {args.json}")


if __name__ == "__main__":
    main()

"""The payload codec's cost per tenant (issue 14; not a test).

    .venv/bin/python -m bench.codec_cost [--repeats 500] [--json .bench/codec_cost.json]

On one ephemeral DevStack, a real worker (in-process, the real workflows and activities) provisions one
plain tenant and one checkout tenant (nm-store and Stripe fakes, customer tracking on, as the probe of
``make bench``), with a recording codec on the client and the worker: it keeps every batch of payloads
the SDK hands to a codec, encode side (the start input, activity inputs and results, the workflow's
result, failures' encoded attributes) and decode side (what the worker and the client read back), in
plain form. Then, for each run, the project's ``EncryptionCodec`` (with one random key, as
``payload_codec.build_codec`` makes it from ``PAYLOAD_KEYS``) encodes the encode-side batches and
decodes the decode-side batches (encrypted first), batch by batch as the SDK calls it, ``--repeats``
times: the figure is the median of the per-tenant totals. Reported: the payloads and codec calls per
tenant, µs per tenant to encode and to decode, the part of encoding spent trying zlib on every payload,
and the bytes of the payloads (the ``Payload`` messages as stored in history) plain, encrypted, and
encrypted as they would be without compression (same metadata, ``nonce || ciphertext || tag`` of the
uncompressed serialized payload), so the compression's gain is visible.

Timings depend on the machine and its load; the byte counts do not. docs/performance.md ("Payload
encryption") has the figures and their method.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import statistics
import tempfile
import time
import uuid
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.converter import DefaultFailureConverterWithEncodedAttributes, PayloadCodec
from tests.fakes.nmstore_server import FakeNmStoreServer
from tests.fakes.stripe_server import FakeStripeServer

from alga_worker.config import load_settings
from alga_worker.converter import DATA_CONVERTER
from alga_worker.runtime.devstack import DevStack
from alga_worker.runtime.worker import build_resources, build_worker
from bench import report, workload

MANAGEMENT_TENANT = "00000000-0000-4000-8000-000000000001"  # dev migrations: 0002_management_tenant.sql
QUEUE = "bench-codec"
KEY_ID = "bench-1"
# One run's codec calls, one list per call: (encode side, decode side).
Batches = list[list[Payload]]


@dataclass
class RecordingCodec(PayloadCodec):
    """Passes payloads through unchanged and keeps a copy of every batch, per side."""

    encoded: list[list[Payload]] = field(default_factory=list)
    decoded: list[list[Payload]] = field(default_factory=list)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        self.encoded.append([_copy(p) for p in payloads])
        return list(payloads)

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        self.decoded.append([_copy(p) for p in payloads])
        return list(payloads)

    def take(self) -> tuple[list[list[Payload]], list[list[Payload]]]:
        """The batches recorded since the last take (empty batches dropped: the SDK skips the codec for
        them too when it has nothing to do)."""
        encoded, decoded = [b for b in self.encoded if b], [b for b in self.decoded if b]
        self.encoded, self.decoded = [], []
        return encoded, decoded


def _copy(payload: Payload) -> Payload:
    copy = Payload()
    copy.CopyFrom(payload)
    return copy


def _size(batches: list[list[Payload]]) -> int:
    """Bytes of the payloads as the server stores them (serialized ``Payload`` messages)."""
    return sum(p.ByteSize() for batch in batches for p in batch)


async def record_runs(repeats: int) -> tuple[dict[str, Any], dict[str, tuple[Batches, Batches]]]:
    """Provision a plain and a checkout tenant on a real worker; the payload batches of each run."""
    recorder = RecordingCodec()
    converter = dataclasses.replace(DATA_CONVERTER, payload_codec=recorder,
                                    failure_converter_class=DefaultFailureConverterWithEncodedAttributes)
    runs: dict[str, tuple[Batches, Batches]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-codec-") as tmp:
        root = Path(tmp)
        root.chmod(0o755)
        async with DevStack(root / "stack", ephemeral=True) as stack:
            with FakeNmStoreServer() as nmstore, FakeStripeServer() as stripe:
                settings = load_settings(stack.worker_environment(
                    TEMPORAL_TASK_QUEUE=QUEUE, SECRETS_DIR=str(root / "secrets"), LOG_LEVEL="warning",
                    NMSTORE_BASE_URL=nmstore.url, INTERNAL_API_SHARED_SECRET=nmstore.internal_secret,
                    TEMPORAL_WEBHOOK_SECRET=nmstore.webhook_secret, STRIPE_SECRET_KEY=stripe.api_key,
                    STRIPE_API_BASE=stripe.url, MANAGEMENT_TENANT_ID=MANAGEMENT_TENANT,
                    CLIENT_PORTAL_URL="https://portal.bench.example/login"))
                client = await Client.connect(stack.temporal_address, data_converter=converter)
                resources = await build_resources(settings)
                try:
                    async with build_worker(client, settings, resources.activities):
                        # Warm-up: the sandbox, the pool, the search-attribute cache; not recorded.
                        await _provision(client, workload.plain_request(0), "bench-codec-warm")
                        recorder.take()
                        await _provision(client, workload.plain_request(1), "bench-codec-plain")
                        runs["plain"] = recorder.take()
                        session = stripe.add_session(quantity=7)["session"]
                        await _provision(client, workload.checkout_request(session), "bench-codec-checkout")
                        runs["checkout"] = recorder.take()
                finally:
                    await resources.aclose()
    return {"repeats": repeats}, runs


async def _provision(client: Client, request: dict[str, Any], prefix: str) -> None:
    handle = await client.start_workflow(workload.TENANT_WORKFLOW, request, id=f"{prefix}-{uuid.uuid4().hex[:8]}",
                                         task_queue=QUEUE)
    await handle.result()


def codec() -> PayloadCodec:
    """The project's codec with one random key, as ``build_codec`` makes it from ``PAYLOAD_KEYS``."""
    from alga_worker.payload_codec import EncryptionCodec, PayloadKeys, generate_key

    return EncryptionCodec(PayloadKeys.parse(f"{KEY_ID}:{generate_key()}", KEY_ID))


def uncompressed_size(encrypted: Payload, plain: Payload) -> int:
    """What ``encrypted`` would weigh had the codec not compressed: the same metadata without the
    compression flag, ``nonce || ciphertext || tag`` as long as the serialized plain payload + 28."""
    from alga_worker.payload_codec import META_COMPRESSION, NONCE_BYTES, TAG_BYTES

    metadata = {k: v for k, v in encrypted.metadata.items() if k != META_COMPRESSION}
    inner = len(plain.SerializeToString(deterministic=True))
    return Payload(metadata=metadata, data=bytes(NONCE_BYTES + inner + TAG_BYTES)).ByteSize()


async def _total_seconds(codec: PayloadCodec, batches: list[list[Payload]], *, decode: bool) -> float:
    call = codec.decode if decode else codec.encode
    started = time.perf_counter()
    for batch in batches:
        await call(batch)
    return time.perf_counter() - started


async def measure_run(codec: PayloadCodec, encoded: list[list[Payload]], decoded: list[list[Payload]],
                      repeats: int) -> dict[str, Any]:
    """One run's payloads through the real codec: per-tenant totals, median of ``repeats``."""
    # What the codec is handed to decode is what it wrote: encrypt the decode side first.
    sealed = [await codec.encode(batch) for batch in decoded]
    for original, back in zip(decoded, [await codec.decode(b) for b in sealed], strict=True):
        assert list(back) == original, "the codec must give back exactly what it encrypted"
    encrypted = [await codec.encode(batch) for batch in encoded]
    pairs = [(e, p) for e_batch, p_batch in zip(encrypted, encoded, strict=True)
             for e, p in zip(e_batch, p_batch, strict=True)]
    inners = [p.SerializeToString(deterministic=True) for _, p in pairs]
    encode_s, decode_s, zlib_s = [], [], []
    for _ in range(repeats):
        encode_s.append(await _total_seconds(codec, encoded, decode=False))
        decode_s.append(await _total_seconds(codec, sealed, decode=True))
        started = time.perf_counter()
        for inner in inners:
            zlib.compress(inner)
        zlib_s.append(time.perf_counter() - started)
    return {
        "encode_calls": len(encoded), "encode_payloads": len(pairs),
        "decode_calls": len(decoded), "decode_payloads": sum(len(b) for b in decoded),
        "payloads_compressed": sum(1 for e, _ in pairs if e.metadata.get("compression") == b"zlib"),
        "encode_us": 1e6 * statistics.median(encode_s), "decode_us": 1e6 * statistics.median(decode_s),
        "zlib_attempts_us": 1e6 * statistics.median(zlib_s),
        "encode_us_p90": 1e6 * sorted(encode_s)[int(0.9 * (repeats - 1))],
        "decode_us_p90": 1e6 * sorted(decode_s)[int(0.9 * (repeats - 1))],
        "bytes_plain": _size(encoded), "bytes_encrypted": _size(encrypted),
        "bytes_encrypted_uncompressed": sum(uncompressed_size(e, p) for e, p in pairs),
        "largest_payload_plain": max((p.ByteSize() for _, p in pairs), default=0),
    }


async def run(repeats: int) -> dict[str, Any]:
    results, runs = await record_runs(repeats)
    the_codec = codec()
    results["machine"] = report.machine()
    results["runs"] = {name: await measure_run(the_codec, enc, dec, repeats)
                       for name, (enc, dec) in runs.items()}
    results["machine"]["load_average_at_end"] = report.load_average()
    return results


def render(results: dict[str, Any]) -> str:
    machine = results["machine"]
    lines = [f"payload codec per tenant (AES-256-GCM, zlib where it saves >= 10 %), median of {results['repeats']} "
             f"passes; {machine['nproc']} CPU(s), {machine['cpu_model']}, load {machine['load_average_at_start']}",
             f"{'run':<9} {'payloads':>8} {'calls':>5} {'encode µs':>9} {'(zlib µs)':>9} {'decode µs':>9} "
             f"{'plain B':>8} {'encrypted B':>11} {'no-zlib B':>9} {'zlib used':>9}"]
    for name, r in results["runs"].items():
        lines.append(f"{name:<9} {r['encode_payloads']:>8} {r['encode_calls']:>5} {r['encode_us']:>9.0f} "
                     f"{r['zlib_attempts_us']:>9.0f} {r['decode_us']:>9.0f} {r['bytes_plain']:>8} "
                     f"{r['bytes_encrypted']:>11} {r['bytes_encrypted_uncompressed']:>9} "
                     f"{r['payloads_compressed']:>4}/{r['encode_payloads']:<4}")
    lines.append("payloads and calls: the encode side (the decode side read back as many); bytes: the encode "
                 "side's Payload messages as stored in history")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.codec_cost", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=500, help="timed passes over each run's payloads (default 500)")
    parser.add_argument("--json", type=Path, default=Path(".bench/codec_cost.json"))
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    logging.basicConfig(level=logging.WARNING)
    results = asyncio.run(run(args.repeats))
    print(render(results))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

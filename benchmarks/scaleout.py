"""Local scale-out: events/s with one and with two Triton replicas behind Envoy, one run.

Each replica gets one model instance with one ONNX Runtime thread — one core, like one
machine — so that on this 2-core box two replicas have the cores to serve twice the work. The
client is the asyncio client (concurrent unary requests, which Envoy balances) with 8 requests
in flight, on ~6k-hit events. Writes benchmarks/results/scaleout.json.
Run: python benchmarks/scaleout.py
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def main(n_events: int = 80) -> None:
    from recoserve.benchmark.runner import SIZES, bench_events
    from recoserve.client import AsyncRecoClient
    from recoserve.export.repository import ServingOptions, build_repository
    from recoserve.server.envoy import scale_out

    workdir = Path(tempfile.mkdtemp(prefix="recoserve-scaleout-"))
    repository = workdir / "model_repository"
    build_repository(repository, "local", ServingOptions(instances=1, threads=1), parity=False)
    events = bench_events(SIZES["6k"], 8)
    stream = [events[i % len(events)] for i in range(n_events)]

    async def drive(url: str) -> tuple[float, int]:
        async with AsyncRecoClient(url, timeout=300) as client:
            [o async for o in client.reconstruct_many(events[:4], in_flight=4)]  # warm up
            start = time.perf_counter()
            outcomes = [o async for o in client.reconstruct_many(stream, in_flight=8)]
            return time.perf_counter() - start, sum(1 for o in outcomes if o.error)

    results = {}
    for replicas in (1, 2):
        with scale_out(repository, replicas, workdir / f"r{replicas}") as (envoy, _):
            seconds, errors = asyncio.run(drive(envoy.url))
        results[replicas] = {
            "events": n_events,
            "seconds": seconds,
            "events_per_s": n_events / seconds,
            "errors": errors,
        }
        print(replicas, results[replicas])
    summary = {
        "replicas": results,
        "speedup_two_over_one": results[2]["events_per_s"] / results[1]["events_per_s"],
        "hits_per_event": float(sum(len(h) for h, _ in events) / len(events)),
        "setup": "each replica: 1 instance, 1 ORT thread; Envoy LEAST_REQUEST; 8 in flight",
        "command": "python benchmarks/scaleout.py",
    }
    (RESULTS / "scaleout.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()

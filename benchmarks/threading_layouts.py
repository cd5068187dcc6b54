"""Instances x ONNX Runtime threads for the embedded (CPU) server, chosen by measurement.

On a machine with C cores the embedded server can run C single-threaded instances of each
model, one instance with C intra-op threads, or anything between. This serves the same
~10k-hit events through each layout (the local flavour, gRPC, one client thread per request in
flight) at 1, 2 and 8 concurrent clients and records events/s, latency percentiles and the CPU
the server used. Run it on an otherwise idle machine:

    python benchmarks/threading_layouts.py

Writes benchmarks/results/threading_layouts.json.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
from collections.abc import Callable
from pathlib import Path

from recoserve.benchmark.runner import (
    SIZES,
    Call,
    Event,
    MakeCall,
    ResourceMonitor,
    bench_events,
    drive,
    measurement_of,
)
from recoserve.client import RecoClient
from recoserve.export.repository import ServingOptions, build_repository
from recoserve.server.triton import start_triton

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def layouts(cores: int) -> list[tuple[int, int]]:
    """(instances, threads per instance) pairs that use at most ``cores`` threads in all."""
    return sorted({(cores, 1), (1, cores), (1, 1)} | {(i, cores // i) for i in (2, 4) if i < cores})


def main() -> None:
    cores = os.cpu_count() or 1
    events: list[Event] = bench_events(SIZES["10k"], 6)
    rows = []
    for instances, threads in layouts(cores):
        with tempfile.TemporaryDirectory(prefix="recoserve-layout-") as tmp:
            repository = Path(tmp) / "repository"
            options = ServingOptions(instances=instances, threads=threads)
            build_repository(repository, "local", options, parity=False)
            with start_triton(repository, log_path=Path(tmp) / "triton.log") as triton:
                assert triton.process is not None

                def grpc(url: str = triton.grpc_url) -> tuple[Call, Callable[[], None]]:
                    client = RecoClient(url, shared_memory="never", timeout=300)

                    def call(event: Event) -> None:
                        client.reconstruct(event)

                    return call, client.close

                make_call: MakeCall = grpc
                for concurrency in (1, 2, 8):
                    n = 24 * max(1, concurrency // 2)
                    monitor = ResourceMonitor([triton.process.pid])
                    wall, latencies, errors = drive(make_call, events, concurrency, n)
                    cpu, peak = monitor.stop()
                    m = measurement_of("grpc", events, concurrency, n, wall, latencies, errors,
                                     cpu, peak, size="10k")  # fmt: skip
                    row = {"instances": instances, "threads": threads, **m.__dict__}
                    rows.append(row)
                    print(
                        f"{instances} x {threads} threads, {concurrency} clients: "
                        f"{m.events_per_s:.2f} ev/s, p50 {m.p50_ms:.0f} ms, "
                        f"cpu {m.cpu_cores:.2f}, rss {m.peak_rss_mb:.0f} MB",
                        flush=True,
                    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    summary = {
        "machine": {"cpu_count": cores, "platform": platform.platform()},
        "measurements": rows,
    }
    (RESULTS / "threading_layouts.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()

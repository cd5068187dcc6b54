"""Cross-check of our own numbers with NVIDIA's perf_analyzer (shipped in tritonclient 2.51).

Starts the embedded Triton on a fresh local repository, feeds event_reco one real ~10k-hit event
(perf_analyzer's JSON input format) at concurrency 1, 2, 4 and 8 over gRPC, and writes
benchmarks/results/perf_analyzer.csv and perf_analyzer.json (with our `recoserve bench` grpc
numbers for the same size and concurrencies, when bench.json exists).

perf_analyzer needs Debian's libb64-0d and pip's nvidia-cuda-runtime-cu12 (see DESIGN.md).
Run: python benchmarks/perf_analyzer.py
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def main() -> None:
    from recoserve.benchmark.runner import SIZES, bench_events
    from recoserve.export.repository import build_repository
    from recoserve.server.triton import start_triton

    workdir = Path(tempfile.mkdtemp(prefix="recoserve-pa-"))
    repository = workdir / "model_repository"
    build_repository(repository, "local", parity=False)
    hits, tracks = bench_events(SIZES["10k"], 1)[0]
    data = {"data": [{
        "HITS": {"content": hits.reshape(-1).tolist(), "shape": list(hits.shape)},
        "TRACKS": {"content": tracks.reshape(-1).tolist(), "shape": list(tracks.shape)},
    }]}  # fmt: skip
    (workdir / "input.json").write_text(json.dumps(data))
    binary = Path(sys.executable).parent / "perf_analyzer"
    import nvidia.cuda_runtime  # pip: nvidia-cuda-runtime-cu12

    cudart = Path(nvidia.cuda_runtime.__path__[0]) / "lib"
    env = {**os.environ, "LD_LIBRARY_PATH": f"{cudart}:{os.environ.get('LD_LIBRARY_PATH', '')}"}
    report = RESULTS / "perf_analyzer.csv"
    with start_triton(repository, log_path=workdir / "triton.log") as triton:
        subprocess.run(
            [str(binary), "-m", "event_reco", "-u", triton.grpc_url, "-i", "grpc",
             "--input-data", str(workdir / "input.json"), "--concurrency-range", "1:8:1",
             "--measurement-interval", "8000", "--stability-percentage", "20",
             "-f", str(report)],
            check=True, env=env, timeout=1200,
        )  # fmt: skip
    with open(report) as f:
        rows = list(csv.DictReader(f))
    ours = {}
    bench = RESULTS / "bench.json"
    if bench.exists():
        for m in json.loads(bench.read_text())["measurements"]:
            if m["mode"] == "grpc" and m["size"] == "10k":
                ours[m["concurrency"]] = m["events_per_s"]
    summary = {
        "hits": len(hits),
        "tracks": len(tracks),
        "perf_analyzer": [
            {
                "concurrency": int(r["Concurrency"]),
                "events_per_s": float(r["Inferences/Second"]),
                "p50_ms": float(r["p50 latency"]) / 1e3,
                "p99_ms": float(r["p99 latency"]) / 1e3,
            }
            for r in rows
        ],
        "recoserve_bench_grpc": ours,
    }
    (RESULTS / "perf_analyzer.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()

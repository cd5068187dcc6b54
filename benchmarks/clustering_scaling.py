"""Time and peak memory of the exported clustering network vs number of hits (1k ... 200k).

Run: `python benchmarks/clustering_scaling.py` after `recoserve export clustering` (it exports
itself if exports/clustering is missing). Each (backend, size) point runs in a fresh
subprocess on one thread: one warm-up call and three timed calls; the peak resident memory of
that process minus its resident memory after loading the model is the memory the inference
needed. Writes benchmarks/results/clustering_scaling.{json,png}.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SIZES = (1_000, 3_000, 6_000, 10_000, 30_000, 60_000, 100_000, 200_000)
MODELS = {"torchscript": "gravnet_oc.torchscript.pt", "onnx": "gravnet_oc.onnx"}

WORKER = r"""
import json, resource, sys, time
import numpy as np
backend, model_path, hits_path = sys.argv[1:4]
hits = np.load(hits_path)
seg = np.zeros(len(hits), dtype=np.int64)
if backend == "onnx":
    import onnxruntime as ort
    opts = ort.SessionOptions(); opts.intra_op_num_threads = 1; opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(model_path, opts, providers=["CPUExecutionProvider"])
    run = lambda: sess.run(None, {"hits": hits, "segment": seg})
else:
    import torch
    torch.set_num_threads(1)
    module = torch.jit.load(model_path)
    h, s = torch.from_numpy(hits), torch.from_numpy(seg)
    def run():
        with torch.no_grad():
            return module(h, s)
def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
base = rss_mb()
run()
times = []
for _ in range(3):
    t = time.perf_counter(); run(); times.append(time.perf_counter() - t)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": min(times), "peak_rss_mb": peak, "model_rss_mb": base,
                  "inference_mb": peak - base}))
"""


def event_hits(n_hits: int, pool: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return pool[np.sort(rng.choice(len(pool), n_hits, replace=False))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--exports", type=Path, default=ROOT / "exports" / "clustering")
    parser.add_argument("--sizes", type=int, nargs="*", default=list(SIZES))
    args = parser.parse_args()
    if not (args.exports / "gravnet_oc.onnx").exists():
        subprocess.run([sys.executable, "-m", "recoserve.cli", "export", "clustering",
                        "-o", str(args.exports)], check=True)  # fmt: skip
    from recoserve.sim.particles import GunConfig
    from recoserve.sim.simulator import SimConfig, Simulator

    # One busy event (400 particles: ~200k hits) and random subsets of it for smaller sizes.
    pool = Simulator(SimConfig(gun=GunConfig(n_particles=420))).event(500, 0).hits.features()
    rng = np.random.default_rng(0)
    points = []
    work = RESULTS / "tmp"
    work.mkdir(parents=True, exist_ok=True)
    for size in args.sizes:
        hits = event_hits(min(size, len(pool)), pool, rng)
        np.save(work / "hits.npy", hits)
        for backend, model in MODELS.items():
            command = [sys.executable, "-c", WORKER, backend, str(args.exports / model)]
            out = subprocess.run(
                [*command, str(work / "hits.npy")], capture_output=True, text=True, check=True
            )
            result = {"backend": backend, "hits": len(hits), **json.loads(out.stdout)}
            points.append(result)
            print(json.dumps(result))
    (work / "hits.npy").unlink()
    work.rmdir()
    summary = {
        "points": points,
        "threads": 1,
        "command": "python benchmarks/clustering_scaling.py",
        "pool_event_hits": len(pool),
    }
    for backend in ("torchscript", "onnx"):
        by_size = {p["hits"]: p for p in points if p["backend"] == backend}
        small = min(by_size, key=lambda n: abs(n - 6000)) if by_size else None
        large = min(by_size, key=lambda n: abs(n - 60000)) if by_size else None
        if small and large and small != large:
            summary[f"{backend}_time_ratio_60k_over_6k"] = (
                by_size[large]["seconds"] / by_size[small]["seconds"]
            )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "clustering_scaling.json").write_text(json.dumps(summary, indent=2) + "\n")
    _plot(points)


def _plot(points: list[dict[str, float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(13, 5))
    for backend in ("torchscript", "onnx"):
        pts = sorted((p for p in points if p["backend"] == backend), key=lambda p: p["hits"])
        n = [p["hits"] for p in pts]
        ax_t.plot(n, [p["seconds"] for p in pts], "o-", label=backend)
        ax_m.plot(n, [p["inference_mb"] for p in pts], "o-", label=backend)
    for ax, label in ((ax_t, "seconds per event (1 thread)"), (ax_m, "inference memory [MB]")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("hits per event")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    ax_m.axhline(4096, color="red", ls="--", lw=1)
    fig.tight_layout()
    fig.savefig(RESULTS / "clustering_scaling.png", dpi=80)


if __name__ == "__main__":
    main()

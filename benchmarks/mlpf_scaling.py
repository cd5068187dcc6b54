"""Time and memory of the exported MLPF vs number of PF elements (100 ... 200k), one thread.

MLPF's input is the event's elements (tracks + clusters: ~30 for a 5k-hit event, ~170 for 56k
hits), so its cost is measured against elements; the elements are tiles of real events' elements
(each tile its own segment-free copy shifted in phi, so neighbourhoods stay realistic). Each
point runs in a fresh subprocess: a warm-up, then the best of three; memory is the peak resident
memory minus that after loading. Writes benchmarks/results/mlpf_scaling.json.
Run: python benchmarks/mlpf_scaling.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SIZES = (100, 1_000, 10_000, 50_000, 200_000)

WORKER = r"""
import json, resource, sys, time
import numpy as np, onnxruntime as ort
model, rows_path = sys.argv[1:3]
rows = np.load(rows_path)
opts = ort.SessionOptions(); opts.intra_op_num_threads = 1; opts.inter_op_num_threads = 1
sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
feeds = {"ELEMENTS": rows, "SEGMENT": np.zeros(len(rows), np.int64)}
def rss():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) / 1024 for l in f if l.startswith("VmRSS"))
base = rss()
sess.run(None, feeds)
times = []
for _ in range(3):
    t = time.perf_counter(); sess.run(None, feeds); times.append(time.perf_counter() - t)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": min(times), "inference_mb": peak - base}))
"""


def main() -> None:
    from recoserve.export.repository import build_repository
    from recoserve.inprocess import ClusteringPipeline
    from recoserve.postprocess.elements import COLUMN, build_elements
    from recoserve.sim.classes import pf_event

    workdir = Path(tempfile.mkdtemp(prefix="recoserve-mlpf-scaling-"))
    build_repository(workdir / "repo", "local", parity=False)
    model = workdir / "repo" / "mlpf" / "1" / "model.onnx"
    clustering = ClusteringPipeline()
    pool = []
    for i in range(20):
        event = pf_event(620, i)
        hits = event.hits.features()
        pool.append(build_elements(hits, event.tracks.features(), clustering.cluster(hits)))
    base = np.concatenate(pool)
    points = []
    for size in SIZES:
        tiles = []
        for k in range(int(np.ceil(size / len(base)))):
            tile = base.copy()
            angle = 2 * np.pi * k / 97.0  # rotate each copy in phi
            c, s = np.cos(angle), np.sin(angle)
            x, y = tile[:, COLUMN["x"]].copy(), tile[:, COLUMN["y"]].copy()
            tile[:, COLUMN["x"]], tile[:, COLUMN["y"]] = c * x - s * y, s * x + c * y
            tiles.append(tile)
        rows = np.concatenate(tiles)[:size].astype(np.float32)
        np.save(workdir / "rows.npy", rows)
        out = subprocess.run([sys.executable, "-c", WORKER, str(model), str(workdir / "rows.npy")],
                             capture_output=True, text=True, check=True)  # fmt: skip
        point = {"elements": size, **json.loads(out.stdout)}
        points.append(point)
        print(json.dumps(point))
    by_size = {p["elements"]: p for p in points}
    summary = {
        "points": points,
        "time_ratio_10k_over_1k": by_size[10_000]["seconds"] / by_size[1_000]["seconds"],
        "threads": 1,
        "command": "python benchmarks/mlpf_scaling.py",
    }
    (RESULTS / "mlpf_scaling.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()

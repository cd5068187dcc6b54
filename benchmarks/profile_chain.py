"""Where the time goes: the full chain stage by stage, and GravNet per ONNX operator type.

1. Stages of one event at ~6k, ~10k and ~60k hits, one thread: the clustering network (ONNX
   Runtime, and eager PyTorch as the naive server runs it), condensation, PF elements, MLPF,
   decoding, and what a JSON server adds (encode + parse of the request).
2. ONNX Runtime's own profiler on GravNet at ~6k and ~60k hits: time per operator type, to see
   which operators grow faster than the number of hits.

Writes benchmarks/results/profile_chain.json. Run: python benchmarks/profile_chain.py
"""

from __future__ import annotations

import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def best_of(fn, repeat: int = 3) -> float:  # type: ignore[no-untyped-def]
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def stage_times(  # type: ignore[no-untyped-def]
    hits, tracks, gravnet, mlpf, eager, eager_mlpf, thresholds
) -> dict[str, float]:
    """Seconds per stage for one event (best of three after a warm-up)."""
    import torch

    from recoserve.postprocess.candidates import decode
    from recoserve.postprocess.condensation import condense
    from recoserve.postprocess.elements import build_elements

    segment = np.zeros(len(hits), np.int64)
    out = gravnet(hits, segment)
    energy = hits[:, 3]
    clusters = condense(out[0], out[1], energy, out[2], out[3], out[4], out[5], thresholds)
    elements = build_elements(hits, tracks, clusters)
    eseg = np.zeros(len(elements), np.int64)
    logits, regression = mlpf(elements, eseg)
    body = {"hits": hits.tolist(), "tracks": tracks.tolist()}
    text = json.dumps(body)

    def eager_gravnet() -> None:
        with torch.no_grad():
            eager(torch.from_numpy(hits), torch.from_numpy(segment))

    def eager_mlpf_run() -> None:
        with torch.no_grad():
            eager_mlpf(torch.from_numpy(elements), torch.from_numpy(eseg))

    return {
        "hits": len(hits),
        "elements": len(elements),
        "gravnet_onnx_s": best_of(lambda: gravnet(hits, segment)),
        "gravnet_torch_eager_s": best_of(eager_gravnet),
        "condensation_s": best_of(
            lambda: condense(out[0], out[1], energy, out[2], out[3], out[4], out[5], thresholds)
        ),
        "elements_s": best_of(lambda: build_elements(hits, tracks, clusters)),
        "mlpf_onnx_s": best_of(lambda: mlpf(elements, eseg)),
        "mlpf_torch_eager_s": best_of(eager_mlpf_run),
        "decode_s": best_of(lambda: decode(elements, logits, regression)),
        "json_encode_s": best_of(lambda: json.dumps(body)),
        "json_parse_s": best_of(lambda: np.asarray(json.loads(text)["hits"], np.float32)),
        "json_bytes": len(text),
        "binary_bytes": hits.nbytes + tracks.nbytes,
    }


def main() -> None:
    import onnxruntime as ort
    import torch

    from recoserve.benchmark.runner import SIZES, bench_events
    from recoserve.export.repository import build_repository
    from recoserve.nn.checkpoint import load_clustering, load_mlpf
    from recoserve.postprocess.chain import OnnxNetwork

    torch.set_num_threads(1)
    workdir = Path(tempfile.mkdtemp(prefix="recoserve-profile-"))
    repository = workdir / "model_repository"
    build_repository(repository, "local", parity=False)
    gravnet_onnx = repository / "gravnet_oc" / "1" / "model.onnx"
    gravnet = OnnxNetwork(gravnet_onnx)
    mlpf = OnnxNetwork(repository / "mlpf" / "1" / "model.onnx")
    eager, thresholds, _ = load_clustering()
    eager_mlpf, _ = load_mlpf()
    stages = {}
    for size in ("6k", "10k", "60k"):
        hits, tracks = bench_events(SIZES[size], 1)[0]
        stages[size] = stage_times(hits, tracks, gravnet, mlpf, eager, eager_mlpf, thresholds)
        print(size, json.dumps(stages[size]))

    operators = {}
    for size in ("6k", "60k"):
        hits, _ = bench_events(SIZES[size], 1)[0]
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.enable_profiling = True
        options.profile_file_prefix = str(workdir / f"ort_{size}")
        session = ort.InferenceSession(
            str(gravnet_onnx), options, providers=["CPUExecutionProvider"]
        )
        feeds = {"HITS": hits, "SEGMENT": np.zeros(len(hits), np.int64)}
        for _ in range(3):
            session.run(None, feeds)
        trace = json.loads(Path(session.end_profiling()).read_text())
        per_op: dict[str, float] = defaultdict(float)
        for event in trace:
            if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
                per_op[event["args"]["op_name"]] += event["dur"] / 3 / 1e6
        operators[size] = dict(sorted(per_op.items(), key=lambda kv: -kv[1]))
    growth = {
        op: operators["60k"][op] / operators["6k"][op]
        for op in operators["60k"]
        if operators["6k"].get(op, 0) > 1e-4
    }
    summary = {
        "stages": stages,
        "gravnet_onnx_seconds_per_operator": operators,
        "gravnet_operator_growth_60k_over_6k": dict(sorted(growth.items(), key=lambda kv: -kv[1])),
        "command": "python benchmarks/profile_chain.py",
    }
    (RESULTS / "profile_chain.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()

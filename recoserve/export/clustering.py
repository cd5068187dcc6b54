"""Export of the clustering network to TorchScript and ONNX, with a parity check.

Both artefacts take ``hits`` float32 [N, 5] and ``segment`` int64 [N] (event index of every hit;
zeros for one event) with a dynamic N, and return the six per-hit outputs of
``recoserve.nn.gravnet.GravNetOC`` under the names in ``OUTPUT_NAMES``. The neighbour search is
made of ordinary operations, so the exported graphs compute the same neighbours as training.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from recoserve.nn.gravnet import OUTPUT_NAMES, GravNetOC

INPUT_NAMES = ("hits", "segment")
ONNX_OPSET = 17


@dataclass(frozen=True)
class ExportedClustering:
    torchscript: Path
    onnx: Path


def export_torchscript(model: GravNetOC, path: Path) -> Path:
    model.eval()
    scripted = torch.jit.script(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    scripted.save(str(path))
    return path


def export_onnx(model: GravNetOC, path: Path, example_hits: np.ndarray) -> Path:
    """ONNX graph with a dynamic number of hits.

    The scripted module is exported (TorchScript-based exporter, opset 17), so size-dependent
    logic stays in the graph instead of being frozen at the example's size.
    """
    model.eval()
    scripted = torch.jit.script(model)
    hits = torch.from_numpy(np.asarray(example_hits, dtype=np.float32))
    segment = torch.zeros(len(hits), dtype=torch.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    dynamic = {"hits": {0: "n_hits"}, "segment": {0: "n_hits"}}
    dynamic.update({name: {0: "n_hits"} for name in OUTPUT_NAMES})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            scripted,
            (hits, segment),
            str(path),
            input_names=list(INPUT_NAMES),
            output_names=list(OUTPUT_NAMES),
            dynamic_axes=dynamic,
            opset_version=ONNX_OPSET,
            dynamo=False,
        )
    return path


def run_onnx(path: Path, hits: np.ndarray, segment: np.ndarray | None = None) -> list[np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    seg = np.zeros(len(hits), dtype=np.int64) if segment is None else segment
    return list(session.run(list(OUTPUT_NAMES), {"hits": hits.astype(np.float32), "segment": seg}))


def max_abs_difference(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return max(float(np.max(np.abs(x - y), initial=0.0)) for x, y in zip(a, b, strict=True))


def max_scaled_difference(reference: list[np.ndarray], other: list[np.ndarray]) -> float:
    """Largest |difference| of each output divided by max(1, that output's largest |value|).

    Outputs live on different scales (beta in [0, 1], positions ~100 cm, logits ~10); float32
    round-off in a different summation order grows with the scale, so parity is judged relative
    to it. For beta, energy factor and clustering coordinates this is the absolute difference.
    """
    return max(
        float(np.max(np.abs(x - y), initial=0.0)) / max(1.0, float(np.max(np.abs(x), initial=0.0)))
        for x, y in zip(reference, other, strict=True)
    )


PARITY_TOLERANCE = 1e-4
PARITY_SEED = 400  # fresh events, not used for training, validation or evaluation


def export_clustering(
    checkpoint: Path, output_dir: Path, particles: tuple[int, ...] = (1, 10, 50, 100)
) -> dict[str, object]:
    """Write TorchScript and ONNX next to each other and check both against eager PyTorch on
    fresh events of several sizes; raises if any output differs by more than 1e-4 of its scale
    (``max_scaled_difference``)."""
    from recoserve.nn.checkpoint import load_clustering
    from recoserve.sim.particles import GunConfig
    from recoserve.sim.simulator import SimConfig, Simulator

    model, thresholds, info = load_clustering(checkpoint)
    events = [
        Simulator(SimConfig(gun=GunConfig(n_particles=n))).event(PARITY_SEED, i).hits.features()
        for i, n in enumerate(particles)
    ]
    ts_path = export_torchscript(model, output_dir / "gravnet_oc.torchscript.pt")
    onnx_path = export_onnx(model, output_dir / "gravnet_oc.onnx", events[0])
    scripted = torch.jit.load(str(ts_path))
    checks = []
    for hits in events:
        h = torch.from_numpy(hits)
        seg = torch.zeros(len(hits), dtype=torch.int64)
        with torch.no_grad():
            eager = [o.numpy() for o in model(h, seg)]
            ts = [o.numpy() for o in scripted(h, seg)]
        onnx_out = run_onnx(onnx_path, hits)
        checks.append(
            {
                "hits": len(hits),
                "torchscript_max_abs_diff": max_abs_difference(eager, ts),
                "onnx_max_abs_diff": max_abs_difference(eager, onnx_out),
                "torchscript_max_scaled_diff": max_scaled_difference(eager, ts),
                "onnx_max_scaled_diff": max_scaled_difference(eager, onnx_out),
            }
        )
    worst = max(max(c["torchscript_max_scaled_diff"], c["onnx_max_scaled_diff"]) for c in checks)
    report = {
        "torchscript": str(ts_path),
        "onnx": str(onnx_path),
        "parity": checks,
        "max_scaled_diff": worst,
        "tolerance": PARITY_TOLERANCE,
        "thresholds": {"t_beta": thresholds.t_beta, "t_d": thresholds.t_d},
        "checkpoint_info": info,
    }
    if worst > PARITY_TOLERANCE:
        raise RuntimeError(
            f"export parity failed: max scaled |difference| {worst:.2e} > {PARITY_TOLERANCE}"
        )
    return report

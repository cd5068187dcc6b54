"""Export of the clustering network to TorchScript and ONNX, with a parity check.

Both artefacts take ``hits`` float32 [N, 5] and ``segment`` int64 [N] (event index of every hit;
zeros for one event) with a dynamic N, and return the six per-hit outputs of
``recoserve.nn.gravnet.GravNetOC`` under the names in ``OUTPUT_NAMES``. The neighbour search is
made of ordinary operations, so the exported graphs compute the same neighbours as training.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from recoserve.export.network import (
    PARITY_TOLERANCE,
    check_parity,
    export_torchscript,
    parity_checks,
)
from recoserve.export.network import export_onnx as export_network_onnx
from recoserve.nn.gravnet import OUTPUT_NAMES

INPUT_NAMES = ("hits", "segment")
PARITY_SEED = 400  # fresh events, not used for training, validation or evaluation


def export_onnx(
    model: torch.nn.Module,
    path: Path,
    example_hits: np.ndarray,
    names: tuple[tuple[str, str], tuple[str, ...]] = (INPUT_NAMES, OUTPUT_NAMES),
) -> Path:
    return export_network_onnx(model, path, example_hits, *names)


def export_clustering(
    checkpoint: Path,
    output_dir: Path,
    particles: tuple[int, ...] = (1, 10, 50, 100),
    names: tuple[tuple[str, str], tuple[str, ...]] = (INPUT_NAMES, OUTPUT_NAMES),
) -> dict[str, object]:
    """Write TorchScript and ONNX next to each other and check both against eager PyTorch on
    fresh events of several sizes; raises if either adds more than 1e-4 of an output's scale
    to eager float32's own error against float64 (``network.excess_error``). ``names`` are the
    ONNX graph's (input, output) tensor names: the Triton repository uses its own upper-case
    contract names."""
    from recoserve.nn.checkpoint import load_clustering
    from recoserve.sim.particles import GunConfig
    from recoserve.sim.simulator import SimConfig, Simulator

    model, thresholds, info = load_clustering(checkpoint)
    events = [
        Simulator(SimConfig(gun=GunConfig(n_particles=n))).event(PARITY_SEED, i).hits.features()
        for i, n in enumerate(particles)
    ]
    ts_path = export_torchscript(model, output_dir / "gravnet_oc.torchscript.pt")
    onnx_path = export_onnx(model, output_dir / "gravnet_oc.onnx", events[0], names)
    checks = parity_checks(model, ts_path, onnx_path, events)
    return {
        "torchscript": str(ts_path),
        "onnx": str(onnx_path),
        "parity": checks,
        "max_excess_error": check_parity(checks),
        "tolerance": PARITY_TOLERANCE,
        "thresholds": asdict(thresholds),
        "checkpoint_info": info,
    }

"""Export of MLPF to TorchScript and ONNX, with the same parity check as the clustering network.

Inputs ``elements`` float32 [E, N_ELEMENT_FEATURES] and ``segment`` int64 [E], dynamic E (no
maximum element count, no padding); outputs ``class_logits`` [E, 6] and ``regression`` [E, 5].
"""

from __future__ import annotations

from pathlib import Path

from recoserve.export.network import (
    PARITY_TOLERANCE,
    check_parity,
    export_onnx,
    export_torchscript,
    parity_checks,
)
from recoserve.nn.mlpf import OUTPUT_NAMES

INPUT_NAMES = ("elements", "segment")
PARITY_SEED = 410  # fresh events of the MLPF sample


def export_mlpf(
    checkpoint: Path,
    output_dir: Path,
    n_events: int = 4,
    names: tuple[tuple[str, str], tuple[str, ...]] = (INPUT_NAMES, OUTPUT_NAMES),
) -> dict[str, object]:
    """Write mlpf.torchscript.pt and mlpf.onnx (with the (input, output) tensor ``names``);
    raises if parity with eager fails."""
    from recoserve.inprocess import ClusteringPipeline
    from recoserve.nn.checkpoint import load_mlpf
    from recoserve.postprocess.elements import build_elements
    from recoserve.sim.classes import pf_event

    model, info = load_mlpf(checkpoint)
    clustering = ClusteringPipeline()
    examples = []
    for i in range(n_events):
        event = pf_event(PARITY_SEED, i)
        hits = event.hits.features()
        examples.append(build_elements(hits, event.tracks.features(), clustering.cluster(hits)))
    ts_path = export_torchscript(model, output_dir / "mlpf.torchscript.pt")
    onnx_path = export_onnx(model, output_dir / "mlpf.onnx", examples[0], *names)
    checks = parity_checks(model, ts_path, onnx_path, examples)
    return {
        "torchscript": str(ts_path),
        "onnx": str(onnx_path),
        "parity": checks,
        "max_excess_error": check_parity(checks),
        "tolerance": PARITY_TOLERANCE,
        "checkpoint_info": info,
    }

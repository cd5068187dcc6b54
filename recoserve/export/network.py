"""TorchScript and ONNX export of our networks, and the parity check of the exports.

Every network takes ``(rows float32 [N, F], segment int64 [N])`` with a dynamic N (hits for the
clustering network, PF elements for MLPF) and returns per-row outputs. The scripted module is
what gets exported to ONNX (TorchScript-based exporter, opset 17), so size-dependent logic —
the windowed neighbour search — stays in the graph instead of being frozen at the example size.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import numpy as np
import torch

ONNX_OPSET = 17
PARITY_TOLERANCE = 1e-4


def export_torchscript(model: torch.nn.Module, path: Path) -> Path:
    model.eval()
    scripted = torch.jit.script(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    scripted.save(str(path))
    return path


def export_onnx(
    model: torch.nn.Module,
    path: Path,
    example: np.ndarray,
    input_names: tuple[str, str],
    output_names: tuple[str, ...],
) -> Path:
    """ONNX graph of ``model`` with a dynamic first dimension on every input and output."""
    model.eval()
    scripted = torch.jit.script(model)
    rows = torch.from_numpy(np.asarray(example, dtype=np.float32))
    segment = torch.zeros(len(rows), dtype=torch.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    dynamic = {name: {0: "n"} for name in (*input_names, *output_names)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            scripted,
            (rows, segment),
            str(path),
            input_names=list(input_names),
            output_names=list(output_names),
            dynamic_axes=dynamic,
            opset_version=ONNX_OPSET,
            dynamo=False,
        )
    return path


def run_onnx(path: Path, rows: np.ndarray, segment: np.ndarray | None = None) -> list[np.ndarray]:
    """Outputs of an exported graph (one thread), in the graph's output order."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.enable_mem_pattern = False  # as served (postprocess.chain.OnnxNetwork)
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    seg = np.zeros(len(rows), dtype=np.int64) if segment is None else segment
    names = [i.name for i in session.get_inputs()]
    return list(session.run(None, {names[0]: rows.astype(np.float32), names[1]: seg}))


def max_abs_difference(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return max(float(np.max(np.abs(x - y), initial=0.0)) for x, y in zip(a, b, strict=True))


def scaled_differences(reference: list[np.ndarray], other: list[np.ndarray]) -> list[float]:
    """Per output: largest |difference| divided by max(1, that output's largest |value|).

    Outputs live on different scales (beta in [0, 1], positions ~100 cm, energies ~100 GeV);
    float32 round-off in a different summation order grows with the scale, so parity is judged
    relative to it. For outputs of order 1 this is the absolute difference.
    """
    return [
        float(np.max(np.abs(x - y), initial=0.0)) / max(1.0, float(np.max(np.abs(x), initial=0.0)))
        for x, y in zip(reference, other, strict=True)
    ]


def max_scaled_difference(reference: list[np.ndarray], other: list[np.ndarray]) -> float:
    return max(scaled_differences(reference, other))


def excess_error(eager_errors: list[float], other_errors: list[float]) -> float:
    """How much further a runtime is from the exact outputs than eager float32 is, worst output
    (both as ``scaled_differences`` from the float64 outputs).

    Float32 round-off is not a fixed quantity: it depends on the CPU's kernels and on how a
    network amplifies it (a steep sigmoid, neighbours weighted by exp(-10 d^2)), so eager float32
    itself can sit more than 1e-4 from the exact function on some machines. Every float32
    runtime is granted eager's own measured error; the export must add at most
    PARITY_TOLERANCE to it, as a wrong op, a frozen shape or a lost mask would.
    """
    return max(mine - eager for mine, eager in zip(other_errors, eager_errors, strict=True))


def parity_checks(
    model: torch.nn.Module, torchscript: Path, onnx: Path, examples: list[np.ndarray]
) -> list[dict[str, float]]:
    """Eager float32, TorchScript and ONNX Runtime on each example (one event each), against
    the same weights run in float64 (the exact function, up to 1e-16)."""
    scripted = torch.jit.load(str(torchscript))
    exact_model = copy.deepcopy(model).double().eval()
    checks = []
    for rows in examples:
        x = torch.from_numpy(np.asarray(rows, dtype=np.float32))
        seg = torch.zeros(len(x), dtype=torch.int64)
        with torch.no_grad():
            eager = [o.numpy() for o in model(x, seg)]
            ts = [o.numpy() for o in scripted(x, seg)]
            exact = [o.numpy() for o in exact_model(x.double(), seg)]
        onnx_out = run_onnx(onnx, np.asarray(rows))
        eager_errors = scaled_differences(exact, eager)
        checks.append(
            {
                "rows": len(rows),
                "torchscript_max_abs_diff": max_abs_difference(eager, ts),
                "onnx_max_abs_diff": max_abs_difference(eager, onnx_out),
                "torchscript_max_scaled_diff": max_scaled_difference(eager, ts),
                "onnx_max_scaled_diff": max_scaled_difference(eager, onnx_out),
                "eager_max_scaled_error": max(eager_errors),
                "torchscript_excess_error": excess_error(
                    eager_errors, scaled_differences(exact, ts)
                ),
                "onnx_excess_error": excess_error(
                    eager_errors, scaled_differences(exact, onnx_out)
                ),
            }
        )
    return checks


def check_parity(checks: list[dict[str, float]]) -> float:
    """The largest error an export adds to eager float32's (``excess_error``); raises if it
    exceeds PARITY_TOLERANCE."""
    worst = max(max(c["torchscript_excess_error"], c["onnx_excess_error"]) for c in checks)
    if worst > PARITY_TOLERANCE:
        raise RuntimeError(
            f"export parity failed: an export is {worst:.2e} further from the float64 outputs "
            f"than eager float32 (scaled), more than {PARITY_TOLERANCE}"
        )
    return worst

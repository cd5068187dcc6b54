"""The reconstruction chain over a batch of events, as Triton's Python backends run it.

Several events (the requests of one dynamic batch) are concatenated into one network call; the
``segment`` tensor gives every row its event, and the networks never let rows of two segments
interact (``recoserve.nn.knn``), so each event gets the result it would get alone. The outputs
are split back per event and post-processed with the same functions as the in-process path.

A network is any callable ``(rows float32 [N, F], segment int64 [N]) -> list of arrays``: an
ONNX Runtime session here (``OnnxNetwork``, no torch needed inside Triton), a BLS call to the
``gravnet_oc`` / ``mlpf`` models on the ngc flavour, or PyTorch in-process.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from recoserve.postprocess.candidates import decode
from recoserve.postprocess.condensation import Clusters, CondensationThresholds, condense
from recoserve.postprocess.elements import build_elements

Network = Callable[[np.ndarray, np.ndarray], Sequence[np.ndarray]]


class OnnxNetwork:
    """An exported network run by ONNX Runtime on the CPU.

    The memory-pattern planner is off: with inputs whose size changes from call to call it
    keeps a second arena and nearly doubles the steady memory at no speed gain (measured on a
    92k-hit event: 1550 MB vs 877 MB resident, 1.56 s either way). Intra-op threads do not spin
    between calls, so they leave the cores to whatever runs next (the post-processing). The
    memory arena stays on: without it calls are 5-14 % slower and peak higher
    (docs/clustering.md)."""

    def __init__(self, path: str | Path, threads: int = 1) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.enable_mem_pattern = False
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]

    def __call__(self, rows: np.ndarray, segment: np.ndarray) -> list[np.ndarray]:
        feeds = {self.input_names[0]: rows, self.input_names[1]: segment}
        return list(self.session.run(None, feeds))


def run_batched(
    network: Network, tables: Sequence[np.ndarray], output_widths: Sequence[int | None]
) -> list[list[np.ndarray]]:
    """Run ``network`` once over the concatenated events; per event, its list of outputs.

    Empty events take no rows; if every event is empty the network is not called (exported
    graphs need at least one row).
    """
    counts = [len(t) for t in tables]
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    if offsets[-1] == 0:
        empty = [np.zeros((0,) if w is None else (0, w), np.float32) for w in output_widths]
        return [list(empty) for _ in tables]
    rows = np.ascontiguousarray(np.concatenate(tables, axis=0), dtype=np.float32)
    segment = np.repeat(np.arange(len(tables), dtype=np.int64), counts)
    outputs = [np.asarray(o) for o in network(rows, segment)]
    return [[o[offsets[i] : offsets[i + 1]] for o in outputs] for i in range(len(tables))]


CLUSTERING_OUTPUT_WIDTHS = (None, 3, None, 2, None, 3)
MLPF_OUTPUT_WIDTHS = (6, 5)


def cluster_events(
    network: Network, hits: Sequence[np.ndarray], thresholds: CondensationThresholds
) -> list[Clusters]:
    """Clusters of each event (hits float32 [N_i, 5] each)."""
    clusters = []
    for event_hits, out in zip(
        hits, run_batched(network, hits, CLUSTERING_OUTPUT_WIDTHS), strict=True
    ):
        beta, ccoords, energy_factor, position, time, logits = out
        clusters.append(
            condense(
                beta, ccoords, event_hits[:, 3], energy_factor, position, time, logits, thresholds
            )
        )
    return clusters


def decode_events(network: Network, elements: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Candidates of each event from its PF elements."""
    return [
        decode(e, logits, regression)
        for e, (logits, regression) in zip(
            elements, run_batched(network, elements, MLPF_OUTPUT_WIDTHS), strict=True
        )
    ]


def reconstruct_events(
    clustering: Network,
    mlpf: Network,
    hits: Sequence[np.ndarray],
    tracks: Sequence[np.ndarray],
    thresholds: CondensationThresholds,
) -> list[tuple[Clusters, np.ndarray]]:
    """(clusters, candidates) of each event: the full chain, one network call per stage."""
    clusters = cluster_events(clustering, hits, thresholds)
    elements = [build_elements(h, t, c) for h, t, c in zip(hits, tracks, clusters, strict=True)]
    return list(zip(clusters, decode_events(mlpf, elements), strict=True))

"""In-process reconstruction: the same networks and post-processing as the server, no server.

``ClusteringPipeline`` runs the clustering network and then
``recoserve.postprocess.condensation.condense``; ``EventRecoPipeline`` continues with
``recoserve.postprocess.elements``, MLPF and ``recoserve.postprocess.candidates.decode`` — the
code Triton's Python backends import. They are the reference the served results are compared
with, and the "physical limit" baseline of the benchmarks. Each network can run as eager
PyTorch, TorchScript or ONNX Runtime.
"""

# The extra is checked before its modules are imported:
# ruff: noqa: E402
from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from recoserve.extras import require

require("serve", "recoserve.inprocess (the networks in this process)")

import torch

from recoserve.nn.checkpoint import (
    DEFAULT_CLUSTERING_CHECKPOINT,
    DEFAULT_MLPF_CHECKPOINT,
    load_clustering,
    load_mlpf,
)
from recoserve.postprocess.chain import OnnxNetwork, cluster_events, decode_events
from recoserve.postprocess.condensation import Clusters, CondensationThresholds
from recoserve.postprocess.elements import N_ELEMENT_FEATURES, build_elements

Backend = Literal["torch", "torchscript", "onnx"]


class NetworkRunner:
    """A network as a ``(rows float32 [N, F], segment int64 [N]) -> outputs`` callable, run as
    eager PyTorch, TorchScript or ONNX Runtime (one thread)."""

    def __init__(
        self, model: torch.nn.Module, backend: Backend = "torch", exported: str | Path | None = None
    ) -> None:
        self.backend = backend
        self._module: torch.nn.Module | torch.jit.ScriptModule = model
        self._onnx: OnnxNetwork | None = None
        if backend == "torchscript":
            self._module = torch.jit.load(str(exported)) if exported else torch.jit.script(model)
        elif backend == "onnx":
            if exported is None:
                raise ValueError("the onnx backend needs the path of the exported .onnx file")
            self._onnx = OnnxNetwork(exported, threads=1)

    def __call__(self, rows: np.ndarray, segment: np.ndarray) -> list[np.ndarray]:
        if self._onnx is not None:
            return self._onnx(rows, segment)
        with torch.no_grad():
            out = self._module(torch.from_numpy(rows), torch.from_numpy(segment))
        return [o.numpy() for o in out]


class ClusteringPipeline:
    """hits float32 [N, 5] -> per-hit network outputs -> clusters."""

    def __init__(
        self,
        checkpoint: str | Path = DEFAULT_CLUSTERING_CHECKPOINT,
        backend: Backend = "torch",
        exported: str | Path | None = None,
        thresholds: CondensationThresholds | None = None,
    ) -> None:
        self.checkpoint = Path(checkpoint)
        model, tuned, self.info = load_clustering(checkpoint)
        self.thresholds = thresholds or tuned
        self.backend = backend
        self.network = NetworkRunner(model, backend, exported)

    def cluster(self, hits: np.ndarray) -> Clusters:
        hits = np.asarray(hits, dtype=np.float32).reshape(-1, 5)
        return cluster_events(self.network, [hits], self.thresholds)[0]


class EventRecoPipeline:
    """hits [N, 5] + tracks [T, 9] -> clusters -> PF elements -> MLPF -> particle candidates."""

    def __init__(
        self,
        clustering: ClusteringPipeline | None = None,
        checkpoint: str | Path = DEFAULT_MLPF_CHECKPOINT,
        backend: Backend = "torch",
        exported: str | Path | None = None,
    ) -> None:
        self.clustering = clustering or ClusteringPipeline()
        model, self.info = load_mlpf(checkpoint)
        self.network = NetworkRunner(model, backend, exported)

    def elements(self, hits: np.ndarray, tracks: np.ndarray) -> tuple[Clusters, np.ndarray]:
        clusters = self.clustering.cluster(hits)
        return clusters, build_elements(hits, tracks, clusters)

    def candidates_from_elements(self, elements: np.ndarray) -> np.ndarray:
        elements = np.asarray(elements, dtype=np.float32).reshape(-1, N_ELEMENT_FEATURES)
        return decode_events(self.network, [elements])[0]

    def reconstruct(self, hits: np.ndarray, tracks: np.ndarray) -> tuple[Clusters, np.ndarray]:
        """(clusters, candidates) of one event."""
        clusters, elements = self.elements(hits, tracks)
        return clusters, self.candidates_from_elements(elements)

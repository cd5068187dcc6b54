"""In-process reconstruction: the same network and post-processing as the server, no server.

``ClusteringPipeline`` runs the clustering network (eager PyTorch, TorchScript or ONNX Runtime)
and then ``recoserve.postprocess.condensation.condense`` — the code Triton's Python backend
imports. It is the reference the served results are compared with, and the "physical limit"
baseline of the benchmarks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import torch

from recoserve.nn.checkpoint import DEFAULT_CLUSTERING_CHECKPOINT, load_clustering
from recoserve.postprocess.condensation import Clusters, CondensationThresholds, condense

Backend = Literal["torch", "torchscript", "onnx"]


class ClusteringPipeline:
    """hits float32 [N, 5] -> per-hit network outputs -> clusters."""

    def __init__(
        self,
        checkpoint: str | Path = DEFAULT_CLUSTERING_CHECKPOINT,
        backend: Backend = "torch",
        exported: str | Path | None = None,
        thresholds: CondensationThresholds | None = None,
    ) -> None:
        model, tuned, self.info = load_clustering(checkpoint)
        self.thresholds = thresholds or tuned
        self.backend = backend
        self._model = model
        self._script: torch.jit.ScriptModule | None = None
        self._session = None
        if backend == "torchscript":
            self._script = torch.jit.load(str(exported)) if exported else torch.jit.script(model)
        elif backend == "onnx":
            import onnxruntime as ort

            if exported is None:
                raise ValueError("the onnx backend needs the path of the exported .onnx file")
            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            self._session = ort.InferenceSession(
                str(exported), options, providers=["CPUExecutionProvider"]
            )

    def network(self, hits: np.ndarray) -> tuple[np.ndarray, ...]:
        """The six per-hit outputs (beta, ccoords, energy_factor, position, time, class_logits)."""
        hits = np.ascontiguousarray(hits, dtype=np.float32)
        n = len(hits)
        if n == 0:  # no network call for an empty event (the ONNX graph needs N >= 1)
            dims = (None, 3, None, 2, None, 3)
            return tuple(np.zeros((0,) if d is None else (0, d), np.float32) for d in dims)
        segment = np.zeros(n, dtype=np.int64)
        if self._session is not None:
            return tuple(self._session.run(None, {"hits": hits, "segment": segment}))
        module = self._script if self._script is not None else self._model
        with torch.no_grad():
            out = module(torch.from_numpy(hits), torch.from_numpy(segment))
        return tuple(o.numpy() for o in out)

    def cluster(self, hits: np.ndarray) -> Clusters:
        beta, ccoords, energy_factor, position, time, logits = self.network(hits)
        return condense(
            beta,
            ccoords,
            np.asarray(hits)[:, 3],
            energy_factor,
            position,
            time,
            logits,
            self.thresholds,
        )

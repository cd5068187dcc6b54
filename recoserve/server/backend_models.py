"""The Triton Python-backend models. Each model's ``model.py`` in the repository is one line
that subclasses a class from here, so the serving logic is ordinary, importable, tested code.

``triton_python_backend_utils`` only exists inside Triton's Python stub, so it is imported when
a model is initialised, not when this module is imported.

Every request is validated on its own (``recoserve.contract``); an invalid one gets an
INVALID_ARGUMENT error naming the problem while the valid requests of the same dynamic batch go
on through one network call (``recoserve.postprocess.chain``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from recoserve.contract import (
    MAX_HITS,
    InvalidInput,
    candidate_table,
    check_elements,
    check_hits,
    check_rows,
    check_tracks,
    cluster_table,
    output_names,
)
from recoserve.postprocess.chain import Network, OnnxNetwork, cluster_events, reconstruct_events
from recoserve.postprocess.condensation import CondensationThresholds, condense

CLUSTERING_OUTPUTS = output_names("gravnet_oc")
MLPF_OUTPUTS = output_names("mlpf")


def _pb() -> Any:
    import triton_python_backend_utils as pb_utils

    return pb_utils


class _Model:
    """Common parts: parameters, input reading, error responses, network construction."""

    def initialize(self, args: dict[str, str]) -> None:
        self.pb = _pb()
        self.config = json.loads(args["model_config"])
        self.params = {k: v["string_value"] for k, v in self.config.get("parameters", {}).items()}
        self.batched = int(self.config.get("max_batch_size", 0)) > 0
        # <repository>/<model>/ -> <repository>
        self.repository = os.path.dirname(os.path.abspath(args["model_repository"]))
        self.version = args["model_version"]

    def thresholds(self) -> CondensationThresholds:
        return CondensationThresholds.from_params(self.params)

    def network(self, kind: str) -> Network:
        """The clustering or MLPF network: an ONNX Runtime session in this process ("inline", the
        local flavour) or a BLS call to the network model ("bls", the ngc flavour)."""
        model = self.params[f"{kind}_model"]
        if self.params.get("network_mode", "inline") == "bls":
            outputs = CLUSTERING_OUTPUTS if kind == "clustering" else MLPF_OUTPUTS
            first = "HITS" if kind == "clustering" else "ELEMENTS"
            return self._bls(model, first, outputs)
        path = os.path.join(self.repository, model, self.version, "model.onnx")
        return OnnxNetwork(path, threads=int(self.params.get("threads", "1")))

    def _bls(self, model: str, first: str, outputs: Sequence[str]) -> Network:
        pb = self.pb

        def call(rows: np.ndarray, segment: np.ndarray) -> list[np.ndarray]:
            request = pb.InferenceRequest(
                model_name=model,
                requested_output_names=list(outputs),
                inputs=[pb.Tensor(first, rows), pb.Tensor("SEGMENT", segment)],
            )
            response = request.exec()
            if response.has_error():
                raise RuntimeError(f"{model}: {response.error().message()}")
            return [pb.get_output_tensor_by_name(response, n).as_numpy() for n in outputs]

        return call

    def read(self, request: Any, name: str) -> np.ndarray:
        tensor = self.pb.get_input_tensor_by_name(request, name)
        if tensor is None:
            raise InvalidInput(f"missing input tensor {name}")
        return np.asarray(tensor.as_numpy())

    def tensor(self, name: str, array: np.ndarray) -> Any:
        """An output tensor; models with a batch dimension answer a batch of one."""
        array = np.ascontiguousarray(array)
        return self.pb.Tensor(name, array[None] if self.batched else array)

    def error(self, message: str) -> Any:
        pb = self.pb
        code = getattr(pb.TritonError, "INVALID_ARG", None)  # gRPC INVALID_ARGUMENT, HTTP 400
        err = pb.TritonError(message, code) if code is not None else pb.TritonError(message)
        return pb.InferenceResponse(output_tensors=[], error=err)

    def answer_each(
        self,
        requests: list[Any],
        parse: Callable[[Any], Any],
        run: Callable[[list[Any]], list[list[Any]]],
    ) -> list[Any]:
        """Parse every request (bad ones get an error response), run the good ones together,
        and return one response per request in request order."""
        parsed: list[Any] = []
        responses: list[Any] = [None] * len(requests)
        good: list[int] = []
        for i, request in enumerate(requests):
            try:
                parsed.append(parse(request))
                good.append(i)
            except InvalidInput as err:
                responses[i] = self.error(str(err))
        if good:
            for i, tensors in zip(good, run(parsed), strict=True):
                responses[i] = self.pb.InferenceResponse(output_tensors=tensors)
        return responses


class NetworkModel(_Model):
    """``gravnet_oc`` / ``mlpf`` on the local flavour: the exported ONNX graph, run by ONNX
    Runtime inside the Python backend (the ngc flavour uses Triton's onnxruntime backend)."""

    def initialize(self, args: dict[str, str]) -> None:
        super().initialize(args)
        path = os.path.join(self.repository, self.config["name"], self.version, "model.onnx")
        self.session = OnnxNetwork(path, threads=int(self.params.get("threads", "1")))
        self.input_names = [i["name"] for i in self.config["input"]]
        self.output_names = [o["name"] for o in self.config["output"]]
        self.width = int(self.config["input"][0]["dims"][-1])

    def execute(self, requests: list[Any]) -> list[Any]:
        first = self.input_names[0]

        def parse(request: Any) -> tuple[np.ndarray, np.ndarray]:
            rows = check_rows(first, self.read(request, first), self.width, MAX_HITS)
            segment = self.read(request, "SEGMENT").astype(np.int64).reshape(-1)
            if len(segment) != len(rows):
                raise InvalidInput(f"SEGMENT has {len(segment)} rows, {first} has {len(rows)}")
            return rows, segment

        def run(items: list[tuple[np.ndarray, np.ndarray]]) -> list[list[Any]]:
            return [
                [
                    self.tensor(n, v)
                    for n, v in zip(self.output_names, self._run(rows, seg), strict=True)
                ]
                for rows, seg in items
            ]

        return self.answer_each(requests, parse, run)

    def _run(self, rows: np.ndarray, segment: np.ndarray) -> list[np.ndarray]:
        if len(rows):
            return self.session(rows, segment)
        return [np.zeros((0, *o["dims"][1:]), np.float32) for o in self.config["output"]]


class CondensationModel(_Model):
    """``condensation``: per-hit network outputs -> clusters (``condense``)."""

    def initialize(self, args: dict[str, str]) -> None:
        super().initialize(args)
        self.cuts = self.thresholds()

    def execute(self, requests: list[Any]) -> list[Any]:
        def parse(request: Any) -> list[np.ndarray]:
            hits = check_hits(self.read(request, "HITS"))
            outputs = [np.asarray(self.read(request, n), np.float32) for n in CLUSTERING_OUTPUTS]
            if any(len(o) != len(hits) for o in outputs):
                raise InvalidInput("every network output must have one row per hit")
            return [hits, *outputs]

        def run(items: list[list[np.ndarray]]) -> list[list[Any]]:
            out = []
            for hits, beta, ccoords, factor, position, time, logits in items:
                clusters = condense(
                    beta, ccoords, hits[:, 3], factor, position, time, logits, self.cuts
                )
                out.append([
                    self.tensor("HIT_CLUSTER", clusters.hit_cluster),
                    self.tensor("CLUSTERS", cluster_table(hits, clusters)),
                ])  # fmt: skip
            return out

        return self.answer_each(requests, parse, run)


class DecodeModel(_Model):
    """``mlpf_decode``: MLPF outputs -> particle candidates (``decode``)."""

    def execute(self, requests: list[Any]) -> list[Any]:
        def parse(request: Any) -> list[np.ndarray]:
            elements = check_elements(self.read(request, "ELEMENTS"))
            logits = np.asarray(self.read(request, "CLASS_LOGITS"), np.float32).reshape(-1, 6)
            regression = np.asarray(self.read(request, "REGRESSION"), np.float32).reshape(-1, 5)
            if len(logits) != len(elements) or len(regression) != len(elements):
                raise InvalidInput("CLASS_LOGITS and REGRESSION need one row per element")
            return [elements, logits, regression]

        def run(items: list[list[np.ndarray]]) -> list[list[Any]]:
            from recoserve.postprocess.candidates import decode

            return [
                [self.tensor("CANDIDATES", candidate_table(decode(e, c, r)))] for e, c, r in items
            ]

        return self.answer_each(requests, parse, run)


class ClusteringModel(_Model):
    """``hgcal_clustering``: HITS -> clusters; the requests of a dynamic batch share one
    network call (segments keep their hits apart)."""

    def initialize(self, args: dict[str, str]) -> None:
        super().initialize(args)
        self.cuts = self.thresholds()
        self.clustering = self.network("clustering")

    def execute(self, requests: list[Any]) -> list[Any]:
        def run(all_hits: list[np.ndarray]) -> list[list[Any]]:
            clusters = cluster_events(self.clustering, all_hits, self.cuts)
            return [
                [
                    self.tensor("HIT_CLUSTER", c.hit_cluster),
                    self.tensor("CLUSTERS", cluster_table(h, c)),
                ]
                for h, c in zip(all_hits, clusters, strict=True)
            ]

        return self.answer_each(requests, lambda r: check_hits(self.read(r, "HITS")), run)


class EventRecoModel(_Model):
    """``event_reco``: HITS + TRACKS -> clusters and particle candidates, in one request."""

    def initialize(self, args: dict[str, str]) -> None:
        super().initialize(args)
        self.cuts = self.thresholds()
        self.clustering = self.network("clustering")
        self.mlpf = self.network("mlpf")

    def execute(self, requests: list[Any]) -> list[Any]:
        def parse(request: Any) -> tuple[np.ndarray, np.ndarray]:
            return check_hits(self.read(request, "HITS")), check_tracks(
                self.read(request, "TRACKS")
            )

        def run(items: list[tuple[np.ndarray, np.ndarray]]) -> list[list[Any]]:
            hits = [h for h, _ in items]
            tracks = [t for _, t in items]
            results = reconstruct_events(self.clustering, self.mlpf, hits, tracks, self.cuts)
            return [
                [
                    self.tensor("HIT_CLUSTER", clusters.hit_cluster),
                    self.tensor("CLUSTERS", cluster_table(h, clusters)),
                    self.tensor("CANDIDATES", candidate_table(candidates)),
                ]
                for h, (clusters, candidates) in zip(hits, results, strict=True)
            ]

        return self.answer_each(requests, parse, run)

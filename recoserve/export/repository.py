"""`recoserve export repository`: the Triton model repository, in two flavours.

Models (same names and tensor contracts in both flavours; docs/serving.md):

- ``gravnet_oc``: clustering network. HITS FP32 [N, 5], SEGMENT INT64 [N] -> BETA [N],
  CCOORDS [N, 3], ENERGY_FACTOR [N], POSITION [N, 2], TIME [N], CLASS_LOGITS [N, 3].
- ``condensation``: HITS + the six outputs above -> HIT_CLUSTER INT64 [N], CLUSTERS [K, 12].
- ``mlpf``: ELEMENTS FP32 [E, 19], SEGMENT -> CLASS_LOGITS [E, 6], REGRESSION [E, 5].
- ``mlpf_decode``: ELEMENTS, CLASS_LOGITS, REGRESSION -> CANDIDATES FP32 [P, 9].
- ``hgcal_clustering`` (public): HITS [1, N, 5] -> HIT_CLUSTER [1, N], CLUSTERS [1, K, 12].
- ``event_reco`` (public): HITS [1, N, 5], TRACKS [1, T, 9] -> HIT_CLUSTER, CLUSTERS,
  CANDIDATES [1, P, 9].

The public models batch requests dynamically; their inputs are ragged (each event has its own
N), and one execution runs the network once over all events of the batch with a segment index
that keeps them apart. The internal models take one (possibly multi-event) call at a time.

Flavours: "local" (the bundled CPU tritonserver: every model is a Python-backend model, the
networks run through ONNX Runtime inside the public models' processes) and "ngc" (the NGC
container on a GPU: ``gravnet_oc`` and ``mlpf`` on Triton's onnxruntime backend, KIND_GPU,
called by the public models through BLS).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from recoserve.contract import MODEL_TENSORS, PUBLIC_MODELS, TensorSpec, output_names
from recoserve.nn.checkpoint import DEFAULT_CLUSTERING_CHECKPOINT, DEFAULT_MLPF_CHECKPOINT

Flavour = Literal["local", "ngc"]
# Rows of the zero-valued warmup sample of each input.
WARMUP_ROWS = {"HITS": 64, "TRACKS": 2, "ELEMENTS": 8}
INTERNAL_MODELS = ("gravnet_oc", "condensation", "mlpf", "mlpf_decode")
MODEL_CLASSES = {
    "gravnet_oc": "NetworkModel",
    "mlpf": "NetworkModel",
    "condensation": "CondensationModel",
    "mlpf_decode": "DecodeModel",
    "hgcal_clustering": "ClusteringModel",
    "event_reco": "EventRecoModel",
}
REPOSITORY_FORMAT = "recoserve-repository-1"


@dataclass(frozen=True)
class ServingOptions:
    """What an operator tunes (docs/serving.md)."""

    # Events per execution of a public model; None: 4 on the CPU (local), 16 on a GPU (ngc).
    # On the CPU a batch runs as one single-threaded network call, so large batches would
    # serialise work that two instances could do in parallel (measured: recoserve bench).
    max_batch_size: int | None = None
    # 0: an idle instance takes what is queued at once; batches form only under load, which
    # keeps both CPU cores busy at low concurrency (a batch runs as one single-threaded call)
    max_queue_delay_us: int = 0
    max_queue_size: int = 128  # requests waiting per model; beyond it they are rejected
    queue_timeout_us: int = 60_000_000  # a request waiting longer is rejected
    instances: int = 2  # model instances (CPU processes / GPU streams) per public model
    threads: int = 1  # ONNX Runtime threads per instance (local flavour)
    version: int = 1


def _add_tensors(field: Any, specs: tuple[TensorSpec, ...]) -> None:
    for spec in specs:
        tensor = field.add(
            name=spec.name, data_type=getattr(pb, f"TYPE_{spec.dtype}"), dims=list(spec.dims)
        )
        if spec.ragged:
            tensor.allow_ragged_batch = True


def _add_warmup(config: Any, inputs: tuple[TensorSpec, ...], rows: dict[str, int]) -> None:
    """A warmup sample of zeros (valid input: finite, zero energies); SEGMENT has as many rows
    as the table it indexes."""
    sample = config.model_warmup.add(name="zeros", batch_size=1)
    for spec in inputs:
        tensor = sample.inputs[spec.name]
        tensor.data_type = getattr(pb, f"TYPE_{spec.dtype}")
        n = rows[inputs[0].name] if spec.name == "SEGMENT" else rows[spec.name]
        tensor.dims.extend([n, *spec.dims[1:]])
        tensor.zero_data = True


def batch_size(options: ServingOptions, flavour: Flavour) -> int:
    if options.max_batch_size is not None:
        return options.max_batch_size
    return 16 if flavour == "ngc" else 4


def model_config(
    name: str, flavour: Flavour, options: ServingOptions, params: dict[str, str]
) -> str:
    """config.pbtxt text of one model, from its tensors in ``recoserve.contract``."""
    native = flavour == "ngc" and name in ("gravnet_oc", "mlpf")
    inputs, outputs = MODEL_TENSORS[name]
    public = name in PUBLIC_MODELS
    config = pb.ModelConfig(name=name, backend="onnxruntime" if native else "python")
    if native:
        config.default_model_filename = "model.onnx"
    config.version_policy.latest.num_versions = 1
    _add_tensors(config.input, inputs)
    _add_tensors(config.output, outputs)
    # Public models warm up themselves and, inline, the networks; with BLS they cannot call
    # another model while the server loads, so the networks warm up on their own.
    bls = params.get("network_mode") == "bls"
    if public:
        config.max_batch_size = batch_size(options, flavour)
        batching = config.dynamic_batching
        batching.max_queue_delay_microseconds = options.max_queue_delay_us
        policy = batching.default_queue_policy
        policy.timeout_action = pb.ModelQueuePolicy.REJECT
        policy.default_timeout_microseconds = options.queue_timeout_us
        policy.allow_timeout_override = True
        policy.max_queue_size = options.max_queue_size
        if not bls:
            _add_warmup(config, inputs, WARMUP_ROWS)
    elif bls and name in ("gravnet_oc", "mlpf"):
        _add_warmup(config, inputs, WARMUP_ROWS)
    kind = pb.ModelInstanceGroup.KIND_GPU if native else pb.ModelInstanceGroup.KIND_CPU
    config.instance_group.add(count=options.instances if public else 1, kind=kind)
    for key, value in params.items():
        config.parameters[key].string_value = value
    return str(text_format.MessageToString(config))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_repository(
    output: Path,
    flavour: Flavour = "local",
    options: ServingOptions | None = None,
    clustering_checkpoint: Path = DEFAULT_CLUSTERING_CHECKPOINT,
    mlpf_checkpoint: Path = DEFAULT_MLPF_CHECKPOINT,
    network_mode: Literal["inline", "bls"] | None = None,
    parity: bool = True,
) -> dict[str, object]:
    """Export both networks and write the repository at ``output``.

    ``parity`` first runs the export parity checks of both networks (eager vs TorchScript vs
    ONNX on fresh events; about half a minute) and records them in recoserve.json.

    ``network_mode`` overrides how the public models run the networks ("inline" ONNX Runtime,
    the local default; "bls" calls to gravnet_oc / mlpf, the ngc default).
    """
    from recoserve.nn.checkpoint import load_clustering

    options = options or ServingOptions()
    mode = network_mode or ("bls" if flavour == "ngc" else "inline")
    version = str(options.version)
    _, thresholds, clustering_info = load_clustering(clustering_checkpoint)
    if output.exists():
        shutil.rmtree(output)
    output.mkdir(parents=True)
    clustering_diff, clustering_info = export_served_network(
        "gravnet_oc", clustering_checkpoint, output / "gravnet_oc" / version, parity
    )
    mlpf_diff, mlpf_info = export_served_network(
        "mlpf", mlpf_checkpoint, output / "mlpf" / version, parity
    )
    checked = (
        {"clustering_parity_excess_error": clustering_diff, "mlpf_parity_excess_error": mlpf_diff}
        if parity
        else {}
    )
    common = {
        **thresholds.as_params(),
        "clustering_model": "gravnet_oc",
        "mlpf_model": "mlpf",
        "network_mode": mode,
        "threads": str(options.threads),
        "clustering_sha256": _sha256(clustering_checkpoint),
        "mlpf_sha256": _sha256(mlpf_checkpoint),
        "repository_format": REPOSITORY_FORMAT,
    }
    for name, cls in MODEL_CLASSES.items():
        folder = output / name
        (folder / version).mkdir(parents=True, exist_ok=True)
        native = flavour == "ngc" and name in ("gravnet_oc", "mlpf")
        if not native:
            (folder / version / "model.py").write_text(
                f'"""Triton model {name}: see recoserve.server.backend_models.{cls}."""\n\n'
                f"from recoserve.server.backend_models import {cls} as TritonPythonModel\n\n"
                f'__all__ = ["TritonPythonModel"]\n'
            )
        (folder / "config.pbtxt").write_text(model_config(name, flavour, options, common))
    manifest = {
        "format": REPOSITORY_FORMAT,
        "flavour": flavour,
        "network_mode": mode,
        "version": options.version,
        "options": options.__dict__,
        "clustering": {"info": clustering_info, "sha256": common["clustering_sha256"]},
        "mlpf": {"info": mlpf_info, "sha256": common["mlpf_sha256"]},
        "parity": checked or "not checked",
    }
    (output / "recoserve.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def export_served_network(
    name: str, checkpoint: Path, folder: Path, parity: bool
) -> tuple[float | None, dict[str, object]]:
    """Write ``folder``/model.onnx of ``gravnet_oc`` or ``mlpf`` with the served tensor names;
    with ``parity``, that very graph is the one checked against eager PyTorch. Returns (worst
    scaled difference or None, checkpoint provenance)."""
    import torch

    from recoserve.export.clustering import export_clustering
    from recoserve.export.mlpf import export_mlpf
    from recoserve.export.network import export_onnx
    from recoserve.nn.checkpoint import load_clustering, load_mlpf

    folder.mkdir(parents=True, exist_ok=True)
    table, segment = (spec.name for spec in MODEL_TENSORS[name][0])
    inputs = (table, segment)
    outputs = output_names(name)
    if parity:
        with tempfile.TemporaryDirectory() as tmp:
            export = export_clustering if name == "gravnet_oc" else export_mlpf
            report = export(checkpoint, Path(tmp), names=(inputs, outputs))
            shutil.move(str(report["onnx"]), folder / "model.onnx")
        worst = report["max_excess_error"]
        info = report["checkpoint_info"]
        assert isinstance(worst, float) and isinstance(info, dict)
        return worst, info
    model: torch.nn.Module
    if name == "gravnet_oc":
        model, _, info = load_clustering(checkpoint)
        example = np.zeros((8, 5), np.float32) + np.array([10, 10, 330, 0.1, 11], np.float32)
    else:
        model, info = load_mlpf(checkpoint)
        example = np.ones((4, 19), np.float32)
    export_onnx(model, folder / "model.onnx", example, inputs, outputs)
    return None, dict(info)


def repository_is_current(
    path: Path,
    flavour: Flavour = "local",
    clustering_checkpoint: Path = DEFAULT_CLUSTERING_CHECKPOINT,
    mlpf_checkpoint: Path = DEFAULT_MLPF_CHECKPOINT,
) -> bool:
    """True if ``path`` holds a complete repository of this flavour built from these
    checkpoints (so `recoserve serve` can skip the export)."""
    manifest = path / "recoserve.json"
    if not manifest.exists():
        return False
    info = json.loads(manifest.read_text())
    complete = all((path / m / "config.pbtxt").exists() for m in MODEL_CLASSES)
    return bool(
        complete
        and info.get("format") == REPOSITORY_FORMAT
        and info.get("flavour") == flavour
        and clustering_checkpoint.exists()
        and mlpf_checkpoint.exists()
        and info["clustering"]["sha256"] == _sha256(clustering_checkpoint)
        and info["mlpf"]["sha256"] == _sha256(mlpf_checkpoint)
    )

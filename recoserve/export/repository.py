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
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from recoserve.nn.checkpoint import DEFAULT_CLUSTERING_CHECKPOINT, DEFAULT_MLPF_CHECKPOINT

Flavour = Literal["local", "ngc"]
PUBLIC_MODELS = ("hgcal_clustering", "event_reco")
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
class Tensor:
    name: str
    dims: tuple[int, ...]
    dtype: str = "TYPE_FP32"
    ragged: bool = False

    def pbtxt(self) -> str:
        dims = ", ".join(str(d) for d in self.dims)
        ragged = " allow_ragged_batch: true" if self.ragged else ""
        return f'  {{ name: "{self.name}" data_type: {self.dtype} dims: [ {dims} ]{ragged} }}'


HITS = Tensor("HITS", (-1, 5))
SEGMENT = Tensor("SEGMENT", (-1,), "TYPE_INT64")
ELEMENTS = Tensor("ELEMENTS", (-1, 19))
CLUSTERING_OUT = (
    Tensor("BETA", (-1,)),
    Tensor("CCOORDS", (-1, 3)),
    Tensor("ENERGY_FACTOR", (-1,)),
    Tensor("POSITION", (-1, 2)),
    Tensor("TIME", (-1,)),
    Tensor("CLASS_LOGITS", (-1, 3)),
)
MLPF_OUT = (Tensor("CLASS_LOGITS", (-1, 6)), Tensor("REGRESSION", (-1, 5)))
HIT_CLUSTER = Tensor("HIT_CLUSTER", (-1,), "TYPE_INT64")
CLUSTERS = Tensor("CLUSTERS", (-1, 12))
CANDIDATES = Tensor("CANDIDATES", (-1, 9))
TRACKS = Tensor("TRACKS", (-1, 9))


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


def _io(inputs: tuple[Tensor, ...], outputs: tuple[Tensor, ...]) -> str:
    ins = ",\n".join(t.pbtxt() for t in inputs)
    outs = ",\n".join(t.pbtxt() for t in outputs)
    return f"input [\n{ins}\n]\noutput [\n{outs}\n]\n"


def _parameters(values: dict[str, str]) -> str:
    return "".join(
        f'parameters {{ key: "{k}" value: {{ string_value: "{v}" }} }}\n' for k, v in values.items()
    )


def _warmup(inputs: Mapping[str, tuple[int, ...]]) -> str:
    """A warmup sample of zeros (valid input: finite, zero energies); SEGMENT is INT64."""
    body = "".join(
        f'    inputs {{ key: "{name}" value: {{ data_type: '
        f"{'TYPE_INT64' if name == 'SEGMENT' else 'TYPE_FP32'} dims: [ "
        f"{', '.join(str(d) for d in dims)} ] zero_data: true }} }}\n"
        for name, dims in inputs.items()
    )
    return f'model_warmup [\n  {{\n    name: "zeros"\n    batch_size: 1\n{body}  }}\n]\n'


def batch_size(options: ServingOptions, flavour: Flavour) -> int:
    if options.max_batch_size is not None:
        return options.max_batch_size
    return 16 if flavour == "ngc" else 4


def model_config(
    name: str, flavour: Flavour, options: ServingOptions, params: dict[str, str]
) -> str:
    """config.pbtxt text of one model."""
    native = flavour == "ngc" and name in ("gravnet_oc", "mlpf")
    head = f'name: "{name}"\n'
    head += (
        'backend: "onnxruntime"\ndefault_model_filename: "model.onnx"\n'
        if native
        else 'backend: "python"\n'
    )
    head += "version_policy: { latest: { num_versions: 1 } }\n"
    kind = "KIND_GPU" if flavour == "ngc" and native else "KIND_CPU"
    # Public models warm up themselves and, inline, the networks; with BLS they cannot call
    # another model while the server loads, so the networks warm up on their own.
    bls = params.get("network_mode") == "bls"
    if name == "gravnet_oc":
        body = "max_batch_size: 0\n" + _io((HITS, SEGMENT), CLUSTERING_OUT)
        body += _warmup({"HITS": (64, 5), "SEGMENT": (64,)}) if bls else ""
    elif name == "mlpf":
        body = "max_batch_size: 0\n" + _io((ELEMENTS, SEGMENT), MLPF_OUT)
        body += _warmup({"ELEMENTS": (8, 19), "SEGMENT": (8,)}) if bls else ""
    elif name == "condensation":
        body = "max_batch_size: 0\n" + _io((HITS, *CLUSTERING_OUT), (HIT_CLUSTER, CLUSTERS))
    elif name == "mlpf_decode":
        body = "max_batch_size: 0\n" + _io((ELEMENTS, *MLPF_OUT), (CANDIDATES,))
    else:
        ragged_hits = Tensor("HITS", (-1, 5), ragged=True)
        if name == "hgcal_clustering":
            body = _io((ragged_hits,), (HIT_CLUSTER, CLUSTERS))
            warm = {"HITS": (64, 5)}
        else:
            ragged_tracks = Tensor("TRACKS", (-1, 9), ragged=True)
            body = _io((ragged_hits, ragged_tracks), (HIT_CLUSTER, CLUSTERS, CANDIDATES))
            warm = {"HITS": (64, 5), "TRACKS": (2, 9)}
        body = (
            f"max_batch_size: {batch_size(options, flavour)}\n"
            + body
            + "dynamic_batching {\n"
            + f"  max_queue_delay_microseconds: {options.max_queue_delay_us}\n"
            + "  default_queue_policy {\n"
            + "    timeout_action: REJECT\n"
            + f"    default_timeout_microseconds: {options.queue_timeout_us}\n"
            + "    allow_timeout_override: true\n"
            + f"    max_queue_size: {options.max_queue_size}\n"
            + "  }\n}\n"
            + ("" if bls else _warmup(warm))
        )
    count = options.instances if name in PUBLIC_MODELS else 1
    body += f"instance_group [ {{ count: {count} kind: {kind} }} ]\n"
    return head + body + _parameters(params)


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
        {"clustering_max_scaled_diff": clustering_diff, "mlpf_max_scaled_diff": mlpf_diff}
        if parity
        else {}
    )
    common = {
        "t_beta": str(thresholds.t_beta),
        "t_d": str(thresholds.t_d),
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
    inputs = ("HITS", "SEGMENT") if name == "gravnet_oc" else ("ELEMENTS", "SEGMENT")
    outputs = tuple(t.name for t in (CLUSTERING_OUT if name == "gravnet_oc" else MLPF_OUT))
    if parity:
        with tempfile.TemporaryDirectory() as tmp:
            export = export_clustering if name == "gravnet_oc" else export_mlpf
            report = export(checkpoint, Path(tmp), names=(inputs, outputs))
            shutil.move(str(report["onnx"]), folder / "model.onnx")
        worst = report["max_scaled_diff"]
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

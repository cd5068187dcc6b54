"""Saving and loading checkpoints (clustering, MLPF): weights, model config, provenance."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from recoserve.nn.gravnet import GravNetConfig, GravNetOC
from recoserve.nn.mlpf import MLPF, MLPFConfig
from recoserve.postprocess.condensation import CondensationThresholds

DEFAULT_CLUSTERING_CHECKPOINT = (
    Path(__file__).resolve().parents[2] / "checkpoints" / "clustering" / "gravnet_oc.pt"
)


def _save(path: str | Path, fmt: str, model: GravNetOC | MLPF, extra: dict[str, Any]) -> None:
    """Weights, model config and ``extra`` (provenance, thresholds) in one torch file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {"format": fmt, "config": model.config.to_dict(), "state_dict": model.state_dict()}
    torch.save({**blob, **extra}, path)


def weights_sha256(path: str | Path) -> str:
    """A digest of a checkpoint's architecture and weights only: what a tuning of its outputs
    depends on (the file's own digest also changes with its thresholds and provenance)."""
    blob = dict(torch.load(Path(path), map_location="cpu", weights_only=True))
    digest = hashlib.sha256(json.dumps(blob["config"], sort_keys=True).encode())
    for name, tensor in sorted(blob["state_dict"].items()):
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _load(path: str | Path, what: str) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"no {what} checkpoint at {path}; train one with `recoserve train {what.lower()}`"
        )
    return dict(torch.load(path, map_location="cpu", weights_only=True))


def save_clustering(
    path: str | Path, model: GravNetOC, thresholds: CondensationThresholds, info: dict[str, Any]
) -> None:
    extra = {"thresholds": asdict(thresholds), "info": info}
    _save(path, "recoserve-gravnet-oc-1", model, extra)


def load_clustering(
    path: str | Path = DEFAULT_CLUSTERING_CHECKPOINT,
) -> tuple[GravNetOC, CondensationThresholds, dict[str, Any]]:
    """(model in eval mode, condensation thresholds, provenance info) from a checkpoint."""
    blob = _load(path, "clustering")
    model = GravNetOC(GravNetConfig(**blob["config"]))
    model.load_state_dict(blob["state_dict"])
    model.eval()
    return model, CondensationThresholds(**blob["thresholds"]), dict(blob["info"])


DEFAULT_MLPF_CHECKPOINT = DEFAULT_CLUSTERING_CHECKPOINT.parents[1] / "mlpf" / "mlpf.pt"


def save_mlpf(path: str | Path, model: MLPF, info: dict[str, Any]) -> None:
    _save(path, "recoserve-mlpf-1", model, {"info": info})


def load_mlpf(path: str | Path = DEFAULT_MLPF_CHECKPOINT) -> tuple[MLPF, dict[str, Any]]:
    """(model in eval mode, provenance info) from an MLPF checkpoint."""
    blob = _load(path, "MLPF")
    model = MLPF(MLPFConfig(**blob["config"]))
    model.load_state_dict(blob["state_dict"])
    model.eval()
    return model, dict(blob["info"])

"""Saving and loading the clustering checkpoint: weights, model config, thresholds, provenance."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from recoserve.nn.gravnet import GravNetConfig, GravNetOC
from recoserve.postprocess.condensation import CondensationThresholds

DEFAULT_CLUSTERING_CHECKPOINT = (
    Path(__file__).resolve().parents[2] / "checkpoints" / "clustering" / "gravnet_oc.pt"
)


def save_clustering(
    path: str | Path, model: GravNetOC, thresholds: CondensationThresholds, info: dict[str, Any]
) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "format": "recoserve-gravnet-oc-1",
            "config": model.config.to_dict(),
            "state_dict": model.state_dict(),
            "thresholds": {"t_beta": thresholds.t_beta, "t_d": thresholds.t_d},
            "info": info,
        },
        path,
    )


def load_clustering(
    path: str | Path = DEFAULT_CLUSTERING_CHECKPOINT,
) -> tuple[GravNetOC, CondensationThresholds, dict[str, Any]]:
    """(model in eval mode, condensation thresholds, provenance info) from a checkpoint."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"no clustering checkpoint at {path}; train one with `recoserve train clustering`"
        )
    blob = torch.load(path, map_location="cpu", weights_only=True)
    model = GravNetOC(GravNetConfig(**blob["config"]))
    model.load_state_dict(blob["state_dict"])
    model.eval()
    return model, CondensationThresholds(**blob["thresholds"]), dict(blob["info"])

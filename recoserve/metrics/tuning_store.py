"""Where the validation-tuned parameters of a class live: CLUE's, the network's thresholds,
the rule-based PF's calibrations (by default under ``checkpoints/``, committed with the
weights they belong to; tests point it at a temporary folder)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

CHECKPOINTS = Path(__file__).resolve().parents[2] / "checkpoints"


@dataclass(frozen=True)
class TuningStore:
    root: Path = CHECKPOINTS

    def clue(self, event_class: str) -> Path:
        return self.root / "clue" / f"{event_class}.json"

    def network(self, event_class: str) -> Path:
        return self.root / "clustering" / "thresholds" / f"{event_class}.json"

    def pf(self, event_class: str) -> Path:
        return self.root / "pf" / f"{event_class}.json"


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def current_tuning(tuning: dict[str, Any], score: str, weights_sha256: str | None = None) -> bool:
    """Whether a stored tuning was made with today's ``selection_score`` (``score``) and, for
    the network's thresholds, for these weights (``recoserve.nn.checkpoint.weights_sha256``:
    the thresholds a checkpoint file carries can change without invalidating its tunings): a
    stale tuning is no tuning."""
    if tuning.get("score") != score:
        return False
    return weights_sha256 is None or tuning.get("weights_sha256") == weights_sha256


def current_network_tuning(tuning: dict[str, Any], score: str, weights_sha256: str) -> bool:
    """``current_tuning`` for the network, with every condensation threshold tuned (a tuning
    made before a threshold existed is redone)."""
    # Imported here: the CLI imports this module, and the light client has no scipy.
    from recoserve.postprocess.condensation import CondensationThresholds

    tuned = set(tuning.get("thresholds", {}))
    every = {f.name for f in fields(CondensationThresholds)}
    return current_tuning(tuning, score, weights_sha256) and tuned == every


def read_json(path: Path) -> dict[str, Any]:
    """The JSON object at ``path``, or {} if there is none."""
    return json.loads(path.read_text()) if path.exists() else {}


def write_json(path: Path, content: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, indent=1, default=_plain) + "\n")


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")

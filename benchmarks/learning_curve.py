"""The clustering network's learning curve: validation loss and, per event class, efficiency and
fake rate vs training minutes, from the resumable training state (or its metrics JSON).

Run: python benchmarks/learning_curve.py  (writes docs/img/learning_curve.png and
docs/results/learning_curve.json)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import mplhep

from recoserve.plotting import save_figure

ROOT = Path(__file__).resolve().parents[1]
TRAINING = ROOT / "checkpoints" / "clustering" / "training" / "gravnet_oc"


def load_history(base: Path) -> list[dict[str, Any]]:
    """The learning curve of the run at ``base`` (.metrics.json if written, else .state.pt)."""
    metrics = base.with_suffix(".metrics.json")
    if metrics.exists():
        return list(json.loads(metrics.read_text())["history"])
    import torch

    state = torch.load(base.with_suffix(".state.pt"), map_location="cpu", weights_only=False)
    return list(state["progress"]["history"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run", type=Path, default=TRAINING)
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "img" / "learning_curve.png")
    parser.add_argument(
        "--json", type=Path, default=ROOT / "docs" / "results" / "learning_curve.json"
    )
    args = parser.parse_args()
    history = load_history(args.run)
    classes = sorted(
        {k[: -len("_efficiency")] for r in history for k in r if k.endswith("_efficiency")}
    )
    mplhep.style.use("CMS")
    fig, (ax_loss, ax_eff, ax_fake) = plt.subplots(1, 3, figsize=(27, 8))
    minutes = [r["minutes"] for r in history]
    ax_loss.plot(minutes, [r["validation_loss"] for r in history], "o-")
    for name in classes:
        ax_eff.plot(minutes, [r[f"{name}_efficiency"] for r in history], "o-", label=name)
        ax_fake.plot(minutes, [r[f"{name}_fake_rate"] for r in history], "o-", label=name)
    ax_loss.set_ylabel("validation loss")
    ax_eff.set_ylabel("efficiency > 20 GeV (default thresholds)")
    ax_fake.set_ylabel("fake rate > 10 GeV")
    for ax in (ax_loss, ax_eff, ax_fake):
        ax.set_xlabel("training minutes (CPU, 2 cores)")
    for ax in (ax_eff, ax_fake):
        ax.set_ylim(0, 1.05)
        ax.legend(fontsize=16)
    save_figure(fig, args.output, dpi=60)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(history, indent=1) + "\n")
    print(f"{len(history)} points, last at {minutes[-1]:.1f} min -> {args.output}")


if __name__ == "__main__":
    main()

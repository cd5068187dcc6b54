"""MLPF's learning curves: validation and training loss (total, classification, regression) vs
events seen, for the runs kept under checkpoints/mlpf, read from their metrics JSON (the
``history`` the resumable loop records every ``validate_every`` steps).

Run: python benchmarks/mlpf_learning_curve.py  (writes docs/img/mlpf_learning_curve.png)
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from recoserve.plotting import save_figure

ROOT = Path(__file__).resolve().parents[1]
RUNS = {
    "mix, per-element loss (not served)": ROOT / "checkpoints" / "mlpf" / "mix",
    "mix, per-event loss (served)": ROOT / "checkpoints" / "mlpf" / "mix-per-event",
}


def main() -> None:
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    terms = ("total", "classification", "regression")
    for (label, run), colour in zip(RUNS.items(), ("tab:grey", "tab:blue"), strict=True):
        history = json.loads((run / "mlpf.metrics.json").read_text())["history"]
        seen = [h["samples"] for h in history]
        for ax, term in zip(axes, terms, strict=True):
            ax.plot(seen, [h[f"validation_{term}"] for h in history], color=colour, label=label)
            ax.plot(seen, [h[f"train_{term}"] for h in history], color=colour, alpha=0.4,
                    linestyle="--", label=f"{label}, training (running mean)")  # fmt: skip
    for ax, term in zip(axes, terms, strict=True):
        ax.set_xlabel("events seen (each event once per cluster source)")
        ax.set_ylabel(f"{term} loss")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    save_figure(fig, ROOT / "docs" / "img" / "mlpf_learning_curve.png")


if __name__ == "__main__":
    main()

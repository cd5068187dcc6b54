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
from matplotlib.ticker import FuncFormatter

from recoserve.plotting import save_figure

ROOT = Path(__file__).resolve().parents[1]
MLPF = ROOT / "checkpoints" / "mlpf"
SERVED_UNTIL_2026_12_01 = 24_000 * 16  # events seen by the weights the dense-gun run started from
# label: (run, events seen before its first step, colour). A run started from other weights
# (--init-from) is drawn from where those weights were; each run has its own validation set
# (the later ones add the dense gun, the last the new network clusters), so compare each curve
# with itself.
RUNS = {
    "mix, per-element loss": (MLPF / "mix", 0, "tab:grey"),
    "mix, per-event loss": (MLPF / "mix-per-event", 0, "tab:blue"),
    "+ dense gun, from step 24,000": (MLPF / "mix-dense", SERVED_UNTIL_2026_12_01, "tab:orange"),
    "+ new network clusters (served)": (
        MLPF / "new-clusters",
        SERVED_UNTIL_2026_12_01 + 11_258 * 16,
        "tab:green",
    ),
    "+ 6,000 jet events (evaluated, not served)": (
        MLPF / "more-jets",
        SERVED_UNTIL_2026_12_01 + (11_258 + 8_000) * 16,
        "tab:red",
    ),
}


def main() -> None:
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    terms = ("total", "classification", "regression")
    for label, (run, offset, colour) in RUNS.items():
        history = json.loads((run / "mlpf.metrics.json").read_text())["history"]
        seen = [offset + h["samples"] for h in history]
        for ax, term in zip(axes, terms, strict=True):
            ax.plot(seen, [h[f"validation_{term}"] for h in history], color=colour, label=label)
            ax.plot(seen, [h[f"train_{term}"] for h in history], color=colour, alpha=0.4,
                    linestyle="--", label=f"{label}, training (running mean)")  # fmt: skip
    for ax, term in zip(axes, terms, strict=True):
        ax.set_xlabel("events seen (each event once per cluster source)")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v / 1e3:.0f}k"))
        ax.set_ylabel(f"{term} loss")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    save_figure(fig, ROOT / "docs" / "img" / "mlpf_learning_curve.png")


if __name__ == "__main__":
    main()

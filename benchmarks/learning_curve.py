"""The clustering network's learning curves: validation loss and, per event class, efficiency and
fake rate vs endcaps seen, for every run kept under checkpoints/clustering, from the resumable
training state (or its metrics JSON). Endcaps seen, not minutes: one GPU minute is worth hours
of CPU.

Run: python benchmarks/learning_curve.py  (writes docs/img/learning_curve.png and
docs/results/learning_curve.json)
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import mplhep
from matplotlib.ticker import NullFormatter

from recoserve.plotting import save_figure

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "checkpoints" / "clustering"
FIRST_DESIGN = RUNS / "first-design" / "gravnet_oc"  # first design, per-hit loss, from served
PER_OBJECT_RUN = RUNS / "per-object-run" / "gravnet_oc"  # current design, per-object loss (GPU)
TRAINING = RUNS / "training" / "gravnet_oc"  # first design, per-hit loss, lr 2e-4, from served
NEW_DESIGN = RUNS / "training-new-design" / "gravnet_oc"  # current design, per-hit loss
# From `training` at step 4,500: the beta term weighted by energy; and crops of large endcaps.
BETA_ENERGY = RUNS / "beta-energy" / "gravnet_oc"
CROPS = RUNS / "crops" / "gravnet_oc"
# From the served weights (beta-energy, step 5,701), same loss: jets; jets + pileup-140 crops.
JETS_FOCUS = RUNS / "jets-focus" / "gravnet_oc"
JETS_PILEUP = RUNS / "jets-pileup" / "gravnet_oc"
# From jets-focus's best weights, same loss: jets, gun and dense gun, endcaps cropped to 6,000 hits.
JETS_GUN_DENSE = RUNS / "jets-gun-dense" / "gravnet_oc"


def load_history(base: Path) -> list[dict[str, Any]]:
    """The learning curve of the run at ``base``: from its .state.pt (which a stopped run has
    saved past its last metrics file), else its .metrics.json."""
    state = base.with_suffix(".state.pt")
    if state.exists():
        import torch

        saved = torch.load(state, map_location="cpu", weights_only=False)
        return list(saved["progress"]["history"])
    return list(json.loads(base.with_suffix(".metrics.json").read_text())["history"])


def samples(record: dict[str, Any]) -> int:
    """Endcaps seen at a point of the curve (runs before the counter existed: one per step)."""
    return int(record.get("samples", record["step"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--run", type=Path, action="append", help="run base path(s); default: every kept run"
    )
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "img" / "learning_curve.png")
    parser.add_argument(
        "--json", type=Path, default=ROOT / "docs" / "results" / "learning_curve.json"
    )
    args = parser.parse_args()
    kept = [
        FIRST_DESIGN, PER_OBJECT_RUN, TRAINING, NEW_DESIGN, BETA_ENERGY, CROPS, JETS_FOCUS,
        JETS_PILEUP, JETS_GUN_DENSE,
    ]  # fmt: skip
    runs = args.run or [r for r in kept if r.with_suffix(".state.pt").exists()]
    histories = {run.parent.name: load_history(run) for run in runs}
    mplhep.style.use("CMS")
    fig, (ax_loss, ax_eff, ax_fake) = plt.subplots(1, 3, figsize=(27, 8))
    # Cycled, so that a run added to `kept` is never dropped for want of a marker.
    markers = itertools.cycle(("o-", "s--", "^-.", "d:", "v-", "P--", "X-", "*--", "h-."))
    for (label, history), marker in zip(histories.items(), markers, strict=False):
        x = [samples(r) for r in history]
        ax_loss.plot(x, [r["validation_loss"] for r in history], marker, label=label)
        classes = sorted(
            {k[: -len("_efficiency")] for r in history for k in r if k.endswith("_efficiency")}
        )
        for name in classes:
            points = [(samples(r), r) for r in history if f"{name}_efficiency" in r]
            xs = [p for p, _ in points]
            ax_eff.plot(xs, [r[f"{name}_efficiency"] for _, r in points], marker,
                        label=f"{label}: {name}")  # fmt: skip
            ax_fake.plot(xs, [r[f"{name}_fake_rate"] for _, r in points], marker,
                         label=f"{label}: {name}")  # fmt: skip
    ax_loss.set_ylabel("validation loss (each run its own loss)")
    ax_eff.set_ylabel("efficiency > 20 GeV (default thresholds)")
    ax_fake.set_ylabel("fake rate > 10 GeV")
    for ax in (ax_loss, ax_eff, ax_fake):
        ax.set_xlabel("endcaps seen in training")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.legend(fontsize=13)
    for ax in (ax_eff, ax_fake):
        ax.set_ylim(0, 1.05)
    save_figure(fig, args.output, dpi=60)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(histories, indent=1) + "\n")
    for label, history in histories.items():
        last = history[-1]
        print(f"{label}: {len(history)} points, last at {samples(last)} endcaps, "
              f"{last['minutes']:.1f} min")  # fmt: skip


if __name__ == "__main__":
    main()

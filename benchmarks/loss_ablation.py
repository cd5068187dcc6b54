"""Which object-condensation loss clusters best, at equal CPU time: a small, fair ablation.

Run: `python benchmarks/loss_ablation.py --minutes 12` (on a GPU machine: `--device cuda
--batch 8 --minutes 2 --classes gun,dense,jets,jets_pu140 --workers 15`; `--init-from
checkpoints/clustering/gravnet_oc.pt` starts every variant from the served weights). Each
variant of ``recoserve.nn.losses.LOSSES`` trains from the same seed on the same events for the
same wall-clock minutes; then its condensation thresholds are tuned on the jets validation
events and its efficiency (> 20 GeV) and fake rate (> 10 GeV) at those thresholds are reported,
with the oracle-seed assignment of its clustering space (benchmarks/clustering_diagnostics.py).
Validation events only: this steers the design, the benchmark's test events stay untouched.
Writes docs/results/loss_ablation.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import asdict
from pathlib import Path

import torch
from clustering_diagnostics import oracle_assignment  # benchmarks/, beside this script

from recoserve.metrics.showers import summarize_clustering
from recoserve.nn.checkpoint import load_clustering
from recoserve.nn.losses import LOSSES
from recoserve.postprocess.condensation import condense
from recoserve.train.clustering import (
    ClusteringTrainConfig,
    class_events,
    predict,
    train_clustering,
)

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = LOSSES  # per-hit, per-object, own-object (recoserve.nn.losses)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=12.0)
    parser.add_argument("--events", type=int, default=150, help="training events per class")
    parser.add_argument("--classes", default="jets", help="comma-separated training classes")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1, help="processes simulating data")
    parser.add_argument(
        "--init-from", default=None, help="start every variant from these weights (a checkpoint)"
    )
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--data-dir", type=Path, default=ROOT / "data" / "clustering")
    parser.add_argument("--output", type=Path, default=ROOT / "docs/results/loss_ablation.json")
    args = parser.parse_args()
    if args.device == "cpu":
        torch.set_num_threads(1)
    validation = class_events(args.data_dir, "jets", "validation", 12, args.workers)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, weights in VARIANTS.items():
            config = ClusteringTrainConfig(
                classes=tuple(args.classes.split(",")),
                train_events=args.events,
                device=args.device,
                batch=args.batch,
                minutes=args.minutes,
                max_steps=20_000,
                learning_rate=args.learning_rate,
                init_from=args.init_from,
                validate_every=1_000_000,  # only the final validation
                workers=args.workers,
                weights=weights,
            )
            output = Path(tmp) / f"{len(results)}.pt"
            metrics = train_clustering(config, args.data_dir, output, log=lambda _: None)
            model, thresholds, _ = load_clustering(output)
            clustered = []
            for event in validation:
                o = predict(model, event)
                c = condense(o[0], o[1], event.hits.energy, o[2], o[3], o[4], o[5], thresholds)
                clustered.append((event, c.hit_cluster, c.energy))
            summary = summarize_clustering(clustered)
            row = {
                "variant": name,
                "weights": asdict(weights),
                "steps": metrics["steps"],
                "minutes": metrics["train_minutes"],
                "thresholds": asdict(thresholds),
                "efficiency_above_20GeV": summary["efficiency_above_20GeV"],
                "fake_rate_above_10GeV": summary["fake_rate_above_10GeV"],
                "efficiency_5_20GeV": summary["efficiency_5_20GeV"],
                "oracle_assignment": oracle_assignment(model, validation),
            }
            print(json.dumps(row), flush=True)
            results.append(row)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()

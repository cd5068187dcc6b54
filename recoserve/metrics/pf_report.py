"""`recoserve evaluate mlpf`: MLPF vs the rule-based baseline vs truth on held-out events.

Events come from the MLPF sample's test seed (never used in training or validation). Both
algorithms read the same elements, made from the committed clustering network's clusters — the
served chain. An ablation repeats both on perfect (truth) clusters, to show how much of the
remaining error the clustering causes; MLPF is not retrained for it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from recoserve.baselines.pf import rule_based_pf
from recoserve.inprocess import EventRecoPipeline
from recoserve.metrics.pf import PFAccumulator
from recoserve.postprocess.elements import build_elements
from recoserve.sim.classes import pf_event
from recoserve.sim.simulator import Simulator
from recoserve.train.mlpf import TEST_SEED
from recoserve.train.pf_targets import pf_truth, truth_clusters

ALGORITHMS = ("mlpf", "baseline", "mlpf_truth_clusters", "baseline_truth_clusters")


def evaluate(
    n_events: int = 500, pipeline: EventRecoPipeline | None = None
) -> tuple[dict[str, Any], dict[str, PFAccumulator]]:
    pipeline = pipeline or EventRecoPipeline()
    simulator = Simulator()
    acc = {name: PFAccumulator() for name in ALGORITHMS}
    for i in range(n_events):
        event = pf_event(TEST_SEED, i, simulator)
        t = pf_truth(event)
        truth = {
            "class_id": t.class_id,
            "pt": t.pt.astype(np.float64),
            "eta": t.eta.astype(np.float64),
            "phi": t.phi.astype(np.float64),
            "energy": t.energy.astype(np.float64),
        }
        hits, tracks = event.hits.features(), event.tracks.features()
        _, elements = pipeline.elements(hits, tracks)
        acc["mlpf"].add(truth, pipeline.candidates_from_elements(elements))
        acc["baseline"].add(truth, rule_based_pf(elements))
        perfect = build_elements(hits, tracks, truth_clusters(event))
        acc["mlpf_truth_clusters"].add(truth, pipeline.candidates_from_elements(perfect))
        acc["baseline_truth_clusters"].add(truth, rule_based_pf(perfect))
    summary: dict[str, Any] = {name: a.summary() for name, a in acc.items()}
    summary["events"] = n_events
    summary["test_seed"] = TEST_SEED
    summary["mlpf_checkpoint"] = pipeline.info
    return summary, acc


def plot(acc: dict[str, PFAccumulator], path: Path) -> None:
    import matplotlib.pyplot as plt
    import mplhep

    from recoserve.plotting import save_figure

    plt.style.use(mplhep.style.CMS)
    fig, axes = plt.subplots(1, 3, figsize=(24, 7.5))
    bins = np.linspace(0.0, 2.0, 61)
    labels = {"mlpf": "MLPF", "baseline": "rule-based PF"}
    neutral = 2  # NEUTRAL_HADRON
    for name, label in labels.items():
        a = acc[name]
        axes[0].hist(a.energy_ratio[neutral], bins, histtype="step", lw=2, label=label)
        axes[1].hist(a.jet_ratio, bins, histtype="step", lw=2, label=label)
        delta = np.array(a.met_delta).reshape(-1)
        axes[2].hist(delta, np.linspace(-60, 60, 61), histtype="step", lw=2, label=label)
    axes[0].set_xlabel("neutral hadron $E_{reco}/E_{true}$")
    axes[1].set_xlabel("jet $p_T^{reco}/p_T^{true}$ (anti-$k_T$ R=0.4)")
    axes[2].set_xlabel(r"missing $p_T$: reco $-$ true, x and y (GeV)")
    for ax in axes:
        ax.set_ylabel("entries")
        ax.legend(fontsize=16)
    save_figure(fig, path)


def write_report(n_events: int, output_dir: Path) -> dict[str, Any]:
    summary, acc = evaluate(n_events)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "pf_metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot(acc, output_dir / "pf_performance.png")
    return summary

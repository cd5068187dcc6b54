"""Held-out evaluation of the clustering: the GravNet model and CLUE side by side, same events.

`recoserve evaluate clustering` simulates held-out events (a seed never used in training or
tuning; 20-100 particles each), runs both algorithms, computes the metrics of
``recoserve.metrics.showers`` and writes a JSON and plots. CLUE's 3D-association parameters
are tuned on the validation events with the same score as the network's thresholds, so that
the comparison is fair.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import mplhep
import numpy as np

from recoserve.baselines.clue import ClueParams, clue
from recoserve.events.model import Event
from recoserve.inprocess import ClusteringPipeline
from recoserve.metrics.showers import shower_table, summarize_clustering, summarize_tables
from recoserve.plotting import save_figure
from recoserve.sim.particles import GunConfig
from recoserve.sim.simulator import SimConfig, Simulator
from recoserve.train.clustering import TEST_SEED, VALIDATION_SEED, simulate_mixed


def held_out_events(n_events: int, seed: int = TEST_SEED) -> list[Event]:
    """Events of 20-100 particles (drawn per event) from the held-out seed."""
    counts = np.random.default_rng(seed).integers(20, 101, n_events)
    return [
        Simulator(SimConfig(gun=GunConfig(n_particles=int(n)))).event(seed, i)
        for i, n in enumerate(counts)
    ]


def _score(summary: dict[str, Any]) -> float:
    return float(summary["efficiency_above_20GeV"] - summary["fake_rate_above_10GeV"])


def tune_clue(events: list[Event]) -> tuple[ClueParams, list[dict[str, float]]]:
    best = (-np.inf, ClueParams())
    grid = []
    for dc_3d in (1.5, 2.5, 3.5, 5.0):
        for rho_c_3d in (0.3, 0.6, 1.2, 2.5):
            params = ClueParams(dc_3d=dc_3d, rho_c_3d=rho_c_3d)
            results = []
            for e in events:
                r = clue(e.hits, params)
                results.append((e, r.hit_cluster, r.cluster_energy))
            value = _score(summarize_clustering(results))
            grid.append({"dc_3d": dc_3d, "rho_c_3d": rho_c_3d, "score": value})
            if value > best[0]:
                best = (value, params)
    return best[1], grid


def evaluate(
    n_events: int, pipeline: ClusteringPipeline, output_dir: Path, log: Any = print
) -> dict[str, Any]:
    """Run both algorithms on held-out events; write metrics JSON and plots; return the dict."""
    validation = simulate_mixed(24, VALIDATION_SEED, (10, 20, 30, 40, 50, 60, 80, 100))
    clue_params, clue_grid = tune_clue(validation)
    log(f"CLUE tuned on validation: dc_3d={clue_params.dc_3d} rho_c_3d={clue_params.rho_c_3d}")
    events = held_out_events(n_events)
    gravnet, clue_results = [], []
    timing = {"gravnet_s": 0.0, "clue_s": 0.0}
    for event in events:
        t0 = time.perf_counter()
        clusters = pipeline.cluster(event.hits.features())
        t1 = time.perf_counter()
        baseline = clue(event.hits, clue_params)
        t2 = time.perf_counter()
        timing["gravnet_s"] += t1 - t0
        timing["clue_s"] += t2 - t1
        gravnet.append((event, clusters.hit_cluster, clusters.energy))
        clue_results.append((event, baseline.hit_cluster, baseline.cluster_energy))
    # Match once per event and algorithm; the summary and the plots share the tables.
    gravnet_tables = [shower_table(e, h, c) for e, h, c in gravnet]
    clue_tables = [shower_table(e, h, c) for e, h, c in clue_results]
    report = {
        "events": n_events,
        "seed": TEST_SEED,
        "particles_per_event": "20-100, uniform",
        "hits_per_event_mean": float(np.mean([len(e.hits) for e in events])),
        "gravnet": summarize_tables(gravnet_tables),
        "clue": summarize_tables(clue_tables),
        "thresholds": {"t_beta": pipeline.thresholds.t_beta, "t_d": pipeline.thresholds.t_d},
        "clue_params": clue_params.__dict__,
        "clue_tuning_grid": clue_grid,
        "seconds_per_event": {k: v / max(n_events, 1) for k, v in timing.items()},
    }
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "clustering_metrics.json").write_text(json.dumps(report, indent=2) + "\n")
    _plots(gravnet_tables, clue_tables, output_dir)
    return report


def _plots(
    gravnet: list[dict[str, np.ndarray]], clue_tables: list[dict[str, np.ndarray]], output_dir: Path
) -> None:
    mplhep.style.use("CMS")
    fig, axes = plt.subplots(1, 3, figsize=(27, 8))
    bins = np.array([2, 5, 10, 20, 35, 50, 75, 100, 150, 200])
    for name, tables in (("GravNet + OC", gravnet), ("CLUE", clue_tables)):
        energy = np.concatenate([t["true_energy"] for t in tables])
        cls = np.concatenate([t["class"] for t in tables])
        matched = np.concatenate([t["matched"] for t in tables]).astype(bool)
        pred = np.concatenate([t["pred_energy"] for t in tables])
        showers = cls != 2
        idx = np.digitize(energy, bins) - 1
        eff = [
            matched[showers & (idx == b)].mean() if (showers & (idx == b)).any() else np.nan
            for b in range(len(bins) - 1)
        ]
        centers = np.sqrt(bins[:-1] * bins[1:])
        axes[0].plot(centers, eff, "o-", label=name)
        sel = showers & matched & (energy > 20)
        axes[1].hist(
            pred[sel] / energy[sel],
            bins=np.linspace(0, 2, 81),
            histtype="step",
            lw=2,
            label=f"{name}: median {np.median(pred[sel] / energy[sel]):.3f}",
        )
        ce = np.concatenate([t["cluster_energy"] for t in tables])
        cm = np.concatenate([t["cluster_matched"] for t in tables]).astype(bool)
        cidx = np.digitize(ce, bins) - 1
        fake = [
            (~cm[cidx == b]).mean() if (cidx == b).any() else np.nan for b in range(len(bins) - 1)
        ]
        axes[2].plot(centers, fake, "o-", label=name)
    axes[0].set_xscale("log")
    axes[0].set_xlabel("true energy [GeV]")
    axes[0].set_ylabel("efficiency (IoU > 0.5)")
    axes[0].axvline(20, color="0.6", ls="--")
    axes[0].set_ylim(0, 1.05)
    axes[0].legend()
    axes[1].set_xlabel(r"$E_{cluster} / E_{true}$ (matched, $E_{true}$ > 20 GeV)")
    axes[1].set_ylabel("showers")
    axes[1].legend(fontsize=16)
    axes[2].set_xscale("log")
    axes[2].set_xlabel("cluster energy [GeV]")
    axes[2].set_ylabel("fake rate (no true match)")
    axes[2].axvline(10, color="0.6", ls="--")
    axes[2].set_ylim(0, 1.05)
    axes[2].legend()
    save_figure(fig, output_dir / "clustering_performance.png", dpi=70)

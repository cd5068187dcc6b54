"""Where a clustering loses: what its fake clusters are made of and what became of its missed
showers, per event class, on validation events with thresholds tuned on them (no test events:
these numbers steer design).

For each checkpoint and class, the condensation thresholds are tuned on the validation events
(the benchmark's ``tune_network``), then:

- each fake cluster (> 10 GeV, matched to no shower) is named by what holds most of its hit
  energy: ``background`` (pileup and noise hits), ``split`` (a shower that another cluster
  matches: the fake is a fragment of it), ``partial`` (a shower that no cluster matches: the
  fake holds a piece of it), or ``below truth`` (hits of a true object too soft to be one);
- each missed shower (> 20 GeV, matched to no cluster) is named by where most of its hit energy
  went: ``merged`` (into a cluster matched to another shower), ``split`` (over two or more
  clusters none of which reaches the matching threshold), ``absorbed`` (mostly into one
  cluster that matches nothing: merged with background), or ``unclustered`` (noise).

CLUE, tuned on the same validation events to the same score (``--clue``), is the reference row.

Run: python benchmarks/cluster_failures.py [--checkpoint PATH ...] [--clue] [--events 12]
Adds to docs/results/cluster_failures.json (one entry per checkpoint, and ``clue``; entries
scored with an earlier ``selection_score`` are dropped) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from recoserve.baselines.clue import ClueCalibration, ClueParams, associate
from recoserve.events.truth import TruthObjects
from recoserve.inprocess import ClusteringPipeline
from recoserve.metrics.clustering_report import (
    Clustering,
    PreparedEvent,
    _condense,
    _outputs,
    _score_of,
    prepare,
    tune_clue,
    tune_network,
)
from recoserve.metrics.matching import match_showers
from recoserve.metrics.showers import SCORE_VERSION, selection_score
from recoserve.nn.checkpoint import DEFAULT_CLUSTERING_CHECKPOINT
from recoserve.postprocess.condensation import CondensationThresholds
from recoserve.sim.classes import event_class

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "docs" / "results" / "cluster_failures.json"
FAKE_GEV, SHOWER_GEV = 10.0, 20.0


def _largest(values: np.ndarray, weights: np.ndarray) -> tuple[int, float]:
    """The value holding the largest share of the weights, and that share."""
    uniques, inverse = np.unique(values, return_inverse=True)
    sums = np.bincount(inverse, weights=weights)
    best = int(np.argmax(sums))
    return int(uniques[best]), float(sums[best] / max(sums.sum(), 1e-12))


def failures(truth: TruthObjects, hit_energy: np.ndarray, hit_cluster: np.ndarray,
             cluster_energy: np.ndarray) -> tuple[Counter[str], Counter[str]]:  # fmt: skip
    """(fake clusters by origin, missed showers by fate) of one event."""
    m = match_showers(hit_energy, truth.hit_object, hit_cluster, np.arange(len(truth)))
    matched_truth = set(np.flatnonzero(m.truth_match >= 0).tolist())
    matched_clusters = {int(m.pred_ids[p]) for p in m.truth_match[m.truth_match >= 0]}
    fakes: Counter[str] = Counter()
    for cluster in m.pred_ids[m.pred_match < 0]:
        if cluster_energy[cluster] <= FAKE_GEV:
            continue
        hits = hit_cluster == cluster
        owner, _ = _largest(truth.hit_object[hits], hit_energy[hits])
        if owner < 0:
            fakes["background"] += 1
        elif owner in matched_truth:
            fakes["split"] += 1
        elif truth.energy[owner] > 1.0:
            fakes["partial"] += 1
        else:
            fakes["below truth"] += 1
    misses: Counter[str] = Counter()
    for shower in np.flatnonzero((m.truth_match < 0) & (truth.energy > SHOWER_GEV)):
        hits = truth.hit_object == shower
        clusters, energies = hit_cluster[hits], hit_energy[hits]
        where, share = _largest(clusters, energies)
        if where < 0:
            misses["unclustered"] += 1
        elif where in matched_clusters:
            misses["merged"] += 1
        else:
            pieces = np.bincount(clusters[clusters >= 0], weights=energies[clusters >= 0])
            big = int((pieces > 0.2 * energies.sum()).sum())
            misses["split" if big >= 2 or share < 0.5 else "absorbed"] += 1
    return fakes, misses


def study(checkpoint: Path | None, classes: list[str], n_events: int) -> dict[str, Any]:
    """Per class: the working point tuned on validation events and what its failures are made
    of; the network's of ``checkpoint``, or CLUE's 3D step when it is None."""
    pipeline = ClusteringPipeline(checkpoint) if checkpoint is not None else None
    result: dict[str, Any] = {"score": SCORE_VERSION}
    for name in classes:
        cls = event_class(name)
        events = cls.events("validation", n_events, cls.simulator())
        prepared: list[PreparedEvent] = prepare(events, pipeline, cls.config().readout)
        clustering, tuned = _tuned_clustering(prepared, pipeline is None)
        summary = _score_of(prepared, clustering)
        fakes: Counter[str] = Counter()
        misses: Counter[str] = Counter()
        showers = clusters = 0
        for e in prepared:
            hit_cluster, energy = clustering(e)
            f, m = failures(e.truth, e.hit_energy, hit_cluster, energy)
            fakes += f
            misses += m
            showers += int((e.truth.energy > SHOWER_GEV).sum())
            clusters += int((energy > FAKE_GEV).sum())
        result[name] = {
            "tuned": tuned,
            "efficiency_above_20GeV": summary["efficiency_above_20GeV"],
            "efficiency_5_20GeV": summary["efficiency_5_20GeV"],
            "fake_rate_above_10GeV": summary["fake_rate_above_10GeV"],
            "fake_rate_above_1GeV": summary["fake_rate_above_1GeV"],
            "selection_score": selection_score(summary),
            "showers_over_20_gev": showers,
            "clusters_over_10_gev": clusters,
            "fakes": dict(fakes),
            "misses": dict(misses),
        }
        print(checkpoint or "clue", name, json.dumps(result[name]))
    return result


def _tuned_clustering(
    prepared: list[PreparedEvent], clue: bool
) -> tuple[Callable[[PreparedEvent], Clustering], dict[str, float]]:
    """The clustering at the working point tuned on ``prepared``, and that point."""
    if clue:
        clue_tuned = tune_clue(prepared)
        params = ClueParams(**clue_tuned["params"])
        calibration = ClueCalibration(**clue_tuned["energy_calibration"])

        def run_clue(e: PreparedEvent) -> Clustering:
            """CLUE's clusters with their calibrated energies, as the benchmark scores them."""
            r = associate(e.layer_clusters, params)
            k = len(r.cluster_energy)
            return r.hit_cluster, calibration.energies(e.hit_energy, e.hit_layer, r.hit_cluster, k)

        return run_clue, {"dc_3d": params.dc_3d, "rho_c_3d": params.rho_c_3d}
    tuned = tune_network(prepared)["thresholds"]
    thresholds = CondensationThresholds(**tuned)

    def run_network(e: PreparedEvent) -> Clustering:
        return _condense(_outputs(e), e.hit_energy, thresholds)

    return run_network, tuned


def markdown(results: dict[str, dict[str, Any]]) -> str:
    fake_kinds = ("background", "split", "partial", "below truth")
    miss_kinds = ("merged", "split", "absorbed", "unclustered")
    lines = [
        "| checkpoint | class | eff. > 20 GeV / fake > 10 GeV | clusters > 10 GeV | fakes: "
        + " / ".join(fake_kinds) + " | showers > 20 GeV | misses: " + " / ".join(miss_kinds)
        + " |",
        "|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for label, by_class in results.items():
        for name, r in by_class.items():
            if name == "score":
                continue
            fakes = " / ".join(str(r["fakes"].get(k, 0)) for k in fake_kinds)
            misses = " / ".join(str(r["misses"].get(k, 0)) for k in miss_kinds)
            working = f"{r['efficiency_above_20GeV']:.2f} / {r['fake_rate_above_10GeV']:.2f}"
            lines.append(
                f"| {label} | {name} | {working} | {r['clusters_over_10_gev']} | {fakes} | "
                f"{r['showers_over_20_gev']} | {misses} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, action="append")
    parser.add_argument("--clue", action="store_true", help="add CLUE, tuned the same way")
    parser.add_argument("--classes", default="gun,dense,jets,jets_pu140")
    parser.add_argument("--events", type=int, default=12)
    args = parser.parse_args()
    checkpoints = args.checkpoint or ([] if args.clue else [DEFAULT_CLUSTERING_CHECKPOINT])
    classes = args.classes.split(",")
    results = {
        str(c.relative_to(ROOT) if c.is_absolute() else c): study(c, classes, args.events)
        for c in checkpoints
    }
    if args.clue:
        results["clue"] = study(None, classes, args.events)
    # Results measured earlier with today's score are kept: one file for the comparison.
    stored = json.loads(OUTPUT.read_text()) if OUTPUT.exists() else {}
    earlier = {
        k: v for k, v in stored.items() if isinstance(v, dict) and v.get("score") == SCORE_VERSION
    }
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    merged = {**earlier, **results, "command": "python benchmarks/cluster_failures.py"}
    OUTPUT.write_text(json.dumps(merged, indent=1) + "\n")
    print(markdown(results))


if __name__ == "__main__":
    main()

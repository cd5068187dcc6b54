"""Clustering performance against truth: efficiency, fake rate, energy response and resolution.

Definitions (used for the network and for CLUE alike, on the same events):

- true showers: the objects of a truth definition (``recoserve.events.truth``; by default the
  resolvable one: unresolvable showers merged, pileup and sub-GeV objects as background),
  electromagnetic or hadronic (muons leave tracks, not showers; they still take part in the
  matching);
- matching: one-to-one, energy-weighted IoU >= 0.5 (``recoserve.metrics.matching``);
- efficiency: matched true showers / true showers, in bins of true energy (down to 1 GeV), of
  the distance to the nearest other shower at the calorimeter face, and of the local shower
  energy fraction (the shower's energy over that of all showers within Delta R < 0.5);
- pileup clusters: predicted clusters that match no true shower and whose hit energy is mostly
  (> 50 %) that of pileup particles. They are real showers of the event, not a clustering's
  mistake: telling pileup from the hard scatter is the particle flow's and timing's job. They
  are counted apart (``pileup_cluster_fraction_above_*``: pileup clusters / all clusters);
- fake rate: predicted clusters above 10 GeV (and above 1 GeV) that match no true shower /
  all such clusters, pileup clusters left out of both (a shower split in two leaves an
  unmatched piece: it counts as a fake);
- response: predicted cluster energy / true energy of matched showers > 20 GeV; resolution:
  half the central 68 % interval of the response over its median.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from recoserve.events.model import Event
from recoserve.events.truth import (
    EM,
    HADRON,
    MIP,
    RESOLVABLE,
    TruthDefinition,
    TruthObjects,
    truth_objects,
)
from recoserve.metrics.matching import match_showers

ENERGY_BINS = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 1000.0)
DISTANCE_BINS = (0.0, 2.0, 5.0, 10.0, 20.0, np.inf)  # cm at the face
LOCAL_FRACTION_BINS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0001)


def shower_table(
    event: Event,
    hit_cluster: np.ndarray,
    cluster_energy: np.ndarray,
    definition: TruthDefinition = RESOLVABLE,
) -> dict[str, np.ndarray]:
    """One row per true shower and one per predicted cluster, with their match flags."""
    return truth_table(
        truth_objects(event, definition),
        event.hits.energy.astype(np.float64),
        (hit_cluster, cluster_energy),
    )


def truth_table(
    truth: TruthObjects, hit_energy: np.ndarray, clustering: tuple[np.ndarray, np.ndarray]
) -> dict[str, np.ndarray]:
    """``shower_table`` for truth objects computed once (tuning loops reuse them)."""
    hit_cluster, cluster_energy = clustering
    m = match_showers(hit_energy, truth.hit_object, hit_cluster, truth_ids=np.arange(len(truth)))
    matched = m.truth_match >= 0
    pileup_share = _pileup_share(hit_energy, truth.hit_pileup, hit_cluster, m.pred_ids)
    pred_energy = np.full(len(truth), np.nan)
    pred_energy[matched] = cluster_energy[m.pred_ids[m.truth_match[matched]]]
    return {
        "true_energy": truth.energy,
        "class": truth.shower_class,
        "matched": matched,
        "iou": m.truth_iou,
        "pred_energy": pred_energy,
        "nearest_distance": truth.nearest_distance(),
        "local_fraction": truth.local_energy_fraction(),
        "cluster_energy": np.asarray(cluster_energy, dtype=np.float64)[m.pred_ids],
        "cluster_matched": m.pred_match >= 0,
        "cluster_pileup": (m.pred_match < 0) & (pileup_share > 0.5),
    }


def _pileup_share(
    hit_energy: np.ndarray, hit_pileup: np.ndarray, hit_cluster: np.ndarray, ids: np.ndarray
) -> np.ndarray:
    """Per cluster in ``ids``: the share of its hit energy that pileup particles deposited."""
    n = int(hit_cluster.max(initial=-1)) + 1
    inside = hit_cluster >= 0
    total = np.bincount(hit_cluster[inside], weights=hit_energy[inside], minlength=n)
    pileup = inside & hit_pileup
    from_pileup = np.bincount(hit_cluster[pileup], weights=hit_energy[pileup], minlength=n)
    return (from_pileup / np.maximum(total, 1e-12))[ids]


def summarize_clustering(
    results: list[tuple[Event, np.ndarray, np.ndarray]],
    definition: TruthDefinition = RESOLVABLE,
) -> dict[str, Any]:
    """Aggregate metrics over events; ``results`` holds (event, hit_cluster, cluster_energy)."""
    return summarize_tables([shower_table(e, h, c, definition) for e, h, c in results])


def _efficiency_bins(
    values: np.ndarray, matched: np.ndarray, bins: tuple[float, ...], name: str
) -> list[dict[str, float]]:
    rows = []
    for lo, hi in itertools.pairwise(bins):
        sel = (values >= lo) & (values < hi)
        rows.append(
            {
                f"{name}_min": lo,
                f"{name}_max": hi,
                "showers": int(sel.sum()),
                "efficiency": float(matched[sel].mean()) if sel.any() else float("nan"),
            }
        )
    return rows


def summarize_tables(tables: list[dict[str, np.ndarray]]) -> dict[str, Any]:
    """Aggregate metrics over the per-event ``shower_table`` results."""

    def cat(key: str) -> np.ndarray:
        return np.concatenate([t[key] for t in tables]) if tables else np.zeros(0)

    energy, cls, matched = cat("true_energy"), cat("class"), cat("matched").astype(bool)
    pred_energy = cat("pred_energy")
    cluster_energy, cluster_matched = cat("cluster_energy"), cat("cluster_matched").astype(bool)
    pileup = cat("cluster_pileup").astype(bool)
    showers = cls != MIP
    above = showers & (energy > 20.0)
    response = pred_energy[above & matched] / energy[above & matched]
    per_class = {}
    for k, name in ((EM, "em"), (HADRON, "hadron")):
        sel = above & (cls == k)
        ok = sel & matched
        r = pred_energy[ok] / energy[ok]
        per_class[name] = {
            "showers": int(sel.sum()),
            "efficiency": _mean(matched[sel]),
            "response_median": float(np.median(r)) if len(r) else float("nan"),
            "resolution": sigma_eff(r),
        }
    mid = showers & (energy >= 5.0) & (energy < 20.0)
    return {
        "events": len(tables),
        "showers_above_20GeV": int(above.sum()),
        "efficiency_above_20GeV": _mean(matched[above]),
        "efficiency_5_20GeV": _mean(matched[mid]),
        "clusters_above_10GeV": int((cluster_energy > 10.0).sum()),
        "fake_rate_above_10GeV": _mean(~cluster_matched[(cluster_energy > 10.0) & ~pileup]),
        "fake_rate_above_1GeV": _mean(~cluster_matched[(cluster_energy > 1.0) & ~pileup]),
        "pileup_cluster_fraction_above_10GeV": _mean(pileup[cluster_energy > 10.0]),
        "pileup_cluster_fraction_above_1GeV": _mean(pileup[cluster_energy > 1.0]),
        "response_median": float(np.median(response)) if len(response) else float("nan"),
        "resolution": sigma_eff(response),
        "efficiency_vs_energy": _efficiency_bins(
            energy[showers], matched[showers], ENERGY_BINS, "energy"
        ),
        "efficiency_vs_distance_above_20GeV": _efficiency_bins(
            cat("nearest_distance")[above], matched[above], DISTANCE_BINS, "distance"
        ),
        "efficiency_vs_local_fraction_above_20GeV": _efficiency_bins(
            cat("local_fraction")[above], matched[above], LOCAL_FRACTION_BINS, "fraction"
        ),
        "per_class": per_class,
    }


SCORE_VERSION = "f1-efficiency-purity/pileup-clusters-apart"
"""Names the ``selection_score`` formula. Stored tunings carry it and are redone when it changes:
a tuning is only as good as the score it maximised."""


def selection_score(summary: dict[str, Any]) -> float:
    """The one number every threshold (CLUE's, the network's) is tuned to on validation
    events: the harmonic mean (F1) of efficiency and purity.

    Efficiency is the mean over soft (1-5 GeV), medium (5-20) and hard (> 20) showers; purity is
    one minus the mean fake rate of clusters above 1 and above 10 GeV. Bins without showers (or
    without clusters) are left out, so the score also serves classes without soft showers.
    A harmonic mean, not a difference: with ``efficiency - fake rate`` a clustering that finds
    almost nothing (0 - 0) outscored every real working point of crowded events (0.6 - 0.6)."""
    bins = summary["efficiency_vs_energy"]
    soft = [b for b in bins if b["energy_min"] < 5.0 and b["showers"]]
    soft_eff = (
        sum(b["efficiency"] * b["showers"] for b in soft) / sum(b["showers"] for b in soft)
        if soft
        else float("nan")
    )
    efficiency = _mean_of_known(
        [soft_eff, summary["efficiency_5_20GeV"], summary["efficiency_above_20GeV"]]
    )
    purity = 1.0 - _mean_of_known(
        [summary["fake_rate_above_1GeV"], summary["fake_rate_above_10GeV"]]
    )
    if efficiency + purity <= 0.0:
        return 0.0
    return 2.0 * efficiency * purity / (efficiency + purity)


def _mean_of_known(values: list[float]) -> float:
    """Mean of the non-NaN values, 0 if there are none (nothing to gain or lose there)."""
    known = [v for v in values if not np.isnan(v)]
    return float(np.mean(known)) if known else 0.0


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


def sigma_eff(ratio: np.ndarray) -> float:
    """Half the central 68 % interval over the median."""
    if len(ratio) < 5:
        return float("nan")
    lo, hi = np.percentile(ratio, [16, 84])
    return float((hi - lo) / 2 / np.median(ratio))

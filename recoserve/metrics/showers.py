"""Clustering performance against truth: efficiency, fake rate, energy response and resolution.

Definitions (used for the GravNet model and for CLUE alike, on the same events):

- true showers: truth particles that own hits (dominant contributor), electromagnetic or
  hadronic (muons leave tracks, not showers; they still take part in the matching);
- matching: one-to-one, energy-weighted IoU >= 0.5 (``recoserve.metrics.matching``);
- efficiency: matched true showers / true showers, in bins of the particle's true energy;
- fake rate: predicted clusters with energy > 10 GeV that match no true particle / all such
  clusters (a shower split in two leaves an unmatched piece: it counts as a fake);
- response: predicted cluster energy / true particle energy of matched showers > 20 GeV.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from recoserve.events.model import Event
from recoserve.metrics.matching import match_showers
from recoserve.train.targets import shower_class

ENERGY_BINS = (0.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 1000.0)


def shower_table(
    event: Event, hit_cluster: np.ndarray, cluster_energy: np.ndarray
) -> dict[str, np.ndarray]:
    """One row per true particle owning hits, and the predicted clusters' match flags."""
    hits, parts = event.hits, event.particles
    m = match_showers(hits.energy.astype(np.float64), hits.truth_particle, hit_cluster)
    owners = m.truth_ids
    matched = m.truth_match >= 0
    pred_energy = np.full(len(owners), np.nan)
    pred_energy[matched] = cluster_energy[m.pred_ids[m.truth_match[matched]]]
    return {
        "true_energy": parts.energy[owners].astype(np.float64),
        "class": shower_class(parts.pdg[owners]),
        "matched": matched,
        "iou": m.truth_iou,
        "pred_energy": pred_energy,
        "cluster_energy": cluster_energy[m.pred_ids].astype(np.float64),
        "cluster_matched": m.pred_match >= 0,
    }


def summarize_clustering(
    results: list[tuple[Event, np.ndarray, np.ndarray]],
) -> dict[str, Any]:
    """Aggregate metrics over events; ``results`` holds (event, hit_cluster, cluster_energy)."""
    return summarize_tables([shower_table(e, h, c) for e, h, c in results])


def summarize_tables(tables: list[dict[str, np.ndarray]]) -> dict[str, Any]:
    """Aggregate metrics over the per-event ``shower_table`` results."""

    def cat(key: str) -> np.ndarray:
        return np.concatenate([t[key] for t in tables]) if tables else np.zeros(0)

    energy, cls, matched = cat("true_energy"), cat("class"), cat("matched").astype(bool)
    pred_energy = cat("pred_energy")
    cluster_energy, cluster_matched = cat("cluster_energy"), cat("cluster_matched").astype(bool)
    showers = cls != 2
    above = showers & (energy > 20.0)
    big_clusters = cluster_energy > 10.0
    response = pred_energy[above & matched] / energy[above & matched]
    efficiency_bins = []
    for lo, hi in itertools.pairwise(ENERGY_BINS):
        sel = showers & (energy >= lo) & (energy < hi)
        efficiency_bins.append(
            {
                "energy_min": lo,
                "energy_max": hi,
                "showers": int(sel.sum()),
                "efficiency": float(matched[sel].mean()) if sel.any() else float("nan"),
            }
        )
    per_class = {}
    for k, name in enumerate(("em", "hadron")):
        sel = above & (cls == k)
        ok = sel & matched
        r = pred_energy[ok] / energy[ok]
        per_class[name] = {
            "showers": int(sel.sum()),
            "efficiency": float(matched[sel].mean()) if sel.any() else float("nan"),
            "response_median": float(np.median(r)) if len(r) else float("nan"),
            "resolution": _sigma_eff(r),
        }
    return {
        "events": len(tables),
        "showers_above_20GeV": int(above.sum()),
        "efficiency_above_20GeV": float(matched[above].mean()) if above.any() else 0.0,
        "clusters_above_10GeV": int(big_clusters.sum()),
        "fake_rate_above_10GeV": float((~cluster_matched[big_clusters]).mean())
        if big_clusters.any()
        else 0.0,
        "response_median": float(np.median(response)) if len(response) else float("nan"),
        "resolution": _sigma_eff(response),
        "efficiency_vs_energy": efficiency_bins,
        "per_class": per_class,
    }


def _sigma_eff(ratio: np.ndarray) -> float:
    """Half the central 68 % interval over the median."""
    if len(ratio) < 5:
        return float("nan")
    lo, hi = np.percentile(ratio, [16, 84])
    return float((hi - lo) / 2 / np.median(ratio))

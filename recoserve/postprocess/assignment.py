"""Clusters from any per-hit assignment, so every clustering feeds the same PF elements.

The network's clusters come out of condensation with regressed energies, positions, times and
class probabilities. CLUE's showers and the truth ablation only assign hits; this module turns
such an assignment into the same ``Clusters`` record (energy = the caller's calibrated energy
or the summed hit energy, position = energy-weighted hit centroid projected to the calorimeter face,
time = energy-weighted mean of the timed hits, class probabilities uniform: no network said
anything), so ``recoserve.postprocess.elements`` builds their elements with the same code.
"""

from __future__ import annotations

import numpy as np

from recoserve.events.model import NO_TIME_NS
from recoserve.postprocess.condensation import Clusters
from recoserve.sim.geometry import Z_FRONT


def clusters_from_assignment(
    hits: np.ndarray, hit_cluster: np.ndarray, energy: np.ndarray | None = None
) -> Clusters:
    """``Clusters`` of the assignment ``hit_cluster`` (int [N], -1 = none) of ``hits``
    (float32 [N, 5]), with ``energy`` per original cluster id (calibrated; default: the sum
    of the hit energies). Cluster ids are renumbered densely in ascending order."""
    hits = np.asarray(hits, dtype=np.float64).reshape(-1, 5)
    assigned = np.asarray(hit_cluster, dtype=np.int64)
    ids, dense = np.unique(assigned[assigned >= 0], return_inverse=True)
    k = len(ids)
    hit_cluster = np.full(len(hits), -1, dtype=np.int64)
    hit_cluster[assigned >= 0] = dense
    member = hit_cluster >= 0
    idx = hit_cluster[member]
    e = hits[member, 3]
    raw = np.bincount(idx, weights=e, minlength=k)
    norm = np.maximum(raw, 1e-12)
    scale = Z_FRONT / np.maximum(np.abs(hits[member, 2]), 1.0)
    x = np.bincount(idx, weights=e * hits[member, 0] * scale, minlength=k) / norm
    y = np.bincount(idx, weights=e * hits[member, 1] * scale, minlength=k) / norm
    timed = hits[member, 4] != NO_TIME_NS
    t_weight = np.bincount(idx[timed], weights=e[timed], minlength=k)
    t_sum = np.bincount(idx[timed], weights=e[timed] * hits[member, 4][timed], minlength=k)
    time = np.where(t_weight > 0, t_sum / np.maximum(t_weight, 1e-12), NO_TIME_NS)
    seed = np.zeros(k, dtype=np.int64)
    order = np.lexsort((e, idx))  # per cluster, ascending energy: the last is the seed
    seed[idx[order]] = np.flatnonzero(member)[order]
    return Clusters(
        hit_cluster=hit_cluster,
        energy=(raw if energy is None else np.asarray(energy)[ids]).astype(np.float32),
        raw_energy=raw.astype(np.float32),
        x=x.astype(np.float32),
        y=y.astype(np.float32),
        time=time.astype(np.float32),
        beta=np.ones(k, dtype=np.float32),
        class_id=np.ones(k, dtype=np.int64),
        class_prob=np.full((k, 3), 1.0 / 3.0, dtype=np.float32),
        seed=seed,
        n_hits=np.bincount(idx, minlength=k).astype(np.int64),
    )

"""Object-condensation inference: from per-hit network outputs to clusters (numpy + scipy).

Seeds are hits with beta > t_beta, taken in descending beta (ties by hit index, so the result
is deterministic). Each seed that is not yet claimed opens a cluster and claims every unclaimed
hit within t_d of it in the clustering space; what no seed claims is noise (-1). A KD-tree makes
this O(N log N). Cluster properties are read at the seed (the condensation point): corrected
energy = energy factor x sum of the cluster's hit energies (x ``energy_scale``, a calibration
fit on validation events), position, time, class, beta.

Two optional steps against fragments, both in units of t_d and off at their defaults:

- ``seed_spacing`` > 1: a candidate within seed_spacing x t_d of an earlier seed opens no
  cluster. A network whose hits spread wider than t_d around their condensation point
  otherwise gives one shower several seeds (measured on validation jets: a third of the
  missed hard showers were split this way);
- ``attach`` > 0: hits no seed claimed join their nearest seed if it lies within
  attach x t_d (the rim of a shower between t_d and the suppressed seeds' reach).

This module is imported unchanged by the Triton Python backend (model_repository/condensation),
the in-process reconstruction path and the tests: one definition of the clustering.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np
from scipy.spatial import cKDTree

from recoserve.contract import CLUSTER_CLASSES

CLASS_NAMES = CLUSTER_CLASSES


FAR_AWAY = 1e30  # clustering coordinate of a hit whose network output is not finite


@dataclass(frozen=True)
class CondensationThresholds:
    """The inference parameters (module docstring); tuned per event class on validation
    events, served from the clustering checkpoint and the Triton model's parameters."""

    t_beta: float = 0.3
    t_d: float = 0.5
    seed_spacing: float = 1.0  # x t_d: no seed this close to an earlier one (1: only claimed)
    attach: float = 0.0  # x t_d: unclaimed hits join the nearest seed this close (0: none)
    # x every cluster's energy: fit on validation events so that the median response of
    # matched showers above 20 GeV is 1, as CLUE's energies are calibrated
    energy_scale: float = 1.0

    def as_params(self) -> dict[str, str]:
        """As Triton model-config parameters (strings)."""
        return {name: repr(float(value)) for name, value in asdict(self).items()}

    @classmethod
    def from_params(cls, params: dict[str, str]) -> CondensationThresholds:
        """From Triton model-config parameters; absent fields keep their defaults (a
        repository written before they existed condenses as it did)."""
        return cls(**{f.name: float(params[f.name]) for f in fields(cls) if f.name in params})


@dataclass
class Clusters:
    """Per-hit cluster index and per-cluster properties (K clusters, ordered by seed beta)."""

    hit_cluster: np.ndarray  # int64 [N], -1 = noise
    energy: np.ndarray  # float32 [K] corrected energy, GeV
    raw_energy: np.ndarray  # float32 [K] sum of hit energies, GeV
    x: np.ndarray  # float32 [K] entry point at the calorimeter face, cm
    y: np.ndarray
    time: np.ndarray  # float32 [K] ns
    beta: np.ndarray  # float32 [K] beta of the seed
    class_id: np.ndarray  # int64 [K]: 0 em, 1 hadron, 2 mip
    class_prob: np.ndarray  # float32 [K, 3]
    seed: np.ndarray  # int64 [K] index of the seed hit
    n_hits: np.ndarray  # int64 [K]

    def __len__(self) -> int:
        return len(self.energy)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def condense(
    beta: np.ndarray,
    ccoords: np.ndarray,
    hit_energy: np.ndarray,
    energy_factor: np.ndarray,
    position: np.ndarray,
    time: np.ndarray,
    class_logits: np.ndarray,
    thresholds: CondensationThresholds,
) -> Clusters:
    """Clusters from the outputs of one event (see module docstring)."""
    n = len(beta)
    beta = np.asarray(beta, dtype=np.float32)
    ccoords = np.asarray(ccoords)
    finite = np.isfinite(beta) & np.isfinite(ccoords).all(axis=1)
    if not finite.all():
        # Hits whose network outputs overflowed are noise, never seeds (one odd event in a
        # dynamic batch must not fail the others).
        beta = np.where(finite, beta, 0.0).astype(np.float32)
        ccoords = np.where(finite[:, None], ccoords, FAR_AWAY)
    hit_cluster = np.full(n, -1, dtype=np.int64)
    candidates = np.flatnonzero(beta > thresholds.t_beta)
    candidates = candidates[np.lexsort((candidates, -beta[candidates]))]
    seeds: list[int] = []
    if len(candidates):
        tree = cKDTree(np.asarray(ccoords, dtype=np.float64))
        spacing = thresholds.seed_spacing * thresholds.t_d
        # Within t_d of a seed is claimed already; only a wider spacing needs its own mask.
        suppressed = np.zeros(n, dtype=bool) if spacing > thresholds.t_d else None
        for seed in candidates:
            if hit_cluster[seed] >= 0 or (suppressed is not None and suppressed[seed]):
                continue
            near = np.asarray(tree.query_ball_point(ccoords[seed], thresholds.t_d), dtype=np.int64)
            free = near[hit_cluster[near] < 0]
            hit_cluster[free] = len(seeds)
            hit_cluster[seed] = len(seeds)
            seeds.append(int(seed))
            if suppressed is not None:
                suppressed[tree.query_ball_point(ccoords[seed], spacing)] = True
        if thresholds.attach > 0.0 and seeds:
            _attach_to_nearest_seed(hit_cluster, ccoords, seeds, thresholds.attach * thresholds.t_d)
    seed_idx = np.asarray(seeds, dtype=np.int64)
    k = len(seeds)
    clustered = hit_cluster >= 0
    raw = np.bincount(hit_cluster[clustered], weights=hit_energy[clustered], minlength=k)
    n_hits = np.bincount(hit_cluster[clustered], minlength=k)
    prob = _softmax(np.asarray(class_logits, dtype=np.float64)[seed_idx]) if k else np.zeros((0, 3))
    return Clusters(
        hit_cluster=hit_cluster,
        energy=(raw * energy_factor[seed_idx] * thresholds.energy_scale).astype(np.float32),
        raw_energy=raw.astype(np.float32),
        x=np.asarray(position)[seed_idx, 0].astype(np.float32),
        y=np.asarray(position)[seed_idx, 1].astype(np.float32),
        time=np.asarray(time)[seed_idx].astype(np.float32),
        beta=beta[seed_idx],
        class_id=prob.argmax(axis=1).astype(np.int64) if k else np.zeros(0, np.int64),
        class_prob=prob.astype(np.float32),
        seed=seed_idx,
        n_hits=n_hits.astype(np.int64),
    )


def _attach_to_nearest_seed(
    hit_cluster: np.ndarray, ccoords: np.ndarray, seeds: list[int], radius: float
) -> None:
    """Unclaimed hits join the cluster of their nearest seed within ``radius`` (in place)."""
    free = np.flatnonzero(hit_cluster < 0)
    if not len(free):
        return
    seed_tree = cKDTree(np.asarray(ccoords[seeds], dtype=np.float64))
    distance, nearest = seed_tree.query(
        np.asarray(ccoords[free], dtype=np.float64), distance_upper_bound=radius
    )
    near = np.isfinite(np.asarray(distance))
    hit_cluster[free[near]] = np.asarray(nearest)[near]

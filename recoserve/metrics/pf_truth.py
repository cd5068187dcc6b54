"""Truth for particle flow: which particles a perfect reconstruction finds, and where.

Truth particles (``pf_truth``): the final-state particles of the hard interaction (not decayed,
not neutrinos) that either left a track or reached the calorimeter with visible energy. Their
class: e+- -> electron, mu+- -> muon, other charged -> charged hadron when tracked; photons ->
photon; untracked electrons -> photon; other neutral or untracked charged hadrons -> neutral
hadron (what the detector can tell); untracked muons are not reconstructable (a MIP with no
momentum measurement) and neutral particles below ``MIN_NEUTRAL_ENERGY`` are dropped.

Element targets (``recoserve.train.pf_targets.element_targets``), the association MLPF learns:

- a tracked particle is the target of its track;
- every other truth particle goes to the cluster that holds most of its hit energy; a cluster
  that receives several (two photons of a pi0, overlapping neutral hadrons) gets one merged
  target: the class of its most energetic particle, the summed energy, and the direction of
  the energy-weighted sum of their momenta;
- every other element has the target class "none" (e.g. the cluster of a charged hadron,
  whose energy its track already accounts for).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recoserve.events.model import Event
from recoserve.postprocess.candidates import (
    CHARGED_HADRON,
    ELECTRON,
    MUON,
    NEUTRAL_HADRON,
    PHOTON,
)
from recoserve.postprocess.condensation import Clusters
from recoserve.sim.particles import C_CM_PER_NS, INVISIBLE_PDG, species_of

MIN_NEUTRAL_ENERGY = 1.0  # GeV


@dataclass
class PFTruth:
    """Reconstructable truth particles of one event (rows of ``event.particles``)."""

    particle: np.ndarray  # int64 [P] row in event.particles
    class_id: np.ndarray  # int64 [P]
    charge: np.ndarray  # int8 [P]
    pt: np.ndarray  # float32 [P]
    eta: np.ndarray
    phi: np.ndarray
    energy: np.ndarray
    track: np.ndarray  # int64 [P]: row in event.tracks, -1 if untracked

    def __len__(self) -> int:
        return len(self.particle)


def pf_truth(event: Event) -> PFTruth:
    parts = event.particles
    n = len(parts)
    final = np.ones(n, dtype=bool)
    parents = parts.parent[parts.parent >= 0]
    final[parents] = False
    track_of = np.full(n, -1, dtype=np.int64)
    track_of[event.tracks.truth_particle] = np.arange(len(event.tracks))
    abs_pdg = np.abs(parts.pdg)
    visible = parts.visible_energy > 0
    tracked = track_of >= 0
    keep = (
        final
        & (parts.interaction == 0)
        & ~np.isin(abs_pdg, list(INVISIBLE_PDG))
        & (tracked | visible)
    )
    cls = np.full(n, NEUTRAL_HADRON, dtype=np.int64)
    cls[tracked] = CHARGED_HADRON
    cls[tracked & (abs_pdg == 11)] = ELECTRON
    cls[tracked & (abs_pdg == 13)] = MUON
    cls[~tracked & ((abs_pdg == 22) | (abs_pdg == 11))] = PHOTON
    keep &= ~(~tracked & (abs_pdg == 13))
    keep &= tracked | (parts.energy >= MIN_NEUTRAL_ENERGY)
    rows = np.flatnonzero(keep)
    return PFTruth(
        particle=rows,
        class_id=cls[rows],
        charge=np.where(tracked[rows], parts.charge[rows], 0).astype(np.int8),
        pt=parts.pt[rows].astype(np.float32),
        eta=parts.eta[rows].astype(np.float32),
        phi=parts.phi[rows].astype(np.float32),
        energy=parts.energy[rows].astype(np.float32),
        track=track_of[rows],
    )


def main_cluster(event: Event, hit_cluster: np.ndarray, n_clusters: int) -> np.ndarray:
    """int64 [len(particles)]: the cluster holding most of each particle's hit energy (-1)."""
    n = len(event.particles)
    best = np.full(n, -1, dtype=np.int64)
    hits = event.hits
    ok = (hit_cluster >= 0) & (hits.truth_particle >= 0)
    if not ok.any() or n_clusters == 0:
        return best
    key = hits.truth_particle[ok].astype(np.int64) * n_clusters + hit_cluster[ok]
    share = np.bincount(
        key, weights=hits.energy[ok] * hits.truth_fraction[ok], minlength=n * n_clusters
    ).reshape(n, n_clusters)
    has = share.max(axis=1) > 0
    best[has] = share[has].argmax(axis=1)
    return best


def truth_clusters(event: Event) -> Clusters:
    """Perfect clustering for the ablation: one cluster per truth particle with hits, holding
    the hits it dominates, with the particle's true energy, impact point and shower type."""
    hits, parts = event.hits, event.particles
    owner = hits.truth_particle.astype(np.int64)
    ids = np.unique(owner[owner >= 0])
    k = len(ids)
    hit_cluster = np.full(len(hits), -1, dtype=np.int64)
    hit_cluster[owner >= 0] = np.searchsorted(ids, owner[owner >= 0])
    member = hit_cluster >= 0
    raw = np.bincount(hit_cluster[member], weights=hits.energy[member], minlength=k)
    n_hits = np.bincount(hit_cluster[member], minlength=k)
    seed = np.zeros(k, dtype=np.int64)
    order = np.lexsort((hits.energy[member], hit_cluster[member]))
    seed[hit_cluster[member][order]] = np.flatnonzero(member)[order]  # last = most energetic
    scale = 320.0 / np.maximum(np.abs(hits.z[member]), 1.0)
    fx = np.bincount(hit_cluster[member], weights=hits.energy[member] * hits.x[member] * scale,
                     minlength=k) / np.maximum(raw, 1e-9)  # fmt: skip
    fy = np.bincount(hit_cluster[member], weights=hits.energy[member] * hits.y[member] * scale,
                     minlength=k) / np.maximum(raw, 1e-9)  # fmt: skip
    x = np.where(np.isfinite(parts.calo_x[ids]), parts.calo_x[ids], fx)
    y = np.where(np.isfinite(parts.calo_y[ids]), parts.calo_y[ids], fy)
    shower = {"em": 0, "hadron": 1, "mip": 2}
    class_id = np.array(
        [shower.get(species_of(int(p)).shower, 1) for p in parts.pdg[ids]], np.int64
    )
    prob = np.eye(3, dtype=np.float32)[class_id] if k else np.zeros((0, 3), np.float32)
    return Clusters(
        hit_cluster=hit_cluster,
        energy=parts.energy[ids].astype(np.float32),
        raw_energy=raw.astype(np.float32),
        x=x.astype(np.float32),
        y=y.astype(np.float32),
        time=(np.sqrt(x**2 + y**2 + 320.0**2) / C_CM_PER_NS).astype(np.float32),
        beta=np.ones(k, dtype=np.float32),
        class_id=class_id,
        class_prob=prob,
        seed=seed,
        n_hits=n_hits.astype(np.int64),
    )

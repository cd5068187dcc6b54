"""What counts as a true shower: the one truth definition of training targets and evaluation.

A truth particle that owns hits is not always something a calorimeter can resolve. The two
photons of a boosted pi0 land in the same cells; a soft photon inside a hadron shower's core is
part of it for any algorithm; a pileup particle is background, not a shower to find. Scoring
algorithms against objects no detector can separate caps every algorithm at the same ceiling
and hides the differences between them, so training and every evaluation use one definition:

1. Hits of pileup particles (``interaction`` > 0) are background: object -1, like noise
   (``hit_pileup`` marks them: a cluster made of them is scored as a pileup cluster, not as a
   fake; ``recoserve.metrics.showers``).
2. Showers (not muons) in the same endcap whose energy-weighted hit centroids, projected to the
   calorimeter face (x * 320 cm / |z|), lie closer than ``merge_distance`` (2 cm, below the
   Molière radius) are one object; merging is transitive.
3. Objects whose summed true energy is below ``min_energy`` (1 GeV) are background too.

``TruthDefinition.legacy()`` is the earlier definition (every particle that owns hits is an
object, pileup included); the evaluation reports it as a second row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from recoserve.events.model import Event
from recoserve.sim.geometry import Z_FRONT

EM_PDG = (11, 22)
MIP_PDG = (13,)
EM, HADRON, MIP = 0, 1, 2


def shower_class(pdg: np.ndarray) -> np.ndarray:
    """0 = electromagnetic (e, gamma), 1 = hadronic, 2 = minimum ionising (mu)."""
    apdg = np.abs(pdg)
    return np.where(
        np.isin(apdg, EM_PDG), EM, np.where(np.isin(apdg, MIP_PDG), MIP, HADRON)
    ).astype(np.int64)


@dataclass(frozen=True)
class TruthDefinition:
    merge_distance: float = 2.0  # cm between face-projected hit centroids
    min_energy: float = 1.0  # GeV: lighter objects are background
    pileup_as_noise: bool = True

    @classmethod
    def legacy(cls) -> TruthDefinition:
        """Every particle owning hits is an object (the earlier definition)."""
        return cls(merge_distance=0.0, min_energy=0.0, pileup_as_noise=False)


RESOLVABLE = TruthDefinition()
LEGACY = TruthDefinition.legacy()


@dataclass
class TruthObjects:
    """The true showers of one event under a definition; per-hit assignment plus a table."""

    hit_object: np.ndarray  # int64 [N]: object of each hit, -1 = noise / background
    energy: np.ndarray  # float64 [K]: summed true energy of the member particles, GeV
    hit_energy: np.ndarray  # float64 [K]: measured energy of the object's hits
    shower_class: np.ndarray  # int64 [K]: EM if all members are EM, MIP for a muon, else hadron
    centroid: np.ndarray  # float64 [K, 2]: energy-weighted hit centroid projected to the face
    side: np.ndarray  # int64 [K]: 0 for +z, 1 for -z
    entry: np.ndarray  # float64 [K, 3]: energy-weighted entry point of the members at the face
    leader: np.ndarray  # int64 [K]: the member particle with the most hit energy
    n_particles: np.ndarray  # int64 [K]
    particle_object: np.ndarray  # int64 [P]: object of each particle, -1 = none
    # bool [N]: hit of a pileup particle that the definition makes background (all False when
    # pileup particles are objects): a cluster made of them is a pileup cluster, not a fake
    hit_pileup: np.ndarray

    def __len__(self) -> int:
        return len(self.energy)

    def nearest_distance(self) -> np.ndarray:
        """Distance (cm, at the face) from each object to the nearest other object of the same
        endcap; inf if alone."""
        return _nearest(self.centroid, self.side)

    def local_energy_fraction(self, delta_r: float = 0.5) -> np.ndarray:
        """Each object's energy over the summed energy of all objects within ``delta_r`` in
        (eta, phi) of it, itself included (the "local shower energy fraction")."""
        r = np.hypot(self.centroid[:, 0], self.centroid[:, 1])
        eta = np.arcsinh(Z_FRONT / np.maximum(r, 1e-6)) * np.where(self.side == 0, 1.0, -1.0)
        phi = np.arctan2(self.centroid[:, 1], self.centroid[:, 0])
        d_eta = eta[:, None] - eta[None, :]
        d_phi = np.angle(np.exp(1j * (phi[:, None] - phi[None, :])))
        near = np.hypot(d_eta, d_phi) < delta_r
        return self.energy / np.maximum(near.astype(float) @ self.energy, 1e-12)


def truth_objects(event: Event, definition: TruthDefinition = RESOLVABLE) -> TruthObjects:
    """The resolvable true showers of ``event`` (see the module docstring)."""
    hits, parts = event.hits, event.particles
    owner = hits.truth_particle.astype(np.int64)
    energy = hits.energy.astype(np.float64)
    owned = owner >= 0
    pileup = np.zeros(len(hits), dtype=bool)
    if definition.pileup_as_noise and len(parts):
        pileup = owned & (parts.interaction[np.maximum(owner, 0)] > 0)
        owned &= ~pileup
    candidates = np.unique(owner[owned])
    row = np.full(len(parts), -1, dtype=np.int64)
    row[candidates] = np.arange(len(candidates))
    hit_row = np.full(len(hits), -1, dtype=np.int64)
    hit_row[owned] = row[owner[owned]]
    sel = hit_row >= 0
    face = Z_FRONT / np.maximum(np.abs(hits.z[sel]).astype(np.float64), 1.0)
    w = np.bincount(hit_row[sel], weights=energy[sel], minlength=len(candidates))
    cx = np.bincount(hit_row[sel], weights=energy[sel] * hits.x[sel] * face, minlength=len(w))
    cy = np.bincount(hit_row[sel], weights=energy[sel] * hits.y[sel] * face, minlength=len(w))
    centroid = np.column_stack([cx, cy]) / np.maximum(w, 1e-12)[:, None]
    negative = np.bincount(hit_row[sel], weights=energy[sel] * (hits.z[sel] < 0), minlength=len(w))
    side = (negative > 0.5 * w).astype(np.int64)
    cls = shower_class(parts.pdg[candidates]) if len(candidates) else np.zeros(0, np.int64)

    group = _merge(centroid, side, cls != MIP, definition.merge_distance)
    n_groups = int(group.max(initial=-1)) + 1
    particle_energy = parts.energy[candidates].astype(np.float64)
    group_energy = np.bincount(group, weights=particle_energy, minlength=n_groups)
    keep = group_energy >= definition.min_energy
    new_id = np.where(keep, np.cumsum(keep) - 1, -1)
    member_object = new_id[group]
    k = int(keep.sum())

    hit_object = np.full(len(hits), -1, dtype=np.int64)
    hit_object[sel] = member_object[hit_row[sel]]
    valid = member_object >= 0
    obj = member_object[valid]
    ew = w[valid]
    total_w = np.maximum(np.bincount(obj, weights=ew, minlength=k), 1e-12)

    def weighted(values: np.ndarray) -> np.ndarray:
        return np.bincount(obj, weights=ew * values, minlength=k) / total_w

    entry_rows = candidates[valid]
    entry = np.column_stack(
        [
            weighted(np.nan_to_num(parts.calo_x[entry_rows].astype(np.float64))),
            weighted(np.nan_to_num(parts.calo_y[entry_rows].astype(np.float64))),
            weighted(np.nan_to_num(parts.calo_z[entry_rows].astype(np.float64))),
        ]
    )
    # The leader is the member with the most hit energy; class: all EM -> EM, muon alone -> MIP.
    leader = np.full(k, -1, dtype=np.int64)
    order = np.lexsort((-ew, obj))
    first = order[np.diff(obj[order], prepend=-1) != 0]
    leader[obj[first]] = entry_rows[first]
    member_cls = cls[valid]
    n_members = np.bincount(obj, minlength=k)
    all_em = np.bincount(obj, weights=(member_cls == EM).astype(float), minlength=k) == n_members
    is_mip = (n_members == 1) & (np.bincount(obj, weights=(member_cls == MIP), minlength=k) == 1)
    object_class = np.where(all_em, EM, np.where(is_mip, MIP, HADRON)).astype(np.int64)
    particle_object = np.full(len(parts), -1, dtype=np.int64)
    particle_object[candidates] = member_object
    return TruthObjects(
        hit_object=hit_object,
        energy=np.bincount(obj, weights=particle_energy[valid], minlength=k),
        hit_energy=np.bincount(
            hit_object[hit_object >= 0], weights=energy[hit_object >= 0], minlength=k
        ),
        shower_class=object_class,
        centroid=np.column_stack([weighted(centroid[valid, 0]), weighted(centroid[valid, 1])]),
        side=np.bincount(obj, weights=side[valid], minlength=k).astype(np.int64)
        // np.maximum(n_members, 1),
        entry=entry,
        leader=leader,
        n_particles=n_members,
        particle_object=particle_object,
        hit_pileup=pileup,
    )


def _merge(
    centroid: np.ndarray, side: np.ndarray, mergeable: np.ndarray, radius: float
) -> np.ndarray:
    """Group index per candidate: mergeable candidates of one endcap closer than ``radius``
    are joined (transitively); the others stay alone."""
    n = len(centroid)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if radius <= 0 or mergeable.sum() < 2:
        return np.arange(n, dtype=np.int64)
    idx = np.flatnonzero(mergeable)
    coords = np.column_stack([centroid[idx], side[idx] * 1.0e5])
    pairs = cKDTree(coords).query_pairs(radius, output_type="ndarray")
    graph = coo_matrix(
        (np.ones(len(pairs)), (idx[pairs[:, 0]], idx[pairs[:, 1]])), shape=(n, n)
    ) if len(pairs) else coo_matrix((n, n))  # fmt: skip
    _, labels = connected_components(graph, directed=False)
    _, group = np.unique(labels, return_inverse=True)
    return group.astype(np.int64)


def _nearest(centroid: np.ndarray, side: np.ndarray) -> np.ndarray:
    out = np.full(len(centroid), np.inf)
    for s in (0, 1):
        idx = np.flatnonzero(side == s)
        if len(idx) < 2:
            continue
        d, _ = cKDTree(centroid[idx]).query(centroid[idx], k=2)
        out[idx] = np.asarray(d)[:, 1]
    return out

"""Rule-based particle flow as CMS builds it: the classical algorithm MLPF is compared with.

It reads the same elements as MLPF (``recoserve.postprocess.elements``), whichever clustering
made them (the network, CLUE, or a truth ablation), and never the network's class
probabilities: a cluster is identified by its shape alone.

1. **Cluster identification** from shape: *MIP-like* (at least ``mip_min_hits`` hits, narrower
   than ``mip_max_width``, little energy per hit, deep mean depth: a penetrating track);
   *electromagnetic* (at least ``em_min_fraction`` of its energy in CE-E, narrower than
   ``em_max_width``, shallower than ``em_max_depth``); *hadronic* otherwise.
2. **Calibration**: a cluster's energy is multiplied by a factor that depends on its type (EM or
   hadronic) and energy, piecewise linear in log E (``PFCalibration``, fit on validation
   events by ``fit_calibration``; identity by default).
3. **Links and blocks**: a track links to *every* cluster of its endcap whose centre lies within
   ``link_distance`` + ``link_width_factor`` x cluster width of the track's impact point; the
   connected groups of tracks and clusters are blocks, each resolved alone.
4. **In a block**: a track linked to a MIP-like cluster is a muon (the cluster is used), and so
   is a track above ``muon_min_p`` whose linked calorimeter energy is compatible with a MIP
   (below ``muon_max_calo_energy`` and ``muon_max_calo_fraction`` of p: a charged hadron would
   shower; the simulated detector has no muon system, so calorimeter compatibility is what
   identifies muons, as for CMS's calorimeter-compatible muons); a track linked to exactly one
   EM cluster, itself linked to no other track, with 0.7 < E/p < 1.4, is an electron (the
   cluster is used); every other track is a charged
   hadron (energy from p with the pion mass). **Charged-energy subtraction**: the calibrated
   energy of the block's remaining clusters minus the charged hadrons' momenta; an excess above
   ``excess_sigmas`` x ``hadron_stochastic`` x sqrt(sum p) (and ``min_neutral_energy``) is
   neutral: EM clusters' energy goes to photons first (largest first, while it fits); what is
   left, if still that significant, is one neutral hadron at the energy-weighted position of
   the block's hadronic clusters.
   A block without tracks gives a photon per EM cluster and a neutral hadron per hadronic
   cluster above ``min_neutral_energy``; MIP-like clusters without a track are dropped.

Candidates come out in the same structured array as the MLPF decoding (``CANDIDATE_DTYPE``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from recoserve.postprocess.candidates import (
    CANDIDATE_DTYPE,
    CHARGED_HADRON,
    ELECTRON,
    MUON,
    NEUTRAL_HADRON,
    PHOTON,
    pdg_of,
)
from recoserve.postprocess.elements import CLUSTER, COLUMN, TRACK

PION_MASS = 0.13957
EM_CLUSTER, HADRONIC_CLUSTER, MIP_CLUSTER = 0, 1, 2


@dataclass(frozen=True)
class PFCalibration:
    """Energy factors vs log10(cluster energy), per cluster type; identity by default."""

    log_energy: tuple[float, ...] = (0.0, 3.0)
    em_factor: tuple[float, ...] = (1.0, 1.0)
    hadron_factor: tuple[float, ...] = (1.0, 1.0)

    def apply(self, energy: np.ndarray, kind: np.ndarray) -> np.ndarray:
        x = np.log10(np.maximum(energy, 1e-3))
        em = np.interp(x, self.log_energy, self.em_factor)
        had = np.interp(x, self.log_energy, self.hadron_factor)
        return np.asarray(energy * np.where(kind == EM_CLUSTER, em, had))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PFParams:
    link_distance: float = 4.0  # cm at the calorimeter face
    link_width_factor: float = 2.0
    excess_sigmas: float = 1.0
    hadron_stochastic: float = 1.0  # GeV^1/2: sigma(E) = a sqrt(E) of the hadron calorimetry
    min_neutral_energy: float = 1.0  # GeV
    em_min_fraction: float = 0.9
    # Shape cuts from the validation distributions of single-particle clusters (jets class):
    # photons have 90 % of their width below 5.3 cm and depth below 18 cm, hadrons 90 % above
    # 6 cm and 32 cm; muons are narrower than 1.1 cm and deeper than 100 cm.
    em_max_width: float = 5.5  # cm
    em_max_depth: float = 22.0  # cm behind the face
    mip_min_hits: int = 12
    mip_max_width: float = 2.0  # cm
    mip_max_energy_per_hit: float = 0.15  # GeV
    mip_min_depth: float = 40.0  # cm
    # A track whose linked calorimeter energy is MIP-compatible is a muon (no muon system here).
    muon_min_p: float = 5.0  # GeV
    muon_max_calo_energy: float = 3.0  # GeV
    muon_max_calo_fraction: float = 0.1  # of the track momentum
    calibration: PFCalibration = field(default_factory=PFCalibration)


def cluster_kind(elements: np.ndarray, params: PFParams) -> np.ndarray:
    """int64 [E]: EM_CLUSTER, HADRONIC_CLUSTER or MIP_CLUSTER per cluster row (-1 for tracks)."""
    col = COLUMN
    is_cluster = elements[:, col["type"]] == CLUSTER
    size = np.maximum(elements[:, col["size"]], 1.0)
    width, depth = elements[:, col["width"]], elements[:, col["depth"]]
    mip = (
        (size >= params.mip_min_hits)
        & (width < params.mip_max_width)
        & (elements[:, col["raw_energy"]] / size < params.mip_max_energy_per_hit)
        & (depth > params.mip_min_depth)
    )
    em = (
        (elements[:, col["em_fraction"]] >= params.em_min_fraction)
        & (width < params.em_max_width)
        & (depth < params.em_max_depth)
    )
    kind = np.where(mip, MIP_CLUSTER, np.where(em, EM_CLUSTER, HADRONIC_CLUSTER))
    return np.where(is_cluster, kind, -1).astype(np.int64)


def link_matrix(
    elements: np.ndarray, params: PFParams
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(track rows, cluster rows, bool [T, C] links): every compatible track-cluster pair."""
    kind = elements[:, COLUMN["type"]]
    tracks = np.flatnonzero(kind == TRACK)
    clusters = np.flatnonzero(kind == CLUSTER)
    if not len(tracks) or not len(clusters):
        return tracks, clusters, np.zeros((len(tracks), len(clusters)), dtype=bool)
    xy = elements[:, [COLUMN["x"], COLUMN["y"]]].astype(np.float64)
    distance = np.linalg.norm(xy[tracks, None, :] - xy[None, clusters, :], axis=2)
    same_side = np.sign(elements[tracks, None, COLUMN["z"]]) == np.sign(
        elements[None, clusters, COLUMN["z"]]
    )
    reach = params.link_distance + params.link_width_factor * elements[clusters, COLUMN["width"]]
    return tracks, clusters, same_side & (distance <= reach[None, :])


def blocks(elements: np.ndarray, params: PFParams) -> list[np.ndarray]:
    """Rows of each block: the connected groups of linked tracks and clusters."""
    tracks, clusters, links = link_matrix(elements, params)
    n = len(elements)
    t, c = np.nonzero(links)
    graph = coo_matrix((np.ones(len(t)), (tracks[t], clusters[c])), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    order = np.argsort(label, kind="stable")
    cuts = np.flatnonzero(np.diff(label[order])) + 1
    return np.split(order, cuts)


Row = tuple[int, int, int, float, float, float, float]  # element, class, charge, pt, eta, phi, E


def _candidates(rows: list[Row]) -> np.ndarray:
    out = np.zeros(len(rows), dtype=CANDIDATE_DTYPE)
    if rows:
        element, class_id, charge, pt, eta, phi, energy = map(np.array, zip(*rows, strict=True))
        out["element"] = element
        out["class_id"] = class_id
        out["charge"] = charge
        out["pdg"] = pdg_of(class_id, charge)
        out["pt"], out["eta"], out["phi"], out["energy"] = pt, eta, phi, energy
        out["probability"] = 1.0
    return np.sort(out, order="element")


def rule_based_pf(elements: np.ndarray, params: PFParams | None = None) -> np.ndarray:
    """Candidates (``CANDIDATE_DTYPE``) of one event from its elements (module docstring)."""
    params = params or PFParams()
    elements = np.asarray(elements, dtype=np.float64)
    col = COLUMN
    type_ = elements[:, col["type"]]
    kind = cluster_kind(elements, params)
    energy = np.where(
        type_ == CLUSTER, params.calibration.apply(elements[:, col["energy"]], kind), 0.0
    )
    tracks, clusters, links = link_matrix(elements, params)
    linked = np.zeros((len(elements), len(elements)), dtype=bool)
    t_idx, c_idx = np.nonzero(links)
    linked[tracks[t_idx], clusters[c_idx]] = True
    linked[clusters[c_idx], tracks[t_idx]] = True
    rows: list[Row] = []

    def direction(i: int) -> tuple[float, float]:
        return float(elements[i, col["eta"]]), float(
            np.arctan2(elements[i, col["sin_phi"]], elements[i, col["cos_phi"]])
        )

    def neutral(row: int, cls: int, e: float, eta: float, phi: float) -> None:
        rows.append((row, cls, 0, e / np.cosh(eta), eta, phi, e))

    for block in blocks(elements, params):
        block_tracks = block[type_[block] == TRACK]
        block_clusters = block[type_[block] == CLUSTER]
        used = set()
        charged_p = 0.0
        for t in block_tracks:
            p = float(elements[t, col["energy"]])
            eta, phi = direction(int(t))
            links_t = [c for c in block_clusters if linked[t, c] and c not in used]
            mip = [c for c in links_t if kind[c] == MIP_CLUSTER]
            em = [c for c in links_t if kind[c] == EM_CLUSTER]
            linked_energy = float(energy[links_t].sum()) if links_t else 0.0
            cls = CHARGED_HADRON
            if mip:
                cls = MUON
                used.add(mip[0])
            elif p > params.muon_min_p and linked_energy < min(
                params.muon_max_calo_energy, params.muon_max_calo_fraction * p
            ):  # calorimeter-compatible with a MIP: a charged hadron would shower
                cls = MUON
            elif (
                len(em) == 1
                and linked[em[0], block_tracks].sum() == 1
                and 0.7 < energy[em[0]] / max(p, 1e-6) < 1.4
            ):
                cls = ELECTRON
                used.add(em[0])
            if cls == CHARGED_HADRON:
                charged_p += p
            e = p if cls == ELECTRON else float(np.hypot(p, PION_MASS))
            charge = int(np.rint(elements[t, col["charge"]]))
            rows.append((int(t), cls, charge, float(elements[t, col["pt"]]), eta, phi, e))
        rest = [int(c) for c in block_clusters if c not in used and kind[c] != MIP_CLUSTER]
        if not len(block_tracks):
            for c in rest:
                if energy[c] >= params.min_neutral_energy:
                    cls = PHOTON if kind[c] == EM_CLUSTER else NEUTRAL_HADRON
                    neutral(c, cls, float(energy[c]), *direction(c))
            continue
        excess = float(energy[rest].sum()) - charged_p if rest else 0.0
        sigma = params.hadron_stochastic * np.sqrt(max(charged_p, 0.0))
        significant = max(params.excess_sigmas * sigma, params.min_neutral_energy)
        if excess < significant:
            continue
        for c in sorted((c for c in rest if kind[c] == EM_CLUSTER), key=lambda c: -energy[c]):
            if energy[c] <= excess and energy[c] >= params.min_neutral_energy:
                neutral(c, PHOTON, float(energy[c]), *direction(c))
                excess -= float(energy[c])
        hadronic = [c for c in rest if kind[c] == HADRONIC_CLUSTER]
        if excess >= significant and hadronic:
            w = energy[hadronic]
            lead = hadronic[int(np.argmax(w))]
            eta = float(np.average(elements[hadronic, col["eta"]], weights=w))
            phi = float(
                np.arctan2(
                    np.average(elements[hadronic, col["sin_phi"]], weights=w),
                    np.average(elements[hadronic, col["cos_phi"]], weights=w),
                )
            )
            neutral(lead, NEUTRAL_HADRON, excess, eta, phi)
    return _candidates(rows)

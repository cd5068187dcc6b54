"""CLUE: the classical HGCal clustering (Rovere et al., arXiv:2001.09761), layer by layer in 2D
as in CMSSW's HGCalCLUEAlgo, followed by a CLUE3D-like association of the layer clusters.

The ``cluestering`` package cannot be installed here (its build downloads alpaka from GitHub),
so this is our own implementation of the published algorithm, vectorised with numpy and
scipy KD-trees (O(N log N)):

1. Hits below ``ecut`` x their noise are ignored.
2. Density: rho_i = sum over hits j of the same layer with d_ij < dc of chi_ij E_j, chi = 1 for
   the hit itself and 0.5 for the others (CMSSW).
3. Nearest higher: the closest hit of higher density (ties broken by index) within
   ``outlier_delta_factor`` x dc; delta_i its distance (infinite if none).
4. Seeds: rho >= kappa x noise and delta > dc. Outliers: rho < kappa x noise and delta >
   outlier_delta_factor x dc. Every other hit follows its nearest higher, and clusters grow from
   the seeds down the nearest-higher tree.

dc is 1.3 cm for silicon (CE-E and CE-H) and 5.0 cm for scintillator tiles; kappa 9, ecut 3,
outlier_delta_factor 2 (CMSSW defaults). The 3D step runs the same density / nearest-higher /
seed logic on the layer clusters, with distances measured between positions projected to the
calorimeter face (x * 320 / |z|) and neighbours searched within +-``sibling_layers`` layers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from recoserve.events.model import Hits
from recoserve.postprocess.assignment import clusters_from_assignment
from recoserve.postprocess.condensation import Clusters
from recoserve.sim.digitize import ReadoutConfig
from recoserve.sim.geometry import GEOMETRY, N_EE, TILE, Z_FRONT, decode_cell_id


@dataclass(frozen=True)
class ClueParams:
    dc_silicon: float = 1.3  # cm
    dc_scintillator: float = 5.0  # cm
    kappa: float = 9.0
    ecut: float = 3.0
    outlier_delta_factor: float = 2.0
    # 3D association of layer clusters (CLUE3D-like)
    dc_3d: float = 2.5  # cm, at the calorimeter face
    rho_c_3d: float = 0.5  # GeV
    sibling_layers: int = 3


@dataclass
class ClueResult:
    layer_cluster: np.ndarray  # int64 [N] 2D cluster per hit, -1 = outlier / below ecut
    hit_cluster: np.ndarray  # int64 [N] 3D cluster (shower) per hit, -1 = none
    cluster_energy: np.ndarray  # float64 [K] sum of hit energies (EM scale, uncalibrated)


def hit_noise(hits: Hits, readout: ReadoutConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(noise sigma in GeV, is-scintillator) of each hit, from its cell id."""
    readout = readout or ReadoutConfig()
    _, layer, cell_type, _, _ = decode_cell_id(hits.cell_id)
    sigma = np.asarray(readout.noise_mip)[cell_type] * GEOMETRY.layers.mip[layer]
    return sigma, cell_type == TILE


def _clue_core(
    points: np.ndarray,
    group: np.ndarray,
    energy: np.ndarray,
    dc: np.ndarray,
    rho_c: np.ndarray,
    outlier_factor: float,
    search: float,
    layer_window: np.ndarray | None = None,
) -> np.ndarray:
    """Density, nearest-higher, seeds and followers for points in 2D; points interact only
    within the same ``group`` (or, with ``layer_window``, with groups at most that far apart).
    Returns the cluster index of each point (-1 = outlier)."""
    n = len(energy)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if layer_window is None:
        coords = np.column_stack([points, group * 1.0e5])
        radius = search
    else:
        # Scale the layer axis so that the allowed window fits in the same search sphere.
        span = max(int(layer_window.max()), 1)
        coords = np.column_stack([points, group * (search / span)])
        radius = search * np.sqrt(2.0)
    tree = cKDTree(coords)
    pairs = tree.query_pairs(radius, output_type="ndarray")
    i = np.concatenate([pairs[:, 0], pairs[:, 1]])
    j = np.concatenate([pairs[:, 1], pairs[:, 0]])
    d = np.hypot(points[i, 0] - points[j, 0], points[i, 1] - points[j, 1])
    if layer_window is not None:
        near = np.abs(group[i] - group[j]) <= layer_window[i]
        i, j, d = i[near], j[near], d[near]
    close = d < dc[i]
    rho = energy + 0.5 * np.bincount(i[close], weights=energy[j[close]], minlength=n)
    # Nearest higher within outlier_factor * dc.
    higher = ((rho[j] > rho[i]) | ((rho[j] == rho[i]) & (j > i))) & (d < outlier_factor * dc[i])
    hi, hj, hd = i[higher], j[higher], d[higher]
    order = np.lexsort((hj, hd, hi))
    hi, hj, hd = hi[order], hj[order], hd[order]
    first = np.diff(hi, prepend=-1) != 0
    nearest_higher = np.full(n, -1, dtype=np.int64)
    delta = np.full(n, np.inf)
    nearest_higher[hi[first]] = hj[first]
    delta[hi[first]] = hd[first]
    seed = (rho >= rho_c) & (delta > dc)
    outlier = (rho < rho_c) & (delta > outlier_factor * dc)
    parent = np.where(seed, np.arange(n), np.where(outlier, -1, nearest_higher))
    # Followers inherit the cluster of their nearest higher: pointer jumping to the root.
    for _ in range(64):
        valid = parent >= 0
        nxt = parent.copy()
        nxt[valid] = parent[parent[valid]]
        if np.array_equal(nxt, parent):
            break
        parent = nxt
    root_is_seed = np.zeros(n, dtype=bool)
    has_root = parent >= 0
    root_is_seed[has_root] = seed[parent[has_root]]
    seeds = np.flatnonzero(seed)
    cluster_of_seed = np.full(n, -1, dtype=np.int64)
    cluster_of_seed[seeds] = np.arange(len(seeds))
    return np.where(root_is_seed, cluster_of_seed[np.maximum(parent, 0)], -1)


@dataclass
class LayerClusters:
    """The 2D step's result: per-hit layer cluster and each layer cluster's energy, position
    projected to the calorimeter face and (side, layer) key. The 3D association depends only
    on this, so tuning its parameters reuses one 2D pass per event."""

    hit_layer_cluster: np.ndarray  # int64 [N], -1 = outlier / below ecut
    hit_energy: np.ndarray  # float64 [N]
    energy: np.ndarray  # float64 [K2]
    projected: np.ndarray  # float64 [K2, 2], cm at the face
    key: np.ndarray  # int64 [K2]: side * 100 + layer


def layer_clusters(
    hits: Hits, params: ClueParams | None = None, readout: ReadoutConfig | None = None
) -> LayerClusters:
    """2D CLUE in every layer (``readout`` gives the noise the thresholds are counted in)."""
    p = params or ClueParams()
    n = len(hits)
    sigma, scint = hit_noise(hits, readout)
    energy = hits.energy.astype(np.float64)
    use = energy >= p.ecut * sigma
    idx = np.flatnonzero(use)
    side = (hits.z[idx] < 0).astype(np.int64)
    layer_key = side * 100 + hits.layer[idx].astype(np.int64)
    dc = np.where(scint[idx], p.dc_scintillator, p.dc_silicon)
    xy = np.column_stack([hits.x[idx], hits.y[idx]]).astype(np.float64)
    lc_local = _clue_core(
        xy,
        layer_key,
        energy[idx],
        dc,
        p.kappa * sigma[idx],
        p.outlier_delta_factor,
        search=p.outlier_delta_factor * p.dc_scintillator,
    )
    layer_cluster = np.full(n, -1, dtype=np.int64)
    layer_cluster[idx] = lc_local
    ok = idx[lc_local >= 0]
    lc = layer_cluster[ok]
    k2 = int(lc.max(initial=-1)) + 1
    e_lc = np.bincount(lc, weights=energy[ok], minlength=k2)
    norm = np.maximum(e_lc, 1e-12)
    x_lc = np.bincount(lc, weights=energy[ok] * hits.x[ok], minlength=k2) / norm
    y_lc = np.bincount(lc, weights=energy[ok] * hits.y[ok], minlength=k2) / norm
    z_lc = np.bincount(lc, weights=energy[ok] * np.abs(hits.z[ok]), minlength=k2) / norm
    key_lc = np.zeros(k2, dtype=np.int64)
    key_lc[lc] = (hits.z[ok] < 0).astype(np.int64) * 100 + hits.layer[ok]
    face = Z_FRONT / np.maximum(z_lc, 1.0)
    proj = np.column_stack([x_lc * face, y_lc * face])
    return LayerClusters(layer_cluster, energy, e_lc, proj, key_lc)


def associate(lcs: LayerClusters, params: ClueParams | None = None) -> ClueResult:
    """The CLUE3D-like step: layer clusters into showers."""
    p = params or ClueParams()
    k2 = len(lcs.energy)
    shower_of_lc = _clue_core(
        lcs.projected,
        lcs.key,
        lcs.energy,
        np.full(k2, p.dc_3d),
        np.full(k2, p.rho_c_3d),
        p.outlier_delta_factor,
        search=p.outlier_delta_factor * p.dc_3d,
        layer_window=np.full(k2, p.sibling_layers),
    )
    layer_cluster = lcs.hit_layer_cluster
    ok = layer_cluster >= 0
    hit_cluster = np.full(len(layer_cluster), -1, dtype=np.int64)
    hit_cluster[ok] = shower_of_lc[layer_cluster[ok]]
    clustered = hit_cluster >= 0
    k3 = int(hit_cluster.max(initial=-1)) + 1
    cluster_energy = np.bincount(
        hit_cluster[clustered], weights=lcs.hit_energy[clustered], minlength=k3
    )
    return ClueResult(layer_cluster, hit_cluster, cluster_energy)


def clue(
    hits: Hits, params: ClueParams | None = None, readout: ReadoutConfig | None = None
) -> ClueResult:
    """Layer clusters (2D CLUE) and showers (3D association) of one event."""
    return associate(layer_clusters(hits, params, readout), params)


@dataclass(frozen=True)
class ClueCalibration:
    """E = ee_scale x (energy of the shower's CE-E hits) + he_scale x (its CE-H hits): the
    classical two-section calibration of a non-compensating calorimeter (fit on validation
    events by ``fit_clue_calibration``). The identity is the uncalibrated EM scale."""

    ee_scale: float = 1.0
    he_scale: float = 1.0

    def energies(
        self, hit_energy: np.ndarray, hit_layer: np.ndarray, hit_cluster: np.ndarray, k: int
    ) -> np.ndarray:
        """float64 [k]: calibrated energy of each cluster."""
        ee, he = section_energies(hit_energy, hit_layer, hit_cluster, k)
        return self.ee_scale * ee + self.he_scale * he


def calibrated_clusters(
    hits: Hits, assignment: np.ndarray, calibration: ClueCalibration
) -> Clusters:
    """``Clusters`` of a per-hit ``assignment`` (CLUE's showers, the truth assignment) with
    section-calibrated energies: what every chain feeds to the PF elements."""
    k = int(assignment.max(initial=-1)) + 1
    energy = calibration.energies(hits.energy, hits.layer, assignment, k)
    return clusters_from_assignment(hits.features(), assignment, energy)


def section_energies(
    hit_energy: np.ndarray, hit_layer: np.ndarray, hit_cluster: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """(CE-E energy, CE-H energy) of each of ``k`` clusters."""
    ok = hit_cluster >= 0
    in_ee = np.asarray(hit_layer)[ok] < N_EE
    e = np.asarray(hit_energy, dtype=np.float64)[ok]
    c = hit_cluster[ok]
    return (
        np.bincount(c[in_ee], weights=e[in_ee], minlength=k),
        np.bincount(c[~in_ee], weights=e[~in_ee], minlength=k),
    )


def fit_clue_calibration(ee: np.ndarray, he: np.ndarray, true: np.ndarray) -> ClueCalibration:
    """The (ee_scale, he_scale) minimising the squared relative error over matched showers."""
    if len(true) < 2:
        return ClueCalibration()
    design = np.column_stack([ee / true, he / true])
    (a, b), *_ = np.linalg.lstsq(design, np.ones(len(true)), rcond=None)
    if not (np.isfinite(a) and np.isfinite(b) and a > 0 and b > 0):
        return ClueCalibration()
    return ClueCalibration(float(a), float(b))

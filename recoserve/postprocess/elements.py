"""Particle-flow elements: the tracks and calorimeter clusters of one event, as MLPF sees them.

One row per element, float32 [E, N_ELEMENT_FEATURES]: first the event's tracks (in their input
order), then its clusters (in condensation order). The columns are ``ELEMENT_FEATURES``; a
quantity an element type does not have is 0. Units: GeV, cm, ns. Positions are where the element
enters the calorimeter face (z = +-320 cm), so tracks and the clusters they belong to sit close
together and the network's neighbour search can link them.

This module is imported unchanged by the Triton Python backend (event_reco), the in-process
chain and the training, so served and in-process elements are the same numbers.
"""

from __future__ import annotations

import numpy as np

from recoserve.contract import (
    CLUSTER,
    ELEMENT_FEATURES,
    N_ELEMENT_FEATURES,
    TRACK,
    TRACK_FEATURES,
)
from recoserve.postprocess.condensation import Clusters
from recoserve.sim.geometry import GEOMETRY, N_EE, Z_FRONT

COLUMN = {name: i for i, name in enumerate(ELEMENT_FEATURES)}

# |z| between the last CE-E layer and the first CE-H layer.
EE_BOUNDARY_Z = 0.5 * float(GEOMETRY.layers.z[N_EE - 1] + GEOMETRY.layers.z[N_EE])


def track_elements(tracks: np.ndarray) -> np.ndarray:
    """Elements of the tracks of one event, given as float32 [T, 9] (``TRACK_FEATURES``)."""
    tracks = np.asarray(tracks, dtype=np.float32).reshape(-1, len(TRACK_FEATURES))
    out = np.zeros((len(tracks), N_ELEMENT_FEATURES), dtype=np.float32)
    if not len(tracks):
        return out
    out[:, COLUMN["type"]] = TRACK
    out[:, COLUMN["pt"]] = tracks[:, 0]
    out[:, COLUMN["eta"]] = tracks[:, 1]
    out[:, COLUMN["sin_phi"]] = np.sin(tracks[:, 2])
    out[:, COLUMN["cos_phi"]] = np.cos(tracks[:, 2])
    out[:, COLUMN["charge"]] = tracks[:, 3]
    out[:, COLUMN["energy"]] = tracks[:, 4]
    out[:, COLUMN["x"]] = tracks[:, 5]
    out[:, COLUMN["y"]] = tracks[:, 6]
    out[:, COLUMN["z"]] = np.where(tracks[:, 7] >= 0, Z_FRONT, -Z_FRONT)
    out[:, COLUMN["size"]] = tracks[:, 8]
    return out


def cluster_elements(hits: np.ndarray, clusters: Clusters) -> np.ndarray:
    """Elements of the clusters of one event; ``hits`` is its float32 [N, 5] HITS tensor."""
    k = len(clusters)
    out = np.zeros((k, N_ELEMENT_FEATURES), dtype=np.float32)
    if k == 0:
        return out
    hits = np.asarray(hits, dtype=np.float64)
    side = np.where(hits[clusters.seed, 2] >= 0, 1.0, -1.0)
    x, y = clusters.x.astype(np.float64), clusters.y.astype(np.float64)
    z = side * Z_FRONT
    rho = np.hypot(x, y)
    eta = side * np.arcsinh(Z_FRONT / np.maximum(rho, 1e-3))
    energy = clusters.energy.astype(np.float64)

    member = clusters.hit_cluster >= 0
    idx = clusters.hit_cluster[member]
    e = hits[member, 3]
    abs_z = np.abs(hits[member, 2])
    scale = Z_FRONT / np.maximum(abs_z, 1.0)
    fx, fy = hits[member, 0] * scale, hits[member, 1] * scale
    raw = np.maximum(np.bincount(idx, weights=e, minlength=k), 1e-9)

    def mean(values: np.ndarray) -> np.ndarray:
        return np.asarray(np.bincount(idx, weights=e * values, minlength=k) / raw)

    spread = mean(fx * fx) - mean(fx) ** 2 + mean(fy * fy) - mean(fy) ** 2
    out[:, COLUMN["type"]] = CLUSTER
    out[:, COLUMN["pt"]] = energy / np.cosh(eta)
    out[:, COLUMN["eta"]] = eta
    out[:, COLUMN["sin_phi"]] = y / np.maximum(rho, 1e-3)
    out[:, COLUMN["cos_phi"]] = x / np.maximum(rho, 1e-3)
    out[:, COLUMN["energy"]] = energy
    out[:, COLUMN["x"]] = x
    out[:, COLUMN["y"]] = y
    out[:, COLUMN["z"]] = z
    out[:, COLUMN["size"]] = clusters.n_hits
    out[:, COLUMN["raw_energy"]] = clusters.raw_energy
    out[:, COLUMN["time"]] = clusters.time
    out[:, COLUMN["p_em"] : COLUMN["p_mip"] + 1] = clusters.class_prob
    out[:, COLUMN["width"]] = np.sqrt(np.maximum(spread, 0.0))
    out[:, COLUMN["depth"]] = mean(abs_z - Z_FRONT)
    out[:, COLUMN["em_fraction"]] = mean((abs_z < EE_BOUNDARY_Z).astype(np.float64))
    return out


def build_elements(hits: np.ndarray, tracks: np.ndarray, clusters: Clusters) -> np.ndarray:
    """float32 [T + K, N_ELEMENT_FEATURES]: the tracks, then the clusters."""
    return np.concatenate([track_elements(tracks), cluster_elements(hits, clusters)], axis=0)

"""Rule-based particle flow: the classical algorithm MLPF is compared with.

It reads the same elements as MLPF (``recoserve.postprocess.elements``) and follows the
structure of CMS particle flow in a simplified form:

1. Linking: each track is linked to the nearest cluster of its endcap whose centre lies within
   ``link_distance`` + ``link_width_factor`` x cluster width of the track's impact point.
2. Tracks: a track linked to a minimum-ionising cluster (``p_mip`` > 0.5) is a muon; a single
   track linked to an electromagnetic cluster (``p_em`` > 0.5, more than 90 % of its energy in
   CE-E) with 0.7 < E/p < 1.4 is an electron (the cluster is used up); every other track is a
   charged hadron (energy from p with the pion mass).
3. Clusters linked to hadrons: if the cluster energy exceeds the linked momenta by more than
   ``excess_sigmas`` x 1.0 x sqrt(sum p) (the hadron calorimeter resolution) and by at least
   ``min_neutral_energy``, the excess is a neutral particle: a photon if the cluster is
   electromagnetic, else a neutral hadron.
4. Unlinked clusters above ``min_neutral_energy``: photons if electromagnetic, neutral hadrons
   otherwise; minimum-ionising clusters without a track are dropped.

Candidates come out in the same structured array as the MLPF decoding (``CANDIDATE_DTYPE``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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


@dataclass(frozen=True)
class PFParams:
    link_distance: float = 4.0  # cm at the calorimeter face
    link_width_factor: float = 2.0
    excess_sigmas: float = 1.0
    min_neutral_energy: float = 1.0  # GeV


def link_tracks(elements: np.ndarray, params: PFParams) -> np.ndarray:
    """int64 [E]: for every track row the row of its linked cluster (-1 if none); -1 elsewhere."""
    kind = elements[:, COLUMN["type"]]
    tracks = np.flatnonzero(kind == TRACK)
    clusters = np.flatnonzero(kind == CLUSTER)
    link = np.full(len(elements), -1, dtype=np.int64)
    if not len(tracks) or not len(clusters):
        return link
    xy = elements[:, [COLUMN["x"], COLUMN["y"]]].astype(np.float64)
    distance = np.linalg.norm(xy[tracks, None, :] - xy[None, clusters, :], axis=2)
    other_side = np.sign(elements[tracks, None, COLUMN["z"]]) != np.sign(
        elements[None, clusters, COLUMN["z"]]
    )
    reach = params.link_distance + params.link_width_factor * elements[clusters, COLUMN["width"]]
    distance = np.where(other_side | (distance > reach[None, :]), np.inf, distance)
    nearest = distance.argmin(axis=1)
    ok = np.isfinite(distance[np.arange(len(tracks)), nearest])
    link[tracks[ok]] = clusters[nearest[ok]]
    return link


def _candidate(
    rows: list[tuple[int, int, int, float, float, float, float]],
) -> np.ndarray:
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
    kind = elements[:, col["type"]]
    link = link_tracks(elements, params)
    rows: list[tuple[int, int, int, float, float, float, float]] = []
    used = np.zeros(len(elements), dtype=bool)  # clusters consumed by an electron
    linked_p = np.zeros(len(elements))

    def direction(i: int) -> tuple[float, float]:
        return float(elements[i, col["eta"]]), float(
            np.arctan2(elements[i, col["sin_phi"]], elements[i, col["cos_phi"]])
        )

    n_linked = np.bincount(link[link >= 0], minlength=len(elements))
    for t in np.flatnonzero(kind == TRACK):
        p = float(elements[t, col["energy"]])
        pt = float(elements[t, col["pt"]])
        charge = int(np.rint(elements[t, col["charge"]]))
        eta, phi = direction(t)
        c = int(link[t])
        cls = CHARGED_HADRON
        if c >= 0 and elements[c, col["p_mip"]] > 0.5:
            cls = MUON
        elif (
            c >= 0
            and n_linked[c] == 1
            and elements[c, col["p_em"]] > 0.5
            and elements[c, col["em_fraction"]] > 0.9
            and 0.7 < elements[c, col["energy"]] / max(p, 1e-6) < 1.4
        ):
            cls = ELECTRON
            used[c] = True
        if c >= 0 and cls != MUON:
            linked_p[c] += p
        if c >= 0 and cls == MUON:
            used[c] = True
        energy = p if cls == ELECTRON else float(np.sqrt(p * p + PION_MASS**2))
        rows.append((int(t), cls, charge, pt, eta, phi, energy))

    for c in np.flatnonzero((kind == CLUSTER) & ~used):
        energy = float(elements[c, col["energy"]])
        if linked_p[c] > 0:
            excess = energy - linked_p[c]
            if excess < max(params.excess_sigmas * np.sqrt(linked_p[c]), params.min_neutral_energy):
                continue
            energy = excess
        elif energy < params.min_neutral_energy or elements[c, col["p_mip"]] > 0.5:
            continue
        em = elements[c, col["p_em"]] > elements[c, col["p_hadron"]]
        eta, phi = direction(int(c))
        cls = PHOTON if em else NEUTRAL_HADRON
        rows.append((int(c), cls, 0, energy / np.cosh(eta), eta, phi, energy))
    return _candidate(rows)

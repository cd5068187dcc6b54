"""Particle-flow performance: candidates against truth particles, jets and missing pt.

- Matching: per class, truth particles and candidates of that class are paired by the Hungarian
  algorithm on Delta R, accepting pairs with Delta R < ``MATCH_DR`` (0.1 for particles with a
  track, 0.2 for neutrals). Efficiency = matched truth / truth; fake rate = unmatched
  candidates / candidates, per class.
- Resolution of a matched quantity: the half-width of the 16-84 % quantile band of
  reco / true, divided by its median (robust against the tails of merged showers); response =
  median.
- Jets: anti-kt R = 0.4 (the ``fastjet`` package) on the candidates and on the truth
  particles; jets with pt > 20 GeV matched by Delta R < 0.2.
- Missing transverse momentum: |minus the vector sum of pt| of the candidates against that of
  the truth particles; resolution of its x and y components.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from recoserve.postprocess.candidates import (
    CHARGED_HADRON,
    ELECTRON,
    MUON,
    NEUTRAL_HADRON,
    PF_CLASSES,
    PHOTON,
)

MATCH_DR = {CHARGED_HADRON: 0.1, ELECTRON: 0.1, MUON: 0.1, NEUTRAL_HADRON: 0.2, PHOTON: 0.2}
JET_PT_MIN = 20.0
JET_MATCH_DR = 0.2


def delta_r(eta1: np.ndarray, phi1: np.ndarray, eta2: np.ndarray, phi2: np.ndarray) -> np.ndarray:
    dphi = np.angle(np.exp(1j * (np.asarray(phi1)[:, None] - np.asarray(phi2)[None, :])))
    deta = np.asarray(eta1)[:, None] - np.asarray(eta2)[None, :]
    return np.asarray(np.hypot(deta, dphi))


def match(
    true_eta: np.ndarray,
    true_phi: np.ndarray,
    reco_eta: np.ndarray,
    reco_phi: np.ndarray,
    max_dr: float,
) -> tuple[np.ndarray, np.ndarray]:
    """(truth rows, reco rows) of matched pairs: Hungarian on Delta R, pairs below max_dr."""
    if not len(true_eta) or not len(reco_eta):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    dr = delta_r(true_eta, true_phi, reco_eta, reco_phi)
    rows, cols = linear_sum_assignment(np.where(dr < max_dr, dr, 1e3))
    ok = dr[rows, cols] < max_dr
    return rows[ok], cols[ok]


def quantile_resolution(ratio: np.ndarray) -> tuple[float, float]:
    """(response = median, resolution = half 16-84 % width / median) of reco/true ratios."""
    if len(ratio) < 5:
        return float("nan"), float("nan")
    q16, q50, q84 = np.quantile(ratio, [0.16, 0.5, 0.84])
    return float(q50), float((q84 - q16) / 2 / q50)


def antikt_jets(pt: np.ndarray, eta: np.ndarray, phi: np.ndarray, energy: np.ndarray) -> np.ndarray:
    """float64 [J, 3] = (pt, eta, phi) of anti-kt R = 0.4 jets with pt > JET_PT_MIN."""
    import fastjet

    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    e = np.maximum(energy, np.sqrt(px * px + py * py + pz * pz))  # massless or heavier
    inputs = [
        fastjet.PseudoJet(float(a), float(b), float(c), float(d))
        for a, b, c, d in zip(px, py, pz, e, strict=True)
    ]
    if not inputs:
        return np.zeros((0, 3))
    sequence = fastjet.ClusterSequence(inputs, fastjet.JetDefinition(fastjet.antikt_algorithm, 0.4))
    jets = sequence.inclusive_jets(JET_PT_MIN)
    return np.array([(j.pt(), j.eta(), j.phi_std()) for j in jets]).reshape(-1, 3)


def missing_pt(pt: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """(mex, mey): minus the vector sum of transverse momenta."""
    return np.array([-np.sum(pt * np.cos(phi)), -np.sum(pt * np.sin(phi))])


class PFAccumulator:
    """Collects matches over events; ``summary()`` gives the numbers of the module docstring."""

    def __init__(self) -> None:
        self.n_true = np.zeros(len(PF_CLASSES), np.int64)
        self.n_reco = np.zeros(len(PF_CLASSES), np.int64)
        self.n_matched = np.zeros(len(PF_CLASSES), np.int64)
        self.energy_ratio: dict[int, list[float]] = {c: [] for c in MATCH_DR}
        self.pt_ratio: dict[int, list[float]] = {c: [] for c in MATCH_DR}
        self.true_energy: dict[int, list[float]] = {c: [] for c in MATCH_DR}
        self.jet_ratio: list[float] = []
        self.jet_true_pt: list[float] = []
        self.n_true_jets = 0
        self.n_matched_jets = 0
        self.met_delta: list[np.ndarray] = []
        self.met_true: list[float] = []

    def add(self, truth: dict[str, np.ndarray], reco: np.ndarray) -> None:
        """``truth``: columns class_id, pt, eta, phi, energy; ``reco``: candidate array."""
        for c, max_dr in MATCH_DR.items():
            t = np.flatnonzero(truth["class_id"] == c)
            r = np.flatnonzero(reco["class_id"] == c)
            self.n_true[c] += len(t)
            self.n_reco[c] += len(r)
            ti, ri = match(truth["eta"][t], truth["phi"][t], reco["eta"][r], reco["phi"][r], max_dr)
            self.n_matched[c] += len(ti)
            self.energy_ratio[c].extend(reco["energy"][r[ri]] / truth["energy"][t[ti]])
            self.pt_ratio[c].extend(reco["pt"][r[ri]] / truth["pt"][t[ti]])
            self.true_energy[c].extend(truth["energy"][t[ti]])
        true_jets = antikt_jets(truth["pt"], truth["eta"], truth["phi"], truth["energy"])
        reco_jets = antikt_jets(
            reco["pt"].astype(np.float64),
            reco["eta"].astype(np.float64),
            reco["phi"].astype(np.float64),
            reco["energy"].astype(np.float64),
        )
        ti, ri = match(true_jets[:, 1], true_jets[:, 2], reco_jets[:, 1], reco_jets[:, 2], 0.2)
        self.n_true_jets += len(true_jets)
        self.n_matched_jets += len(ti)
        self.jet_ratio.extend(reco_jets[ri, 0] / true_jets[ti, 0])
        self.jet_true_pt.extend(true_jets[ti, 0])
        true_met = missing_pt(truth["pt"], truth["phi"])
        reco_met = missing_pt(reco["pt"].astype(np.float64), reco["phi"].astype(np.float64))
        self.met_delta.append(reco_met - true_met)
        self.met_true.append(float(np.hypot(*true_met)))

    def summary(self) -> dict[str, Any]:
        per_class: dict[str, Any] = {}
        for c in MATCH_DR:
            e_resp, e_res = quantile_resolution(np.array(self.energy_ratio[c]))
            pt_resp, pt_res = quantile_resolution(np.array(self.pt_ratio[c]))
            per_class[PF_CLASSES[c]] = {
                "true": int(self.n_true[c]),
                "reconstructed": int(self.n_reco[c]),
                "efficiency": float(self.n_matched[c] / max(self.n_true[c], 1)),
                "fake_rate": float(1 - self.n_matched[c] / max(self.n_reco[c], 1)),
                "energy_response": e_resp,
                "energy_resolution": e_res,
                "pt_response": pt_resp,
                "pt_resolution": pt_res,
            }
        jet_resp, jet_res = quantile_resolution(np.array(self.jet_ratio))
        delta = np.array(self.met_delta).reshape(-1, 2)
        return {
            "classes": per_class,
            "jets": {
                "true": self.n_true_jets,
                "matched": self.n_matched_jets,
                "efficiency": self.n_matched_jets / max(self.n_true_jets, 1),
                "pt_response": jet_resp,
                "pt_resolution": jet_res,
            },
            "met": {
                "mean_true": float(np.mean(self.met_true)) if self.met_true else float("nan"),
                "resolution_xy": float(np.std(delta)) if len(delta) else float("nan"),
                "bias_x": float(np.mean(delta[:, 0])) if len(delta) else float("nan"),
                "bias_y": float(np.mean(delta[:, 1])) if len(delta) else float("nan"),
            },
        }

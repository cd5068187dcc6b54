"""Particle candidates from the MLPF outputs (numpy): the decoding step of the served chain.

MLPF predicts, per element, class logits over ``PF_CLASSES`` and five regressed quantities
(pt, eta, sin phi, cos phi, energy). Decoding:

- the class is the most likely one *allowed for the element type*: a track can only become
  nothing, a charged hadron, an electron or a muon; a cluster nothing, a neutral hadron or a
  photon (charged particles come from tracks, and the charge is the linked track's charge);
- phi = atan2(sin phi, cos phi);
- the PDG id follows from class and charge (211, 130, 22, 11, 13 with the PDG sign convention:
  e- is 11, mu- is 13, pi+ is 211);
- elements decoded as "none" give no candidate.

Imported unchanged by the Triton Python backend (mlpf_decode), the in-process chain and tests.
"""

from __future__ import annotations

import numpy as np

from recoserve.contract import CANDIDATE_DTYPE, CLUSTER, PF_CLASSES, TRACK
from recoserve.postprocess.elements import COLUMN

NONE, CHARGED_HADRON, NEUTRAL_HADRON, PHOTON, ELECTRON, MUON = range(len(PF_CLASSES))
TRACK_CLASSES = (NONE, CHARGED_HADRON, ELECTRON, MUON)
CLUSTER_CLASSES = (NONE, NEUTRAL_HADRON, PHOTON)


def pdg_of(class_id: np.ndarray, charge: np.ndarray) -> np.ndarray:
    """PDG ids of candidates (0 for "none")."""
    class_id = np.asarray(class_id)
    charge = np.asarray(charge, dtype=np.int64)
    pdg = np.zeros(class_id.shape, dtype=np.int32)
    pdg[class_id == CHARGED_HADRON] = 211 * charge[class_id == CHARGED_HADRON]
    pdg[class_id == NEUTRAL_HADRON] = 130
    pdg[class_id == PHOTON] = 22
    pdg[class_id == ELECTRON] = -11 * charge[class_id == ELECTRON]
    pdg[class_id == MUON] = -13 * charge[class_id == MUON]
    return pdg


def allowed_class_mask(element_type: np.ndarray) -> np.ndarray:
    """bool [E, n_classes]: which classes each element may take."""
    mask = np.zeros((len(element_type), len(PF_CLASSES)), dtype=bool)
    mask[np.ix_(element_type == TRACK, TRACK_CLASSES)] = True
    mask[np.ix_(element_type == CLUSTER, CLUSTER_CLASSES)] = True
    return mask


def decode(elements: np.ndarray, class_logits: np.ndarray, regression: np.ndarray) -> np.ndarray:
    """Candidates (structured array, ``CANDIDATE_DTYPE``) of one event, in element order."""
    elements = np.asarray(elements, dtype=np.float32)
    logits = np.asarray(class_logits, dtype=np.float64)
    mask = allowed_class_mask(elements[:, COLUMN["type"]])
    masked = np.where(mask, logits, -np.inf)
    class_id = masked.argmax(axis=1) if len(logits) else np.zeros(0, np.int64)
    z = masked - masked.max(axis=1, keepdims=True) if len(logits) else masked
    prob = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True) if len(logits) else z
    keep = np.flatnonzero(class_id != NONE)
    reg = np.asarray(regression, dtype=np.float32)[keep]
    charge = np.rint(elements[keep, COLUMN["charge"]]).astype(np.int8)
    out = np.zeros(len(keep), dtype=CANDIDATE_DTYPE)
    out["class_id"] = class_id[keep]
    out["charge"] = charge
    out["pdg"] = pdg_of(class_id[keep], charge)
    out["pt"] = np.maximum(reg[:, 0], 0.0)
    out["eta"] = reg[:, 1]
    out["phi"] = np.arctan2(reg[:, 2], reg[:, 3])
    out["energy"] = np.maximum(reg[:, 4], 0.0)
    out["element"] = keep
    out["probability"] = prob[keep, class_id[keep]] if len(keep) else np.zeros(0)
    return out

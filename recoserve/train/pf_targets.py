"""MLPF's training targets: the truth particle each PF element stands for.

The association is described in ``recoserve.metrics.pf_truth`` (the truth the evaluation uses
too): a tracked particle is the target of its track; every other truth particle goes to the
cluster holding most of its hit energy (several in one cluster merge); every other element is
"none".
"""

from __future__ import annotations

import numpy as np

from recoserve.events.model import Event
from recoserve.metrics.pf_truth import PFTruth, main_cluster
from recoserve.postprocess.candidates import NONE
from recoserve.postprocess.condensation import Clusters


def element_targets(
    event: Event, truth: PFTruth, clusters: Clusters
) -> tuple[np.ndarray, np.ndarray]:
    """(class int64 [E], regression float32 [E, 5] = pt, eta, sin phi, cos phi, energy) for
    the elements of ``build_elements`` (tracks, then clusters); regression is 0 for "none"."""
    n_tracks = len(event.tracks)
    k = len(clusters)
    cls = np.full(n_tracks + k, NONE, dtype=np.int64)
    reg = np.zeros((n_tracks + k, 5), dtype=np.float32)

    def vector(i: np.ndarray) -> np.ndarray:
        return np.stack(
            [
                truth.pt[i],
                truth.eta[i],
                np.sin(truth.phi[i]),
                np.cos(truth.phi[i]),
                truth.energy[i],
            ],
            axis=-1,
        )

    tracked = np.flatnonzero(truth.track >= 0)
    cls[truth.track[tracked]] = truth.class_id[tracked]
    reg[truth.track[tracked]] = vector(tracked)

    untracked = np.flatnonzero(truth.track < 0)
    where = main_cluster(event, clusters.hit_cluster, k)[truth.particle[untracked]]
    for c in np.unique(where[where >= 0]):
        members = untracked[where == c]
        energy = truth.energy[members].astype(np.float64)
        lead = members[np.argmax(energy)]
        pt = truth.pt[members].astype(np.float64)
        px = float(np.sum(pt * np.cos(truth.phi[members])))
        py = float(np.sum(pt * np.sin(truth.phi[members])))
        pz = float(np.sum(pt * np.sinh(truth.eta[members])))
        pt_sum = max(np.hypot(px, py), 1e-6)
        phi = np.arctan2(py, px)
        eta = np.arcsinh(pz / pt_sum)
        e_sum = float(energy.sum())
        row = n_tracks + c
        cls[row] = truth.class_id[lead]
        reg[row] = (e_sum / np.cosh(eta), eta, np.sin(phi), np.cos(phi), e_sum)
    return cls, reg

"""Training targets of the clustering network, from an event's truth."""

from __future__ import annotations

import numpy as np
import torch

from recoserve.events.model import Event
from recoserve.nn.losses import ObjectTargets
from recoserve.sim.particles import C_CM_PER_NS

EM_PDG = (11, 22)
MIP_PDG = (13,)


def shower_class(pdg: np.ndarray) -> np.ndarray:
    """0 = electromagnetic (e, gamma), 1 = hadronic, 2 = minimum ionising (mu)."""
    apdg = np.abs(pdg)
    return np.where(np.isin(apdg, EM_PDG), 0, np.where(np.isin(apdg, MIP_PDG), 2, 1)).astype(
        np.int64
    )


def event_targets(event: Event) -> tuple[torch.Tensor, ObjectTargets]:
    """(hits float32 [N, 5], targets) with objects = truth particles that own hits."""
    hits = event.hits
    parts = event.particles
    owners, object_id = np.unique(hits.truth_particle, return_inverse=True)
    if len(owners) and owners[0] < 0:  # noise present: shift so that noise is -1
        object_id = object_id - 1
        owners = owners[1:]
    object_id = np.where(hits.truth_particle < 0, -1, object_id)
    hit_energy = np.bincount(
        object_id[object_id >= 0], weights=hits.energy[object_id >= 0], minlength=len(owners)
    )
    energy = parts.energy[owners].astype(np.float64)
    label = shower_class(parts.pdg[owners])
    position = np.stack([parts.calo_x[owners], parts.calo_y[owners]], axis=1)
    vertex = np.stack([parts.vx[owners], parts.vy[owners], parts.vz[owners]], axis=1)
    entry = np.stack([parts.calo_x[owners], parts.calo_y[owners], parts.calo_z[owners]], axis=1)
    time = np.linalg.norm(entry - vertex, axis=1) / C_CM_PER_NS
    energy_valid = (label != 2) & (hit_energy > 0.5)
    targets = ObjectTargets(
        object_id=torch.from_numpy(object_id.astype(np.int64)),
        energy=torch.from_numpy(energy).float(),
        hit_energy=torch.from_numpy(np.maximum(hit_energy, 1e-3)).float(),
        energy_valid=torch.from_numpy(energy_valid),
        position=torch.from_numpy(position).float(),
        time=torch.from_numpy(time).float(),
        label=torch.from_numpy(label),
    )
    return torch.from_numpy(hits.features()), targets

"""Training targets of the clustering network, from an event's truth.

The objects are those of the project's one truth definition (``recoserve.events.truth``):
unresolvable showers merged, pileup and sub-GeV objects as background.
"""

from __future__ import annotations

import numpy as np
import torch

from recoserve.events.model import Event
from recoserve.events.truth import MIP, RESOLVABLE, TruthDefinition, truth_objects
from recoserve.nn.losses import ObjectTargets
from recoserve.sim.particles import C_CM_PER_NS


def event_targets(
    event: Event, definition: TruthDefinition = RESOLVABLE
) -> tuple[torch.Tensor, ObjectTargets]:
    """(hits float32 [N, 5], targets) with the truth definition's objects."""
    truth = truth_objects(event, definition)
    parts = event.particles
    leader = truth.leader
    vertex = np.stack([parts.vx[leader], parts.vy[leader], parts.vz[leader]], axis=1)
    time = np.linalg.norm(truth.entry - vertex, axis=1) / C_CM_PER_NS
    energy_valid = (truth.shower_class != MIP) & (truth.hit_energy > 0.5)
    targets = ObjectTargets(
        object_id=torch.from_numpy(truth.hit_object),
        energy=torch.from_numpy(truth.energy).float(),
        hit_energy=torch.from_numpy(np.maximum(truth.hit_energy, 1e-3)).float(),
        energy_valid=torch.from_numpy(energy_valid),
        position=torch.from_numpy(truth.entry[:, :2].copy()).float(),
        time=torch.from_numpy(time).float(),
        label=torch.from_numpy(truth.shower_class),
    )
    return torch.from_numpy(event.hits.features()), targets

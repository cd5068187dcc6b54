"""Eta-phi crops of large endcaps, so that two CPU cores spend their time where it counts.

A pileup-140 endcap holds ~49k hits and a dense-gun one ~26k, against ~3k for a jet endcap: on
whole endcaps those two classes take nine tenths of the training time. A crop keeps the hits
within a radius in (eta, phi) around one true object, chosen at random among those above a few
GeV (or around a random hit when there are none), and at most ``max_hits`` of them, nearest
first. Its neighbours, pileup and noise come with it, so the network still learns to separate
a shower from what surrounds it, at a fraction of the cost. Objects cut by the crop keep their
place in the loss but no energy target (the crop holds only part of their hits).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace

import torch

from recoserve.nn.losses import ObjectTargets

Item = tuple[torch.Tensor, ObjectTargets]


@dataclass(frozen=True)
class CropConfig:
    max_hits: int  # endcaps with more hits are cropped to at most this many
    radius: float = 0.5  # in (eta, phi) around the chosen object
    centre_energy: float = 5.0  # GeV: objects that can be a crop's centre
    kept_energy: float = 0.9  # an object keeps its energy target above this share of its hits


def _eta_phi(hits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x, y, z = hits[:, 0], hits[:, 1], hits[:, 2]
    r = torch.hypot(x, y).clamp(min=1e-3)
    return torch.asinh(z / r), torch.atan2(y, x)


def crop_item(item: Item, config: CropConfig, rng: random.Random) -> Item:
    """``item`` itself if it is small enough, else a crop of it (see module docstring)."""
    hits, targets = item
    if len(hits) <= config.max_hits:
        return item
    eta, phi = _eta_phi(hits)
    energy = hits[:, 3].double()
    object_id = targets.object_id
    centres = [k for k in range(len(targets.energy)) if targets.energy[k] > config.centre_energy]
    if centres:
        chosen = object_id == rng.choice(centres)
        w = energy[chosen] / energy[chosen].sum()
        eta0 = float((w * eta[chosen]).sum())
        phi0 = math.atan2(float((w * torch.sin(phi[chosen])).sum()),
                          float((w * torch.cos(phi[chosen])).sum()))  # fmt: skip
    else:
        i = rng.randrange(len(hits))
        eta0, phi0 = float(eta[i]), float(phi[i])
    dphi = torch.remainder(phi - phi0 + math.pi, 2 * math.pi) - math.pi
    distance = torch.hypot(eta - eta0, dphi)
    inside = torch.nonzero(distance < config.radius).squeeze(1)
    if len(inside) > config.max_hits:
        inside = inside[torch.topk(distance[inside], config.max_hits, largest=False).indices]
    keep = torch.sort(inside).values
    return _restrict(hits, targets, keep, config.kept_energy)


def _restrict(
    hits: torch.Tensor, targets: ObjectTargets, keep: torch.Tensor, kept_energy: float
) -> Item:
    """The hits ``keep`` with the objects they hold, renumbered from 0."""
    old_ids = targets.object_id[keep]
    present = torch.unique(old_ids[old_ids >= 0])
    new_id = torch.full((len(targets.energy) + 1,), -1, dtype=torch.int64)
    new_id[present] = torch.arange(len(present))
    object_id = torch.where(old_ids >= 0, new_id[old_ids.clamp(min=0)], -1)
    hit_energy = hits[keep, 3].double()
    in_crop = torch.zeros(len(present), dtype=torch.float64)
    in_crop.index_add_(0, object_id[object_id >= 0], hit_energy[object_id >= 0])
    whole = in_crop >= kept_energy * targets.hit_energy[present].double()
    cropped = replace(
        targets,
        object_id=object_id,
        energy=targets.energy[present],
        hit_energy=targets.hit_energy[present],
        energy_valid=targets.energy_valid[present] & whole,
        position=targets.position[present],
        time=targets.time[present],
        label=targets.label[present],
    )
    return hits[keep], cropped

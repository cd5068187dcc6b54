"""Object-condensation loss (Kieseler, arXiv:2002.03605) with property terms.

Per hit: beta in (0, 1), clustering coordinates x, and property predictions. Every truth object
(a shower) condenses at its hit of highest beta (alpha). The potential loss pulls an object's
hits to x_alpha and pushes all other hits out of a unit radius around it, each weighted by the
charge q = arctanh(beta)^2 + q_min; the beta loss raises beta_alpha towards 1 (as
-log beta_alpha, see below) and pushes noise hits to 0; property losses are weighted by
arctanh(beta)^2 so that the condensation point, where properties are read, learns them best.
Everything is O(N x K) for N hits and K objects, with no N x N term.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class OCWeights:
    """Loss weights and normalisation. The defaults are those of the first networks (potentials
    summed over hits and divided by the number of hits, so that large showers dominate);
    ``current()`` is what training uses now."""

    q_min: float = 0.1
    noise_beta: float = 1.0
    energy: float = 1.0
    position: float = 0.5
    time: float = 0.2
    classification: float = 0.5
    per_object: bool = False  # potentials averaged within each object, then over objects
    by_own_object: bool = False  # with per_object: a hit weighs 1 / the size of its own object
    repulsion: float = 1.0  # weight of the repulsive potential
    beta_energy_scale: float = 0.0  # > 0: beta term of an object weighted sqrt(E / scale) ...
    beta_energy_floor: float = 1.0  # ... clipped to [floor, 1]

    @staticmethod
    def current() -> OCWeights:
        """What training uses by default: the per-hit potentials. Measured on CPU fine-tunes
        (docs/clustering.md, "Loss"), it is the one that keeps the clustering space best on
        the benchmark's classes; the per-object variants are kept for the ablations."""
        return LOSSES["per-hit"]


# The loss variants `recoserve train clustering --loss` offers (docs/clustering.md, "Loss").
LOSSES: dict[str, OCWeights] = {
    "per-hit": OCWeights(),
    # Per-hit potentials, and the beta term of soft objects weighted down (floor 0.3 below
    # ~1.8 GeV, full weight from 20 GeV): condensation points of hard showers count most.
    "per-hit-beta-energy": OCWeights(beta_energy_scale=20.0, beta_energy_floor=0.3),
    "per-object": OCWeights(
        per_object=True, repulsion=2.0, beta_energy_scale=20.0, beta_energy_floor=0.3
    ),
    "own-object": OCWeights(
        per_object=True,
        by_own_object=True,
        repulsion=2.0,
        beta_energy_scale=20.0,
        beta_energy_floor=0.3,
    ),
}


@dataclass
class ObjectTargets:
    """Per-hit object index (-1 = noise) and per-object truth."""

    object_id: Tensor  # int64 [N]
    energy: Tensor  # [K] true energy, GeV
    hit_energy: Tensor  # [K] sum of the object's hit energies, GeV
    energy_valid: Tensor  # bool [K]: energy regression meaningful (not a muon, enough energy)
    position: Tensor  # [K, 2] entry point at the face, cm
    time: Tensor  # [K] arrival time at the face, ns
    label: Tensor  # int64 [K] class


def condensation_points(beta: Tensor, object_id: Tensor, n_objects: int) -> Tensor:
    """Index of the hit with the highest beta of every object: int64 [K]."""
    member = object_id.unsqueeze(1) == torch.arange(n_objects, device=beta.device).unsqueeze(0)
    masked = torch.where(member, beta.unsqueeze(1), torch.full_like(member, -1.0, dtype=beta.dtype))
    return masked.argmax(dim=0)


def object_condensation_loss(
    outputs: tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor],
    targets: ObjectTargets,
    weights: OCWeights | None = None,
) -> dict[str, Tensor]:
    """Loss terms (and their weighted ``total``) for one event."""
    w = weights or OCWeights()
    beta, ccoords, energy_factor, position, time, class_logits = outputs
    object_id = targets.object_id
    n_objects = int(targets.energy.shape[0])
    beta_c = beta.clamp(1e-6, 1 - 1e-4)
    arctanh2 = torch.atanh(beta_c) ** 2
    q = arctanh2 + w.q_min
    noise = object_id < 0
    terms: dict[str, Tensor] = {}
    zero = beta.sum() * 0.0
    noise_term = beta[noise].mean() if bool(noise.any()) else zero
    if n_objects == 0:
        terms = {
            k: zero
            for k in ("attractive", "repulsive", "beta", "energy", "position", "time", "class")
        }
        terms["noise"] = noise_term
        terms["total"] = w.noise_beta * noise_term
        return terms
    alpha = condensation_points(beta.detach(), object_id, n_objects)
    member = (object_id.unsqueeze(1) == torch.arange(n_objects, device=beta.device)).to(beta.dtype)
    x_alpha = ccoords[alpha]  # [K, C]
    q_alpha = q[alpha]
    d2 = (
        (ccoords * ccoords).sum(1, keepdim=True)
        + (x_alpha * x_alpha).sum(1).unsqueeze(0)
        - 2.0 * ccoords @ x_alpha.T
    ).clamp(min=0.0)  # [N, K], without an [N, K, C] tensor
    distance = torch.sqrt(d2 + 1e-6)
    pull = q.unsqueeze(1) * member * d2 * q_alpha.unsqueeze(0)  # [N, K]
    push = q.unsqueeze(1) * (1 - member) * F.relu(1.0 - distance) * q_alpha.unsqueeze(0)
    if w.per_object and w.by_own_object:
        # Every object's hits weigh 1 in all, in the pull to their own condensation point and
        # in the pushes out of the others' balls; noise hits weigh 1 in all as one group.
        size = member.sum(0).clamp(min=1.0)
        noise_count = noise.sum().clamp(min=1).to(beta.dtype)
        own = torch.where(noise, 1.0 / noise_count, 1.0 / size[object_id.clamp(min=0)])
        attractive = (pull.sum(1) * own).sum() / n_objects
        repulsive = (push.sum(1) * own).sum() / (n_objects + float(bool(noise.any())))
    elif w.per_object:
        # Every object counts the same, whatever its number of hits: a soft shower next to a
        # hard one is pushed out of the hard one's ball as strongly as the hard one is held.
        size = member.sum(0).clamp(min=1.0)
        attractive = (pull.sum(0) / size).mean()
        repulsive = (push.sum(0) / size).mean()
    else:
        n = float(beta.shape[0])
        attractive = pull.sum() / n
        repulsive = push.sum() / n
    repulsive = w.repulsion * repulsive
    # -log(beta_alpha) rather than 1 - beta_alpha: its gradient does not vanish when the sigmoid
    # saturates near 0, which otherwise lets training collapse to beta = 0 everywhere.
    per_object_beta = -torch.log(beta[alpha] + 1e-6)
    if w.beta_energy_scale > 0:
        weight = torch.sqrt(targets.energy / w.beta_energy_scale).clamp(w.beta_energy_floor, 1.0)
        beta_term = (weight * per_object_beta).sum() / weight.sum()
    else:
        beta_term = per_object_beta.mean()
    # Properties, weighted per hit by arctanh(beta)^2 within each object.
    obj = object_id.clamp(min=0)
    xi = arctanh2 * (~noise).to(beta.dtype)
    xi_sum = xi.sum() + 1e-6
    e_valid = targets.energy_valid[obj] & ~noise
    ratio = energy_factor * targets.hit_energy[obj] / targets.energy[obj]
    energy_term = (
        xi
        * e_valid.to(beta.dtype)
        * F.huber_loss(ratio, torch.ones_like(ratio), reduction="none", delta=0.5)
    ).sum() / ((xi * e_valid.to(beta.dtype)).sum() + 1e-6)
    pos_err = (position - targets.position[obj]) / 5.0
    position_term = (
        xi * F.huber_loss(pos_err, torch.zeros_like(pos_err), reduction="none").sum(1)
    ).sum() / xi_sum
    time_err = (time - targets.time[obj]) / 0.2  # ns; the vertex spread alone gives ~0.1
    time_term = (
        xi * F.huber_loss(time_err, torch.zeros_like(time_err), reduction="none")
    ).sum() / xi_sum
    class_term = (
        xi * F.cross_entropy(class_logits, targets.label[obj], reduction="none")
    ).sum() / xi_sum
    terms = {
        "attractive": attractive,
        "repulsive": repulsive,
        "beta": beta_term,
        "noise": noise_term,
        "energy": energy_term,
        "position": position_term,
        "time": time_term,
        "class": class_term,
    }
    terms["total"] = (
        attractive
        + repulsive
        + beta_term
        + w.noise_beta * noise_term
        + w.energy * energy_term
        + w.position * position_term
        + w.time * time_term
        + w.classification * class_term
    )
    return terms

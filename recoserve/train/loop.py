"""Pieces shared by the training loops (clustering, MLPF): schedule, step, best weights."""

from __future__ import annotations

import math
from typing import Any

import torch


def cosine_lr(peak: float, progress: float, floor: float) -> float:
    """Cosine decay from ``peak`` to ``floor`` x ``peak`` over progress 0 -> 1."""
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def optimise(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, loss: torch.Tensor, lr: float
) -> None:
    """One step at learning rate ``lr``, gradients clipped to norm 5."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
    optimizer.step()


def update_running(running: dict[str, float], terms: dict[str, torch.Tensor]) -> None:
    """Exponential moving averages (weight 0.02) of the loss terms, for the training log."""
    for key, value in terms.items():
        running[key] = running.get(key, 0.0) * 0.98 + float(value.detach()) * 0.02


class BestWeights:
    """The weights with the lowest validation loss seen so far."""

    def __init__(self) -> None:
        self.value = math.inf
        self.state: dict[str, Any] = {}

    def offer(self, value: float, model: torch.nn.Module) -> None:
        if value < self.value or not self.state:
            self.value = value
            self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def restore(self, model: torch.nn.Module) -> None:
        model.load_state_dict(self.state)
        model.eval()

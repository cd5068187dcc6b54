"""The training loop both networks share (clustering, MLPF): a resumable run, its schedule,
one optimiser step, the best weights."""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

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


def state_path(output: Path) -> Path:
    """Where a run that writes ``output`` keeps its resumable state."""
    return output.with_suffix(".state.pt")


@dataclass(frozen=True)
class Schedule:
    """How long a run lasts and how its learning rate moves: a cosine over ``max_steps`` (all
    sessions together, so a run cut into sessions follows the schedule of one long run)."""

    minutes: float  # wall-clock budget of this session's run
    max_steps: int
    learning_rate: float
    validate_every: int
    save_every_minutes: float = 3.0
    lr_floor: float = 0.05  # fraction of the peak at the end of the schedule

    def lr(self, step: int) -> float:
        return cosine_lr(self.learning_rate, step / self.max_steps, self.lr_floor)


Batch = TypeVar("Batch")


class ResumableRun:
    """The training loop both networks share, and the state that lets it stop and continue:
    weights, optimiser, best weights so far, random states, and progress (step, samples seen,
    minutes, learning curve, the epoch's remaining order, one record per session).

    Everything is saved every few minutes to ``path``; a later run with the same path continues
    where it stopped, on any device. ``saved_config`` is the configuration the run was started
    with (a resumed run keeps its architecture and loss)."""

    def __init__(
        self, path: Path, seed: int, randoms: dict[str, random.Random] | None = None
    ) -> None:
        """Loads the saved state if there is one; else seeds every random stream (before the
        caller builds its model, so that its initial weights follow ``seed``)."""
        self.path = path
        self.randoms = randoms or {}  # extra streams the caller draws from (e.g. crops)
        self.saved: dict[str, Any] | None = (
            torch.load(path, map_location="cpu", weights_only=False) if path.exists() else None
        )
        if self.saved is None:
            torch.manual_seed(seed)
            random.seed(seed)
            for stream in self.randoms.values():
                stream.seed(seed)
        self.best = BestWeights()
        self.progress: dict[str, Any] = {
            "step": 0,
            "samples": 0,  # items seen: steps x batch, comparable across devices and batches
            "minutes": 0.0,
            "history": [],
            "order": [],
            "runs": [],
        }

    @property
    def saved_config(self) -> dict[str, Any] | None:
        return self.saved["config"] if self.saved else None

    def start(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        device: torch.device,
        data: dict[str, Any],
        log: Callable[[str], None],
    ) -> None:
        """Restore the saved state (if any) into ``model`` and ``optimizer``. ``data`` names the
        training data; if it differs from the saved run's, the saved epoch order means nothing
        and a new one starts."""
        if self.saved is None:
            return
        saved = self.saved
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        _optimizer_to(optimizer, device)
        self.best.value, self.best.state = saved["best_value"], saved["best_state"]
        random.setstate(saved["python_random"])
        torch.set_rng_state(saved["torch_random"])
        for name, stream in self.randoms.items():
            if name in saved:
                stream.setstate(saved[name])
        self.progress = saved["progress"]
        if saved.get("data", data) != data:
            self.progress["order"] = []
            log("training data differ from the saved run's: a new epoch order")
        log(
            f"resumed from {self.path}: step {self.progress['step']}, "
            f"{self.progress['minutes']:.1f} min trained"
        )

    def save(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        config: dict[str, Any],
        data: dict[str, Any],
    ) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "best_value": self.best.value,
                "best_state": self.best.state,
                "python_random": random.getstate(),
                "torch_random": torch.get_rng_state(),
                **{name: stream.getstate() for name, stream in self.randoms.items()},
                "progress": self.progress,
                "config": config,
                "data": data,
            },
            self.path,
        )

    def train(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        schedule: Schedule,
        n_items: int,
        batch_size: int,
        make_batch: Callable[[list[int]], Batch],
        batch_loss: Callable[[Batch], dict[str, torch.Tensor]],
        validate: Callable[[], tuple[float, dict[str, Any]]],
        config: dict[str, Any],
        data: dict[str, Any],
        device: str,
        log: Callable[[str], None],
    ) -> None:
        """Steps until the schedule ends or the session's budget is spent; every
        ``validate_every`` steps a learning-curve point (``validate`` returns the value the best
        weights minimise and what else to record). Ends with a final validation and a save."""
        state = self.progress
        budget = schedule.minutes * 60.0
        start = last_save = time.perf_counter()
        minutes_before = state["minutes"]
        running: dict[str, float] = {}
        steps_this_run = 0
        while state["step"] < schedule.max_steps and time.perf_counter() - start < budget:
            indices = []
            for _ in range(batch_size):
                if not state["order"]:
                    state["order"] = list(range(n_items))
                    random.shuffle(state["order"])
                indices.append(state["order"].pop())
            lr = schedule.lr(state["step"])
            terms = batch_loss(make_batch(indices))
            optimise(model, optimizer, terms["total"], lr)
            state["step"] += 1
            state["samples"] = state.get("samples", 0) + batch_size
            steps_this_run += 1
            state["minutes"] = minutes_before + (time.perf_counter() - start) / 60
            update_running(running, terms)
            if state["step"] % schedule.validate_every == 0:
                value, extra = validate()
                record = {
                    "step": state["step"],
                    "samples": state["samples"],
                    "minutes": state["minutes"],
                    "device": device,
                    "lr": lr,
                    **extra,
                    **{f"train_{k}": v for k, v in running.items()},
                }
                state["history"].append(record)
                log(json.dumps({k: _rounded(v) for k, v in record.items()}))
                self.best.offer(value, model)
            if time.perf_counter() - last_save > schedule.save_every_minutes * 60:
                self.save(model, optimizer, config, data)
                last_save = time.perf_counter()
        self.best.offer(validate()[0], model)
        state["runs"].append(
            {
                "device": device,
                "steps": steps_this_run,
                "batch": batch_size,
                "minutes": state["minutes"] - minutes_before,
            }
        )
        self.save(model, optimizer, config, data)


def _rounded(value: Any) -> Any:
    return round(value, 4) if isinstance(value, float) else value


def _optimizer_to(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    for per_param in optimizer.state.values():
        for key, value in per_param.items():
            if isinstance(value, torch.Tensor) and key != "step":
                per_param[key] = value.to(device)

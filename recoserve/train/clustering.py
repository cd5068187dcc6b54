"""Training the GravNet + object-condensation clustering network on simulated events.

`recoserve train clustering` simulates its data (deterministic seeds: training events and
validation events come from different seeds, and the evaluation uses a third one, so no event
is seen twice), trains on the CPU one event per step within a time budget, keeps the
checkpoint with the lowest validation loss, tunes the condensation thresholds on the
validation events and writes the checkpoint plus a metrics JSON of the run.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recoserve.events.model import Event
from recoserve.events.parquet import read_events, write_events
from recoserve.nn.checkpoint import load_clustering, save_clustering
from recoserve.nn.gravnet import GravNetConfig, GravNetOC
from recoserve.nn.losses import OCWeights, object_condensation_loss
from recoserve.postprocess.condensation import CondensationThresholds, condense
from recoserve.sim.particles import GunConfig
from recoserve.sim.simulator import SimConfig, Simulator
from recoserve.train.loop import BestWeights, cosine_lr, optimise, update_running
from recoserve.train.targets import event_targets

TRAIN_SEED = 100
VALIDATION_SEED = 200
TEST_SEED = 300  # held-out evaluation events: never used in training or tuning


@dataclass(frozen=True)
class ClusteringTrainConfig:
    seed: int = 1
    train_events: int = 1200
    validation_events: int = 24
    particles: tuple[int, ...] = (10, 20, 30, 40, 50, 60, 80, 100)
    minutes: float = 45.0
    max_steps: int = 100_000
    learning_rate: float = 2e-3
    validate_every: int = 250
    init_from: str | None = None  # continue from this checkpoint (a second training stage)
    model: GravNetConfig = field(default_factory=GravNetConfig)
    weights: OCWeights = field(default_factory=OCWeights)


def simulate_mixed(n_events: int, seed: int, particles: tuple[int, ...]) -> list[Event]:
    """Events whose particle count cycles through ``particles`` (each its own gun setting)."""
    events: list[Event] = []
    for i in range(n_events):
        n = particles[i % len(particles)]
        sim = Simulator(SimConfig(gun=GunConfig(n_particles=n)))
        events.append(sim.event(seed, i))
    return events


def dataset(path: Path, n_events: int, seed: int, particles: tuple[int, ...]) -> list[Event]:
    """Load the events at ``path``, simulating and writing them first if needed."""
    if path.exists():
        try:
            events = read_events(path)
        except KeyError:  # written by an older event-file format: simulate again
            events = []
        if len(events) == n_events:
            return events
    events = simulate_mixed(n_events, seed, particles)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_events(path, events, {"seed": str(seed), "particles": json.dumps(list(particles))})
    return events


def validation_loss(model: GravNetOC, events: list[Event], weights: OCWeights) -> float:
    model.eval()
    total = 0.0
    with torch.no_grad():
        for event in events:
            hits, targets = event_targets(event)
            out = model(hits, torch.zeros(len(hits), dtype=torch.int64))
            total += float(object_condensation_loss(out, targets, weights)["total"])
    model.train()
    return total / max(len(events), 1)


def predict(model: GravNetOC, event: Event) -> tuple[np.ndarray, ...]:
    """Per-hit outputs as numpy arrays (eager, no grad)."""
    hits = torch.from_numpy(event.hits.features())
    with torch.no_grad():
        out = model(hits, torch.zeros(len(hits), dtype=torch.int64))
    return tuple(o.numpy() for o in out)


def tune_thresholds(
    model: GravNetOC, events: list[Event], score: Callable[[list[tuple[Event, Any]]], float]
) -> tuple[CondensationThresholds, list[dict[str, float]]]:
    """Grid search of (t_beta, t_d) maximising ``score`` on validation events."""
    outputs = [(event, predict(model, event)) for event in events]
    grid = []
    best = (-math.inf, CondensationThresholds())
    for t_beta in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7):
        for t_d in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0):
            thresholds = CondensationThresholds(t_beta, t_d)
            clustered = [
                (event, condense(o[0], o[1], event.hits.energy, o[2], o[3], o[4], o[5], thresholds))
                for event, o in outputs
            ]
            value = score(clustered)
            grid.append({"t_beta": t_beta, "t_d": t_d, "score": value})
            if value > best[0]:
                best = (value, thresholds)
    return best[1], grid


def train_clustering(
    config: ClusteringTrainConfig, data_dir: Path, output: Path, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Train, tune and save; returns the metrics dictionary written next to the checkpoint."""
    from recoserve.metrics.showers import selection_score, summarize_clustering

    torch.manual_seed(config.seed)
    random.seed(config.seed)
    t0 = time.perf_counter()
    train_events = dataset(
        data_dir / "train.parquet", config.train_events, TRAIN_SEED, config.particles
    )
    val_events = dataset(
        data_dir / "validation.parquet", config.validation_events, VALIDATION_SEED, config.particles
    )
    log(
        f"data: {len(train_events)} training, {len(val_events)} validation events "
        f"({time.perf_counter() - t0:.0f} s)"
    )
    previous: dict[str, Any] | None = None
    if config.init_from:
        model, _, _ = load_clustering(config.init_from)
        previous_metrics = Path(config.init_from).with_suffix(".metrics.json")
        if previous_metrics.exists():
            previous = json.loads(previous_metrics.read_text())
    else:
        model = GravNetOC(config.model)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=1e-5)
    budget = config.minutes * 60.0
    start = time.perf_counter()
    history: list[dict[str, float]] = []
    best = BestWeights()
    order: list[int] = []
    step = 0
    running: dict[str, float] = {}
    while step < config.max_steps and time.perf_counter() - start < budget:
        if not order:
            order = list(range(len(train_events)))
            random.shuffle(order)
        event = train_events[order.pop()]
        hits, targets = event_targets(event)
        if len(hits) == 0:
            continue
        progress = min((time.perf_counter() - start) / budget, 1.0)
        lr = cosine_lr(config.learning_rate, progress, 0.05)
        out = model(hits, torch.zeros(len(hits), dtype=torch.int64))
        terms = object_condensation_loss(out, targets, config.weights)
        optimise(model, optimizer, terms["total"], lr)
        step += 1
        update_running(running, terms)
        if step % config.validate_every == 0:
            val = validation_loss(model, val_events, config.weights)
            record = {
                "step": step,
                "minutes": (time.perf_counter() - start) / 60,
                "lr": lr,
                "validation_loss": val,
                **{f"train_{k}": v for k, v in running.items()},
            }
            history.append(record)
            log(json.dumps({k: round(v, 4) for k, v in record.items()}))
            best.offer(val, model)
    best.offer(validation_loss(model, val_events, config.weights), model)
    best.restore(model)
    train_minutes = (time.perf_counter() - start) / 60

    def score(clustered: list[tuple[Event, Any]]) -> float:
        summary = summarize_clustering([(e, c.hit_cluster, c.energy) for e, c in clustered])
        return selection_score(summary)

    thresholds, grid = tune_thresholds(model, val_events, score)
    log(f"thresholds: t_beta={thresholds.t_beta} t_d={thresholds.t_d}")
    earlier_steps = int(previous.get("total_steps", previous["steps"])) if previous else 0
    earlier_minutes = (
        float(previous.get("total_train_minutes", previous["train_minutes"])) if previous else 0.0
    )
    metrics = {
        "steps": step,
        "train_minutes": train_minutes,
        "total_steps": earlier_steps + step,
        "total_train_minutes": earlier_minutes + train_minutes,
        "previous_stage": previous,
        "best_validation_loss": best.value,
        "thresholds": asdict(thresholds),
        "threshold_grid": grid,
        "history": history,
        "config": {
            **{k: v for k, v in asdict(config).items() if k not in ("model", "weights")},
            "model": config.model.to_dict(),
            "weights": asdict(config.weights),
            "train_seed": TRAIN_SEED,
            "validation_seed": VALIDATION_SEED,
        },
        "torch": torch.__version__,
    }
    save_clustering(
        output,
        model,
        thresholds,
        {
            "seed": config.seed,
            "steps": earlier_steps + step,
            "train_minutes": earlier_minutes + train_minutes,
        },
    )
    output.with_suffix(".metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics

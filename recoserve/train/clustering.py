"""Training the GravNet + object-condensation clustering network on the benchmark's classes.

`recoserve train clustering` simulates its data from the event classes of
``recoserve.sim.classes`` (their ``train`` and ``validation`` seeds; the ``test`` seeds are only
for the final tables) in parallel worker processes and caches it as Parquet. Each training item
is one endcap of one event (the endcaps never interact), so a pileup event is two half-size
items. Targets follow the one truth definition (``recoserve.events.truth``).

Training is resumable and device-aware (``--device cuda`` where a GPU is lent): every few
minutes the whole state (weights, optimiser, step, the event order and random states, the best
weights so far and the learning curve) goes to ``<output>.state.pt``; a later run with the same
output continues where it stopped, on any device. The learning-rate schedule is a cosine over
``max_steps``, so a run cut into sessions follows the same schedule as one long run. At the end
of each run the best weights (lowest validation loss) get condensation thresholds tuned on the
validation events and are written as a servable checkpoint with a metrics JSON whose
``history`` is the learning curve (validation loss, efficiency and fake rate per class vs
training minutes).
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recoserve.events.model import Event
from recoserve.events.parquet import read_events, write_events
from recoserve.nn.checkpoint import load_clustering, save_clustering
from recoserve.nn.gravnet import GravNetConfig, GravNetOC
from recoserve.nn.losses import ObjectTargets, OCWeights, object_condensation_loss
from recoserve.postprocess.condensation import CondensationThresholds, condense
from recoserve.sim.classes import EVENT_CLASSES, event_class
from recoserve.train.crops import CropConfig, Item, crop_item
from recoserve.train.loop import ResumableRun, Schedule, state_path
from recoserve.train.targets import event_targets

DEFAULT_CLASSES = ("gun", "dense", "jets", "jets_pu140")


@dataclass(frozen=True)
class ClusteringTrainConfig:
    seed: int = 1
    classes: tuple[str, ...] = DEFAULT_CLASSES
    train_events: int = 300  # per class
    validation_events: int = 12  # per class
    minutes: float = 45.0  # wall-clock budget of this run (a session)
    max_steps: int = 60_000  # length of the learning-rate schedule (over all sessions)
    learning_rate: float = 2e-3
    validate_every: int = 500
    save_every_minutes: float = 3.0
    device: str = "cpu"
    workers: int = 2  # processes simulating the data
    init_from: str | None = None  # start from these weights (no optimiser state)
    batch: int = 1  # endcaps per step (one forward over segments): 8 or more pays off on a GPU
    tune: bool = True  # tune thresholds and log physics metrics (CPU work: off on a GPU box)
    crop_hits: int = 0  # > 0: endcaps with more hits are cropped in eta-phi (train/crops.py)
    model: GravNetConfig = field(default_factory=GravNetConfig.current)
    weights: OCWeights = field(default_factory=OCWeights.current)


def endcap_crop(event: Event, side: int) -> Event:
    """The hits of one endcap (0: +z, 1: -z); truth and tracks are kept whole."""
    keep = (event.hits.z < 0) == bool(side)
    return Event(event.event_id, event.hits.take(keep), event.tracks, event.particles)


def _simulate_chunk(args: tuple[str, str, int, int]) -> list[Event]:
    name, split, first, n = args
    cls = EVENT_CLASSES[name]
    return cls.events(split, n, cls.simulator(), first=first)


def class_events(data_dir: Path, name: str, split: str, n_events: int, workers: int) -> list[Event]:
    """The first ``n_events`` of a class's split, from the Parquet cache or simulated (in
    ``workers`` processes) and cached."""
    path = data_dir / f"{name}-{split}-{n_events}.parquet"
    if path.exists():
        try:
            events = read_events(path)
            if len(events) == n_events:
                return events
        except KeyError:  # written by an older event-file format: simulate again
            pass
    chunk = max(1, math.ceil(n_events / max(workers * 4, 1)))
    jobs = [(name, split, i, min(chunk, n_events - i)) for i in range(0, n_events, chunk)]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            events = [e for part in pool.map(_simulate_chunk, jobs) for e in part]
    else:
        events = [e for job in jobs for e in _simulate_chunk(job)]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_events(path, events, {"class": name, "split": split})
    return events


def training_items(events: list[Event]) -> list[Item]:
    """(hits, targets) of every endcap with hits."""
    items = []
    for event in events:
        for side in (0, 1):
            crop = endcap_crop(event, side)
            if len(crop.hits):
                items.append(event_targets(crop))
    return items


def _to(item: Item, device: torch.device) -> Item:
    hits, t = item
    if device.type == "cpu":
        return item
    return hits.to(device), ObjectTargets(**{k: v.to(device) for k, v in t.__dict__.items()})


def batch_loss(model: GravNetOC, batch: list[Item], weights: OCWeights) -> dict[str, torch.Tensor]:
    """Mean loss terms of several endcaps, run as one forward pass over segments (the
    network never mixes segments, so this equals one pass per endcap)."""
    sizes = [len(hits) for hits, _ in batch]
    segment = torch.cat(
        [
            torch.full((n,), i, dtype=torch.int64, device=batch[0][0].device)
            for i, n in enumerate(sizes)
        ]
    )
    outputs = model(torch.cat([hits for hits, _ in batch]), segment)
    parts = zip(*(o.split(sizes) for o in outputs), strict=True)
    total: dict[str, torch.Tensor] = {}
    for out, (_, targets) in zip(parts, batch, strict=True):
        terms = object_condensation_loss(out, targets, weights)
        for key, value in terms.items():
            total[key] = total.get(key, 0.0) + value / len(batch)
    return total


def validation_loss(
    model: GravNetOC, items: list[Item], weights: OCWeights, device: torch.device
) -> float:
    model.eval()
    total = 0.0
    with torch.no_grad():
        for item in items:
            hits, targets = _to(item, device)
            out = model(hits, torch.zeros(len(hits), dtype=torch.int64, device=device))
            total += float(object_condensation_loss(out, targets, weights)["total"])
    model.train()
    return total / max(len(items), 1)


def predict(
    model: GravNetOC, event: Event, device: torch.device | None = None
) -> tuple[np.ndarray, ...]:
    """Per-hit outputs as numpy arrays (eval mode, no grad)."""
    device = device or torch.device("cpu")
    hits = torch.from_numpy(event.hits.features()).to(device)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = model(hits, torch.zeros(len(hits), dtype=torch.int64, device=device))
    model.train(was_training)
    return tuple(o.cpu().numpy() for o in out)


Outputs = list[tuple[Event, tuple[np.ndarray, ...]]]


def _cluster_all(outputs: Outputs, thresholds: CondensationThresholds) -> list[tuple[Event, Any]]:
    return [
        (e, condense(o[0], o[1], e.hits.energy, o[2], o[3], o[4], o[5], thresholds))
        for e, o in outputs
    ]


def validation_metrics(
    model: GravNetOC, events: dict[str, list[Event]], device: torch.device
) -> dict[str, float]:
    """Efficiency (> 20 GeV), fake rate (> 10 GeV) and selection score per class at the
    default thresholds: the learning curve's physics."""
    from recoserve.metrics.showers import selection_score, summarize_clustering

    record = {}
    for name, evs in events.items():
        clustered = _cluster_all(
            [(e, predict(model, e, device)) for e in evs], CondensationThresholds()
        )
        summary = summarize_clustering([(e, c.hit_cluster, c.energy) for e, c in clustered])
        record[f"{name}_efficiency"] = summary["efficiency_above_20GeV"]
        record[f"{name}_fake_rate"] = summary["fake_rate_above_10GeV"]
        record[f"{name}_score"] = selection_score(summary)
    return record


def tune_thresholds(
    model: GravNetOC, events: list[Event], device: torch.device | None = None
) -> tuple[CondensationThresholds, list[dict[str, Any]]]:
    """The condensation thresholds maximising ``selection_score`` on validation events
    (``tune_condensation``: grids grown until their best points are inside), with the energy
    scale that makes the median response 1 at them."""
    from recoserve.metrics.showers import summarize_clustering
    from recoserve.metrics.tuning import tune_condensation

    outputs = [(event, predict(model, event, device)) for event in events]

    def summary(t: CondensationThresholds) -> dict[str, Any]:
        clustered = _cluster_all(outputs, t)
        return summarize_clustering([(e, c.hit_cluster, c.energy) for e, c in clustered])

    best, grid = tune_condensation(summary)
    return best, grid.points


def train_clustering(
    config: ClusteringTrainConfig, data_dir: Path, output: Path, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Train (resuming ``<output>.state.pt`` if present), tune and save; returns the metrics
    dictionary written next to the checkpoint."""
    device = torch.device(config.device)
    for name in config.classes:
        event_class(name)  # an unknown class fails here, with the known ones in the message
    t0 = time.perf_counter()
    train_items: list[Item] = []
    val_events: dict[str, list[Event]] = {}
    for name in config.classes:
        events = class_events(data_dir, name, "train", config.train_events, config.workers)
        train_items += training_items(events)
        val_events[name] = class_events(
            data_dir, name, "validation", config.validation_events, config.workers
        )
    val_items = training_items([e for evs in val_events.values() for e in evs])
    log(
        f"data: {len(train_items)} training endcaps, {len(val_items)} validation endcaps "
        f"of {', '.join(config.classes)} ({time.perf_counter() - t0:.0f} s)"
    )

    crops = random.Random(config.seed)  # its own stream: runs without crops are unchanged
    run = ResumableRun(state_path(output), config.seed, {"crop_random": crops})
    saved = run.saved_config
    # A resumed run keeps the architecture and loss it was started with.
    initial = load_clustering(config.init_from)[0] if config.init_from else None
    # ... and a run started from other weights has their architecture.
    default_architecture = initial.config if initial is not None else config.model
    architecture = GravNetConfig(**saved["model"]) if saved else default_architecture
    weights = OCWeights(**saved["weights"]) if saved else config.weights
    config = replace(config, model=architecture, weights=weights)
    model = initial if initial is not None else GravNetOC(architecture)
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=1e-5)
    data = {"classes": list(config.classes), "train_events": config.train_events}
    if run.saved is not None and "data" not in run.saved:  # saved before runs named their data
        before = run.saved["config"]
        run.saved["data"] = {
            "classes": list(before["classes"]),
            "train_events": before["train_events"],
        }
    run.start(model, optimizer, device, data, log)
    crop = CropConfig(config.crop_hits) if config.crop_hits > 0 else None

    def make_batch(indices: list[int]) -> list[Item]:
        items = (train_items[i] for i in indices)
        return [_to(crop_item(item, crop, crops) if crop else item, device) for item in items]

    def validate() -> tuple[float, dict[str, Any]]:
        val = validation_loss(model, val_items, weights, device)
        metrics = validation_metrics(model, val_events, device) if config.tune else {}
        return val, {"validation_loss": val, **metrics}

    schedule = Schedule(
        config.minutes,
        config.max_steps,
        config.learning_rate,
        config.validate_every,
        config.save_every_minutes,
    )
    run.train(
        model, optimizer, schedule, len(train_items), config.batch, make_batch,
        lambda batch: batch_loss(model, batch, weights), validate, _config_dict(config), data,
        config.device, log,
    )  # fmt: skip
    state, best = run.progress, run.best

    served = GravNetOC(config.model)
    served.load_state_dict({k: v.cpu() for k, v in best.state.items()})
    served.eval()
    all_val = [e for evs in val_events.values() for e in evs]
    thresholds, grid = CondensationThresholds(), list[dict[str, Any]]()
    if config.tune:
        thresholds, grid = tune_thresholds(served, all_val)
    log(f"thresholds: {asdict(thresholds)}")
    metrics = {
        "steps": state["step"],
        "train_minutes": state["minutes"],
        "runs": state["runs"],
        "best_validation_loss": best.value,
        "thresholds": asdict(thresholds),
        "threshold_grid": grid,
        "history": state["history"],
        "config": _config_dict(config),
        "seeds": {n: asdict(EVENT_CLASSES[n].seeds) for n in config.classes},
        "torch": torch.__version__,
    }
    save_clustering(
        output,
        served,
        thresholds,
        {"seed": config.seed, "steps": state["step"], "train_minutes": state["minutes"]},
    )
    output.with_suffix(".metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def _config_dict(config: ClusteringTrainConfig) -> dict[str, Any]:
    return {
        **{k: v for k, v in asdict(config).items() if k not in ("model", "weights")},
        "model": config.model.to_dict(),
        "weights": asdict(config.weights),
    }

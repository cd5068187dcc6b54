"""Training MLPF on elements made by the served chain's own clustering.

Events: two jets from the jet gun (50-300 GeV each) plus 0-4 isolated particles (electrons,
muons, photons, pions, K0L, neutrons of 5-100 GeV) from the same vertex, so that every PF class
occurs. Each event is clustered by the committed GravNet checkpoint with its tuned thresholds —
exactly what ``event_reco`` feeds MLPF when serving — and turned into elements and targets
(``recoserve.train.pf_targets``). Training, validation and evaluation use different seeds.

Loss per element: cross entropy over the six classes, plus, for elements with a particle, a
Huber loss on log(pt), log(E), eta, sin phi and cos phi.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from recoserve.metrics.pf_truth import pf_truth
from recoserve.nn.checkpoint import DEFAULT_CLUSTERING_CHECKPOINT, save_mlpf
from recoserve.nn.mlpf import MLPF, MLPFConfig
from recoserve.postprocess.candidates import NONE
from recoserve.postprocess.elements import build_elements
from recoserve.sim.classes import EVENT_CLASSES, pf_event
from recoserve.sim.simulator import Simulator
from recoserve.train.loop import BestWeights, cosine_lr, optimise, update_running
from recoserve.train.pf_targets import element_targets

JETS = EVENT_CLASSES["jets"]
TRAIN_SEED = JETS.seeds.train
VALIDATION_SEED = JETS.seeds.validation
TEST_SEED = JETS.seeds.test  # held-out evaluation events


@dataclass
class ElementSet:
    """Elements and targets of many events, concatenated, with per-event offsets."""

    elements: np.ndarray  # float32 [sum E, F]
    target_class: np.ndarray  # int64 [sum E]
    target_regression: np.ndarray  # float32 [sum E, 5]
    offsets: np.ndarray  # int64 [n_events + 1]

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def batch(self, events: list[int]) -> tuple[torch.Tensor, ...]:
        """(elements, segment, class, regression) tensors of the given events."""
        rows = [np.arange(self.offsets[i], self.offsets[i + 1]) for i in events]
        segment = np.concatenate([np.full(len(r), j, np.int64) for j, r in enumerate(rows)])
        index = np.concatenate(rows)
        return (
            torch.from_numpy(self.elements[index]),
            torch.from_numpy(segment),
            torch.from_numpy(self.target_class[index]),
            torch.from_numpy(self.target_regression[index]),
        )

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **asdict(self))

    @classmethod
    def load(cls, path: Path) -> ElementSet:
        with np.load(path) as blob:
            return cls(**{k: blob[k] for k in ("elements", "target_class", "target_regression",
                                               "offsets")})  # fmt: skip


def _prepare_range(args: tuple[int, int, int, str]) -> list[tuple[np.ndarray, ...]]:
    """Worker: simulate, cluster and convert events [first, last) of ``seed``."""
    seed, first, last, checkpoint = args
    from recoserve.inprocess import ClusteringPipeline

    torch.set_num_threads(1)
    pipeline = ClusteringPipeline(checkpoint)
    simulator = Simulator()
    out: list[tuple[np.ndarray, ...]] = []
    for i in range(first, last):
        event = pf_event(seed, i, simulator)
        hits = event.hits.features()
        clusters = pipeline.cluster(hits)
        elements = build_elements(hits, event.tracks.features(), clusters)
        cls, reg = element_targets(event, pf_truth(event), clusters)
        out.append((elements, cls, reg))
    return out


def prepare_elements(
    n_events: int, seed: int, workers: int = 2, checkpoint: Path = DEFAULT_CLUSTERING_CHECKPOINT
) -> ElementSet:
    chunk = max(1, math.ceil(n_events / (workers * 8)))
    jobs = [(seed, a, min(a + chunk, n_events), str(checkpoint)) for a in range(0, n_events, chunk)]
    with get_context("spawn").Pool(workers) as pool:
        parts = [item for result in pool.map(_prepare_range, jobs) for item in result]
    counts = np.array([len(p[0]) for p in parts], dtype=np.int64)
    return ElementSet(
        elements=np.concatenate([p[0] for p in parts]),
        target_class=np.concatenate([p[1] for p in parts]),
        target_regression=np.concatenate([p[2] for p in parts]),
        offsets=np.concatenate([[0], np.cumsum(counts)]),
    )


def element_dataset(path: Path, n_events: int, seed: int, workers: int = 2) -> ElementSet:
    """Load the element set at ``path``, or prepare and write it."""
    if path.exists():
        data = ElementSet.load(path)
        if len(data) == n_events:
            return data
    data = prepare_elements(n_events, seed, workers)
    data.save(path)
    return data


@dataclass(frozen=True)
class MLPFLossWeights:
    none_weight: float = 0.5  # class weight of "none" (the most common target)
    regression: float = 1.0


def mlpf_loss(
    outputs: tuple[torch.Tensor, torch.Tensor],
    target_class: torch.Tensor,
    target_regression: torch.Tensor,
    weights: MLPFLossWeights,
) -> dict[str, torch.Tensor]:
    logits, regression = outputs
    class_weight = torch.ones(logits.shape[1])
    class_weight[NONE] = weights.none_weight
    classification = F.cross_entropy(logits, target_class, weight=class_weight)
    has = target_class != NONE
    if bool(has.any()):
        pred, true = regression[has], target_regression[has]
        terms = torch.stack(
            [
                torch.log(pred[:, 0]) - torch.log(torch.clamp(true[:, 0], min=1e-3)),
                pred[:, 1] - true[:, 1],
                pred[:, 2] - true[:, 2],
                pred[:, 3] - true[:, 3],
                torch.log(pred[:, 4]) - torch.log(torch.clamp(true[:, 4], min=1e-3)),
            ],
            dim=1,
        )
        reg = F.huber_loss(terms, torch.zeros_like(terms), delta=0.2).mean() * 5.0
    else:
        reg = logits.sum() * 0.0
    return {
        "total": classification + weights.regression * reg,
        "classification": classification,
        "regression": reg,
    }


@dataclass(frozen=True)
class MLPFTrainConfig:
    seed: int = 1
    train_events: int = 8000
    validation_events: int = 300
    batch_events: int = 16
    minutes: float = 30.0
    max_steps: int = 1_000_000
    learning_rate: float = 2e-3
    validate_every: int = 200
    workers: int = 2
    model: MLPFConfig = field(default_factory=MLPFConfig)
    weights: MLPFLossWeights = field(default_factory=MLPFLossWeights)


def _batches(n: int, size: int) -> Iterator[list[int]]:
    for start in range(0, n, size):
        yield list(range(start, min(start + size, n)))


def evaluate_loss(model: MLPF, data: ElementSet, weights: MLPFLossWeights) -> dict[str, float]:
    model.eval()
    sums: dict[str, float] = {}
    n = 0
    with torch.no_grad():
        for events in _batches(len(data), 32):
            elements, segment, cls, reg = data.batch(events)
            terms = mlpf_loss(model(elements, segment), cls, reg, weights)
            for key, value in terms.items():
                sums[key] = sums.get(key, 0.0) + float(value) * len(events)
            n += len(events)
    model.train()
    return {k: v / max(n, 1) for k, v in sums.items()}


def train_mlpf(
    config: MLPFTrainConfig, data_dir: Path, output: Path, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Prepare data, train, save the best checkpoint and its metrics JSON."""
    torch.manual_seed(config.seed)
    random.seed(config.seed)
    t0 = time.perf_counter()
    train = element_dataset(data_dir / "train.npz", config.train_events, TRAIN_SEED, config.workers)
    validation = element_dataset(
        data_dir / "validation.npz", config.validation_events, VALIDATION_SEED, config.workers
    )
    log(
        f"data: {len(train)} training events ({len(train.elements)} elements), "
        f"{len(validation)} validation events ({time.perf_counter() - t0:.0f} s)"
    )
    model = MLPF(config.model)
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
        if len(order) < config.batch_events:
            order = list(range(len(train)))
            random.shuffle(order)
        events = [order.pop() for _ in range(config.batch_events)]
        elements, segment, cls, reg = train.batch(events)
        progress = min((time.perf_counter() - start) / budget, 1.0)
        lr = cosine_lr(config.learning_rate, progress, 0.02)
        terms = mlpf_loss(model(elements, segment), cls, reg, config.weights)
        optimise(model, optimizer, terms["total"], lr)
        step += 1
        update_running(running, terms)
        if step % config.validate_every == 0:
            val = evaluate_loss(model, validation, config.weights)
            record = {
                "step": step,
                "minutes": (time.perf_counter() - start) / 60,
                "lr": lr,
                **{f"validation_{k}": v for k, v in val.items()},
                **{f"train_{k}": v for k, v in running.items()},
            }
            history.append(record)
            log(json.dumps({k: round(v, 4) for k, v in record.items()}))
            best.offer(val["total"], model)
    best.offer(evaluate_loss(model, validation, config.weights)["total"], model)
    best.restore(model)
    train_minutes = (time.perf_counter() - start) / 60
    metrics = {
        "steps": step,
        "train_minutes": train_minutes,
        "best_validation_loss": best.value,
        "history": history,
        "config": {
            **{k: v for k, v in asdict(config).items() if k not in ("model", "weights")},
            "model": config.model.to_dict(),
            "weights": asdict(config.weights),
            "train_seed": TRAIN_SEED,
            "validation_seed": VALIDATION_SEED,
            "clustering_checkpoint": str(DEFAULT_CLUSTERING_CHECKPOINT.name),
        },
        "torch": torch.__version__,
    }
    save_mlpf(output, model, {"seed": config.seed, "steps": step, "train_minutes": train_minutes})
    output.with_suffix(".metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics

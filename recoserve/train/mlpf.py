"""Training MLPF on elements of a realistic mix of events and of several clusterings.

Events (``samples``): ``jets_with_leptons`` — two jets from the jet gun (50-300 GeV each) plus
0-4 isolated particles (electrons, muons, photons, pions, K0L, neutrons of 5-100 GeV) from the
same vertex, so that every PF class occurs — and the benchmark classes ``jets_pu140`` (pileup
140) and ``gun``, each from its ``train`` / ``validation`` seeds. Each event is clustered by
every source in ``cluster_sources`` (the served network with its tuned thresholds, which is what
``event_reco`` feeds MLPF when serving; CLUE with its tuned parameters; the truth assignment) and
each clustering becomes one training example of elements and targets
(``recoserve.train.pf_targets``): MLPF learns particle flow, not one clustering's mistakes, and
keeps working when the clustering improves. The default, one sample and the network alone, is
what the served MLPF was trained on.

Training is resumable like the clustering network's, with the same loop
(``recoserve.train.loop.ResumableRun``): a cosine over ``max_steps`` steps, the whole state in
``<output>.state.pt`` every few minutes. Prepared elements are cached per split, sample, cluster
source and that source's ``clustering_basis`` (network weights and tuned thresholds, CLUE's
parameters and calibration).

Loss per element: cross entropy over the six classes, plus, for elements with a particle, a
Huber loss on log(pt), log(E), eta, sin phi and cos phi.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from recoserve.events.model import Event
from recoserve.metrics.pf_truth import pf_truth
from recoserve.nn.checkpoint import DEFAULT_CLUSTERING_CHECKPOINT, load_mlpf, save_mlpf
from recoserve.nn.mlpf import MLPF, MLPFConfig
from recoserve.postprocess.candidates import NONE
from recoserve.sim.classes import EVENT_CLASSES, pf_event
from recoserve.sim.simulator import Simulator
from recoserve.train.loop import ResumableRun, Schedule, state_path
from recoserve.train.pf_targets import element_targets

if TYPE_CHECKING:
    from recoserve.metrics.chain_report import ChainRunner

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
    def concatenate(cls, parts: list[ElementSet]) -> ElementSet:
        """One set of the parts' events, in order."""
        sizes = np.concatenate([np.diff(p.offsets) for p in parts])
        return cls(
            elements=np.concatenate([p.elements for p in parts]),
            target_class=np.concatenate([p.target_class for p in parts]),
            target_regression=np.concatenate([p.target_regression for p in parts]),
            offsets=np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
        )

    def select(self, examples: np.ndarray) -> ElementSet:
        """The given examples (events), in that order."""
        rows = [np.arange(self.offsets[i], self.offsets[i + 1]) for i in examples]
        index = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        sizes = np.diff(self.offsets)[examples]
        return ElementSet(
            elements=self.elements[index],
            target_class=self.target_class[index],
            target_regression=self.target_regression[index],
            offsets=np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
        )

    @classmethod
    def interleave(cls, parts: list[ElementSet]) -> ElementSet:
        """Example i of every part, then example i + 1 of every part, ... (parts of equal
        length: one per cluster source of the same events)."""
        n = len(parts[0])
        order = (np.arange(n)[:, None] + n * np.arange(len(parts))[None, :]).ravel()
        return cls.concatenate(parts).select(order)

    @classmethod
    def load(cls, path: Path) -> ElementSet:
        with np.load(path) as blob:
            return cls(**{k: blob[k] for k in ("elements", "target_class", "target_regression",
                                               "offsets")})  # fmt: skip


SAMPLES = ("jets_with_leptons", "jets_pu140", "gun")
CLUSTER_SOURCES = ("network", "clue", "truth_assignment")


def sample_event(sample: str, split: str, index: int, simulators: dict[str, Simulator]) -> Event:
    """Event ``index`` of a sample's split (deterministic; seeds from the class table)."""
    if sample == "jets_with_leptons":
        simulator = simulators.setdefault(sample, Simulator())
        return pf_event(JETS.seeds.of(split), index, simulator)
    cls = EVENT_CLASSES[sample]
    return cls.event(split, index, simulators.setdefault(sample, cls.simulator()))


PrepareJob = tuple[str, str, int, int, str, tuple[str, ...]]


def _runners(samples: tuple[str, ...], checkpoint: Path) -> dict[str, ChainRunner]:
    """The clusterings of each sample's events, with its class's validation tunings (one
    pipeline, loaded once, for all samples)."""
    from recoserve.inprocess import ClusteringPipeline, EventRecoPipeline
    from recoserve.metrics.chain_report import ChainRunner
    from recoserve.metrics.tuning_store import TuningStore

    pipeline = EventRecoPipeline(ClusteringPipeline(checkpoint))
    store = TuningStore()
    return {
        s: ChainRunner(JETS if s == "jets_with_leptons" else EVENT_CLASSES[s], pipeline, store)
        for s in samples
    }


def clustering_basis(
    samples: tuple[str, ...], sources: tuple[str, ...], checkpoint: Path
) -> dict[str, dict[str, Any]]:
    """Per sample and cluster source, what the clusters depend on (checkpoint, tuned
    thresholds, CLUE's parameters and calibration): elements prepared on another basis are
    prepared again."""
    runners = _runners(samples, checkpoint)
    return {s: {src: runners[s].basis(src) for src in sources} for s in samples}


def _prepare_range(job: PrepareJob) -> list[tuple[np.ndarray, ...]]:
    """Worker: events [first, last) of a sample's split, each clustered by every source and
    turned into (elements, class targets, regression targets)."""
    sample, split, first, last, checkpoint, sources = job
    torch.set_num_threads(1)
    runner = _runners((sample,), Path(checkpoint))[sample]
    simulators: dict[str, Simulator] = {}
    out: list[tuple[np.ndarray, ...]] = []
    for i in range(first, last):
        event = sample_event(sample, split, i, simulators)
        truth = pf_truth(event)
        for source in sources:
            clusters, elements = runner.elements(event, source)
            targets, regression = element_targets(event, truth, clusters)
            out.append((elements, targets, regression))
    return out


def prepare_elements(
    n_events: int | dict[str, int],
    split: str,
    workers: int = 2,
    checkpoint: Path = DEFAULT_CLUSTERING_CHECKPOINT,
    samples: tuple[str, ...] = ("jets_with_leptons",),
    sources: tuple[str, ...] = ("network",),
) -> ElementSet:
    """``n_events`` events of each sample (or per sample, from a dict), times one example per
    cluster source."""
    counts = n_events if isinstance(n_events, dict) else dict.fromkeys(samples, n_events)
    for sample in samples:
        if sample != "jets_with_leptons" and sample not in EVENT_CLASSES:
            raise ValueError(f"unknown sample {sample!r}; known: {', '.join(SAMPLES)}")
    unknown = set(sources) - set(CLUSTER_SOURCES)
    if unknown:
        raise ValueError(f"unknown cluster sources {sorted(unknown)}; known: {CLUSTER_SOURCES}")
    jobs: list[PrepareJob] = []
    for sample in samples:
        n = counts[sample]
        chunk = max(1, math.ceil(n / (workers * 8)))
        jobs += [
            (sample, split, a, min(a + chunk, n), str(checkpoint), sources)
            for a in range(0, n, chunk)
        ]
    with get_context("spawn").Pool(workers) as pool:
        parts = [item for result in pool.map(_prepare_range, jobs) for item in result]
    sizes = np.array([len(p[0]) for p in parts], dtype=np.int64)
    return ElementSet(
        elements=np.concatenate([p[0] for p in parts]),
        target_class=np.concatenate([p[1] for p in parts]),
        target_regression=np.concatenate([p[2] for p in parts]),
        offsets=np.concatenate([[0], np.cumsum(sizes)]),
    )


def element_dataset(
    data_dir: Path,
    split: str,
    n_events: dict[str, int],
    basis: dict[str, Any],
    workers: int = 2,
    sources: tuple[str, ...] = ("network",),
) -> ElementSet:
    """The element set of this split, mix and sources (per event, one example per source in
    ``sources`` order). Each sample's examples of each source are cached in ``data_dir``, one
    file per split, sample, count, source and that source's ``clustering_basis``: a mix that
    adds a sample prepares only it, and a new clustering network re-prepares only the
    network's examples."""
    parts = []
    for sample, n in n_events.items():
        paths = {
            src: source_cache_path(data_dir, split, sample, n, src, basis[sample][src])
            for src in sources
        }
        cached = {src: ElementSet.load(path) for src, path in paths.items() if path.exists()}
        cached = {src: data for src, data in cached.items() if len(data) == n}
        missing = tuple(src for src in sources if src not in cached)
        if missing:
            fresh = prepare_elements(
                {sample: n}, split, workers, samples=(sample,), sources=missing
            )
            for j, src in enumerate(missing):
                cached[src] = fresh.select(np.arange(j, len(fresh), len(missing)))
                cached[src].save(paths[src])
        parts.append(ElementSet.interleave([cached[src] for src in sources]))
    return ElementSet.concatenate(parts)


def source_cache_path(
    data_dir: Path, split: str, sample: str, n: int, source: str, basis: Any
) -> Path:
    """Where one sample's examples of one cluster source are cached."""
    digest = hashlib.sha256(json.dumps(basis, sort_keys=True).encode()).hexdigest()[:12]
    return data_dir / f"{split}-{sample}{n}-{source}-{digest}.npz"


@dataclass(frozen=True)
class MLPFLossWeights:
    none_weight: float = 0.5  # class weight of "none" (the most common target)
    regression: float = 1.0
    # False: every element weighs the same, so a pileup event (thousands of elements, nearly all
    # "none") outweighs dozens of jet events in a batch; True: every event weighs the same.
    per_event: bool = False


def mlpf_loss(
    outputs: tuple[torch.Tensor, torch.Tensor],
    target_class: torch.Tensor,
    target_regression: torch.Tensor,
    weights: MLPFLossWeights,
    segment: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """Class-weighted cross entropy over all elements plus a Huber loss on the regression of
    elements with a particle; means over elements or, with ``per_event``, over events."""
    logits, regression = outputs
    class_weight = torch.ones(logits.shape[1])
    class_weight[NONE] = weights.none_weight
    cross_entropy = F.cross_entropy(logits, target_class, reduction="none")
    classification = _weighted_mean(
        cross_entropy, class_weight[target_class], segment, weights.per_event
    )
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
        huber = F.huber_loss(terms, torch.zeros_like(terms), delta=0.2, reduction="none")
        per_element = huber.mean(dim=1) * 5.0
        reg = _weighted_mean(
            per_element, torch.ones_like(per_element), segment[has], weights.per_event
        )
    else:
        reg = logits.sum() * 0.0
    return {
        "total": classification + weights.regression * reg,
        "classification": classification,
        "regression": reg,
    }


def _weighted_mean(
    values: torch.Tensor, weight: torch.Tensor, segment: torch.Tensor, per_event: bool
) -> torch.Tensor:
    """Weighted mean of per-element values, over all elements or per event then over events."""
    if not per_event:
        return (values * weight).sum() / weight.sum()
    n = int(segment.max()) + 1
    numerator = torch.zeros(n, dtype=values.dtype).index_add(0, segment, values * weight)
    denominator = torch.zeros(n, dtype=values.dtype).index_add(0, segment, weight)
    present = denominator > 0
    return (numerator[present] / denominator[present]).mean()


@dataclass(frozen=True)
class MLPFTrainConfig:
    seed: int = 1
    train_events: int = 8000
    validation_events: int = 300
    batch_events: int = 16
    minutes: float = 30.0
    max_steps: int = 30_000  # length of the learning-rate schedule, over all runs
    learning_rate: float = 2e-3
    validate_every: int = 200
    workers: int = 2
    # Per sample: train_events / validation_events, or "name:N" for N training events (and
    # validation events in the same proportion): pileup events cost 20x a jet event to prepare.
    samples: tuple[str, ...] = ("jets_with_leptons",)
    cluster_sources: tuple[str, ...] = ("network",)  # one example per event and source
    model: MLPFConfig = field(default_factory=MLPFConfig)
    weights: MLPFLossWeights = field(default_factory=MLPFLossWeights)
    init_from: str | None = None  # start a new run from these weights (no optimiser state)

    def sample_events(self) -> tuple[dict[str, int], dict[str, int]]:
        """(training, validation) events per sample."""
        train, validation = {}, {}
        for entry in self.samples:
            name, _, count = entry.partition(":")
            if name != "jets_with_leptons" and name not in EVENT_CLASSES:
                raise ValueError(f"unknown sample {name!r}; known: {', '.join(SAMPLES)}")
            n = int(count) if count.isdigit() else self.train_events if not count else 0
            if n < 1:
                raise ValueError(f"sample {entry!r}: write NAME or NAME:EVENTS (EVENTS >= 1)")
            train[name] = n
            validation[name] = max(1, math.ceil(self.validation_events * n / self.train_events))
        return train, validation


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
            terms = mlpf_loss(model(elements, segment), cls, reg, weights, segment)
            for key, value in terms.items():
                sums[key] = sums.get(key, 0.0) + float(value) * len(events)
            n += len(events)
    model.train()
    return {k: v / max(n, 1) for k, v in sums.items()}


def train_mlpf(
    config: MLPFTrainConfig, data_dir: Path, output: Path, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Prepare data, train, save the best checkpoint and its metrics JSON."""
    t0 = time.perf_counter()
    train_counts, validation_counts = config.sample_events()
    samples = tuple(train_counts)
    basis = clustering_basis(samples, config.cluster_sources, DEFAULT_CLUSTERING_CHECKPOINT)
    sources = config.cluster_sources
    train = element_dataset(data_dir, "train", train_counts, basis, config.workers, sources)
    validation = element_dataset(
        data_dir, "validation", validation_counts, basis, config.workers, sources
    )
    log(
        f"data: {len(train)} training events ({len(train.elements)} elements), "
        f"{len(validation)} validation events ({time.perf_counter() - t0:.0f} s)"
    )
    run = ResumableRun(state_path(output), config.seed)
    saved = run.saved_config
    # A run started from other weights has their architecture; a resumed run keeps its own.
    initial = load_mlpf(config.init_from)[0] if config.init_from and not saved else None
    default_architecture = initial.config if initial is not None else config.model
    model_config = MLPFConfig(**saved["model"]) if saved else default_architecture
    # A resumed run keeps the loss it was started with.
    config = replace(config, weights=MLPFLossWeights(**saved["weights"])) if saved else config
    model = initial if initial is not None else MLPF(model_config)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=1e-5)
    data = {"train": train_counts, "sources": sources, "clustering_basis": basis}
    run.start(model, optimizer, torch.device("cpu"), json.loads(json.dumps(data)), log)

    def validate() -> tuple[float, dict[str, Any]]:
        val = evaluate_loss(model, validation, config.weights)
        return val["total"], {f"validation_{k}": v for k, v in val.items()}

    def batch_loss(batch: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
        elements, segment, cls, reg = batch
        return mlpf_loss(model(elements, segment), cls, reg, config.weights, segment)

    schedule = Schedule(
        config.minutes, config.max_steps, config.learning_rate, config.validate_every, lr_floor=0.02
    )
    record = {
        **{k: v for k, v in asdict(config).items() if k not in ("model", "weights")},
        "model": model_config.to_dict(),
        "weights": asdict(config.weights),
        "train_seed": TRAIN_SEED,
        "validation_seed": VALIDATION_SEED,
        "clustering_checkpoint": str(DEFAULT_CLUSTERING_CHECKPOINT.name),
        "clustering_basis": basis,
    }
    run.train(
        model, optimizer, schedule, len(train), config.batch_events, train.batch, batch_loss,
        validate, record, json.loads(json.dumps(data)), "cpu", log,
    )  # fmt: skip
    run.best.restore(model)
    progress = run.progress
    metrics = {
        "steps": progress["step"],
        "train_minutes": progress["minutes"],
        "runs": progress["runs"],
        "best_validation_loss": run.best.value,
        "history": progress["history"],
        "config": record,
        "torch": torch.__version__,
    }
    info = {"seed": config.seed, "steps": progress["step"], "train_minutes": progress["minutes"]}
    save_mlpf(output, model, info)
    output.with_suffix(".metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics

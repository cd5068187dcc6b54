"""What a reconstructed event costs: the ML chain against the classical chain, on one core.

- ML chain (what ``event_reco`` serves): the clustering network (ONNX Runtime, one thread) and
  condensation, PF elements, MLPF (ONNX Runtime) and decoding;
- classical chain: CLUE (layer clusters and their 3D association) with its section-calibrated
  energies, the same PF elements, the rule-based PF.

Both run in this process on the same events, interleaved event by event, so that whatever else
the machine does weighs on both alike; each stage is timed and the median over the repeats of
every event is kept. ``peak_memory`` measures the steady peak resident memory of the ML chain
at the largest size in a fresh process (model load, then repeated events).
"""

from __future__ import annotations

import multiprocessing
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# label (hits per event) -> particles per gun event: about 4,800 noise hits, then ~520 per particle
CHAIN_SIZES = {"5k": 1, "7k": 5, "10k": 12, "20k": 32, "60k": 110, "200k": 375}
CHAIN_SEED = 510


@dataclass
class ChainCost:
    size: str
    hits: float  # mean hits per event
    events: int
    repeats: int
    ml_ms: float  # median ms per event, whole chain
    classical_ms: float
    ml_over_classical: float
    ml_stages_ms: dict[str, float] = field(default_factory=dict)
    classical_stages_ms: dict[str, float] = field(default_factory=dict)


def gun_events(particles: int, n: int, seed: int = CHAIN_SEED) -> list[Any]:
    """``n`` particle-gun events (full ``Event`` objects: CLUE reads the hits' layers) of
    ``particles`` particles each, from seed ``seed + particles``."""
    from recoserve.sim.particles import GunConfig
    from recoserve.sim.simulator import SimConfig, Simulator

    sim = Simulator(SimConfig(gun=GunConfig(n_particles=particles)))
    return [sim.event(seed + particles, i) for i in range(n)]


def exported_pipeline(repository: Path) -> Any:
    """The served chain in this process: the repository's exported networks in ONNX Runtime
    (one thread) with the same post-processing (an ``EventRecoPipeline``)."""
    from recoserve.inprocess import ClusteringPipeline, EventRecoPipeline

    clustering = ClusteringPipeline(
        backend="onnx", exported=repository / "gravnet_oc" / "1" / "model.onnx"
    )
    return EventRecoPipeline(
        clustering, backend="onnx", exported=repository / "mlpf" / "1" / "model.onnx"
    )


def _elements(event: Any, clusters: Any) -> Any:
    from recoserve.postprocess.elements import build_elements

    return build_elements(event.hits.features(), event.tracks.features(), clusters)


class Chains:
    """The two chains as lists of named stages, each a function of the event and the previous
    stage's output."""

    def __init__(self, repository: Path) -> None:
        from recoserve.baselines.clue import ClueCalibration, ClueParams
        from recoserve.baselines.pf import PFParams
        from recoserve.sim.simulator import SimConfig

        self.ml = exported_pipeline(repository)
        self.clue_params = ClueParams()
        self.calibration = ClueCalibration()
        self.pf_params = PFParams()
        self.readout = SimConfig().readout

    def ml_stages(self) -> list[tuple[str, Callable[[Any, Any], Any]]]:
        from recoserve.postprocess.chain import cluster_events

        clustering = self.ml.clustering
        return [
            ("network + condensation", lambda event, _: cluster_events(
                clustering.network, [event.hits.features()], clustering.thresholds)[0]),
            ("elements", _elements),
            ("mlpf + decode", lambda _, elements: self.ml.candidates_from_elements(elements)),
        ]  # fmt: skip

    def classical_stages(self) -> list[tuple[str, Callable[[Any, Any], Any]]]:
        from recoserve.baselines.clue import calibrated_clusters, clue
        from recoserve.baselines.pf import rule_based_pf

        return [
            ("clue", lambda event, _: calibrated_clusters(
                event.hits, clue(event.hits, self.clue_params, self.readout).hit_cluster,
                self.calibration)),
            ("elements", _elements),
            ("rule-based pf", lambda _, elements: rule_based_pf(elements, self.pf_params)),
        ]  # fmt: skip


def _run(stages: list[tuple[str, Callable[[Any, Any], Any]]], event: Any) -> dict[str, float]:
    """Seconds per stage of one event."""
    seconds = {}
    value = None
    for name, stage in stages:
        start = time.perf_counter()
        value = stage(event, value)
        seconds[name] = time.perf_counter() - start
    return seconds


def measure_chain_cost(
    repository: Path,
    sizes: tuple[str, ...] = tuple(CHAIN_SIZES),
    events_per_size: int = 3,
    repeats: int = 3,
    log: Callable[[str], None] = print,
) -> list[ChainCost]:
    """ML chain vs classical chain per event at each size, interleaved (module docstring)."""
    chains = Chains(repository)
    ml, classical = chains.ml_stages(), chains.classical_stages()
    results = []
    for size in sizes:
        events = gun_events(CHAIN_SIZES[size], events_per_size)
        _run(ml, events[0])  # warm-up: first-call allocations
        _run(classical, events[0])
        ml_times: dict[str, list[float]] = {name: [] for name, _ in ml}
        classical_times: dict[str, list[float]] = {name: [] for name, _ in classical}
        ml_totals, classical_totals = [], []
        for event in events:
            ml_runs = [_run(ml, event) for _ in range(repeats)]
            classical_runs = [_run(classical, event) for _ in range(repeats)]
            ml_totals.append(statistics.median(sum(r.values()) for r in ml_runs))
            classical_totals.append(statistics.median(sum(r.values()) for r in classical_runs))
            for runs, times in ((ml_runs, ml_times), (classical_runs, classical_times)):
                for name in times:
                    times[name].append(statistics.median(r[name] for r in runs))
        cost = ChainCost(
            size=size,
            hits=float(np.mean([len(e.hits.energy) for e in events])),
            events=len(events),
            repeats=repeats,
            ml_ms=1e3 * float(np.mean(ml_totals)),
            classical_ms=1e3 * float(np.mean(classical_totals)),
            ml_over_classical=float(np.mean(ml_totals) / np.mean(classical_totals)),
            ml_stages_ms={k: 1e3 * float(np.mean(v)) for k, v in ml_times.items()},
            classical_stages_ms={k: 1e3 * float(np.mean(v)) for k, v in classical_times.items()},
        )
        log(
            f"chain cost {size:>4} ({cost.hits:.0f} hits): ML {cost.ml_ms:7.1f} ms, classical "
            f"{cost.classical_ms:7.1f} ms, ratio {cost.ml_over_classical:4.2f}"
        )
        results.append(cost)
    return results


def _peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM). Not ``getrusage``'s ru_maxrss: a spawned
    child inherits through fork + exec the high-water mark of the parent it was forked from."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return float(line.split()[1]) / 1024
    return float("nan")


def _peak_rss_child(repository: str, event_file: str, calls: int, answer: Any) -> None:
    pipeline = exported_pipeline(Path(repository))
    event = np.load(event_file)
    loaded = _peak_rss_mb()
    peaks = []
    for _ in range(calls):
        pipeline.reconstruct(event["hits"], event["tracks"])
        peaks.append(_peak_rss_mb())
    answer.put({"loaded_mb": loaded, "peak_mb_after_each_call": peaks})


def peak_memory(repository: Path, event: Any, calls: int = 4) -> dict[str, Any]:
    """Peak resident memory (MB) of a fresh process that loads the ML chain and runs it
    ``calls`` times on ``event`` (simulated by the caller, so that the simulation's memory is
    not counted): after loading, and after each call (steady = the last one)."""
    context = multiprocessing.get_context("spawn")
    answer = context.Queue()
    with tempfile.TemporaryDirectory() as tmp:
        event_file = Path(tmp) / "event.npz"
        np.savez(event_file, hits=event.hits.features(), tracks=event.tracks.features())
        child = context.Process(
            target=_peak_rss_child, args=(str(repository), str(event_file), calls, answer)
        )
        child.start()
        try:
            result = _answer_of(child, answer)
        finally:
            child.join(30)
            if child.is_alive():
                child.kill()
    return {"hits": len(event.hits.energy), **result}


def _answer_of(child: Any, answer: Any) -> dict[str, Any]:
    """The child's answer, or an error as soon as it has died without one."""
    import queue

    while True:
        try:
            result: dict[str, Any] = answer.get(timeout=1.0)
            return result
        except queue.Empty:
            if not child.is_alive():
                raise RuntimeError(f"the memory probe died (exit code {child.exitcode})") from None


def served_peak_memory(
    pids: list[int], grpc_url: str, event: Any, calls: int = 4
) -> dict[str, Any]:
    """Peak resident memory (MB) of the server's process tree while it reconstructs ``event``
    ``calls`` times, of the tree before, and of each of its processes (a Triton Python-backend
    stub per model instance)."""
    from recoserve.benchmark.runner import ResourceMonitor
    from recoserve.client import RecoClient

    before = ResourceMonitor(pids)
    time.sleep(0.5)
    _, idle = before.stop()
    monitor = ResourceMonitor(pids)
    with RecoClient(grpc_url, shared_memory="never", timeout=600) as client:
        for _ in range(calls):
            client.reconstruct((event.hits.features(), event.tracks.features()))
    _, peak = monitor.stop()
    return {
        "hits": len(event.hits.energy),
        "idle_tree_mb": idle,
        "peak_tree_mb": peak,
        "peak_per_process_mb": dict(sorted(monitor.process_peaks.items())),
    }


def plot_chain_cost(costs: list[ChainCost], path: Path) -> None:
    import matplotlib.pyplot as plt

    from recoserve.plotting import save_figure

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    hits = [c.hits for c in costs]
    left.plot(hits, [c.ml_ms for c in costs], marker="o", label="ML chain")
    left.plot(hits, [c.classical_ms for c in costs], marker="s", label="classical chain")
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("hits per event")
    left.set_ylabel("ms per event (one core)")
    left.legend()
    left.grid(alpha=0.3)
    right.plot(hits, [c.ml_over_classical for c in costs], marker="o")
    right.axhline(2.0, color="grey", linestyle="--", label="target: 2x")
    right.set_xscale("log")
    right.set_xlabel("hits per event")
    right.set_ylabel("ML / classical")
    right.legend()
    right.grid(alpha=0.3)
    save_figure(fig, path)

"""The particle-flow and full-chain benchmark: which clusters, which PF, per event class.

Chains are a clustering feeding a PF through the same element code
(``recoserve.postprocess.elements``):

- clusterings: ``network`` (the served GravNet + condensation, thresholds tuned on the class's
  validation events), ``clue`` (CLUE with the class's tuned parameters and two-section energy
  calibration), ``truth_assignment`` (ablation: the truth definition's hit assignment with
  reconstructed energies: CLUE's calibration of its hits), ``perfect`` (ablation: one cluster
  per truth particle with its true energy, class and entry point);
- PFs: ``mlpf`` (the served MLPF) and ``rule_pf`` (``recoserve.baselines.pf``, its energy
  calibrations fit per clustering on validation events by ``fit_calibration``).

`recoserve evaluate pf` runs the PF-level comparison (network clusters into both PFs, and the
two ablations); `recoserve evaluate chain` adds the classical chain (CLUE clusters). Both report
per particle class efficiency, fake rate, response and resolution, anti-kt 0.4 jets, missing pt
and seconds per event per chain (``recoserve.metrics.pf``), on the class's test events.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from recoserve.baselines.clue import ClueCalibration, ClueParams, calibrated_clusters, clue
from recoserve.baselines.pf import (
    EM_CLUSTER,
    HADRONIC_CLUSTER,
    PFCalibration,
    PFParams,
    cluster_kind,
    rule_based_pf,
)
from recoserve.events.model import Event
from recoserve.events.truth import truth_objects
from recoserve.inprocess import EventRecoPipeline
from recoserve.metrics.chains import ALL_CHAINS, CLUSTERINGS, PFS
from recoserve.metrics.pf import PFAccumulator
from recoserve.metrics.pf_truth import pf_truth, truth_clusters
from recoserve.metrics.showers import SCORE_VERSION
from recoserve.metrics.tuning_store import (
    TuningStore,
    current_network_tuning,
    current_tuning,
    read_json,
    write_json,
)
from recoserve.nn.checkpoint import weights_sha256
from recoserve.postprocess.candidates import NEUTRAL_HADRON
from recoserve.postprocess.chain import cluster_events
from recoserve.postprocess.condensation import Clusters, CondensationThresholds
from recoserve.postprocess.elements import COLUMN, build_elements
from recoserve.sim.classes import EventClass, event_class

CALIBRATION_BINS = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5)  # log10(E / GeV): 1 GeV - 300 GeV


class ChainRunner:
    """Builds every clustering of an event and runs the PFs on their elements."""

    def __init__(self, cls: EventClass, pipeline: EventRecoPipeline, store: TuningStore) -> None:
        self.cls = cls
        self.pipeline = pipeline
        self.store = store
        self.readout = cls.config().readout
        # Stale tunings (another score, another checkpoint) are not used: the defaults are, and
        # the provenance says so.
        self.weights_sha256 = weights_sha256(pipeline.clustering.checkpoint)
        clue_tuned = read_json(store.clue(cls.name))
        if not current_tuning(clue_tuned, SCORE_VERSION):
            clue_tuned = {}
        net_tuned = read_json(store.network(cls.name))
        if not current_network_tuning(net_tuned, SCORE_VERSION, self.weights_sha256):
            net_tuned = {}
        self.clue_params = ClueParams(**clue_tuned["params"]) if clue_tuned else ClueParams()
        self.calibration = (
            ClueCalibration(**clue_tuned["energy_calibration"])
            if "energy_calibration" in clue_tuned
            else ClueCalibration()
        )
        self.thresholds = (
            CondensationThresholds(**net_tuned["thresholds"])
            if net_tuned
            else pipeline.clustering.thresholds
        )
        self.provenance = {
            "clue_tuned": bool(clue_tuned),
            "network_thresholds_tuned": bool(net_tuned),
            "clue_params": self.clue_params.__dict__,
            "clue_energy_calibration": self.calibration.__dict__,
            "network_thresholds": self.thresholds.__dict__,
        }

    def basis(self, source: str) -> dict[str, Any]:
        """What a clustering's output depends on besides the event: a PF calibration fit on
        it is redone when this changes."""
        if source == "network":
            return {"weights_sha256": self.weights_sha256, **asdict(self.thresholds)}
        if source == "clue":
            return {**asdict(self.clue_params), **asdict(self.calibration)}
        if source == "truth_assignment":
            return asdict(self.calibration)
        return {}

    def clusters(self, event: Event, source: str) -> Clusters:
        if source == "network":
            hits = event.hits.features()
            return cluster_events(self.pipeline.clustering.network, [hits], self.thresholds)[0]
        if source == "clue":
            assignment = clue(event.hits, self.clue_params, self.readout).hit_cluster
        elif source == "truth_assignment":
            assignment = truth_objects(event).hit_object
        if source in ("clue", "truth_assignment"):
            return calibrated_clusters(event.hits, assignment, self.calibration)
        if source == "perfect":
            return truth_clusters(event)
        raise ValueError(f"unknown clustering {source!r}; known: {CLUSTERINGS}")

    def elements(self, event: Event, source: str) -> tuple[Clusters, np.ndarray]:
        clusters = self.clusters(event, source)
        return clusters, build_elements(event.hits.features(), event.tracks.features(), clusters)


def calibration_pairs(event: Event, clusters: Clusters, elements: np.ndarray) -> np.ndarray:
    """float64 [M, 3] = (cluster energy, cluster kind, true energy) of the clusters that hold
    at least 80 % of one hard-scatter particle's hit energy with at least 80 % purity."""
    hits, parts = event.hits, event.particles
    k = len(clusters)
    ok = (clusters.hit_cluster >= 0) & (hits.truth_particle >= 0)
    if not ok.any():
        return np.zeros((0, 3))
    n = len(parts)
    e = hits.energy[ok].astype(np.float64)
    pair = clusters.hit_cluster[ok] * n + hits.truth_particle[ok]
    share = np.bincount(pair, weights=e, minlength=k * n).reshape(k, n)
    particle_total = np.bincount(
        hits.truth_particle[hits.truth_particle >= 0],
        weights=hits.energy[hits.truth_particle >= 0].astype(np.float64),
        minlength=n,
    )
    main = share.argmax(axis=1)
    cluster_total = np.maximum(share.sum(axis=1), 1e-12)
    rows = np.arange(k)
    purity = share[rows, main] / cluster_total
    completeness = share[rows, main] / np.maximum(particle_total[main], 1e-12)
    good = (purity > 0.8) & (completeness > 0.8) & (parts.interaction[main] == 0)
    n_tracks = len(event.tracks)
    kind = cluster_kind(elements, PFParams())[n_tracks:]
    energy = elements[n_tracks:, COLUMN["energy"]].astype(np.float64)
    return np.column_stack([energy[good], kind[good], parts.energy[main[good]]])


def fit_calibration(pairs: np.ndarray) -> PFCalibration:
    """Median true/reconstructed energy per log-energy bin, per cluster type (EM, hadronic);
    bins with fewer than 10 clusters take their neighbours' factor."""
    centers = np.array(CALIBRATION_BINS)
    factors = {}
    for kind in (EM_CLUSTER, HADRONIC_CLUSTER):
        sel = pairs[pairs[:, 1] == kind] if len(pairs) else np.zeros((0, 3))
        x = np.log10(np.maximum(sel[:, 0], 1e-3))
        ratio = sel[:, 2] / np.maximum(sel[:, 0], 1e-6)
        values = np.full(len(centers), np.nan)
        for i, c in enumerate(centers):
            near = np.abs(x - c) < 0.25
            if near.sum() >= 10:
                values[i] = np.median(ratio[near])
        if np.isnan(values).all():
            values[:] = 1.0
        known = np.flatnonzero(~np.isnan(values))
        values = np.interp(np.arange(len(centers)), known, values[known])
        factors[kind] = tuple(float(v) for v in values)
    return PFCalibration(
        log_energy=tuple(float(c) for c in centers),
        em_factor=factors[EM_CLUSTER],
        hadron_factor=factors[HADRONIC_CLUSTER],
    )


def pf_calibrations(
    runner: ChainRunner, sources: Sequence[str], n_validation: int, log: Callable[[str], Any]
) -> dict[str, PFCalibration]:
    """The rule-based PF's calibration per clustering, fit on the class's validation events
    (read from checkpoints/pf/<class>.json when present for at least that many events and fit on
    the same clustering: ``ChainRunner.basis``)."""
    path = runner.store.pf(runner.cls.name)
    stored = read_json(path)
    missing = [
        s
        for s in sources
        if stored.get(s, {}).get("events", 0) < n_validation
        or stored[s].get("basis") != _plain(runner.basis(s))
    ]
    if missing:
        log(f"fitting PF calibrations ({', '.join(missing)}) on {n_validation} validation events")
        pairs: dict[str, list[np.ndarray]] = {s: [] for s in missing}
        sim = runner.cls.simulator()
        for i in range(n_validation):
            event = runner.cls.event("validation", i, sim)
            for s in missing:
                clusters, elements = runner.elements(event, s)
                pairs[s].append(calibration_pairs(event, clusters, elements))
        for s in missing:
            calibration = fit_calibration(np.concatenate(pairs[s]))
            stored[s] = {"events": n_validation, "basis": runner.basis(s)}
            stored[s].update(calibration.as_dict())
        write_json(path, stored)
    return {
        s: PFCalibration(
            log_energy=tuple(stored[s]["log_energy"]),
            em_factor=tuple(stored[s]["em_factor"]),
            hadron_factor=tuple(stored[s]["hadron_factor"]),
        )
        for s in sources
    }


def _plain(value: dict[str, Any]) -> Any:
    """``value`` as it reads back from JSON (tuples become lists), for comparing with storage."""
    return json.loads(json.dumps(value))


def run_chains(
    name: str,
    chains: Sequence[str],
    n_events: int,
    n_validation: int,
    output: Path,
    store: TuningStore | None = None,
    log: Callable[[str], Any] = print,
    input_file: Path | None = None,
) -> dict[str, Any]:
    """Every chain on the class's test events (or the first ``n_events`` of ``input_file``,
    with the class's tunings); writes ``output`` (JSON) and a figure, and returns the report."""
    cls = event_class(name)
    for chain in chains:
        source, _, pf = chain.partition("+")
        if source not in CLUSTERINGS or pf not in PFS:
            raise ValueError(f"unknown chain {chain!r}; known: {ALL_CHAINS}")
    runner = ChainRunner(cls, EventRecoPipeline(), store or TuningStore())
    sources = list(dict.fromkeys(c.split("+")[0] for c in chains))
    rule_sources = [c.split("+")[0] for c in chains if c.endswith("+rule_pf")]
    calibrations = pf_calibrations(runner, rule_sources, n_validation, log)
    accumulators = {c: PFAccumulator() for c in chains}
    seconds = dict.fromkeys(chains, 0.0)
    if input_file is not None:
        from recoserve.events.parquet import iter_events

        events: Iterable[Event] = itertools.islice(iter_events(input_file), n_events)
        key, label = f"file:{input_file.name}", f"events file {input_file.name}"
    else:
        sim = cls.simulator()
        events = (cls.event("test", i, sim) for i in range(n_events))
        key, label = name, cls.description
    log(f"running {len(chains)} chains on {n_events} events: {label}")
    n_done = 0
    for event in events:
        n_done += 1
        t = pf_truth(event)
        truth = {
            "class_id": t.class_id,
            "pt": t.pt.astype(np.float64),
            "eta": t.eta.astype(np.float64),
            "phi": t.phi.astype(np.float64),
            "energy": t.energy.astype(np.float64),
        }
        for source in sources:
            t0 = time.perf_counter()
            _, elements = runner.elements(event, source)
            cluster_seconds = time.perf_counter() - t0
            for chain in chains:
                if not chain.startswith(source + "+"):
                    continue
                t1 = time.perf_counter()
                if chain.endswith("+mlpf"):
                    candidates = runner.pipeline.candidates_from_elements(elements)
                else:
                    candidates = rule_based_pf(elements, PFParams(calibration=calibrations[source]))
                seconds[chain] += cluster_seconds + time.perf_counter() - t1
                accumulators[chain].add(truth, candidates)
    report = {
        "class": key,
        "description": label,
        "events": n_done,
        "tuned_on": name,
        "test_seed": None if input_file else cls.seeds.test,
        "chains": {c: accumulators[c].summary() for c in chains},
        "seconds_per_event": {c: seconds[c] / max(n_done, 1) for c in chains},
        "pf_calibrations": {s: c.as_dict() for s, c in calibrations.items()},
        **runner.provenance,
        "mlpf_checkpoint": runner.pipeline.info,
    }
    write_json(output, report)
    plot_chains(accumulators, label, output.with_suffix(".png"))
    combine_chains(output.parent, output.name.split("_")[0])
    return report


def combine_chains(output_dir: Path, level: str) -> dict[str, Any]:
    """``<level>_benchmark.json``: every ``<level>_*.json`` report of ``output_dir``, one block
    per class."""
    blocks = {}
    for path in sorted(output_dir.glob(f"{level}_*.json")):
        if path.name != f"{level}_benchmark.json":
            block = read_json(path)
            blocks[block["class"]] = block
    combined = {"level": level, "classes": blocks}
    write_json(output_dir / f"{level}_benchmark.json", combined)
    return combined


def plot_chains(accumulators: dict[str, PFAccumulator], label: str, output: Path) -> None:
    """Jet pt response and neutral-hadron energy response of every chain."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep

    from recoserve.plotting import save_figure

    mplhep.style.use("CMS")
    fig, (ax_jet, ax_neutral) = plt.subplots(1, 2, figsize=(22, 8))
    bins = np.linspace(0.0, 2.0, 61)
    for chain, acc in accumulators.items():
        style = "--" if chain.startswith(("truth_assignment", "perfect")) else "-"
        name = chain.replace("+", " → ")
        ax_jet.hist(acc.jet_ratio, bins, histtype="step", lw=2, ls=style, label=name)
        ax_neutral.hist(acc.energy_ratio[NEUTRAL_HADRON], bins, histtype="step", lw=2, ls=style,
                        label=name)  # fmt: skip
    ax_jet.set_xlabel(r"jet $p_T^{reco}/p_T^{true}$ (anti-$k_T$ 0.4, > 20 GeV)")
    ax_neutral.set_xlabel(r"neutral hadron $E_{reco}/E_{true}$ (matched)")
    for ax in (ax_jet, ax_neutral):
        ax.set_ylabel("entries")
        ax.legend(fontsize=13)
    fig.suptitle(label, fontsize=20)
    save_figure(fig, output, dpi=60)

"""The clustering benchmark: the network and CLUE side by side, per event class, same events.

`recoserve evaluate clustering --class NAME` (or ``--input FILE``):

1. takes the class's *validation* events (``recoserve.sim.classes``), runs CLUE's 2D step and
   the network once per event, and tunes CLUE's 3D association (dc_3d, rho_c_3d; the grid
   grows until the best point is inside it), CLUE's two-section energy calibration and the
   network's condensation thresholds (t_beta, t_d), all to the same ``selection_score``. The
   tunings are written under ``checkpoints/`` and reused while the checkpoint is unchanged;
2. runs both on the class's *test* events and reports, with the resolvable truth definition
   and, as a second row, the legacy one (``recoserve.events.truth``): efficiency (> 20 GeV and
   in bins down to 1 GeV, vs distance to the nearest shower, vs local energy fraction), fake
   rates, response, resolution, per EM/hadron, seconds per event;
3. writes the class's block into ``clustering_benchmark.json`` (one block per class) and a
   figure per class.

An events file has no validation split: it is evaluated with the tunings of ``--tuned-on``
(default ``jets``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import mplhep
import numpy as np

from recoserve.baselines.clue import (
    ClueCalibration,
    ClueParams,
    LayerClusters,
    associate,
    fit_clue_calibration,
    layer_clusters,
    section_energies,
)
from recoserve.events.model import Event
from recoserve.events.truth import (
    LEGACY,
    MIP,
    RESOLVABLE,
    TruthDefinition,
    TruthObjects,
    truth_objects,
)
from recoserve.inprocess import ClusteringPipeline
from recoserve.metrics.matching import match_showers
from recoserve.metrics.showers import (
    SCORE_VERSION,
    selection_score,
    summarize_tables,
    truth_table,
)
from recoserve.metrics.tuning import Axis, grid_search, tune_condensation
from recoserve.metrics.tuning_store import (
    TuningStore,
    current_network_tuning,
    current_tuning,
    file_sha256,
    read_json,
    write_json,
)
from recoserve.nn.checkpoint import weights_sha256
from recoserve.plotting import save_figure
from recoserve.postprocess.chain import CLUSTERING_OUTPUT_WIDTHS, cluster_events, run_batched
from recoserve.postprocess.condensation import CondensationThresholds, condense
from recoserve.sim.classes import EventClass, event_class
from recoserve.sim.digitize import ReadoutConfig

BENCHMARK_JSON = "clustering_benchmark.json"

CLUE_AXES = [
    Axis("dc_3d", (1.0, 2.0, 3.5, 6.0)),
    Axis("rho_c_3d", (0.05, 0.2, 0.8, 2.5)),
]

Clustering = tuple[np.ndarray, np.ndarray]  # (hit_cluster [N], cluster_energy [K])


@dataclass
class PreparedEvent:
    """What tuning needs per validation event, computed once."""

    hit_energy: np.ndarray
    hit_layer: np.ndarray
    truth: TruthObjects
    layer_clusters: LayerClusters
    network_outputs: list[np.ndarray] | None  # None when only CLUE is tuned


def _score_of(
    events: Sequence[PreparedEvent], cluster: Callable[[PreparedEvent], Clustering]
) -> dict[str, Any]:
    tables = [truth_table(e.truth, e.hit_energy, cluster(e)) for e in events]
    return summarize_tables(tables)


def _condense(
    outputs: list[np.ndarray], hit_energy: np.ndarray, t: CondensationThresholds
) -> Clustering:
    beta, ccoords, energy_factor, position, time_, logits = outputs
    c = condense(beta, ccoords, hit_energy, energy_factor, position, time_, logits, t)
    return c.hit_cluster, c.energy


def prepare(
    events: Sequence[Event], pipeline: ClusteringPipeline | None, readout: ReadoutConfig
) -> list[PreparedEvent]:
    prepared = []
    for e in events:
        features = e.hits.features()
        outputs = (
            run_batched(pipeline.network, [features], CLUSTERING_OUTPUT_WIDTHS)[0]
            if pipeline is not None
            else None
        )
        prepared.append(
            PreparedEvent(
                hit_energy=e.hits.energy.astype(np.float64),
                hit_layer=e.hits.layer.astype(np.int64),
                truth=truth_objects(e),
                layer_clusters=layer_clusters(e.hits, ClueParams(), readout),
                network_outputs=outputs,
            )
        )
    return prepared


def tune_clue(prepared: Sequence[PreparedEvent]) -> dict[str, Any]:
    """CLUE's 3D parameters (grid grown until the best is inside) and energy calibration."""

    def clue_run(params: ClueParams) -> Callable[[PreparedEvent], Clustering]:
        def run(e: PreparedEvent) -> Clustering:
            r = associate(e.layer_clusters, params)
            return r.hit_cluster, r.cluster_energy

        return run

    result = grid_search(
        lambda p: selection_score(_score_of(prepared, clue_run(_clue_params(p)))), CLUE_AXES
    )
    best = _clue_params(result.best)
    return {
        "params": asdict(best),
        "energy_calibration": asdict(calibrate_clue(prepared, best)),
        "grid": result.as_dict(),
    }


def calibrate_clue(prepared: Sequence[PreparedEvent], params: ClueParams) -> ClueCalibration:
    """CLUE's two-section energy calibration from its showers matched to true showers above
    5 GeV (muons excluded) on validation events."""
    ee_all, he_all, true_all = [], [], []
    for e in prepared:
        r = associate(e.layer_clusters, params)
        k = len(r.cluster_energy)
        ee, he = section_energies(e.hit_energy, e.hit_layer, r.hit_cluster, k)
        m = match_showers(e.hit_energy, e.truth.hit_object, r.hit_cluster, np.arange(len(e.truth)))
        ok = (m.truth_match >= 0) & (e.truth.energy > 5.0) & (e.truth.shower_class != MIP)
        cluster = m.pred_ids[m.truth_match[ok]]
        ee_all.append(ee[cluster])
        he_all.append(he[cluster])
        true_all.append(e.truth.energy[ok])
    return fit_clue_calibration(
        np.concatenate(ee_all), np.concatenate(he_all), np.concatenate(true_all)
    )


def clue_calibration(tuned: dict[str, Any]) -> ClueCalibration:
    return ClueCalibration(**tuned["energy_calibration"])


def _clue_params(point: dict[str, float]) -> ClueParams:
    return ClueParams(dc_3d=point["dc_3d"], rho_c_3d=point["rho_c_3d"])


def tune_network(prepared: Sequence[PreparedEvent]) -> dict[str, Any]:
    """The condensation parameters (``tune_condensation``) and their grid."""

    def summary(t: CondensationThresholds) -> dict[str, Any]:
        return _score_of(prepared, lambda e: _condense(_outputs(e), e.hit_energy, t))

    best, grid = tune_condensation(summary)
    return {"thresholds": asdict(best), "grid": grid.as_dict()}


def _outputs(e: PreparedEvent) -> list[np.ndarray]:
    if e.network_outputs is None:
        raise ValueError("the network's outputs were not prepared")
    return e.network_outputs


def tunings(
    cls: EventClass,
    pipeline: ClusteringPipeline,
    checkpoint: Path,
    n_validation: int,
    store: TuningStore,
    log: Callable[[str], Any] = print,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(CLUE tuning, network tuning) of a class: read from checkpoints/ if current, else tuned
    on ``n_validation`` validation events and written there. A tuning made for another
    ``selection_score`` (``SCORE_VERSION``) is redone."""
    clue_path, net_path = store.clue(cls.name), store.network(cls.name)
    sha = weights_sha256(checkpoint)
    clue, net = read_json(clue_path), read_json(net_path)
    clue_done = clue.get("events", 0) >= n_validation and current_tuning(clue, SCORE_VERSION)
    calibrated = "energy_calibration" in clue
    net_done = net.get("events", 0) >= n_validation and current_network_tuning(
        net, SCORE_VERSION, sha
    )
    if clue_done and calibrated and net_done:
        return clue, net
    log(f"tuning on {n_validation} validation events of class {cls.name!r}")
    prepared = prepare(
        cls.events("validation", n_validation, cls.simulator()),
        None if net_done else pipeline,
        cls.config().readout,
    )
    if not clue_done:
        clue = {"class": cls.name, "events": n_validation, "score": SCORE_VERSION}
        clue.update(tune_clue(prepared))
        write_json(clue_path, clue)
    elif not calibrated:  # grid from an earlier run: add the energy calibration only
        params = ClueParams(**clue["params"])
        clue.pop("energy_scale", None)
        clue["energy_calibration"] = asdict(calibrate_clue(prepared, params))
        write_json(clue_path, clue)
    if not net_done:
        net = {"class": cls.name, "weights_sha256": sha, "events": n_validation}
        net["score"] = SCORE_VERSION
        net.update(tune_network(prepared))
        write_json(net_path, net)
    return clue, net


def evaluate(
    events: Sequence[Event],
    label: str,
    pipeline: ClusteringPipeline,
    clue_tuned: dict[str, Any],
    network_tuned: dict[str, Any],
    readout: ReadoutConfig,
) -> dict[str, Any]:
    """Both algorithms on ``events`` with the given tunings: the benchmark block of a class."""
    params = ClueParams(**clue_tuned["params"])
    calibration = clue_calibration(clue_tuned)
    thresholds = CondensationThresholds(**network_tuned["thresholds"])
    timing = {"network_s": 0.0, "clue_s": 0.0}
    runs: dict[str, list[Clustering]] = {"network": [], "clue": []}
    for event in events:
        t0 = time.perf_counter()
        c = cluster_events(pipeline.network, [event.hits.features()], thresholds)[0]
        t1 = time.perf_counter()
        lcs = layer_clusters(event.hits, params, readout)
        r = associate(lcs, params)
        t2 = time.perf_counter()
        timing["network_s"] += t1 - t0
        timing["clue_s"] += t2 - t1
        runs["network"].append((c.hit_cluster, c.energy))
        k = len(r.cluster_energy)
        energy = calibration.energies(event.hits.energy, event.hits.layer, r.hit_cluster, k)
        runs["clue"].append((r.hit_cluster, energy))
    block: dict[str, Any] = {
        "label": label,
        "events": len(events),
        "hits_per_event_mean": float(np.mean([len(e.hits) for e in events])) if events else 0.0,
        "seconds_per_event": {k: v / max(len(events), 1) for k, v in timing.items()},
        "clue_params": clue_tuned["params"],
        "clue_energy_calibration": asdict(calibration),
        "network_thresholds": network_tuned["thresholds"],
    }
    tables: dict[str, list[dict[str, np.ndarray]]] = {}
    for name, definition in (("", RESOLVABLE), ("_legacy_truth", LEGACY)):
        truths = [truth_objects(e, definition) for e in events]
        for algo, results in runs.items():
            t = [
                truth_table(tr, e.hits.energy.astype(np.float64), res)
                for tr, e, res in zip(truths, events, results, strict=True)
            ]
            block[algo + name] = summarize_tables(t)
            if not name:
                tables[algo] = t
    block["truth_objects_per_event"] = _objects_per_event(events, RESOLVABLE)
    block["legacy_objects_per_event"] = _objects_per_event(events, LEGACY)
    block["_tables"] = tables
    return block


def _objects_per_event(events: Sequence[Event], definition: TruthDefinition) -> float:
    return float(np.mean([len(truth_objects(e, definition)) for e in events])) if events else 0.0


def run_class(
    name: str | None,
    input_file: Path | None,
    n_events: int,
    n_validation: int,
    checkpoint: Path,
    output_dir: Path,
    tuned_on: str = "jets",
    store: TuningStore | None = None,
    log: Callable[[str], Any] = print,
) -> dict[str, Any]:
    """Tune (if needed) and evaluate one class or an events file; update the benchmark JSON."""
    from recoserve.events.parquet import read_events

    pipeline = ClusteringPipeline(checkpoint)
    cls = event_class(name or tuned_on)
    clue_tuned, network_tuned = tunings(
        cls, pipeline, checkpoint, n_validation, store or TuningStore(), log
    )
    if input_file is not None:
        events = read_events(input_file)[:n_events]
        key, label = f"file:{input_file.name}", f"events file {input_file.name}"
    else:
        log(f"simulating {n_events} test events of class {cls.name!r}")
        events = cls.events("test", n_events, cls.simulator())
        key, label = cls.name, cls.description
    block = evaluate(events, label, pipeline, clue_tuned, network_tuned, cls.config().readout)
    tables = block.pop("_tables")
    block["checkpoint_sha256"] = file_sha256(checkpoint)
    stem = f"clustering_{key.replace(':', '_')}"
    write_json(output_dir / f"{stem}.json", {"class": key, **block})
    combine(output_dir)
    _plots(tables, label, output_dir / f"{stem}.png")
    return block


def combine(output_dir: Path) -> dict[str, Any]:
    """``clustering_benchmark.json``: the per-class results of ``output_dir`` in one file."""
    classes = {}
    for path in sorted(output_dir.glob("clustering_*.json")):
        if path.name != BENCHMARK_JSON:
            block = json.loads(path.read_text())
            classes[block.pop("class")] = block
    report = {"truth_definition": asdict(RESOLVABLE), "classes": classes}
    write_json(output_dir / BENCHMARK_JSON, report)
    return report


def _plots(tables: dict[str, list[dict[str, np.ndarray]]], label: str, output: Path) -> None:
    mplhep.style.use("CMS")
    fig, axes = plt.subplots(1, 4, figsize=(34, 8))
    names = {"network": "GravNet + OC", "clue": "CLUE (tuned)"}
    for algo, t in tables.items():
        cat = {k: np.concatenate([x[k] for x in t]) for k in t[0]} if t else {}
        if not cat:
            continue
        showers = cat["class"] != 2
        matched = cat["matched"].astype(bool)
        energy = cat["true_energy"]
        _curve(
            axes[0],
            energy[showers],
            matched[showers],
            [1, 2, 5, 10, 20, 50, 100, 200],
            names[algo],
            log=True,
        )
        above = showers & (energy > 20)
        _curve(
            axes[1],
            cat["nearest_distance"][above],
            matched[above],
            [0.5, 2, 5, 10, 20, 50, 200],
            names[algo],
            log=True,
        )
        _curve(
            axes[2],
            cat["local_fraction"][above],
            matched[above],
            [0, 0.2, 0.4, 0.6, 0.8, 1.0001],
            names[algo],
        )
        ok = above & matched
        axes[3].hist(
            cat["pred_energy"][ok] / energy[ok],
            bins=np.linspace(0, 2, 81),
            histtype="step",
            lw=2,
            label=names[algo],
        )
    for ax, xlabel in zip(
        axes[:3],
        ("true energy [GeV]", "distance to nearest shower at the face [cm] (> 20 GeV)",
         "local shower energy fraction (> 20 GeV)"),
        strict=True,
    ):  # fmt: skip
        ax.set_xlabel(xlabel, fontsize=16)
        ax.set_ylabel("efficiency (IoU ≥ 0.5)")
        ax.set_ylim(0, 1.05)
        ax.legend(fontsize=16)
    axes[3].set_xlabel(r"$E_{cluster}/E_{true}$ (matched, > 20 GeV)")
    axes[3].legend(fontsize=16)
    fig.suptitle(label, fontsize=20)
    save_figure(fig, output, dpi=60)


def _curve(
    ax: Any, x: np.ndarray, ok: np.ndarray, bins: list[float], label: str, log: bool = False
) -> None:
    edges = np.asarray(bins, dtype=float)
    idx = np.digitize(x, edges) - 1
    eff = [ok[idx == b].mean() if (idx == b).any() else np.nan for b in range(len(edges) - 1)]
    centers = np.sqrt(edges[:-1] * edges[1:]) if log else (edges[:-1] + edges[1:]) / 2
    ax.plot(centers, eff, "o-", label=label)
    if log:
        ax.set_xscale("log")

"""Why a clustering network merges showers: receptive field, clustering-space separation, cost.

Run: `python benchmarks/clustering_diagnostics.py` (``--before``: the served checkpoint,
``--after``: the run in progress, by default). For each checkpoint, on validation events (no
test events: these numbers steer design):

- receptive field: the share of a > 50 GeV shower's energy among the neighbour candidates of
  its most energetic hit, after one block and after all blocks (the candidates of candidates);
  an upper bound of what the learned kNN can reach;
- separation: for pairs of showers > 10 GeV in one endcap, binned by the distance of their
  centroids at the face, the median distance of their condensation points (highest-beta hit)
  in the clustering space and the share closer than 1 (the repulsion radius);
- spread: the RMS distance of a shower's hits to its condensation point;
- oracle-seed assignment: the energy share of > 20 GeV showers' hits that lie nearer their own
  condensation point than any other shower's (what nearest-seed assignment reaches with
  perfect seeds: a measure of the clustering space alone, free of the thresholds);
- cost: in-process ONNX Runtime time per event on one thread, both networks interleaved on the
  same events, and the ratio.

Writes docs/results/clustering_diagnostics.json and prints Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recoserve.events.model import Event
from recoserve.events.truth import TruthObjects, truth_objects
from recoserve.export.clustering import export_onnx
from recoserve.nn.checkpoint import DEFAULT_CLUSTERING_CHECKPOINT, load_clustering
from recoserve.nn.gravnet import GravNetOC
from recoserve.nn.knn import face_order, sort_order
from recoserve.sim.classes import EVENT_CLASSES
from recoserve.train.clustering import endcap_crop, predict

ROOT = Path(__file__).resolve().parents[1]
TRAINING_RUN = ROOT / "checkpoints" / "clustering" / "training" / "gravnet_oc.pt"
SEPARATION_BINS = ((2.0, 5.0), (5.0, 10.0), (10.0, 20.0), (20.0, np.inf))


def endcaps(events: list[Event]) -> Iterator[tuple[Event, TruthObjects]]:
    """Each endcap with hits of each event, with its truth objects."""
    for event in events:
        for side in (0, 1):
            crop = endcap_crop(event, side)
            if len(crop.hits) >= 2:
                yield crop, truth_objects(crop)


def reach(model: GravNetOC, events: list[Event]) -> dict[str, float]:
    offsets = np.asarray(model.config.offsets())
    hops = offsets
    for _ in range(model.config.blocks - 1):
        hops = np.unique((hops[:, None] + offsets[None, :]).ravel())
    by = face_order if model.face_order else sort_order
    one, all_blocks = [], []
    for crop, truth in endcaps(events):
        hits = torch.from_numpy(crop.hits.features())
        order = by(hits, torch.zeros(len(hits), dtype=torch.int64)).numpy()
        position = np.empty_like(order)
        position[order] = np.arange(len(order))
        energy = crop.hits.energy
        for k in np.nonzero(truth.energy > 50.0)[0]:
            members = np.nonzero(truth.hit_object == k)[0]
            lead = members[np.argmax(energy[members])]
            total = energy[members].sum()
            for shifts, out in ((offsets, one), (hops, all_blocks)):
                p = position[lead] + shifts
                candidates = order[p[(p >= 0) & (p < len(order))]]
                mine = candidates[truth.hit_object[candidates] == k]
                out.append(float(energy[mine].sum() / total))
    return {
        "showers": len(one),
        "median_share_one_block": float(np.median(one)),
        "median_share_all_blocks": float(np.median(all_blocks)),
    }


def separation(model: GravNetOC, events: list[Event]) -> dict[str, Any]:
    rows: list[tuple[float, float]] = []
    spread: list[float] = []
    for crop, truth in endcaps(events):
        beta, coords = predict(model, crop)[:2]
        hard = np.nonzero(truth.energy > 10.0)[0]
        alpha = {}
        for k in hard:
            members = np.nonzero(truth.hit_object == k)[0]
            alpha[k] = members[np.argmax(beta[members])]
            d = np.linalg.norm(coords[members] - coords[alpha[k]], axis=1)
            spread.append(float(np.sqrt(np.mean(d * d))))
        for i, a in enumerate(hard):
            for b in hard[i + 1 :]:
                face = float(np.linalg.norm(truth.centroid[a] - truth.centroid[b]))
                space = float(np.linalg.norm(coords[alpha[a]] - coords[alpha[b]]))
                rows.append((face, space))
    table = []
    for lo, hi in SEPARATION_BINS:
        d = np.array([s for f, s in rows if lo <= f < hi])
        table.append(
            {
                "face_cm": [lo, hi],
                "pairs": len(d),
                "median_distance": float(np.median(d)) if len(d) else float("nan"),
                "share_inside_radius": float(np.mean(d < 1.0)) if len(d) else float("nan"),
            }
        )
    return {"pairs": table, "median_rms_spread": float(np.median(spread))}


def oracle_assignment(model: GravNetOC, events: list[Event]) -> float:
    """Energy share of the hits of > 20 GeV showers that lie nearer their own condensation
    point than any other true shower's, in the clustering space: what assigning hits to their
    nearest seed could reach if the seeds were perfect (1 = every shower separable)."""
    good = total = 0.0
    for crop, truth in endcaps(events):
        if len(truth) < 2:
            continue
        beta, coords = predict(model, crop)[:2]
        objects = [k for k in range(len(truth)) if (truth.hit_object == k).any()]
        alphas = []
        for k in objects:
            members = np.nonzero(truth.hit_object == k)[0]
            alphas.append(members[np.argmax(beta[members])])
        hard = np.isin(truth.hit_object, np.nonzero(truth.energy > 20.0)[0])
        distance = np.linalg.norm(coords[hard][:, None, :] - coords[alphas][None], axis=2)
        nearest = np.asarray(objects)[np.argmin(distance, axis=1)]
        energy = crop.hits.energy[hard]
        good += float(energy[nearest == truth.hit_object[hard]].sum())
        total += float(energy.sum())
    return good / max(total, 1e-12)


def timing(paths: dict[str, Path], events: list[Event], repeats: int = 3) -> dict[str, Any]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    sessions = {
        k: ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"])
        for k, p in paths.items()
    }
    rows = []
    for event in events:
        hits = event.hits.features()
        feed = {"hits": hits, "segment": np.zeros(len(hits), dtype=np.int64)}
        times: dict[str, list[float]] = {k: [] for k in sessions}
        for session in sessions.values():
            session.run(None, feed)  # warm-up
        for _ in range(repeats):
            for name, session in sessions.items():  # interleaved
                t0 = time.perf_counter()
                session.run(None, feed)
                times[name].append(time.perf_counter() - t0)
        rows.append({"hits": len(hits), **{k: 1e3 * min(v) for k, v in times.items()}})
    return {"per_event_ms": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", type=Path, default=DEFAULT_CLUSTERING_CHECKPOINT)
    parser.add_argument("--after", type=Path, default=TRAINING_RUN)
    parser.add_argument("--events", type=int, default=6, help="validation events per class")
    parser.add_argument(
        "--output", type=Path, default=ROOT / "docs/results/clustering_diagnostics.json"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = {
        name: EVENT_CLASSES[name].events("validation", args.events, EVENT_CLASSES[name].simulator())
        for name in ("gun", "dense", "jets")
    }
    models = {"before": load_clustering(args.before)[0], "after": load_clustering(args.after)[0]}
    result: dict[str, Any] = {"events_per_class": args.events, "classes": {}}
    for name, events in data.items():
        result["classes"][name] = {
            label: {
                "receptive_field": reach(m, events),
                **separation(m, events),
                "oracle_assignment": oracle_assignment(m, events),
            }
            for label, m in models.items()
        }
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for label, model in models.items():
            example = data["gun"][0].hits.features()
            paths[label] = export_onnx(model, Path(tmp) / f"{label}.onnx", example)
        sized = [data["jets"][0], data["gun"][0], data["dense"][0]]
        sized.append(
            EVENT_CLASSES["jets_pu140"].events(
                "validation", 1, EVENT_CLASSES["jets_pu140"].simulator()
            )[0]
        )
        result["timing"] = timing(paths, sized)
    for row in result["timing"]["per_event_ms"]:
        row["after_over_before"] = row["after"] / row["before"]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=1) + "\n")
    print(markdown(result))


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "| class | network | reach, 1 block | reach, all blocks "
        "| CP distance 2-5 / 5-10 / 10-20 / >20 cm | inside radius 2-5 / 5-10 / 10-20 cm "
        "| hit RMS | oracle-seed assignment |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, both in result["classes"].items():
        for label, r in both.items():
            pairs = r["pairs"]
            lines.append(
                f"| {name} | {label} | {r['receptive_field']['median_share_one_block']:.2f} "
                f"| {r['receptive_field']['median_share_all_blocks']:.2f} | "
                + " / ".join(f"{p['median_distance']:.2f}" for p in pairs)
                + " | "
                + " / ".join(f"{p['share_inside_radius']:.2f}" for p in pairs[:3])
                + f" | {r['median_rms_spread']:.2f} | {r['oracle_assignment']:.2f} |"
            )
    lines += ["", "| hits | before, ms | after, ms | after / before |", "|---|---|---|---|"]
    for row in result["timing"]["per_event_ms"]:
        lines.append(
            f"| {row['hits']} | {row['before']:.0f} | {row['after']:.0f} "
            f"| {row['after_over_before']:.2f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()

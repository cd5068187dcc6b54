"""`recoserve reconstruct`: an event file in, a Parquet file of candidates (and clusters) out.

Resumable: results are written in chunks to ``<output>.parts/part-<first index>.parquet`` (each
written to a temporary name and renamed, so a chunk is complete or absent). A new run skips the
events already in the parts; at the end the parts are merged, sorted by event position, into
``<output>`` and removed. An interrupted run therefore resumes to the same output as an
uninterrupted one, without redoing or duplicating events.

Output columns, one row per event: ``index`` (position in the input file), ``event_id``,
``candidates`` (list of structs, ``CANDIDATE_DTYPE``) and, with ``clusters=True``,
``clusters`` (list of structs) and ``hit_cluster`` (list of int64).

A resume cannot mix: ``<output>.parts/manifest.json`` records what the parts are made of (the
input file's name, size and a hash of its head and tail, the options that change the output,
the served models' checkpoint hashes), and a run with anything different is refused with what
differs. A finished output is left alone ("already complete") unless ``overwrite``. Nothing is
created before the server has answered.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from recoserve.client.results import CLUSTER_DTYPE
from recoserve.client.sync import RecoClient
from recoserve.contract import CANDIDATE_DTYPE
from recoserve.events.io import open_events
from recoserve.events.model import Event


@dataclass
class JobSummary:
    events: int = 0
    done_before: int = 0  # found in the parts of an earlier, interrupted run
    reconstructed: int = 0
    failed: dict[int, str] = field(default_factory=dict)
    seconds: float = 0.0
    already_complete: bool = False  # the output existed: nothing was done


class ResumeMismatch(ValueError):
    """The parts of an earlier run were made from another input, options or model."""


def file_identity(path: Path, sample: int = 1 << 20) -> dict[str, object]:
    """Name, size and a SHA-256 of the first and last MiB: enough to tell files apart without
    reading gigabytes (Parquet and ROOT keep their metadata at the ends)."""
    size = path.stat().st_size
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        digest.update(handle.read(sample))
        if size > sample:
            handle.seek(max(sample, size - sample))
            digest.update(handle.read(sample))
    return {"name": path.name, "size": size, "sha256_head_tail": digest.hexdigest()}


def check_manifest(parts: Path, manifest: dict[str, object]) -> None:
    """Write ``manifest`` into a new parts folder, or refuse a folder made from something else."""
    path = parts / "manifest.json"
    if not path.exists():
        if any(parts.glob("part-*.parquet")):
            raise ResumeMismatch(
                f"{parts} holds results of an unknown run (no manifest.json); remove it or pass "
                "--overwrite to start over"
            )
        path.write_text(json.dumps(manifest, indent=1) + "\n")
        return
    before = json.loads(path.read_text())
    differs = [key for key in manifest if before.get(key) != manifest[key]]
    if differs:
        detail = "; ".join(f"{k}: {before.get(k)} then, {manifest[k]} now" for k in differs)
        raise ResumeMismatch(
            f"{parts} was made from another {', '.join(differs)} ({detail}); resuming would mix "
            "them. Run the original command again, or pass --overwrite to start over"
        )


def _records(array: np.ndarray) -> list[dict[str, object]]:
    names = array.dtype.names or ()
    return [dict(zip(names, row.tolist(), strict=True)) for row in array]


def _done_indices(parts: Path) -> set[int]:
    done: set[int] = set()
    for part in sorted(parts.glob("part-*.parquet")):
        done.update(pq.read_table(part, columns=["index"]).column("index").to_pylist())
    return done


def _struct(dtype: np.dtype) -> pa.DataType:
    return pa.list_(pa.struct([(n, pa.from_numpy_dtype(dtype[n])) for n in dtype.names or ()]))


def output_schema(clusters: bool) -> pa.Schema:
    fields = [
        pa.field("index", pa.int64()),
        pa.field("event_id", pa.int64()),
        pa.field("candidates", _struct(CANDIDATE_DTYPE)),
    ]
    if clusters:
        fields += [
            pa.field("clusters", _struct(CLUSTER_DTYPE)),
            pa.field("hit_cluster", pa.list_(pa.int64())),
        ]
    return pa.schema(fields)


def _write_part(parts: Path, rows: list[dict[str, object]], schema: pa.Schema) -> None:
    if not rows:
        return
    rows = sorted(rows, key=lambda r: int(r["index"]))  # type: ignore[call-overload]
    table = pa.Table.from_pylist(rows, schema=schema)
    final = parts / f"part-{int(rows[0]['index']):09d}-{len(rows)}.parquet"  # type: ignore[call-overload]
    temporary = final.with_suffix(".tmp")
    pq.write_table(table, temporary)
    os.replace(temporary, final)


def run_reconstruction(
    source: Path,
    output: Path,
    client: RecoClient,
    clusters: bool = False,
    chunk: int = 64,
    in_flight: int = 8,
    tree: str = "events",
    mapping: dict[str, str] | None = None,
    progress: Callable[[int], None] | None = None,
    stop_after: int | None = None,
    overwrite: bool = False,
) -> JobSummary:
    """Reconstruct every event of ``source`` into ``output`` (see module docstring).

    ``stop_after`` stops after that many new events (to test and demonstrate resuming);
    ``overwrite`` discards a finished output or the parts of an earlier run.
    """
    start = time.perf_counter()
    n_events, events = open_events(source, tree, mapping)
    parts = output.with_name(output.name + ".parts")
    if overwrite:
        shutil.rmtree(parts, ignore_errors=True)
        output.unlink(missing_ok=True)
    elif output.exists() and not parts.exists():
        return JobSummary(events=n_events, already_complete=True)
    models = client.check_model()  # reaches the server before anything is written
    manifest = {
        "input": file_identity(source),
        "options": {"clusters": clusters, "tree": tree, "mapping": mapping or {}},
        "models": models,
    }
    parts.mkdir(parents=True, exist_ok=True)
    check_manifest(parts, manifest)
    done = _done_indices(parts)
    summary = JobSummary(events=n_events, done_before=len(done))
    ids: dict[int, int] = {}
    schema = output_schema(clusters)

    def todo() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        taken = 0
        for index, event in enumerate(events):
            if index in done:
                continue
            if stop_after is not None and taken >= stop_after:
                return
            taken += 1
            ids[len(ids)] = index
            event_ids[index] = event.event_id
            yield _arrays(event)

    event_ids: dict[int, int] = {}
    rows: list[dict[str, object]] = []
    for outcome in client.reconstruct_many(todo(), in_flight=in_flight):
        index = ids[outcome.index]
        if outcome.result is None:
            summary.failed[index] = outcome.error or "unknown error"
        else:
            row: dict[str, object] = {
                "index": index,
                "event_id": event_ids[index],
                "candidates": _records(outcome.result.candidates),
            }
            if clusters:
                row["clusters"] = _records(outcome.result.clusters)
                row["hit_cluster"] = outcome.result.hit_cluster.tolist()
            rows.append(row)
            summary.reconstructed += 1
        if progress:
            progress(1)
        if len(rows) >= chunk:
            _write_part(parts, rows, schema)
            rows = []
    _write_part(parts, rows, schema)
    finished = len(_done_indices(parts)) == n_events
    if finished:
        merged = pa.concat_tables(
            [pq.read_table(p, schema=schema) for p in sorted(parts.glob("part-*.parquet"))]
        ).sort_by("index")
        pq.write_table(merged, output)
        shutil.rmtree(parts)
    summary.seconds = time.perf_counter() - start
    return summary


def _arrays(event: Event) -> tuple[np.ndarray, np.ndarray]:
    return event.hits.features(), event.tracks.features()

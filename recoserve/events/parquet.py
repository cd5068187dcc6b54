"""Event files in Parquet: one row per event, ragged tables as ``list<struct<...>>`` columns.

Schema (see docs/event-files.md): ``event_id: int64``, ``hits: list<struct<x, y, ...>>``,
``tracks: list<struct<...>>``, ``particles: list<struct<...>>``, with the column dtypes of
``recoserve.events.model``. Files open directly in awkward (``ak.from_parquet``), pandas or
polars. Writing and reading are zero-copy conversions between numpy columns and Arrow list
arrays, and the round trip is exact (bit for bit, NaN included).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from recoserve.events.model import TABLES, Event, Table

FORMAT_VERSION = "2"  # 2: particles gained vt, interaction, generator_index
SCHEMA_METADATA_KEY = b"recoserve"


def _struct_type(table: type[Table]) -> pa.StructType:
    return pa.struct([(name, pa.from_numpy_dtype(dtype)) for name, dtype in table.SCHEMA.items()])


def arrow_schema(metadata: dict[str, str] | None = None) -> pa.Schema:
    fields = [pa.field("event_id", pa.int64())]
    fields += [pa.field(name, pa.list_(_struct_type(table))) for name, table in TABLES.items()]
    meta = {"format_version": FORMAT_VERSION, "units": "cm, GeV, ns", **(metadata or {})}
    return pa.schema(fields, metadata={SCHEMA_METADATA_KEY: json.dumps(meta).encode()})


def events_to_arrow(events: list[Event], schema: pa.Schema) -> pa.RecordBatch:
    """A record batch holding ``events`` (one row each)."""
    arrays: list[pa.Array] = [pa.array([e.event_id for e in events], type=pa.int64())]
    for name, table in TABLES.items():
        parts = [getattr(e, name) for e in events]
        lengths = np.array([len(p) for p in parts], dtype=np.int64)
        offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
        children = [
            pa.array(
                np.concatenate([p.columns()[col] for p in parts]) if parts else np.zeros(0, dtype),
                type=pa.from_numpy_dtype(dtype),
            )
            for col, dtype in table.SCHEMA.items()
        ]
        values = pa.StructArray.from_arrays(children, fields=list(_struct_type(table)))
        arrays.append(pa.ListArray.from_arrays(offsets, values))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def events_from_arrow(batch: pa.RecordBatch | pa.Table) -> list[Event]:
    """Inverse of ``events_to_arrow``."""
    if isinstance(batch, pa.Table):
        return [event for b in batch.to_batches() for event in events_from_arrow(b)]
    event_ids = batch.column("event_id").to_numpy()
    per_table: dict[str, list[Table]] = {}
    for name, table in TABLES.items():
        lists = batch.column(name)
        offsets = lists.offsets.to_numpy()
        values = lists.flatten()  # honours the list array's own offset
        base = offsets[0]
        columns = {
            col: values.field(col).to_numpy(zero_copy_only=False).astype(dtype, copy=False)
            for col, dtype in table.SCHEMA.items()
        }
        per_table[name] = [
            table.from_columns({c: v[a - base : b - base] for c, v in columns.items()})
            for a, b in itertools.pairwise(offsets)
        ]
    return [
        Event(
            event_id=int(event_ids[i]),
            hits=per_table["hits"][i],  # type: ignore[arg-type]
            tracks=per_table["tracks"][i],  # type: ignore[arg-type]
            particles=per_table["particles"][i],  # type: ignore[arg-type]
        )
        for i in range(len(event_ids))
    ]


class EventWriter:
    """Streams events into a Parquet file, ``events_per_group`` events per row group."""

    def __init__(
        self,
        path: str | Path,
        metadata: dict[str, str] | None = None,
        events_per_group: int = 64,
        compression: str = "zstd",
    ) -> None:
        self.path = Path(path)
        self.schema = arrow_schema(metadata)
        self.events_per_group = events_per_group
        self._pending: list[Event] = []
        self._writer = pq.ParquetWriter(self.path, self.schema, compression=compression)
        self.n_written = 0

    def write(self, event: Event) -> None:
        self._pending.append(event)
        if len(self._pending) >= self.events_per_group:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            self._writer.write_batch(events_to_arrow(self._pending, self.schema))
            self.n_written += len(self._pending)
            self._pending = []

    def close(self) -> None:
        self.flush()
        self._writer.close()

    def __enter__(self) -> EventWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_events(
    path: str | Path, events: Iterable[Event], metadata: dict[str, str] | None = None
) -> int:
    """Write events to ``path``; returns how many were written."""
    with EventWriter(path, metadata) as writer:
        for event in events:
            writer.write(event)
    return writer.n_written


def check_event_file(path: str | Path) -> None:
    """ValueError naming the file, what an event file holds and what this one holds, if it is
    not a recoserve event file (e.g. the candidates written by `recoserve reconstruct`)."""
    try:
        names = set(pq.read_schema(path).names)
    except (pa.ArrowException, OSError) as err:
        raise ValueError(f"{path} is not a readable Parquet file: {err}") from None
    expected = set(arrow_schema().names)
    if not expected <= names:
        hint = (
            " (the output of `recoserve reconstruct`, not an event file)"
            if "candidates" in names
            else ""
        )
        raise ValueError(
            f"{path} is not a recoserve event file{hint}: it has the columns "
            f"{sorted(names)}, an event file has {sorted(expected)}"
        )


def iter_events(path: str | Path, batch_size: int = 16) -> Iterator[Event]:
    """Stream the events of a Parquet event file, a few at a time (bounded memory). A file
    that is not an event file is refused here, not when the first event is read."""
    check_event_file(path)
    return _stream_events(path, batch_size)


def _stream_events(path: str | Path, batch_size: int) -> Iterator[Event]:
    file = pq.ParquetFile(path)
    for batch in file.iter_batches(batch_size=batch_size):
        yield from events_from_arrow(batch)


def read_events(path: str | Path) -> list[Event]:
    return list(iter_events(path))


def read_metadata(path: str | Path) -> dict[str, str]:
    """The recoserve metadata stored in the file's schema (format version, units, run config)."""
    meta = pq.read_schema(path).metadata or {}
    raw = meta.get(SCHEMA_METADATA_KEY)
    return dict(json.loads(raw)) if raw else {}


def count_events(path: str | Path) -> int:
    return int(pq.ParquetFile(path).metadata.num_rows)

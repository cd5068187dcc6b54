"""Open any supported event file by its suffix: Parquet (ours) or ROOT (users' ntuples)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from recoserve.events.model import Event
from recoserve.events.parquet import count_events, iter_events

PARQUET_SUFFIXES = (".parquet", ".pq")
ROOT_SUFFIXES = (".root",)


def open_events(
    path: str | Path, tree: str = "events", mapping: dict[str, str] | None = None
) -> tuple[int, Iterator[Event]]:
    """(number of events, iterator over them) for a Parquet or ROOT event file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such event file: {path}")
    suffix = path.suffix.lower()
    if suffix in PARQUET_SUFFIXES:
        events = iter_events(path)  # refuses a foreign file before counting
        return count_events(path), events
    if suffix in ROOT_SUFFIXES:
        from recoserve.events.root import RootReader

        reader = RootReader(path, tree, mapping)
        return len(reader), iter(reader)
    raise ValueError(
        f"{path}: unknown event file type {suffix!r}; expected one of "
        f"{', '.join(PARQUET_SUFFIXES + ROOT_SUFFIXES)}"
    )


def read_event(
    path: str | Path, index: int, tree: str = "events", mapping: dict[str, str] | None = None
) -> Event:
    """The ``index``-th event of a file (0-based position, not event_id)."""
    n, events = open_events(path, tree, mapping)
    if not 0 <= index < n:
        raise IndexError(f"{path} has {n} events; there is no event at position {index}")
    for i, event in enumerate(events):
        if i == index:
            return event
    raise IndexError(index)

"""Reading users' ROOT ntuples (through uproot) into events, with a documented column mapping.

A ntuple is a TTree with one entry per event and jagged branches per hit / track / particle.
``DEFAULT_MAPPING`` names the branches recoserve expects (and writes, see ``write_root``); pass
``mapping`` (or ``--map hits.x=RecHit_x`` on the command line) to read other names. Only the hit
position and energy are required. Other columns, when absent, are filled with the values in
``FILL_VALUES`` and listed in ``RootReader.filled`` so nothing is invented silently.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from recoserve.events.model import TABLES, Event, Table
from recoserve.extras import require
from recoserve.sim.geometry import GEOMETRY

if TYPE_CHECKING:
    import awkward as ak
    import uproot

REQUIRED = ("hits.x", "hits.y", "hits.z", "hits.energy")

DEFAULT_MAPPING: dict[str, str] = {"event_id": "event"}
_PREFIX = {"hits": "hit_", "tracks": "track_", "particles": "gen_"}
for _table, _cls in TABLES.items():
    for _col in _cls.SCHEMA:
        DEFAULT_MAPPING[f"{_table}.{_col}"] = _PREFIX[_table] + _col

FILL_VALUES: dict[str, float] = {
    "time": 0.0,
    "truth_particle": -1,
    "truth_fraction": 0.0,
    "true_energy": np.nan,
    "cell_id": -1,
    "parent": -1,
    "deposited_energy": np.nan,
    "visible_energy": np.nan,
}
"""Fill values of absent columns; an absent column not listed here is NaN (floats) or -1. An
absent ``hits.layer`` is computed from z (nearest layer plane of the recoserve geometry)."""


def parse_mapping(items: Iterable[str]) -> dict[str, str]:
    """``["hits.x=RecHit_x", ...]`` -> mapping; the keys are checked against the event model."""
    mapping: dict[str, str] = {}
    for item in items:
        key, sep, branch = item.partition("=")
        if not sep or not branch:
            raise ValueError(f"mapping {item!r} is not of the form table.column=branch")
        if key not in DEFAULT_MAPPING:
            raise ValueError(
                f"unknown mapping key {key!r}; known keys: {', '.join(DEFAULT_MAPPING)}"
            )
        mapping[key] = branch
    return mapping


def _layer_from_z(z: np.ndarray) -> np.ndarray:
    planes = GEOMETRY.layers.z
    idx = np.clip(np.searchsorted(planes, np.abs(z)), 1, len(planes) - 1)
    nearer_below = np.abs(np.abs(z) - planes[idx - 1]) < np.abs(planes[idx] - np.abs(z))
    return np.where(nearer_below, idx - 1, idx)


class RootReader:
    """Iterates the events of a ROOT ntuple; see the module docstring for the mapping."""

    def __init__(
        self,
        path: str | Path,
        tree: str = "events",
        mapping: dict[str, str] | None = None,
        step_size: int = 100,
    ) -> None:
        self.path = Path(path)
        self.mapping = {**DEFAULT_MAPPING, **(mapping or {})}
        self.step_size = step_size
        require("root", "reading ROOT event files")
        import uproot

        self._file = uproot.open(self.path)
        if tree not in self._file:
            names = ", ".join(self._file.keys(cycle=False))
            raise KeyError(f"{self.path} has no tree {tree!r}; it has: {names}")
        self.tree = self._file[tree]
        available = set(self.tree.keys())
        missing = [
            f"{k} (branch {self.mapping[k]!r})"
            for k in REQUIRED
            if self.mapping[k] not in available
        ]
        if missing:
            raise KeyError(f"{self.path}:{tree} lacks required branches: {', '.join(missing)}")
        self.present = {k: b for k, b in self.mapping.items() if b in available}
        self.filled = sorted(set(self.mapping) - set(self.present))

    def __len__(self) -> int:
        return int(self.tree.num_entries)

    def __iter__(self) -> Iterator[Event]:
        import awkward as ak

        branches = sorted(set(self.present.values()))
        first_entry = 0
        for chunk in self.tree.iterate(branches, step_size=self.step_size, library="ak"):
            n = len(chunk)
            event_ids = (
                ak.to_numpy(chunk[self.present["event_id"]]).astype(np.int64)
                if "event_id" in self.present
                else np.arange(first_entry, first_entry + n)
            )
            tables = {name: self._tables(chunk, name, cls, n) for name, cls in TABLES.items()}
            for i in range(n):
                yield Event(
                    event_id=int(event_ids[i]),
                    hits=tables["hits"][i],  # type: ignore[arg-type]
                    tracks=tables["tracks"][i],  # type: ignore[arg-type]
                    particles=tables["particles"][i],  # type: ignore[arg-type]
                )
            first_entry += n

    def _tables(self, chunk: ak.Array, name: str, cls: type[Table], n: int) -> list[Table]:
        import awkward as ak

        counts: np.ndarray | None = None
        flat: dict[str, np.ndarray] = {}
        for col, dtype in cls.SCHEMA.items():
            branch = self.present.get(f"{name}.{col}")
            if branch is None:
                continue
            jagged = chunk[branch]
            these = ak.to_numpy(ak.num(jagged, axis=1))
            if counts is not None and not np.array_equal(counts, these):
                raise ValueError(
                    f"branch {branch!r} has a different length per event "
                    f"than the other {name} branches"
                )
            counts = these
            flat[col] = ak.to_numpy(ak.flatten(jagged, axis=1)).astype(dtype)
        if counts is None:
            return [cls.empty() for _ in range(n)]
        total = int(counts.sum())
        for col, dtype in cls.SCHEMA.items():
            if col in flat:
                continue
            if name == "hits" and col == "layer":
                flat[col] = _layer_from_z(flat["z"]).astype(dtype)
            else:
                default = FILL_VALUES.get(col, np.nan if dtype.kind == "f" else -1)
                flat[col] = np.full(total, default, dtype=dtype)
        bounds = np.concatenate([[0], np.cumsum(counts)])
        return [
            cls.from_columns({c: v[bounds[i] : bounds[i + 1]] for c, v in flat.items()})
            for i in range(n)
        ]


def read_root(
    path: str | Path, tree: str = "events", mapping: dict[str, str] | None = None
) -> list[Event]:
    return list(RootReader(path, tree, mapping))


def write_root(
    path: str | Path,
    events: Iterable[Event],
    tree: str = "events",
    mapping: dict[str, str] | None = None,
) -> int:
    """Write events as a flat ntuple with jagged branches (the layout ``RootReader`` reads)."""
    names = {**DEFAULT_MAPPING, **(mapping or {})}
    branch_types = {names["event_id"]: "int64"}
    for table, cls in TABLES.items():
        for col, dtype in cls.SCHEMA.items():
            branch_types[names[f"{table}.{col}"]] = f"var * {dtype.name}"
    require("root", "writing ROOT event files")
    import uproot

    n = 0
    with uproot.recreate(path) as file:
        file.mktree(tree, branch_types, counter_name=lambda branch: f"n_{branch}")
        batch: list[Event] = []
        for event in events:
            batch.append(event)
            if len(batch) == 100:
                n += _extend(file[tree], batch, names)
                batch = []
        if batch:
            n += _extend(file[tree], batch, names)
    return n


def _extend(tree: uproot.WritableTree, events: list[Event], names: dict[str, str]) -> int:
    import awkward as ak

    data: dict[str, object] = {names["event_id"]: np.array([e.event_id for e in events], np.int64)}
    for table, cls in TABLES.items():
        parts = [getattr(e, table) for e in events]
        counts = np.array([len(p) for p in parts])
        for col in cls.SCHEMA:
            flat = np.concatenate([p.columns()[col] for p in parts])
            data[names[f"{table}.{col}"]] = ak.unflatten(flat, counts)
    tree.extend(data)
    return len(events)

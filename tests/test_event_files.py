"""Event files: exact Parquet round trip, streaming, awkward access, ROOT ntuples with mappings."""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from recoserve.events.io import open_events, read_event
from recoserve.events.model import Event, Hits
from recoserve.events.parquet import (
    EventWriter,
    count_events,
    iter_events,
    read_events,
    read_metadata,
    write_events,
)
from recoserve.events.root import RootReader, parse_mapping, read_root, write_root
from recoserve.sim.particles import GunConfig
from recoserve.sim.simulator import SimConfig, Simulator


@pytest.fixture(scope="module")
def small_events() -> list[Event]:
    """Forty 3-particle events plus an event with no hits at all."""
    sim = Simulator(SimConfig(gun=GunConfig(n_particles=3)))
    events = list(sim.events(40, seed=4))
    events.append(Event(event_id=999, hits=Hits.empty()))
    return events


def test_parquet_round_trip_is_exact(tmp_path: Path, reference_events: list[Event]) -> None:
    path = tmp_path / "ref.parquet"
    assert write_events(path, reference_events, {"seed": "11"}) == len(reference_events)
    back = read_events(path)
    assert len(back) == len(reference_events)
    for a, b in zip(reference_events, back, strict=True):
        assert a.equals(b)
        assert b.hits.x.dtype == np.float32 and b.hits.cell_id.dtype == np.int64
    # NaN (particles that never reach the calorimeter) survive too.
    assert any(np.isnan(e.particles.calo_z).any() for e in back)
    meta = read_metadata(path)
    assert meta["seed"] == "11" and meta["units"] == "cm, GeV, ns"


def test_streaming_across_row_groups(tmp_path: Path, small_events: list[Event]) -> None:
    path = tmp_path / "small.parquet"
    with EventWriter(path, events_per_group=7) as writer:
        for event in small_events:
            writer.write(event)
    assert count_events(path) == len(small_events)
    streamed = list(iter_events(path, batch_size=5))
    assert [e.event_id for e in streamed] == [e.event_id for e in small_events]
    assert all(a.equals(b) for a, b in zip(small_events, streamed, strict=True))
    assert len(streamed[-1].hits) == 0
    assert read_event(path, 12).equals(small_events[12])
    with pytest.raises(IndexError, match="41 events"):
        read_event(path, 41)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "none.parquet"
    assert write_events(path, []) == 0
    assert read_events(path) == []


def test_files_open_in_awkward(tmp_path: Path, small_events: list[Event]) -> None:
    path = tmp_path / "ak.parquet"
    write_events(path, small_events)
    array = ak.from_parquet(path)
    assert array.fields == ["event_id", "hits", "tracks", "particles"]
    assert ak.to_list(ak.num(array.hits)) == [len(e.hits) for e in small_events]
    np.testing.assert_array_equal(ak.to_numpy(array.hits.energy[3]), small_events[3].hits.energy)


def test_root_round_trip(tmp_path: Path, small_events: list[Event]) -> None:
    path = tmp_path / "ntuple.root"
    assert write_root(path, small_events) == len(small_events)
    back = read_root(path)
    assert all(a.equals(b) for a, b in zip(small_events, back, strict=True))
    n, events = open_events(path)
    assert n == len(small_events) and next(events).equals(small_events[0])


def test_root_with_a_users_column_names(tmp_path: Path, small_events: list[Event]) -> None:
    """A minimal ntuple with other branch names: mapped, missing columns filled and reported."""
    path = tmp_path / "user.root"
    events = small_events[:5]
    counts = [len(e.hits) for e in events]
    with uproot.recreate(path) as f:
        f["hgc"] = {
            "evt": np.array([e.event_id for e in events], dtype=np.int64),
            "RecHit_x": ak.unflatten(np.concatenate([e.hits.x for e in events]), counts),
            "RecHit_y": ak.unflatten(np.concatenate([e.hits.y for e in events]), counts),
            "RecHit_z": ak.unflatten(np.concatenate([e.hits.z for e in events]), counts),
            "RecHit_energy": ak.unflatten(np.concatenate([e.hits.energy for e in events]), counts),
        }
    mapping = parse_mapping(
        [
            "event_id=evt",
            "hits.x=RecHit_x",
            "hits.y=RecHit_y",
            "hits.z=RecHit_z",
            "hits.energy=RecHit_energy",
        ]
    )
    reader = RootReader(path, tree="hgc", mapping=mapping)
    assert "hits.time" in reader.filled and "hits.x" not in reader.filled
    back = list(reader)
    for a, b in zip(events, back, strict=True):
        assert a.event_id == b.event_id
        np.testing.assert_array_equal(a.hits.energy, b.hits.energy)
        np.testing.assert_array_equal(a.hits.layer, b.hits.layer)  # layer recovered from z
        assert np.all(b.hits.time == 0) and np.all(b.hits.truth_particle == -1)
        assert len(b.tracks) == 0


def test_root_errors_name_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "bad.root"
    with uproot.recreate(path) as f:
        f["events"] = {"hit_x": ak.Array([[1.0]]), "hit_y": ak.Array([[1.0]])}
    with pytest.raises(KeyError, match=r"hits\.z.*hit_z"):
        RootReader(path)
    with pytest.raises(KeyError, match=r"no tree 'nope'; it has: events\b") as missing_tree:
        RootReader(path, tree="nope")
    assert ";1" not in str(missing_tree.value)  # tree names as the user types them
    with pytest.raises(ValueError, match=r"unknown mapping key 'hits\.colour'"):
        parse_mapping(["hits.colour=c"])
    with pytest.raises(ValueError, match=r"table\.column=branch"):
        parse_mapping(["hits.x"])
    text = tmp_path / "events.txt"
    text.write_text("x y z\n")
    with pytest.raises(ValueError, match=r"unknown event file type '\.txt'"):
        open_events(text)
    with pytest.raises(FileNotFoundError):
        open_events(tmp_path / "missing.parquet")

"""Shared fixtures: a few simulated reference events (100 particles, as in production)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from recoserve.events.model import Event
from recoserve.export.repository import build_repository
from recoserve.server.triton import TritonServer, start_triton
from recoserve.sim.simulator import Simulator


@pytest.fixture(scope="session")
def simulator() -> Simulator:
    return Simulator()


@pytest.fixture(scope="session")
def reference_events(simulator: Simulator) -> list[Event]:
    """Three 100-particle events of seed 11."""
    return list(simulator.events(3, seed=11))


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local-flavour model repository of the committed checkpoints."""
    path = tmp_path_factory.mktemp("serving") / "model_repository"
    build_repository(path, "local", parity=False)
    return path


@pytest.fixture(scope="module")
def server(repository: Path) -> Iterator[TritonServer]:
    """The embedded Triton serving ``repository`` on free ports."""
    with start_triton(repository, log_path=repository.parent / "triton.log") as running:
        yield running

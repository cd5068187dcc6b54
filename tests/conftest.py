"""Shared fixtures: a few simulated reference events (100 particles, as in production)."""

from __future__ import annotations

import pytest

from recoserve.events.model import Event
from recoserve.sim.simulator import Simulator


@pytest.fixture(scope="session")
def simulator() -> Simulator:
    return Simulator()


@pytest.fixture(scope="session")
def reference_events(simulator: Simulator) -> list[Event]:
    """Three 100-particle events of seed 11."""
    return list(simulator.events(3, seed=11))

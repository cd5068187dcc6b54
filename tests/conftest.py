"""Shared fixtures: a few simulated reference events (100 particles, as in production)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
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


# -- nothing left running ------------------------------------------------------------------------
# Every server a test starts is stopped with it; Triton's Python-backend stubs ignore SIGTERM and
# outlive a killed server unless its process group is ended. After the last test, any Triton
# process (server or stub) started during this run fails the run.

_SESSION_START = pytest.StashKey[float]()
_TREE_BEFORE = pytest.StashKey[set[str] | None]()
_OUR_PROCESSES = ("tritonserver", "triton_python_backend_stub", "envoy", "uvicorn")


def _started_after_session(process: psutil.Process, start: float) -> bool:
    try:
        return process.create_time() >= start and any(
            name in " ".join(process.cmdline()) for name in _OUR_PROCESSES
        )
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def _tree_changes() -> set[str] | None:
    """`git status --porcelain` lines of the source tree (None outside a git checkout)."""
    root = Path(__file__).resolve().parents[1]
    try:
        done = subprocess.run(
            ["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return set(done.stdout.splitlines()) if done.returncode == 0 else None


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_SESSION_START] = psutil.Process().create_time()
    if not hasattr(session.config, "workerinput"):
        session.config.stash[_TREE_BEFORE] = _tree_changes()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if hasattr(session.config, "workerinput"):
        return  # an xdist worker: the other worker may still be running servers
    start = session.config.stash.get(_SESSION_START, None)
    if start is None:
        return
    deadline = time.monotonic() + 10.0  # a stopped process may take a moment to go
    while True:
        left = [
            p
            for p in psutil.process_iter()
            if p.pid != os.getpid() and _started_after_session(p, start)
        ]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    if left:
        names = ", ".join(f"{p.pid} {' '.join(p.cmdline())[:80]}" for p in left)
        print(f"\nFAILED: the test run left processes running: {names}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    # Tests write under temporary directories only: the source tree is as it was.
    before, after = session.config.stash.get(_TREE_BEFORE, None), _tree_changes()
    if before is not None and after is not None and after - before:
        print(f"\nFAILED: the test run changed the source tree: {sorted(after - before)}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED

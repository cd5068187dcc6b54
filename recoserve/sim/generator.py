"""Final-state particles from event generators: HepMC3 files (pyhepmc) or a Parquet table.

The Parquet particle table has one row per particle with the columns

| column | dtype | unit |
|---|---|---|
| `event` | int64 | event number (rows of one event are contiguous or not: grouped by value) |
| `pdg` | int32 | PDG id |
| `px`, `py`, `pz`, `energy` | float64 | GeV |
| `vx`, `vy`, `vz` | float64 | cm, production vertex |
| `vt` | float64 | ns, production time (optional, default 0) |
| `index` | int64 | the generator's particle id (optional, default: row within the event) |

From HepMC3, the final-state particles (status 1) are taken with their production vertex and
their HepMC particle id; units are converted from the file's (MeV or GeV, mm or cm; time c*t).

Every particle is classified: ``simulated`` (a species the detector simulation knows),
``invisible`` (neutrinos), ``unknown`` (a species without a shower model: it is kept out of the
simulation and counted by PDG id). Whether a simulated particle reaches the calorimeter
acceptance is decided by the propagation and reported by ``Simulator`` in the event's truth
(calo_z NaN); ``GeneratorReport`` adds those counts up.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from recoserve.events.model import Particles
from recoserve.sim.particles import BY_PDG, C_CM_PER_NS, INVISIBLE_PDG, ParticleList

PARQUET_REQUIRED = ("event", "pdg", "px", "py", "pz", "energy", "vx", "vy", "vz")


@dataclass
class GeneratorReport:
    """What happened to the generator's final-state particles."""

    events: int = 0
    final_state: int = 0
    simulated: int = 0
    invisible: int = 0
    unknown: Counter[int] = field(default_factory=Counter)
    reached_calorimeter: int = 0
    outside_acceptance: int = 0

    def summary(self) -> dict[str, object]:
        return {
            "events": self.events,
            "final_state_particles": self.final_state,
            "simulated": self.simulated,
            "reached_calorimeter": self.reached_calorimeter,
            "outside_acceptance": self.outside_acceptance,
            "invisible_neutrinos": self.invisible,
            "unknown_species": {str(k): v for k, v in sorted(self.unknown.items())},
        }


@dataclass
class GeneratorEvent:
    number: int
    particles: ParticleList


def _classify(pdg: int, report: GeneratorReport) -> bool:
    report.final_state += 1
    if abs(pdg) in INVISIBLE_PDG:
        report.invisible += 1
        return False
    if pdg not in BY_PDG:
        report.unknown[pdg] += 1
        return False
    report.simulated += 1
    return True


def read_hepmc3(path: str | Path, report: GeneratorReport) -> Iterator[GeneratorEvent]:
    """Events of a HepMC3 file (any format pyhepmc reads: ASCII, HepEVT, ...)."""
    import pyhepmc

    with pyhepmc.open(str(path)) as file:
        for event in file:
            report.events += 1
            to_gev = 1e-3 if event.momentum_unit == pyhepmc.Units.MEV else 1.0
            to_cm = 0.1 if event.length_unit == pyhepmc.Units.MM else 1.0
            particles = ParticleList()
            for p in event.particles:
                if p.status != 1 or not _classify(int(p.pid), report):
                    continue
                m = p.momentum
                v = p.production_vertex.position if p.production_vertex else None
                vertex = np.array([v.x, v.y, v.z]) * to_cm if v is not None else np.zeros(3)
                t = v.t * to_cm / C_CM_PER_NS if v is not None else 0.0
                p4 = np.array([m.e, m.px, m.py, m.pz]) * to_gev
                particles.add(int(p.pid), p4, vertex, t, -1, 0, int(p.id))
            yield GeneratorEvent(int(event.event_number), particles)


def read_particle_table(path: str | Path, report: GeneratorReport) -> Iterator[GeneratorEvent]:
    """Events of a Parquet particle table (columns in the module docstring)."""
    table = pq.read_table(path)
    missing = [c for c in PARQUET_REQUIRED if c not in table.column_names]
    if missing:
        raise KeyError(f"{path}: particle table lacks columns {missing}; see docs/simulation.md")
    cols = {c: table.column(c).to_numpy() for c in table.column_names}
    numbers = cols["event"]
    for number in np.unique(numbers):
        rows = np.flatnonzero(numbers == number)
        report.events += 1
        particles = ParticleList()
        for k, row in enumerate(rows):
            pdg = int(cols["pdg"][row])
            if not _classify(pdg, report):
                continue
            p4 = np.array([cols[c][row] for c in ("energy", "px", "py", "pz")], dtype=float)
            vertex = np.array([cols[c][row] for c in ("vx", "vy", "vz")], dtype=float)
            t = float(cols["vt"][row]) if "vt" in cols else 0.0
            index = int(cols["index"][row]) if "index" in cols else k
            particles.add(pdg, p4, vertex, t, -1, 0, index)
        yield GeneratorEvent(int(number), particles)


def read_generator_file(path: str | Path, report: GeneratorReport) -> Iterator[GeneratorEvent]:
    """Dispatch on the suffix: .parquet / .pq particle tables, anything else to pyhepmc."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such generator file: {path}")
    if path.suffix.lower() in (".parquet", ".pq"):
        return read_particle_table(path, report)
    return read_hepmc3(path, report)


def count_acceptance(particles: Particles, report: GeneratorReport) -> None:
    """Add up, per generator particle, whether it or a decay product entered the calorimeter."""
    primary = np.flatnonzero((particles.generator_index >= 0) & (particles.parent < 0))
    entered = np.isfinite(particles.calo_z)
    root = np.arange(len(particles))
    for _ in range(4):  # decay chains are short: K0S -> pi0 -> gamma
        has_parent = particles.parent[root] >= 0
        root = np.where(has_parent, particles.parent[root], root)
    reached = np.zeros(len(particles), dtype=bool)
    reached[root[entered]] = True
    report.reached_calorimeter += int(reached[primary].sum())
    report.outside_acceptance += int((~reached[primary]).sum())

"""The event data model: hits, tracks and truth particles of one collision event.

Each table is a dataclass of equally long numpy columns. The column names, dtypes and units
declared here are the single definition used by the simulation, the event files (Parquet and
ROOT) and, later, the tensors sent to the server. Units: cm, GeV, ns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import numpy as np

T = TypeVar("T", bound="Table")


@dataclass
class Table:
    """Base class: a set of same-length numpy columns whose dtypes are fixed by ``SCHEMA``."""

    SCHEMA: ClassVar[dict[str, np.dtype[Any]]] = {}
    UNITS: ClassVar[dict[str, str]] = {}

    def __post_init__(self) -> None:
        lengths = set()
        for name, dtype in self.SCHEMA.items():
            column = np.ascontiguousarray(getattr(self, name), dtype=dtype)
            if column.ndim != 1:
                raise ValueError(f"{type(self).__name__}.{name} must be one-dimensional")
            setattr(self, name, column)
            lengths.add(len(column))
        if len(lengths) > 1:
            raise ValueError(f"{type(self).__name__} columns have different lengths: {lengths}")

    def __len__(self) -> int:
        first = next(iter(self.SCHEMA))
        return len(getattr(self, first))

    @classmethod
    def empty(cls: type[T]) -> T:
        return cls(**{name: np.zeros(0, dtype) for name, dtype in cls.SCHEMA.items()})

    @classmethod
    def from_columns(cls: type[T], columns: dict[str, np.ndarray]) -> T:
        missing = set(cls.SCHEMA) - set(columns)
        if missing:
            raise KeyError(f"{cls.__name__} is missing columns: {sorted(missing)}")
        return cls(**{name: columns[name] for name in cls.SCHEMA})

    def columns(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in self.SCHEMA}

    def take(self: T, index: np.ndarray) -> T:
        """Rows selected by an integer or boolean index, as a new table."""
        return type(self)(**{name: col[index] for name, col in self.columns().items()})

    def equals(self, other: Table) -> bool:
        """Exact equality, NaN == NaN (used by the lossless file round trip)."""
        if type(self) is not type(other) or len(self) != len(other):
            return False
        return all(
            np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
            for a, b in zip(self.columns().values(), other.columns().values(), strict=True)
        )


NO_TIME_NS = -1.0  # Hits.time of a hit below the timing threshold (no time measured)

F32 = np.dtype(np.float32)
F64 = np.dtype(np.float64)
I8 = np.dtype(np.int8)
I16 = np.dtype(np.int16)
I32 = np.dtype(np.int32)
I64 = np.dtype(np.int64)


@dataclass(eq=False)
class Hits(Table):
    """Calorimeter hits: one row per cell above threshold, placed at the cell centre."""

    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    energy: np.ndarray
    time: np.ndarray
    layer: np.ndarray
    cell_id: np.ndarray
    truth_particle: np.ndarray
    truth_fraction: np.ndarray
    true_energy: np.ndarray

    SCHEMA: ClassVar[dict[str, np.dtype[Any]]] = {
        "x": F32, "y": F32, "z": F32, "energy": F32, "time": F32,
        "layer": I16, "cell_id": I64,
        "truth_particle": I32, "truth_fraction": F32, "true_energy": F32,
    }  # fmt: skip
    UNITS: ClassVar[dict[str, str]] = {
        "x": "cm", "y": "cm", "z": "cm", "energy": "GeV (EM scale)",
        "time": "ns, -1 = not measured (below the timing threshold)",
        "layer": "0-49", "cell_id": "see docs/geometry.md",
        "truth_particle": "row in particles, -1 = noise",
        "truth_fraction": "share of true_energy from truth_particle",
        "true_energy": "GeV, noiseless deposit of all particles",
    }  # fmt: skip

    def features(self) -> np.ndarray:
        """The model input: float32 [N, 5] = (x, y, z, energy, time)."""
        return np.stack([self.x, self.y, self.z, self.energy, self.time], axis=1)


@dataclass(eq=False)
class Tracks(Table):
    """Reconstructed tracks of charged particles, with their extrapolation to the calorimeter."""

    pt: np.ndarray
    eta: np.ndarray
    phi: np.ndarray
    charge: np.ndarray
    p: np.ndarray
    x_calo: np.ndarray
    y_calo: np.ndarray
    z_calo: np.ndarray
    n_layers: np.ndarray
    truth_particle: np.ndarray

    SCHEMA: ClassVar[dict[str, np.dtype[Any]]] = {
        "pt": F32, "eta": F32, "phi": F32, "charge": I8, "p": F32,
        "x_calo": F32, "y_calo": F32, "z_calo": F32, "n_layers": I8, "truth_particle": I32,
    }  # fmt: skip
    UNITS: ClassVar[dict[str, str]] = {
        "pt": "GeV", "eta": "", "phi": "rad", "charge": "e", "p": "GeV",
        "x_calo": "cm", "y_calo": "cm", "z_calo": "cm (calorimeter face)",
        "n_layers": "tracker layers with a hit (quality)",
        "truth_particle": "row in particles",
    }  # fmt: skip

    def features(self) -> np.ndarray:
        """The model input: float32 [T, 9] = (pt, eta, phi, charge, p, x_calo, y_calo, z_calo,
        n_layers).

        A track that never reaches the calorimeter (it curls up, or leaves the acceptance) has
        NaN calo coordinates in the event; here it gets its straight-line direction at the face
        (|z| = 320 cm) instead, so the served tensor is always finite.
        """
        missing = ~np.isfinite(self.z_calo)
        side = np.where(self.eta >= 0, 1.0, -1.0)
        rho = 320.0 / np.maximum(np.abs(np.sinh(self.eta)), 1e-3)  # Z_FRONT
        x = np.where(missing, rho * np.cos(self.phi), self.x_calo)
        y = np.where(missing, rho * np.sin(self.phi), self.y_calo)
        z = np.where(missing, 320.0 * side, self.z_calo)
        columns = [self.pt, self.eta, self.phi, self.charge, self.p, x, y, z, self.n_layers]
        return np.stack([np.asarray(c, dtype=np.float32) for c in columns], axis=1)


@dataclass(eq=False)
class Particles(Table):
    """Truth particles: primaries (gun, generator or pileup) and their decay products."""

    pdg: np.ndarray
    charge: np.ndarray
    energy: np.ndarray
    pt: np.ndarray
    eta: np.ndarray
    phi: np.ndarray
    vx: np.ndarray
    vy: np.ndarray
    vz: np.ndarray
    calo_x: np.ndarray
    calo_y: np.ndarray
    calo_z: np.ndarray
    parent: np.ndarray
    deposited_energy: np.ndarray
    visible_energy: np.ndarray
    vt: np.ndarray
    interaction: np.ndarray
    generator_index: np.ndarray

    SCHEMA: ClassVar[dict[str, np.dtype[Any]]] = {
        "pdg": I32, "charge": I8, "energy": F32, "pt": F32, "eta": F32, "phi": F32,
        "vx": F32, "vy": F32, "vz": F32, "calo_x": F32, "calo_y": F32, "calo_z": F32,
        "parent": I32, "deposited_energy": F32, "visible_energy": F32,
        "vt": F32, "interaction": I16, "generator_index": I32,
    }  # fmt: skip
    UNITS: ClassVar[dict[str, str]] = {
        "pdg": "PDG id", "charge": "e", "energy": "GeV", "pt": "GeV", "eta": "", "phi": "rad",
        "vx": "cm", "vy": "cm", "vz": "cm (production vertex)",
        "calo_x": "cm", "calo_y": "cm",
        "calo_z": "cm, where it enters the calorimeter (NaN if it never does)",
        "parent": "row of the mother particle, -1 = primary",
        "deposited_energy": "GeV, all cell deposits before threshold",
        "visible_energy": "GeV, deposits in hits above threshold",
        "vt": "ns, production time",
        "interaction": "0 = hard scatter / gun, 1..N = pileup interaction",
        "generator_index": "particle id in the generator record (HepMC), -1 if none",
    }  # fmt: skip


@dataclass(eq=False)
class Event:
    """One collision event: hits, tracks and truth."""

    event_id: int
    hits: Hits
    tracks: Tracks = field(default_factory=Tracks.empty)
    particles: Particles = field(default_factory=Particles.empty)

    def equals(self, other: Event) -> bool:
        return (
            self.event_id == other.event_id
            and self.hits.equals(other.hits)
            and self.tracks.equals(other.tracks)
            and self.particles.equals(other.particles)
        )


TABLES: dict[str, type[Table]] = {"hits": Hits, "tracks": Tracks, "particles": Particles}


def schema_markdown() -> str:
    """Markdown tables of every event-file column: name, dtype, unit/meaning (for docs)."""
    lines: list[str] = []
    for name, table in TABLES.items():
        lines += [f"#### `{name}`", "", "| column | dtype | unit / meaning |", "|---|---|---|"]
        lines += [
            f"| `{col}` | {dtype.name} | {table.UNITS[col]} |"
            for col, dtype in table.SCHEMA.items()
        ]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"

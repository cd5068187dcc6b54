"""Particle species, the particle gun, decays and propagation to the calorimeter face.

Kinematics are plain numpy float64 arrays; momenta in GeV, positions in cm, times in ns.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from recoserve.sim.geometry import ETA_MAX, ETA_MIN, Z_FRONT

C_CM_PER_NS = 29.9792458


@dataclass(frozen=True)
class Species:
    name: str
    pdg: int
    charge: int
    mass: float  # GeV
    shower: str  # "em", "hadron", "mip" or "decay" (decays before reaching the calorimeter)


SPECIES: dict[str, Species] = {
    s.name: s
    for s in [
        Species("e-", 11, -1, 0.000511, "em"),
        Species("e+", -11, 1, 0.000511, "em"),
        Species("mu-", 13, -1, 0.105658, "mip"),
        Species("mu+", -13, 1, 0.105658, "mip"),
        Species("gamma", 22, 0, 0.0, "em"),
        Species("pi+", 211, 1, 0.139570, "hadron"),
        Species("pi-", -211, -1, 0.139570, "hadron"),
        Species("pi0", 111, 0, 0.134977, "decay"),
        Species("K+", 321, 1, 0.493677, "hadron"),
        Species("K-", -321, -1, 0.493677, "hadron"),
        Species("K0L", 130, 0, 0.497611, "hadron"),
        Species("K0S", 310, 0, 0.497611, "hadron"),  # decays in flight, see K0S_CTAU
        # Baryons, for generator events and pileup (not shot by the default gun).
        Species("p", 2212, 1, 0.938272, "hadron"),
        Species("pbar", -2212, -1, 0.938272, "hadron"),
        Species("n", 2112, 0, 0.939565, "hadron"),
        Species("nbar", -2112, 0, 0.939565, "hadron"),
    ]
}
INVISIBLE_PDG = frozenset({12, 14, 16})  # neutrinos: leave the detector unseen
BY_PDG: dict[int, Species] = {s.pdg: s for s in SPECIES.values()}
K0S_CTAU = 2.6844  # cm
K0S_BRANCHING = ((0.692, ("pi+", "pi-")), (0.308, ("pi0", "pi0")))
DEFAULT_GUN_SPECIES = (
    "e-", "e+", "mu-", "mu+", "gamma", "pi+", "pi-", "pi0", "K+", "K-", "K0L", "K0S",
)  # fmt: skip


def species_mix(weights: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """(species names, normalised probabilities) of a mix, for ``rng.choice(names, p=p)``."""
    names = np.array(list(weights))
    p = np.array(list(weights.values()), dtype=float)
    return names, p / p.sum()


def shower_energy(species: Species, energy: float) -> float:
    """Energy available to a calorimeter shower: kinetic energy for baryons (their mass is not
    released), total energy plus the annihilation mass for antibaryons, total energy otherwise."""
    if abs(species.pdg) in (2212, 2112):
        return energy - species.mass if species.pdg > 0 else energy + species.mass
    return energy


def species_of(pdg: int) -> Species:
    try:
        return BY_PDG[int(pdg)]
    except KeyError:
        raise ValueError(f"unknown particle species: PDG id {pdg}") from None


@dataclass
class ParticleList:
    """Growing list of truth particles while an event is being generated."""

    pdg: list[int] = field(default_factory=list)
    p4: list[np.ndarray] = field(default_factory=list)  # (E, px, py, pz)
    vertex: list[np.ndarray] = field(default_factory=list)  # (x, y, z)
    time: list[float] = field(default_factory=list)  # production time, ns
    parent: list[int] = field(default_factory=list)
    interaction: list[int] = field(default_factory=list)  # 0 hard scatter, k >= 1 pileup
    generator_index: list[int] = field(default_factory=list)  # id in the generator record

    def add(
        self, pdg: int, p4: np.ndarray, vertex: np.ndarray, time: float, parent: int,
        interaction: int = 0, generator_index: int = -1,
    ) -> int:  # fmt: skip
        self.pdg.append(int(pdg))
        self.p4.append(np.asarray(p4, dtype=np.float64))
        self.vertex.append(np.asarray(vertex, dtype=np.float64))
        self.time.append(float(time))
        self.parent.append(int(parent))
        self.interaction.append(int(interaction))
        self.generator_index.append(int(generator_index))
        return len(self.pdg) - 1

    def extend(self, other: ParticleList) -> None:
        """Append another list's particles (parents re-indexed)."""
        offset = len(self)
        for i in range(len(other)):
            parent = other.parent[i] + offset if other.parent[i] >= 0 else -1
            self.add(other.pdg[i], other.p4[i], other.vertex[i], other.time[i], parent,
                     other.interaction[i], other.generator_index[i])  # fmt: skip

    def __len__(self) -> int:
        return len(self.pdg)


@dataclass(frozen=True)
class GunConfig:
    """What the particle gun shoots: species mix, energy range, acceptance, vertex spread."""

    n_particles: int = 100
    species: tuple[str, ...] = DEFAULT_GUN_SPECIES
    energy_min: float = 20.0
    energy_max: float = 200.0
    log_uniform: bool = False  # energies uniform in log(E) instead of in E (soft-to-hard guns)
    eta_min: float = ETA_MIN
    eta_max: float = ETA_MAX
    both_endcaps: bool = True
    vertex_sigma_z: float = 3.5  # cm, luminous region

    def __post_init__(self) -> None:
        unknown = [s for s in self.species if s not in SPECIES]
        if unknown:
            raise ValueError(f"unknown species {unknown}; known: {sorted(SPECIES)}")
        if not 0 < self.energy_min <= self.energy_max:
            raise ValueError("need 0 < energy_min <= energy_max")
        if not ETA_MIN <= self.eta_min <= self.eta_max <= ETA_MAX:
            raise ValueError(f"eta range must lie inside [{ETA_MIN}, {ETA_MAX}]")
        if self.n_particles < 0:
            raise ValueError("n_particles must be >= 0")


def p4_from(energy: np.ndarray, mass: np.ndarray, eta: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """(E, px, py, pz) from energy, mass and direction."""
    p = np.sqrt(np.maximum(energy**2 - mass**2, 0.0))
    pt = p / np.cosh(eta)
    return np.stack([energy, pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)], axis=-1)


def shoot(config: GunConfig, rng: np.random.Generator) -> ParticleList:
    """Primary particles from one common vertex, uniform in energy (or log energy), eta and
    phi."""
    n = config.n_particles
    names = rng.choice(np.array(config.species), size=n)
    if config.log_uniform:
        energy = np.exp(rng.uniform(np.log(config.energy_min), np.log(config.energy_max), n))
    else:
        energy = rng.uniform(config.energy_min, config.energy_max, n)
    eta = rng.uniform(config.eta_min, config.eta_max, n)
    if config.both_endcaps:
        eta = eta * rng.choice([-1.0, 1.0], n)
    phi = rng.uniform(-np.pi, np.pi, n)
    vertex = np.array([0.0, 0.0, rng.normal(0.0, config.vertex_sigma_z)])
    mass = np.array([SPECIES[s].mass for s in names])
    p4 = p4_from(np.maximum(energy, mass), mass, eta, phi)
    particles = ParticleList()
    for i in range(n):
        particles.add(SPECIES[names[i]].pdg, p4[i], vertex, 0.0, -1)
    return particles


def two_body_decay(
    parent_p4: np.ndarray, m1: float, m2: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Isotropic two-body decay in the rest frame, boosted to the lab."""
    mass = np.sqrt(max(parent_p4[0] ** 2 - parent_p4[1:] @ parent_p4[1:], 0.0))
    p_star = np.sqrt(max((mass**2 - (m1 + m2) ** 2) * (mass**2 - (m1 - m2) ** 2), 0.0)) / (2 * mass)
    cos_t = rng.uniform(-1.0, 1.0)
    sin_t = np.sqrt(1.0 - cos_t**2)
    ph = rng.uniform(0.0, 2 * np.pi)
    direction = np.array([sin_t * np.cos(ph), sin_t * np.sin(ph), cos_t])
    d1 = np.concatenate([[np.hypot(m1, p_star)], p_star * direction])
    d2 = np.concatenate([[np.hypot(m2, p_star)], -p_star * direction])
    beta = parent_p4[1:] / parent_p4[0]
    return _boost(d1, beta), _boost(d2, beta)


def _boost(p4: np.ndarray, beta: np.ndarray) -> np.ndarray:
    b2 = beta @ beta
    if b2 <= 0.0:
        return p4
    gamma = 1.0 / np.sqrt(1.0 - b2)
    bp = beta @ p4[1:]
    energy = gamma * (p4[0] + bp)
    p3 = p4[1:] + ((gamma - 1.0) * bp / b2 + gamma * p4[0]) * beta
    return np.concatenate([[energy], p3])


def distance_to_face(vertex: np.ndarray, p3: np.ndarray) -> float:
    """Straight flight distance from the vertex to the calorimeter face plane (inf if never)."""
    pz = p3[2]
    if pz == 0.0:
        return np.inf
    dz = np.sign(pz) * Z_FRONT - vertex[2]
    if dz * pz <= 0:
        return np.inf
    return float(dz / pz * np.linalg.norm(p3))


def apply_decays(particles: ParticleList, rng: np.random.Generator) -> np.ndarray:
    """Decay pi0 (at once) and K0S (in flight, if before the calorimeter); returns a mask of
    particles that have decayed and therefore leave no deposits themselves."""
    decayed: list[bool] = []
    i = 0
    while i < len(particles):
        pdg = particles.pdg[i]
        p4, vertex, t0 = particles.p4[i], particles.vertex[i], particles.time[i]
        did_decay = False
        if pdg == 111:
            g1, g2 = two_body_decay(p4, 0.0, 0.0, rng)
            particles.add(22, g1, vertex, t0, i, particles.interaction[i])
            particles.add(22, g2, vertex, t0, i, particles.interaction[i])
            did_decay = True
        elif pdg == 310:
            p = np.linalg.norm(p4[1:])
            flight = rng.exponential(K0S_CTAU * p / SPECIES["K0S"].mass)
            if flight < distance_to_face(vertex, p4[1:]):
                where = vertex + flight * p4[1:] / p
                t_decay = t0 + flight / (C_CM_PER_NS * p / p4[0])
                channel = (
                    K0S_BRANCHING[0][1]
                    if rng.random() < K0S_BRANCHING[0][0]
                    else K0S_BRANCHING[1][1]
                )
                m1, m2 = SPECIES[channel[0]].mass, SPECIES[channel[1]].mass
                d1, d2 = two_body_decay(p4, m1, m2, rng)
                k = particles.interaction[i]
                particles.add(SPECIES[channel[0]].pdg, d1, where, t_decay, i, k)
                particles.add(SPECIES[channel[1]].pdg, d2, where, t_decay, i, k)
                did_decay = True
        decayed.append(did_decay)
        i += 1
    return np.array(decayed, dtype=bool)


@dataclass(frozen=True)
class FaceCrossing:
    """Where a particle crosses the calorimeter face plane, and its direction there."""

    reached: bool
    position: np.ndarray  # (x, y, z), cm
    direction: np.ndarray  # unit vector
    time: float  # ns


def propagate_to_face(
    vertex: np.ndarray, p4: np.ndarray, charge: int, b_field: float, time0: float = 0.0
) -> FaceCrossing:
    """Helix (charged) or straight line (neutral) in a solenoidal field B along z, to |z| = Z_FRONT.

    Inside the calorimeter the particle is taken to go straight on along its direction at the face.
    """
    nan3 = np.full(3, np.nan)
    p3 = p4[1:]
    pt = float(np.hypot(p3[0], p3[1]))
    dist = distance_to_face(vertex, p3)
    if not np.isfinite(dist) or pt == 0.0:
        return FaceCrossing(False, nan3, nan3, np.nan)
    pz = p3[2]
    z_face = np.sign(pz) * Z_FRONT
    s_t = (z_face - vertex[2]) * pt / pz  # transverse arc length, cm
    phi0 = float(np.arctan2(p3[1], p3[0]))
    if charge != 0 and b_field > 0:
        radius = pt / (0.3 * b_field) * 100.0  # cm
        kappa = -charge / radius
        turn = kappa * s_t
        if abs(turn) > np.pi / 2:
            return FaceCrossing(False, nan3, nan3, np.nan)  # curls up before the endcap
        phi = phi0 + turn
        x = vertex[0] + (np.sin(phi) - np.sin(phi0)) / kappa
        y = vertex[1] - (np.cos(phi) - np.cos(phi0)) / kappa
    else:
        phi = phi0
        x = vertex[0] + s_t * np.cos(phi0)
        y = vertex[1] + s_t * np.sin(phi0)
    p = float(np.linalg.norm(p3))
    direction = np.array([pt * np.cos(phi), pt * np.sin(phi), pz]) / p
    path = np.hypot(s_t, z_face - vertex[2])
    beta = p / p4[0]
    return FaceCrossing(
        True, np.array([x, y, z_face]), direction, time0 + path / (C_CM_PER_NS * beta)
    )

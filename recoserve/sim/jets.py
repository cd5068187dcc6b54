"""The jet gun: events of collimated multi-particle jets, for dense overlapping showers.

Fragmentation-like model (documented in docs/simulation.md):

- jet axes uniform in phi and in |eta| (``eta_min``..``eta_max``, inside the acceptance so the
  cone fits), energies uniform in ``energy_min``..``energy_max``;
- the jet energy is shared by drawing momentum fractions z ~ Beta(1, 3) of what is left
  (f(z) ~ (1 - z)^2: a hard leading hadron, then softer ones) until less than
  ``soft_energy`` remains, which becomes one last soft particle;
- species: 55 % pi+-, 10 % K+-, 3 % p/pbar (charged), 22 % pi0 (-> two photons), 4 % K0L,
  3 % K0S, 3 % n (neutral); a share too small for the drawn hadron's mass becomes a photon, so
  the particles' energies add up to the jet energy exactly;
- each particle's angle to the axis: Delta R = min(R, j_T / p_T) with j_T ~ Exp(0.6 GeV)
  transverse to the axis, at a uniform azimuth around it, so that every particle lies within
  Delta R <= R (0.4) of the axis and hard particles are closest to it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recoserve.sim.geometry import ETA_MAX, ETA_MIN
from recoserve.sim.particles import SPECIES, ParticleList, p4_from, species_mix

JET_SPECIES = {
    "pi+": 0.275, "pi-": 0.275, "K+": 0.05, "K-": 0.05, "p": 0.015, "pbar": 0.015,
    "pi0": 0.22, "K0L": 0.04, "K0S": 0.03, "n": 0.03,
}  # fmt: skip


@dataclass(frozen=True)
class JetGunConfig:
    n_jets: int = 2
    energy_min: float = 100.0
    energy_max: float = 400.0
    eta_min: float = 1.8
    eta_max: float = 2.7
    radius: float = 0.4
    jt_mean: float = 0.6  # GeV, transverse momentum to the axis
    soft_energy: float = 2.0  # GeV: below this the rest of the jet is one soft particle
    both_endcaps: bool = True
    vertex_sigma_z: float = 3.5

    def __post_init__(self) -> None:
        if not ETA_MIN <= self.eta_min <= self.eta_max <= ETA_MAX:
            raise ValueError(f"jet axis eta range must lie inside [{ETA_MIN}, {ETA_MAX}]")
        if not 0 < self.energy_min <= self.energy_max:
            raise ValueError("need 0 < energy_min <= energy_max")


def fragment(energy: float, config: JetGunConfig, rng: np.random.Generator) -> list[float]:
    """Energies of a jet's particles (they add up to ``energy``)."""
    shares: list[float] = []
    left = energy
    while left > config.soft_energy:
        e = left * rng.beta(1.0, 3.0)
        if e < 0.3:  # too soft to matter: keep it in the remainder
            break
        shares.append(e)
        left -= e
    shares.append(left)
    return shares


def shoot_jets(config: JetGunConfig, rng: np.random.Generator) -> tuple[ParticleList, np.ndarray]:
    """Particles of ``n_jets`` jets from one vertex, and the jet axes [n_jets, 3] (E, eta, phi)."""
    names, weights = species_mix(JET_SPECIES)
    vertex = np.array([0.0, 0.0, rng.normal(0.0, config.vertex_sigma_z)])
    particles = ParticleList()
    axes = []
    for _ in range(config.n_jets):
        energy = rng.uniform(config.energy_min, config.energy_max)
        eta = rng.uniform(config.eta_min, config.eta_max)
        if config.both_endcaps and rng.random() < 0.5:
            eta = -eta
        phi = rng.uniform(-np.pi, np.pi)
        axes.append((energy, eta, phi))
        for e in fragment(energy, config, rng):
            species = SPECIES[str(rng.choice(names, p=weights))]
            if e <= species.mass * 1.01:
                species = SPECIES["gamma"]  # a share too small for that hadron: a soft photon
            pt = np.sqrt(e**2 - species.mass**2) / np.cosh(eta)
            delta_r = min(config.radius, rng.exponential(config.jt_mean) / max(pt, 1e-3))
            psi = rng.uniform(0.0, 2 * np.pi)
            p4 = p4_from(
                np.array(e), np.array(species.mass),
                np.array(eta + delta_r * np.cos(psi)), np.array(phi + delta_r * np.sin(psi)),
            )  # fmt: skip
            particles.add(species.pdg, p4, vertex, 0.0, -1)
    return particles, np.array(axes).reshape(-1, 3)

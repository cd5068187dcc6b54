"""Pileup: minimum-bias-like interactions overlaid on an event, flagged in the truth.

Each of the N interactions (documented in docs/simulation.md) has its own vertex, z ~ N(0, 5 cm)
on the beam line, and time ~ N(0, 0.18 ns) (the spread of the luminous region), and produces
Poisson(``mean_particles``) particles with |eta| uniform in 1.3-3.2 (both endcaps; some fall
outside the calorimeter, as in real pileup), phi uniform and p_T ~ Gamma(2, 0.3 GeV) (mean
0.6 GeV): 28 % pi+, 28 % pi-, 22 % pi0 (-> two photons), 4 % K+, 4 % K-, 3 % K0L, 3 % K0S,
3 % p, 2 % pbar, 3 % n. Their truth has ``interaction`` = 1..N (0 is the hard scatter).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recoserve.sim.particles import SPECIES, ParticleList, p4_from, species_mix

PILEUP_SPECIES = {
    "pi+": 0.28, "pi-": 0.28, "pi0": 0.22, "K+": 0.04, "K-": 0.04, "K0L": 0.03,
    "K0S": 0.03, "p": 0.03, "pbar": 0.02, "n": 0.03,
}  # fmt: skip


@dataclass(frozen=True)
class PileupConfig:
    interactions: int = 0
    mean_particles: float = 25.0  # per interaction, in |eta| 1.3-3.2
    eta_min: float = 1.3
    eta_max: float = 3.2
    pt_shape: float = 2.0
    pt_scale: float = 0.3  # GeV
    vertex_sigma_z: float = 5.0  # cm
    vertex_sigma_t: float = 0.18  # ns

    def __post_init__(self) -> None:
        if self.interactions < 0:
            raise ValueError("the number of pileup interactions must be >= 0")


def overlay_pileup(particles: ParticleList, config: PileupConfig, rng: np.random.Generator) -> None:
    """Append the particles of ``config.interactions`` pileup interactions to ``particles``."""
    names, weights = species_mix(PILEUP_SPECIES)
    for interaction in range(1, config.interactions + 1):
        vertex = np.array([0.0, 0.0, rng.normal(0.0, config.vertex_sigma_z)])
        t0 = rng.normal(0.0, config.vertex_sigma_t)
        n = rng.poisson(config.mean_particles)
        kinds = rng.choice(names, size=n, p=weights)
        pt = rng.gamma(config.pt_shape, config.pt_scale, n)
        eta = rng.uniform(config.eta_min, config.eta_max, n) * rng.choice([-1.0, 1.0], n)
        phi = rng.uniform(-np.pi, np.pi, n)
        for kind, pt_i, eta_i, phi_i in zip(kinds, pt, eta, phi, strict=True):
            species = SPECIES[str(kind)]
            energy = np.hypot(pt_i * np.cosh(eta_i), species.mass)
            p4 = p4_from(np.array(energy), np.array(species.mass), np.array(eta_i), np.array(phi_i))
            particles.add(species.pdg, p4, vertex, t0, -1, interaction)

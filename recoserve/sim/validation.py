"""Single-particle response and resolution scans: how the calorimeter simulation performs.

The stand-alone response of one particle is the sum of the measured energies of the hits it
dominates (truth_particle == that particle) divided by its true energy. The resolution is the
half-width of the central 68 % interval of the response over its median (robust against the
non-Gaussian tails of hadron showers). Fits use sigma/E = a/sqrt(E) (+) c.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import curve_fit

from recoserve.sim.digitize import ReadoutConfig
from recoserve.sim.particles import GunConfig
from recoserve.sim.simulator import SimConfig, Simulator


@dataclass(frozen=True)
class ResolutionPoint:
    species: str
    energy: float
    n_events: int
    response_median: float
    resolution: float  # sigma_eff / median
    resolution_error: float


def single_particle_responses(
    species: str, energy: float, n_events: int, seed: int, noise_hits: bool = False
) -> np.ndarray:
    """Response (sum of the particle's hits / true energy) for ``n_events`` single particles."""
    config = SimConfig(gun=_single(species, energy), readout=ReadoutConfig(noise_hits=noise_hits))
    sim = Simulator(config)
    out = np.empty(n_events)
    for i in range(n_events):
        event = sim.event(seed, i)
        mine = event.hits.truth_particle == 0
        out[i] = event.hits.energy[mine].sum(dtype=np.float64) / energy
    return out


def summarize(species: str, energy: float, responses: np.ndarray) -> ResolutionPoint:
    median = float(np.median(responses))
    lo, hi = np.percentile(responses, [16, 84])
    resolution = float((hi - lo) / 2 / median)
    return ResolutionPoint(
        species=species,
        energy=energy,
        n_events=len(responses),
        response_median=median,
        resolution=resolution,
        resolution_error=resolution / np.sqrt(2 * len(responses)),
    )


def stochastic_constant(energy: np.ndarray, a: float, c: float) -> np.ndarray:
    return np.hypot(a / np.sqrt(energy), c)


def fit_resolution(points: list[ResolutionPoint]) -> dict[str, float]:
    """Fit sigma/E = a/sqrt(E) (+) c to the points of one species."""
    e = np.array([p.energy for p in points])
    r = np.array([p.resolution for p in points])
    err = np.array([p.resolution_error for p in points])
    (a, c), cov = curve_fit(stochastic_constant, e, r, p0=(0.5, 0.02), sigma=err, bounds=(0, 5))
    return {
        "stochastic": float(a),
        "constant": float(c),
        "stochastic_error": float(np.sqrt(cov[0, 0])),
        "constant_error": float(np.sqrt(cov[1, 1])),
    }


def resolution_scan(
    species: list[str], energies: list[float], n_events: int, seed: int
) -> dict[str, dict[str, object]]:
    """Response and resolution vs energy for each species, with the fitted a and c."""
    result: dict[str, dict[str, object]] = {}
    for k, name in enumerate(species):
        points = [
            summarize(name, e, single_particle_responses(name, e, n_events, seed + 1000 * k + j))
            for j, e in enumerate(energies)
        ]
        result[name] = {"points": [asdict(p) for p in points], "fit": fit_resolution(points)}
    return result


def multiplicity_vs_pileup(
    pileups: list[int], n_events: int, seed: int, jets: int = 2
) -> list[dict[str, float]]:
    """Hits per event (all, from pileup, noise) vs the number of pileup interactions, for
    jet-gun events."""
    from recoserve.sim.jets import JetGunConfig
    from recoserve.sim.pileup import PileupConfig

    rows = []
    for pileup in pileups:
        sim = Simulator(SimConfig(jets=JetGunConfig(n_jets=jets), pileup=PileupConfig(pileup)))
        totals, from_pileup, noise = [], [], []
        for i in range(n_events):
            event = sim.event(seed, i)
            owner = event.hits.truth_particle
            signal = owner >= 0
            totals.append(len(event.hits))
            from_pileup.append(int((event.particles.interaction[owner[signal]] > 0).sum()))
            noise.append(int((~signal).sum()))
        rows.append({
            "pileup": pileup, "events": n_events,
            "hits_mean": float(np.mean(totals)), "hits_std": float(np.std(totals)),
            "pileup_hits_mean": float(np.mean(from_pileup)),
            "noise_hits_mean": float(np.mean(noise)),
        })  # fmt: skip
    return rows


def _single(species: str, energy: float) -> GunConfig:
    return GunConfig(n_particles=1, species=(species,), energy_min=energy, energy_max=energy)


LATERAL_BINS = (0.0, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 50.0)  # cm from the axis


def shower_profiles(
    species: str, energy: float, n_events: int, seed: int, legacy: bool = False
) -> dict[str, list[float]]:
    """Mean longitudinal profile (share of the visible energy per layer) and lateral profile
    (share per radial bin around the particle's straight axis, and the median over showers of
    the azimuthal asymmetry of the energy beyond 5 cm) of single particles without noise."""
    from recoserve.sim.geometry import N_LAYERS, Z_FRONT

    readout = ReadoutConfig.legacy(noise_hits=False) if legacy else ReadoutConfig(noise_hits=False)
    base = SimConfig.legacy() if legacy else SimConfig()
    sim = Simulator(SimConfig(gun=_single(species, energy), showers=base.showers, readout=readout))
    longitudinal = np.zeros(N_LAYERS)
    lateral = np.zeros(len(LATERAL_BINS) - 1)
    asymmetry = []
    for i in range(n_events):
        event = sim.event(seed, i)
        p, h = event.particles, event.hits
        own = h.truth_particle == 0
        e = h.energy[own].astype(np.float64)
        if e.sum() <= 0:
            continue
        z = np.abs(h.z[own]).astype(np.float64)
        dx = h.x[own] - p.calo_x[0] * z / Z_FRONT
        dy = h.y[own] - p.calo_y[0] * z / Z_FRONT
        r = np.hypot(dx, dy)
        longitudinal += np.bincount(h.layer[own], weights=e, minlength=N_LAYERS) / e.sum()
        lateral += np.histogram(r, bins=LATERAL_BINS, weights=e)[0] / e.sum()
        far = r > 5.0
        if e[far].sum() > 0.5:
            vector = np.hypot((e * dx / r)[far].sum(), (e * dy / r)[far].sum())
            asymmetry.append(vector / e[far].sum())
    return {
        "longitudinal": list(longitudinal / n_events),
        "lateral": list(lateral / n_events),
        "lateral_bins": list(LATERAL_BINS),
        "asymmetry_beyond_5cm": [float(np.median(asymmetry))] if asymmetry else [float("nan")],
    }

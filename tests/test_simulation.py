"""The event simulation: multiplicities, determinism, truth, decays, tracks, response."""

from __future__ import annotations

import numpy as np
import pytest

from recoserve.events.model import Event
from recoserve.sim.geometry import ETA_SENSOR_MAX, ETA_SENSOR_MIN, N_LAYERS, Z_FRONT
from recoserve.sim.particles import DEFAULT_GUN_SPECIES, SPECIES, GunConfig, propagate_to_face
from recoserve.sim.simulator import SimConfig, Simulator
from recoserve.sim.validation import single_particle_responses


def gun_simulator(species: str, energy: float, noise: bool = True, n: int = 1) -> Simulator:
    from recoserve.sim.digitize import ReadoutConfig

    gun = GunConfig(n_particles=n, species=(species,), energy_min=energy, energy_max=energy)
    return Simulator(SimConfig(gun=gun, readout=ReadoutConfig(noise_hits=noise)))


def test_reference_events_have_realistic_multiplicities(reference_events: list[Event]) -> None:
    for event in reference_events:
        assert 10_000 <= len(event.hits) <= 65_000
        noise = (event.hits.truth_particle < 0).sum()
        # Start-of-life thresholds sit at ~3.3 sigma: a few thousand noise hits per event,
        # as the cell count times the Gaussian tail says (test_noise_rate_follows_the_tail).
        assert 1_000 <= noise <= 8_000
        primaries = event.particles.parent == -1
        assert primaries.sum() == 100
        assert 30 <= len(event.tracks) <= 100
        assert np.all(np.isfinite(event.hits.features()))


def test_same_seed_same_event_other_seed_other_event(simulator: Simulator) -> None:
    a = simulator.event(seed=5, event_id=2)
    b = simulator.event(seed=5, event_id=2)
    c = simulator.event(seed=6, event_id=2)
    assert a.equals(b)
    assert not a.equals(c)
    in_a_run = list(Simulator(simulator.config).events(3, seed=5))[2]
    assert in_a_run.equals(a)  # an event does not depend on the ones before it


def test_truth_is_consistent(reference_events: list[Event]) -> None:
    for event in reference_events:
        hits, parts = event.hits, event.particles
        noise = hits.truth_particle < 0
        assert np.all(hits.truth_particle[noise] == -1)
        assert np.all(hits.truth_fraction[noise] == 0) and np.all(hits.true_energy[noise] == 0)
        sig = ~noise
        assert np.all((hits.truth_fraction[sig] > 0) & (hits.truth_fraction[sig] <= 1 + 1e-6))
        assert np.all(hits.true_energy[sig] > 0)
        # Only particles that reached the calorimeter and did not decay own hits.
        owners = np.unique(hits.truth_particle[sig])
        assert np.all(np.isfinite(parts.calo_z[owners]))
        assert not np.isin(parts.pdg[owners], [111]).any()
        # Energy bookkeeping: the visible energies of all particles add up to the hits' true
        # energy, and each particle's dominant share never exceeds what it made visible.
        np.testing.assert_allclose(
            parts.visible_energy.sum(dtype=np.float64),
            hits.true_energy[sig].sum(dtype=np.float64),
            rtol=1e-4,
        )
        dominant = np.bincount(
            hits.truth_particle[sig],
            weights=hits.truth_fraction[sig] * hits.true_energy[sig],
            minlength=len(parts),
        )
        assert np.all(dominant <= parts.visible_energy * (1 + 1e-4) + 1e-6)
        assert np.all(parts.visible_energy <= parts.deposited_energy * (1 + 1e-5) + 1e-6)
        # Calorimeter entry points sit on the face, inside the acceptance.
        entered = np.isfinite(parts.calo_z)
        np.testing.assert_allclose(np.abs(parts.calo_z[entered]), Z_FRONT)
        eta = np.arcsinh(Z_FRONT / np.hypot(parts.calo_x[entered], parts.calo_y[entered]))
        assert np.all((eta >= ETA_SENSOR_MIN - 1e-4) & (eta <= ETA_SENSOR_MAX + 1e-4))


def test_isolated_particle_hit_energies_add_up() -> None:
    sim = gun_simulator("gamma", 60.0, noise=False)
    for i in range(5):
        event = sim.event(seed=1, event_id=i)
        np.testing.assert_allclose(
            event.hits.true_energy.sum(dtype=np.float64),
            event.particles.visible_energy[0],
            rtol=1e-5,
        )
        assert np.all(event.hits.truth_particle == 0)
        assert np.allclose(event.hits.truth_fraction, 1.0)


def test_decays_conserve_energy_and_link_parents() -> None:
    sim = gun_simulator("pi0", 80.0, n=5)
    event = sim.event(seed=2, event_id=0)
    parts = event.particles
    for pi0 in np.flatnonzero(parts.pdg == 111):
        daughters = np.flatnonzero(parts.parent == pi0)
        assert list(parts.pdg[daughters]) == [22, 22]
        assert parts.energy[daughters].sum() == pytest.approx(parts.energy[pi0], rel=1e-5)
    k0s = gun_simulator("K0S", 20.0, n=20).event(seed=3, event_id=0).particles
    decayed = np.flatnonzero((k0s.pdg == 310) & np.isin(np.arange(len(k0s)), k0s.parent))
    assert len(decayed) >= 10  # most 20 GeV K0S decay before the calorimeter
    for k in decayed:
        kids = sorted(k0s.pdg[k0s.parent == k])
        assert kids in ([-211, 211], [111, 111])


def test_tracks_belong_to_charged_particles(reference_events: list[Event]) -> None:
    for event in reference_events:
        tracks, parts = event.tracks, event.particles
        owner = tracks.truth_particle
        assert np.all(parts.charge[owner] == tracks.charge) and np.all(tracks.charge != 0)
        rel = tracks.pt / parts.pt[owner] - 1
        assert np.median(np.abs(rel)) < 0.05
        np.testing.assert_allclose(tracks.eta, parts.eta[owner], atol=0.01)
        charged_primaries = (parts.parent == -1) & (parts.charge != 0)
        assert np.isin(np.flatnonzero(charged_primaries), owner).mean() > 0.9  # efficiency


def test_magnetic_field_bends_charges_apart() -> None:
    p4 = np.array([50.0, 10.0, 0.0, np.sqrt(50.0**2 - 10.0**2)])
    vertex = np.zeros(3)
    phis = {q: propagate_to_face(vertex, p4, q, 3.8) for q in (-1, 0, 1)}
    phi = {q: np.arctan2(c.position[1], c.position[0]) for q, c in phis.items()}
    assert phi[0] == pytest.approx(0.0, abs=1e-12)
    assert phi[1] < 0 < phi[-1]
    assert phi[1] == pytest.approx(-phi[-1])
    # A 2 GeV particle at eta 1.5 curls up before the endcap.
    soft = np.array([2.2, 0.5, 0.0, 0.5 * np.sinh(1.5)])
    assert not propagate_to_face(vertex, soft, 1, 3.8).reached


def test_muons_are_minimum_ionising() -> None:
    sim = gun_simulator("mu-", 50.0, noise=False)
    for i in range(5):
        hits = sim.event(seed=4, event_id=i).hits
        assert len(np.unique(hits.layer)) >= N_LAYERS - 5
        assert hits.energy.sum() < 5.0  # a few GeV at most, far below 50


@pytest.mark.parametrize(
    ("species", "energy", "response_range", "resolution_range"),
    [
        # EM: 20-25 %/sqrt(E) stochastic plus a small constant term, response close to 1.
        ("gamma", 50.0, (0.95, 1.02), (0.18 / np.sqrt(50), 0.27 / np.sqrt(50))),
        ("gamma", 150.0, (0.95, 1.02), (0.18 / np.sqrt(150), 0.29 / np.sqrt(150))),
        # Hadrons: non-compensating (h/e < 1), about 100 %/sqrt(E) plus a constant term.
        ("pi+", 50.0, (0.75, 0.92), (0.80 / np.sqrt(50), 1.25 / np.sqrt(50))),
        ("pi-", 150.0, (0.78, 0.95), (0.80 / np.sqrt(150), 1.30 / np.sqrt(150))),
    ],
)
def test_single_particle_response_and_resolution(
    species: str,
    energy: float,
    response_range: tuple[float, float],
    resolution_range: tuple[float, float],
) -> None:
    responses = single_particle_responses(species, energy, n_events=200, seed=21)
    median = np.median(responses)
    lo, hi = np.percentile(responses, [16, 84])
    resolution = (hi - lo) / 2 / median
    assert response_range[0] <= median <= response_range[1]
    assert resolution_range[0] <= resolution <= resolution_range[1]


def test_resolution_improves_with_energy() -> None:
    def resolution(e: float) -> float:
        r = single_particle_responses("gamma", e, n_events=150, seed=9)
        lo, hi = np.percentile(r, [16, 84])
        return float((hi - lo) / 2 / np.median(r))

    assert resolution(20.0) > 1.5 * resolution(100.0)


def test_gun_rejects_bad_configuration() -> None:
    with pytest.raises(ValueError, match="unknown species"):
        GunConfig(species=("graviton",))
    with pytest.raises(ValueError, match="eta range"):
        GunConfig(eta_min=1.0)
    with pytest.raises(ValueError, match="energy_min"):
        GunConfig(energy_min=50.0, energy_max=20.0)
    assert set(GunConfig().species) == set(DEFAULT_GUN_SPECIES) < set(SPECIES)


def test_empty_event() -> None:
    sim = Simulator(SimConfig(gun=GunConfig(n_particles=0)))
    event = sim.event(seed=0, event_id=0)
    assert len(event.particles) == 0 and len(event.tracks) == 0
    assert np.all(event.hits.truth_particle == -1)  # only noise


@pytest.mark.parametrize("scenario", ["start", "end"])
def test_noise_rate_follows_the_gaussian_tail(scenario: str) -> None:
    from scipy.special import ndtr

    from recoserve.sim.digitize import ReadoutConfig
    from recoserve.sim.geometry import GEOMETRY

    readout = ReadoutConfig.for_scenario(scenario)
    ratio = np.asarray(readout.threshold_mip) / np.asarray(readout.noise_mip)
    expected = 2 * float((GEOMETRY.cells_per_layer() * ndtr(-ratio)[None, :]).sum())
    sim = Simulator(SimConfig(gun=GunConfig(n_particles=0), readout=readout))
    counts = [len(sim.event(5, i).hits) for i in range(3)]
    assert abs(np.mean(counts) / expected - 1) < 0.1  # Poisson: sqrt(N)/N ~ 1 %


def test_only_hits_above_the_timing_threshold_have_a_time() -> None:
    from recoserve.events.model import NO_TIME_NS
    from recoserve.sim.geometry import GEOMETRY

    event = gun_simulator("e-", 50.0).event(3, 0)
    hits = event.hits
    mip = hits.energy / GEOMETRY.layers.mip[hits.layer]
    timed = hits.time != NO_TIME_NS
    assert timed.any() and (~timed).any()
    assert np.all(mip[timed] >= 3.0)
    assert np.all(mip[~timed] < 3.0)
    assert np.all(hits.time[timed] > 9.0)  # flight time to |z| >= 320 cm
    noise = hits.truth_particle < 0
    assert not timed[noise].any()  # noise never reaches 3 MIPs: no free time tag


def test_legacy_detector_times_every_hit_and_is_quieter() -> None:
    legacy = Simulator(SimConfig.legacy(gun=GunConfig(n_particles=20))).event(4, 0)
    realistic = Simulator(SimConfig(gun=GunConfig(n_particles=20))).event(4, 0)
    assert np.all(legacy.hits.time != -1.0)
    assert (legacy.hits.truth_particle < 0).sum() < 0.2 * (realistic.hits.truth_particle < 0).sum()


def test_hadron_showers_are_irregular() -> None:
    """Substructure: fragments and tilted sub-showers make the energy outside the core
    lopsided around the axis (an axially symmetric cloud averages out). Measured as the
    energy-weighted mean of the azimuthal unit vectors of hits more than 5 cm off the axis."""

    def median_asymmetry(config: SimConfig) -> float:
        sim, values = Simulator(config), []
        for i in range(30):
            event = sim.event(6, i)
            p, h = event.particles, event.hits
            own = h.truth_particle == 0
            z, e = np.abs(h.z[own]), h.energy[own].astype(np.float64)
            dx = h.x[own] - p.calo_x[0] * z / Z_FRONT
            dy = h.y[own] - p.calo_y[0] * z / Z_FRONT
            r = np.hypot(dx, dy)
            far = r > 5.0
            if e[far].sum() < 1.0:
                continue
            vector = np.hypot((e * dx / r)[far].sum(), (e * dy / r)[far].sum())
            values.append(vector / e[far].sum())
        return float(np.median(values))

    gun = GunConfig(n_particles=1, species=("pi+",), energy_min=100.0, energy_max=100.0)
    irregular = median_asymmetry(SimConfig(gun=gun))
    symmetric = median_asymmetry(SimConfig.legacy(gun=gun))
    assert irregular > 1.5 * symmetric

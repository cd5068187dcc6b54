"""Generator input (HepMC3, Parquet particle tables), the jet gun and pileup."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pyhepmc
import pytest
from typer.testing import CliRunner

from recoserve.cli import app
from recoserve.events.parquet import read_events
from recoserve.sim.digitize import ReadoutConfig
from recoserve.sim.generator import GeneratorReport, count_acceptance, read_generator_file
from recoserve.sim.jets import JetGunConfig, shoot_jets
from recoserve.sim.pileup import PileupConfig
from recoserve.sim.simulator import SimConfig, Simulator

# (pdg, energy GeV, eta, phi, status): what the test's generator "produced".
KNOWN = [
    (22, 50.0, 2.0, 0.3, 1),  # photon in the +z endcap
    (211, 40.0, -2.2, 1.0, 1),  # pi+ in the -z endcap
    (13, 30.0, 2.5, -2.0, 1),  # muon
    (14, 20.0, 2.0, 2.0, 1),  # neutrino: invisible
    (211, 25.0, 0.5, 0.0, 1),  # pi+ in the barrel: outside the acceptance
    (3122, 20.0, 2.0, -1.0, 1),  # Lambda: no shower model here
    (23, 91.0, 0.0, 0.0, 2),  # decayed Z: not a final-state particle
]
VERTEX_MM = (0.1, -0.2, 15.0)  # 1.5 cm


def write_hepmc(path: Path) -> None:
    """One event in MeV and mm, to check the unit conversions."""
    event = pyhepmc.GenEvent(pyhepmc.Units.MEV, pyhepmc.Units.MM)
    event.event_number = 42
    vertex = pyhepmc.GenVertex((*VERTEX_MM, 0.0))
    beam = pyhepmc.GenParticle((0.0, 0.0, 7e6, 7e6), 2212, 4)
    vertex.add_particle_in(beam)
    for pdg, energy, eta, phi, status in KNOWN:
        pt = energy / np.cosh(eta)
        p = (pt * np.cos(phi) * 1e3, pt * np.sin(phi) * 1e3, pt * np.sinh(eta) * 1e3, energy * 1e3)
        vertex.add_particle_out(pyhepmc.GenParticle(p, pdg, status))
    event.add_vertex(vertex)
    with pyhepmc.open(str(path), "w") as f:
        f.write(event)


@pytest.fixture(scope="module")
def hepmc_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("gen") / "known.hepmc3"
    write_hepmc(path)
    return path


def test_hepmc3_particles_are_simulated_and_reported(hepmc_file: Path) -> None:
    report = GeneratorReport()
    (gen,) = list(read_generator_file(hepmc_file, report))
    assert gen.number == 42
    sim = Simulator(SimConfig(readout=ReadoutConfig(noise_hits=False)))
    event = sim.from_generator(gen, seed=1, index=0)
    count_acceptance(event.particles, report)
    assert report.summary() == {
        "events": 1, "final_state_particles": 6, "simulated": 4, "reached_calorimeter": 3,
        "outside_acceptance": 1, "invisible_neutrinos": 1, "unknown_species": {"3122": 1},
    }  # fmt: skip
    parts, hits = event.particles, event.hits
    primaries = parts.parent < 0
    assert sorted(parts.pdg[primaries].tolist()) == [13, 22, 211, 211]
    # Generator indices survive (HepMC ids: beam 1, then the outgoing particles 2, 3, ...).
    assert set(parts.generator_index[primaries].tolist()) == {2, 3, 4, 6}
    np.testing.assert_allclose(parts.vz[primaries], 1.5, rtol=1e-6)  # mm -> cm
    photon = int(np.flatnonzero(parts.pdg == 22)[0])
    np.testing.assert_allclose(parts.energy[photon], 50.0, rtol=1e-5)  # MeV -> GeV
    photon_energy = hits.energy[hits.truth_particle == photon].sum()
    assert 0.85 * 50 < photon_energy < 1.05 * 50
    assert np.all(hits.z[hits.truth_particle == photon] > 0)
    pion, barrel = np.flatnonzero(parts.pdg == 211)
    assert (
        np.all(hits.z[hits.truth_particle == pion] < 0) and (hits.truth_particle == pion).sum() > 50
    )
    assert np.isnan(parts.calo_z[barrel]) and not (hits.truth_particle == barrel).any()
    muon = int(np.flatnonzero(parts.pdg == 13)[0])
    assert (hits.truth_particle == muon).sum() >= 40  # a MIP track through the layers
    tracked = set(event.tracks.truth_particle.tolist())
    assert {pion, muon} <= tracked and photon not in tracked


def test_parquet_particle_table(tmp_path: Path) -> None:
    table = pa.table({
        "event": [7, 7, 9], "pdg": [22, 11, 2112],
        "px": [5.0, 0.0, 3.0], "py": [0.0, 6.0, 0.0], "pz": [30.0, 40.0, 20.0],
        "energy": [np.hypot(5, 30), np.hypot(6, 40), np.sqrt(9 + 400 + 0.9396**2)],
        "vx": [0.0] * 3, "vy": [0.0] * 3, "vz": [1.0, 1.0, -2.0],
    })  # fmt: skip
    path = tmp_path / "particles.parquet"
    pq.write_table(table, path)
    report = GeneratorReport()
    events = list(read_generator_file(path, report))
    assert [e.number for e in events] == [7, 9] and [len(e.particles) for e in events] == [2, 1]
    assert events[0].particles.generator_index == [0, 1]
    neutron = Simulator().from_generator(events[1], seed=0, index=1)
    assert neutron.particles.pdg[0] == 2112 and (neutron.hits.truth_particle == 0).sum() > 10
    pq.write_table(table.drop(["vz"]), path)
    with pytest.raises(KeyError, match="vz"):
        list(read_generator_file(path, GeneratorReport()))


def test_pileup_adds_the_requested_interactions_flagged_in_truth() -> None:
    base = Simulator(SimConfig()).event(seed=3, event_id=0)
    assert np.all(base.particles.interaction == 0)
    piled = Simulator(SimConfig(pileup=PileupConfig(interactions=12))).event(seed=3, event_id=0)
    parts = piled.particles
    assert set(np.unique(parts.interaction).tolist()) == set(range(13))
    # The hard scatter's primaries are unchanged by the overlay; pileup primaries follow them.
    assert np.all(parts.interaction[:100] == 0) and np.all(parts.interaction[100:120] > 0)
    np.testing.assert_array_equal(parts.pdg[:100], base.particles.pdg[:100])
    np.testing.assert_array_equal(parts.energy[:100], base.particles.energy[:100])
    # Each pileup interaction has its own vertex; pileup hits are flagged through the truth.
    vz = {
        k: np.unique(parts.vz[(parts.interaction == k) & (parts.parent < 0)]) for k in range(1, 13)
    }
    assert all(len(v) == 1 for v in vz.values()) and len({float(v[0]) for v in vz.values()}) == 12
    owner = piled.hits.truth_particle[piled.hits.truth_particle >= 0]
    assert (parts.interaction[owner] > 0).sum() > 500
    assert len(piled.hits) > len(base.hits)
    with pytest.raises(ValueError):
        PileupConfig(interactions=-1)


def test_jet_gun_jets_are_collimated() -> None:
    config = JetGunConfig(n_jets=3)
    rng = np.random.default_rng(5)
    energies, distances = [], []
    for _ in range(5):
        particles, axes = shoot_jets(config, rng)
        p4 = np.array(particles.p4)
        pt = np.hypot(p4[:, 1], p4[:, 2])
        eta = np.arcsinh(p4[:, 3] / pt)
        phi = np.arctan2(p4[:, 2], p4[:, 1])
        dphi = np.angle(np.exp(1j * (phi[:, None] - axes[None, :, 2])))
        dr = np.hypot(eta[:, None] - axes[None, :, 1], dphi)
        jet = dr.argmin(axis=1)
        assert np.all(dr.min(axis=1) <= config.radius + 1e-9)  # all inside the cone
        for k in range(3):
            np.testing.assert_allclose(p4[jet == k, 0].sum(), axes[k, 0], rtol=1e-9)
            assert (jet == k).sum() >= 3
        energies.append(p4[:, 0])
        distances.append(dr.min(axis=1))
    e, d = np.concatenate(energies), np.concatenate(distances)
    # Hard particles hug the axis (Delta R = j_T / p_T), soft ones spread over the cone.
    assert np.median(d[e > 40]) < 0.1 < np.median(d[e < 5])


def test_cli_simulates_a_generator_file_and_jets_with_pileup(
    hepmc_file: Path, tmp_path: Path
) -> None:
    runner = CliRunner()
    out = tmp_path / "gen.parquet"
    result = runner.invoke(app, ["simulate", "--from", str(hepmc_file), "-o", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "gen.parquet.report.json").read_text())
    assert report["outside_acceptance"] == 1 and report["unknown_species"] == {"3122": 1}
    assert read_events(out)[0].event_id == 42
    jets = tmp_path / "jets.parquet"
    result = runner.invoke(
        app, ["simulate", "--jets", "2", "--pileup", "5", "-n", "2", "-o", str(jets)]
    )
    assert result.exit_code == 0, result.output
    events = read_events(jets)
    assert len(events) == 2 and all(e.particles.interaction.max() == 5 for e in events)
    missing = runner.invoke(
        app, ["simulate", "--from", str(tmp_path / "nope.hepmc3"), "-o", str(out)]
    )
    assert missing.exit_code == 2 and "no such generator file" in missing.output

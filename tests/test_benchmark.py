"""The physics benchmark on hand-built events with known answers: the truth definition, the
clustering metrics, the threshold grid, the event classes, and the rule-based PF's rules."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from recoserve.baselines.pf import (
    EM_CLUSTER,
    HADRONIC_CLUSTER,
    MIP_CLUSTER,
    PFCalibration,
    PFParams,
    blocks,
    cluster_kind,
    rule_based_pf,
)
from recoserve.events.model import NO_TIME_NS, Event, Hits, Particles
from recoserve.events.truth import EM, HADRON, LEGACY, RESOLVABLE, truth_objects
from recoserve.metrics.chain_report import fit_calibration
from recoserve.metrics.showers import selection_score, summarize_clustering
from recoserve.metrics.tuning import Axis, grid_search
from recoserve.postprocess.assignment import clusters_from_assignment
from recoserve.postprocess.candidates import (
    CHARGED_HADRON,
    ELECTRON,
    MUON,
    NEUTRAL_HADRON,
    PHOTON,
)
from recoserve.postprocess.elements import CLUSTER, COLUMN, N_ELEMENT_FEATURES, TRACK
from recoserve.sim.classes import EVENT_CLASSES, SPLITS, event_class, pf_event

Z = 330.0  # cm: a plane inside the CE-E


def particles(rows: list[dict[str, float]]) -> Particles:
    columns: dict[str, list[float]] = {name: [] for name in Particles.SCHEMA}
    for row in rows:
        for name in Particles.SCHEMA:
            columns[name].append(row.get(name, -1 if name in ("parent", "generator_index") else 0))
    return Particles(**{k: np.asarray(v) for k, v in columns.items()})


def shower_event(showers: list[tuple[float, float, float, int, int]]) -> Event:
    """Showers (x, y at the face, energy, pdg, pileup interaction): 9 hits each, spread 0.5 cm
    around the point in three layers, plus one noise hit far away."""
    xs, ys, zs, es, owners = [], [], [], [], []
    rows = []
    for k, (x, y, energy, pdg, interaction) in enumerate(showers):
        for dz in (0.0, 2.0, 4.0):
            for dx, dy in ((0, 0), (0.5, 0), (0, 0.5)):
                scale = (Z + dz) / 320.0
                xs.append((x + dx) * scale)
                ys.append((y + dy) * scale)
                zs.append(Z + dz)
                es.append(energy / 9)
                owners.append(k)
        rows.append(
            {"pdg": pdg, "energy": energy, "calo_x": x, "calo_y": y, "calo_z": 320.0,
             "interaction": interaction}
        )  # fmt: skip
    xs.append(150.0)
    ys.append(0.0)
    zs.append(Z)
    es.append(0.01)
    owners.append(-1)
    n = len(xs)
    hits = Hits(
        x=xs, y=ys, z=zs, energy=es, time=np.full(n, NO_TIME_NS), layer=np.full(n, 5),
        cell_id=np.arange(n), truth_particle=owners, truth_fraction=np.ones(n),
        true_energy=es,
    )  # fmt: skip
    return Event(0, hits, particles=particles(rows))


# -- the truth definition -------------------------------------------------------------------------


def test_two_showers_merge_only_below_the_merge_distance() -> None:
    close = truth_objects(shower_event([(50, 0, 30, 22, 0), (51.5, 0, 20, 22, 0)]))
    apart = truth_objects(shower_event([(50, 0, 30, 22, 0), (53.0, 0, 20, 22, 0)]))
    assert len(close) == 1 and close.n_particles.tolist() == [2]
    assert close.energy[0] == pytest.approx(50.0)
    assert len(apart) == 2
    assert apart.nearest_distance() == pytest.approx([3.0, 3.0])
    # The legacy definition never merges.
    assert len(truth_objects(shower_event([(50, 0, 30, 22, 0), (51.5, 0, 20, 22, 0)]), LEGACY)) == 2


def test_a_pi0_photon_pair_in_the_same_cells_is_one_electromagnetic_object() -> None:
    event = shower_event([(80, 20, 12, 22, 0), (80.8, 20.4, 8, 22, 0), (120, 0, 40, 211, 0)])
    truth = truth_objects(event)
    assert len(truth) == 2
    pair = int(truth.particle_object[0])
    assert truth.particle_object[1] == pair
    assert truth.shower_class[pair] == EM and truth.energy[pair] == pytest.approx(20.0)
    assert truth.shower_class[1 - pair] == HADRON


def test_pileup_and_soft_particles_are_background() -> None:
    event = shower_event([(50, 0, 30, 211, 0), (90, 0, 30, 211, 3), (-60, 10, 0.6, 22, 0)])
    truth = truth_objects(event)
    assert len(truth) == 1
    owners = event.hits.truth_particle
    assert np.all(truth.hit_object[owners == 1] == -1)  # pileup
    assert np.all(truth.hit_object[owners == 2] == -1)  # 0.6 GeV < min_energy
    assert len(truth_objects(event, LEGACY)) == 3


def test_local_energy_fraction() -> None:
    truth = truth_objects(
        shower_event([(50, 0, 30, 22, 0), (55, 0, 10, 22, 0), (-90, 0, 5, 22, 0)])
    )
    np.testing.assert_allclose(truth.local_energy_fraction(), [0.75, 0.25, 1.0])


# -- clustering metrics ---------------------------------------------------------------------------


def test_a_cluster_of_a_pileup_shower_is_counted_apart_not_as_a_fake() -> None:
    """One hard-scatter shower, one pileup shower and a fragment: the pileup shower's cluster
    is a pileup cluster (out of the fake rate), the fragment a fake; with the legacy truth
    (pileup showers are objects) nothing is a pileup cluster."""
    event = shower_event([(50, 0, 30, 211, 0), (-90, 0, 40, 211, 3)])
    owners = event.hits.truth_particle
    layer_of_hit = np.arange(len(owners)) % 9 // 3  # shower_event: 3 hits per layer
    pred = np.where(owners == 1, 1, np.where((owners == 0) & (layer_of_hit == 2), 2, 0))
    pred[owners < 0] = -1
    energy = np.array([20.0, 40.0, 10.5])
    s = summarize_clustering([(event, pred, energy)])
    assert s["efficiency_above_20GeV"] == 1.0
    assert s["fake_rate_above_10GeV"] == 0.5  # the fragment, of the two non-pileup clusters
    assert s["pileup_cluster_fraction_above_10GeV"] == pytest.approx(1 / 3)
    legacy = summarize_clustering([(event, pred, energy)], LEGACY)
    assert legacy["pileup_cluster_fraction_above_10GeV"] == 0.0
    assert legacy["efficiency_above_20GeV"] == 1.0 and legacy["fake_rate_above_10GeV"] == 1 / 3


def test_metrics_on_a_hand_built_event_with_a_merge_and_a_fake() -> None:
    """Three resolvable showers; the algorithm merges the two 3 cm apart and adds a noise hit."""
    event = shower_event([(50, 0, 30, 22, 0), (53, 0, 25, 211, 0), (-90, 0, 40, 22, 0)])
    owners = event.hits.truth_particle
    pred = np.where(owners == 2, 1, np.where(owners >= 0, 0, 2))
    energy = np.array([55.0, 40.0, 0.01])
    s = summarize_clustering([(event, pred, energy)])
    assert s["showers_above_20GeV"] == 3
    assert s["efficiency_above_20GeV"] == pytest.approx(2 / 3)  # the merged pair keeps one match
    distance = {b["distance_min"]: b for b in s["efficiency_vs_distance_above_20GeV"]}
    assert distance[2.0]["showers"] == 2 and distance[2.0]["efficiency"] == 0.5
    assert distance[20.0]["showers"] == 1 and distance[20.0]["efficiency"] == 1.0
    assert s["fake_rate_above_10GeV"] == 0.0
    assert s["response_median"] == pytest.approx(np.median([55 / 30, 40 / 40]))
    # score: F1 of the efficiency (only > 20 GeV is populated) and the purity (no fakes)
    assert selection_score(s) == pytest.approx(2 * (2 / 3) * 1.0 / (2 / 3 + 1.0))


def test_a_clustering_that_finds_nothing_cannot_win_the_tuning() -> None:
    """Crowded events: a working point finding 60 % of the showers with 60 % of its clusters
    fake must outscore one that leaves (almost) everything unclustered."""

    def summary(efficiency: float, fake_rate: float) -> dict[str, Any]:
        bins = [{"energy_min": 1.0, "showers": 10, "efficiency": efficiency}]
        return {
            "efficiency_vs_energy": bins,
            "efficiency_5_20GeV": efficiency,
            "efficiency_above_20GeV": efficiency,
            "fake_rate_above_1GeV": fake_rate,
            "fake_rate_above_10GeV": fake_rate,
        }

    nothing = selection_score(summary(0.02, 0.0))
    crowded = selection_score(summary(0.6, 0.6))
    assert crowded > nothing
    assert selection_score(summary(0.0, float("nan"))) == 0.0
    # both still count: more efficiency or fewer fakes is always better
    assert selection_score(summary(0.7, 0.6)) > crowded > selection_score(summary(0.6, 0.7))


def test_grid_grows_until_the_best_point_is_inside() -> None:
    result = grid_search(
        lambda p: -((p["a"] - 12.0) ** 2) - (p["b"] - 0.05) ** 2,
        [Axis("a", (1.0, 2.0, 4.0)), Axis("b", (0.2, 0.4))],
    )
    assert all(result.interior.values())
    assert result.best["a"] in (8.0, 16.0)
    assert result.best["b"] < 0.2


def test_grid_reports_a_best_point_held_at_a_hard_bound() -> None:
    result = grid_search(lambda p: p["t"], [Axis("t", (0.2, 0.5, 0.8), upper=0.9)])
    assert result.best["t"] == 0.9 and not result.interior["t"]


# -- event classes ---------------------------------------------------------------------------------


def test_event_classes_have_disjoint_seeds_and_are_deterministic() -> None:
    seeds = [c.seeds.of(split) for c in EVENT_CLASSES.values() for split in SPLITS]
    assert len(seeds) == len(set(seeds))
    jets = event_class("jets")
    assert jets.event("test", 3).equals(jets.event("test", 3))
    assert jets.event("test", 3).equals(pf_event(jets.seeds.test, 3))
    with pytest.raises(ValueError, match="unknown event class"):
        event_class("nope")


def test_dense_class_fills_one_endcap_and_gun_reaches_soft_energies() -> None:
    dense = event_class("dense").event("validation", 0)
    primaries = dense.particles.parent == -1
    assert primaries.sum() == 100
    assert len(np.unique(np.sign(dense.particles.eta[primaries]))) == 1
    gun = [event_class("gun").event("validation", i) for i in range(3)]
    energies = np.concatenate([e.particles.energy[e.particles.parent == -1] for e in gun])
    assert energies.min() < 5.0 and energies.max() > 50.0


# -- PF elements from any clustering --------------------------------------------------------------


def test_clusters_from_an_assignment() -> None:
    event = shower_event([(50, 0, 30, 22, 0), (-90, 0, 40, 22, 0)])
    hits = event.hits.features()
    energy = np.zeros(8)
    energy[[0, 7]] = [33.0, 44.0]
    clusters = clusters_from_assignment(hits, event.hits.truth_particle * 7, energy)
    assert len(clusters) == 2
    np.testing.assert_allclose(clusters.raw_energy, [30, 40], rtol=1e-5)
    np.testing.assert_allclose(clusters.energy, [33, 44], rtol=1e-5)
    # face-projected centroid of the 9 hits: (x + 1/6, y + 1/6)
    np.testing.assert_allclose(clusters.x, [50 + 1 / 6, -90 + 1 / 6], atol=1e-3)
    assert np.all(clusters.time == NO_TIME_NS)  # no timed hit
    assert clusters.hit_cluster[-1] == -1


# -- the rule-based PF ----------------------------------------------------------------------------


def element(kind: float, **values: float) -> np.ndarray:
    row = np.zeros(N_ELEMENT_FEATURES, np.float32)
    row[COLUMN["type"]] = kind
    row[COLUMN["z"]] = 320.0
    row[COLUMN["cos_phi"]] = 1.0
    row[COLUMN["eta"]] = 2.0
    for name, value in values.items():
        row[COLUMN[name]] = value
    return row


EM_SHAPE = {"em_fraction": 1.0, "width": 2.5, "depth": 12.0, "size": 60}
HADRON_SHAPE = {"em_fraction": 0.3, "width": 9.0, "depth": 50.0, "size": 200}
MIP_SHAPE = {"em_fraction": 0.1, "width": 0.5, "depth": 105.0, "size": 45}


def test_cluster_shapes_identify_photons_hadrons_and_muons() -> None:
    elements = np.stack(
        [
            element(TRACK, energy=10),
            element(CLUSTER, energy=20, raw_energy=20, **EM_SHAPE),
            element(CLUSTER, energy=20, raw_energy=20, **HADRON_SHAPE),
            element(CLUSTER, energy=2, raw_energy=2, **MIP_SHAPE),
        ]
    )
    kind = cluster_kind(elements, PFParams())
    assert kind.tolist() == [-1, EM_CLUSTER, HADRONIC_CLUSTER, MIP_CLUSTER]


def test_a_track_overlapping_a_neutral_leaves_the_excess_as_a_neutral_hadron() -> None:
    elements = np.stack(
        [
            element(TRACK, pt=5, energy=20, charge=1, x=50, y=0),
            element(CLUSTER, energy=30, raw_energy=30, x=51, y=0, **HADRON_SHAPE),
            element(CLUSTER, energy=25, raw_energy=25, x=54, y=0, **HADRON_SHAPE),
        ]
    )
    # The track reaches both clusters (width 9 cm): one block of three elements.
    assert [len(b) for b in blocks(elements, PFParams())] == [3]
    out = rule_based_pf(elements)
    assert sorted(out["class_id"].tolist()) == [CHARGED_HADRON, NEUTRAL_HADRON]
    neutral = out[out["class_id"] == NEUTRAL_HADRON][0]
    assert neutral["energy"] == pytest.approx(55 - 20)  # charged-energy subtraction


def test_photons_take_the_excess_before_a_neutral_hadron() -> None:
    elements = np.stack(
        [
            element(TRACK, pt=5, energy=20, charge=-1, x=50, y=0),
            element(CLUSTER, energy=24, raw_energy=24, x=51, y=0, **HADRON_SHAPE),
            element(CLUSTER, energy=10, raw_energy=10, x=57, y=0, **EM_SHAPE),
        ]
    )
    out = rule_based_pf(elements)
    classes = sorted(out["class_id"].tolist())
    assert classes == [CHARGED_HADRON, PHOTON]  # 14 GeV excess: the 10 GeV photon, 4 left < 1 sigma
    assert out[out["class_id"] == PHOTON][0]["energy"] == pytest.approx(10)


def test_muon_electron_and_lonely_neutrals() -> None:
    elements = np.stack(
        [
            element(TRACK, pt=20, energy=40, charge=1, x=0, y=90),  # muon
            element(TRACK, pt=15, energy=30, charge=-1, x=-80, y=10),  # electron
            element(CLUSTER, energy=2, raw_energy=2, x=0, y=90.3, **MIP_SHAPE),
            element(CLUSTER, energy=29, raw_energy=29, x=-80.5, y=10, **EM_SHAPE),
            element(CLUSTER, energy=10, raw_energy=10, x=0, y=-100, **EM_SHAPE),
            element(CLUSTER, energy=12, raw_energy=12, x=100, y=0, **HADRON_SHAPE),
            element(CLUSTER, energy=2, raw_energy=2, x=-100, y=0, **MIP_SHAPE),  # no track: dropped
        ]
    )
    out = rule_based_pf(elements)
    by_element = {int(c["element"]): c for c in out}
    assert by_element[0]["class_id"] == MUON and by_element[0]["pdg"] == -13
    assert by_element[1]["class_id"] == ELECTRON and by_element[1]["pdg"] == 11
    assert 2 not in by_element and 3 not in by_element and 6 not in by_element
    assert by_element[4]["class_id"] == PHOTON
    assert by_element[5]["class_id"] == NEUTRAL_HADRON


def test_calibration_is_fit_per_cluster_type_and_energy() -> None:
    rng = np.random.default_rng(0)
    energy = np.exp(rng.uniform(np.log(2), np.log(200), 4000))
    kind = rng.integers(0, 2, 4000)
    response = np.where(kind == EM_CLUSTER, 0.98, 0.8 - 0.05 * np.log10(energy))
    pairs = np.column_stack([energy * response, kind, energy])
    calibration = fit_calibration(pairs)
    assert calibration.em_factor[2] == pytest.approx(1 / 0.98, rel=0.02)
    assert calibration.hadron_factor[2] == pytest.approx(1 / 0.75, rel=0.03)  # at 10 GeV
    corrected = calibration.apply(np.array([7.5]), np.array([HADRONIC_CLUSTER]))
    assert corrected[0] == pytest.approx(10.0, rel=0.03)
    assert PFCalibration().apply(np.array([5.0]), np.array([EM_CLUSTER]))[0] == 5.0


def test_resolvable_definition_is_the_default() -> None:
    assert RESOLVABLE.merge_distance == 2.0 and RESOLVABLE.pileup_as_noise


def test_the_docs_show_the_current_class_table() -> None:
    from pathlib import Path

    from recoserve.sim.classes import classes_markdown

    docs = (Path(__file__).resolve().parents[1] / "docs" / "benchmark.md").read_text()
    assert classes_markdown() in docs


def test_clue_two_section_calibration_recovers_known_scales() -> None:
    from recoserve.baselines.clue import ClueCalibration, fit_clue_calibration, section_energies

    rng = np.random.default_rng(1)
    true = rng.uniform(5, 200, 500)
    share = rng.uniform(0, 1, 500)  # EM-like showers deposit in the CE-E, hadrons deeper
    ee, he = true * share / 1.02, true * (1 - share) / 1.35
    calibration = fit_clue_calibration(ee, he, true)
    assert calibration.ee_scale == pytest.approx(1.02, rel=1e-6)
    assert calibration.he_scale == pytest.approx(1.35, rel=1e-6)
    # Section energies from hits: layers 0-25 are the CE-E.
    energy = np.array([1.0, 2.0, 4.0, 8.0])
    layer = np.array([3, 30, 10, 40])
    cluster = np.array([0, 0, 1, -1])
    ee2, he2 = section_energies(energy, layer, cluster, 2)
    assert ee2.tolist() == [1.0, 4.0] and he2.tolist() == [2.0, 0.0]
    assert ClueCalibration(2.0, 3.0).energies(energy, layer, cluster, 2).tolist() == [8.0, 8.0]


def test_a_track_without_calorimeter_energy_is_a_muon_only_when_hard() -> None:
    elements = np.stack(
        [
            element(TRACK, pt=10, energy=40, charge=1, x=0, y=90),  # nothing in the calorimeter
            element(TRACK, pt=1, energy=3, charge=1, x=0, y=-90),  # too soft to tell
            element(TRACK, pt=10, energy=40, charge=-1, x=90, y=0),  # showers: a hadron
            element(CLUSTER, energy=35, raw_energy=35, x=90.5, y=0, **HADRON_SHAPE),
        ]
    )
    by_element = {int(c["element"]): c for c in rule_based_pf(elements)}
    assert by_element[0]["class_id"] == MUON
    assert by_element[1]["class_id"] == CHARGED_HADRON
    assert by_element[2]["class_id"] == CHARGED_HADRON


def test_a_tuning_made_for_another_score_or_checkpoint_is_stale() -> None:
    from recoserve.metrics.showers import SCORE_VERSION
    from recoserve.metrics.tuning_store import current_network_tuning, current_tuning

    tuned = {"score": SCORE_VERSION, "weights_sha256": "abc", "events": 200}
    assert current_tuning(tuned, SCORE_VERSION, "abc")
    assert current_tuning(tuned, SCORE_VERSION)  # CLUE's: no checkpoint
    assert not current_tuning(tuned, SCORE_VERSION, "def")
    assert not current_tuning({**tuned, "score": "efficiency-minus-fakes"}, SCORE_VERSION, "abc")
    assert not current_tuning({"events": 200}, SCORE_VERSION)  # before scores were versioned
    every = {"t_beta": 0.3, "t_d": 0.5, "seed_spacing": 2.0, "attach": 1.5, "energy_scale": 1.1}
    assert current_network_tuning({**tuned, "thresholds": every}, SCORE_VERSION, "abc")
    two = {"t_beta": 0.3, "t_d": 0.5}  # tuned before the fragment steps existed
    assert not current_network_tuning({**tuned, "thresholds": two}, SCORE_VERSION, "abc")

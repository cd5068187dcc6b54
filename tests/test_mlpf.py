"""MLPF: elements, truth association, decoding, the rule-based baseline, the committed model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from recoserve.export.mlpf import export_mlpf
from recoserve.export.network import PARITY_TOLERANCE
from recoserve.inprocess import ClusteringPipeline, EventRecoPipeline
from recoserve.metrics.pf import PFAccumulator, antikt_jets, match, missing_pt
from recoserve.metrics.pf_truth import pf_truth, truth_clusters
from recoserve.nn.checkpoint import DEFAULT_MLPF_CHECKPOINT, load_mlpf
from recoserve.postprocess.candidates import (
    CHARGED_HADRON,
    ELECTRON,
    MUON,
    NEUTRAL_HADRON,
    NONE,
    PHOTON,
    decode,
)
from recoserve.postprocess.elements import (
    CLUSTER,
    COLUMN,
    N_ELEMENT_FEATURES,
    TRACK,
    build_elements,
    track_elements,
)
from recoserve.sim.classes import pf_event
from recoserve.train.pf_targets import element_targets

FRESH_SEED = 911


def element(kind: float, **values: float) -> np.ndarray:
    row = np.zeros(N_ELEMENT_FEATURES, np.float32)
    row[COLUMN["type"]] = kind
    row[COLUMN["z"]] = 320.0
    row[COLUMN["cos_phi"]] = 1.0
    for name, value in values.items():
        row[COLUMN[name]] = value
    return row


def test_decoding_of_hand_built_outputs() -> None:
    elements = np.stack(
        [
            element(TRACK, pt=10, energy=40, charge=-1),
            element(TRACK, pt=5, energy=20, charge=1),
            element(CLUSTER, pt=3, energy=12),
            element(CLUSTER, pt=1, energy=4),
        ]
    )
    logits = np.full((4, 6), -5.0, np.float32)
    logits[0, ELECTRON] = 5  # a track may be an electron
    logits[1, PHOTON] = 9  # ... but never a photon: the best allowed class wins
    logits[1, MUON] = 2
    logits[2, CHARGED_HADRON] = 9  # a cluster is never charged
    logits[2, NEUTRAL_HADRON] = 3
    logits[3, NONE] = 5
    regression = np.array(
        [[10, 2.0, 0, 1, 40], [5, 2.1, 1, 0, 20], [3, -2.0, 0, -1, 12], [1, 2, 0, 1, 4]],
        np.float32,
    )
    out = decode(elements, logits, regression)
    assert list(out["element"]) == [0, 1, 2]
    assert list(out["class_id"]) == [ELECTRON, MUON, NEUTRAL_HADRON]
    assert list(out["pdg"]) == [11, -13, 130]  # e- is 11, mu+ is -13
    assert list(out["charge"]) == [-1, 1, 0]
    np.testing.assert_allclose(out["phi"], [0.0, np.pi / 2, np.pi], atol=1e-6)
    np.testing.assert_allclose(out["energy"], [40, 20, 12])
    assert np.all((out["probability"] > 0.5) & (out["probability"] <= 1))


def test_tracks_that_miss_the_calorimeter_get_a_finite_position() -> None:
    event = pf_event(FRESH_SEED, 0)
    event.tracks.x_calo[0] = np.nan
    event.tracks.y_calo[0] = np.nan
    event.tracks.z_calo[0] = np.nan
    features = event.tracks.features()
    assert np.isfinite(features).all()
    assert abs(features[0, 7]) == 320.0
    assert np.isfinite(track_elements(features)).all()


def test_truth_association_covers_every_reconstructable_particle() -> None:
    event = pf_event(FRESH_SEED, 1)
    truth = pf_truth(event)
    clusters = truth_clusters(event)
    cls, reg = element_targets(event, truth, clusters)
    n_tracks = len(event.tracks)
    tracked = truth.track >= 0
    assert (cls[truth.track[tracked]] == truth.class_id[tracked]).all()
    # with perfect clusters every untracked truth particle is the target of a cluster
    assert (cls[n_tracks:] != NONE).sum() == (~tracked).sum()
    np.testing.assert_allclose(reg[cls != NONE, 4].sum(), truth.energy.sum(), rtol=1e-5)


def test_metrics_on_a_perfect_reconstruction() -> None:
    rng = np.random.default_rng(3)
    n = 40
    truth = {
        "class_id": rng.choice([CHARGED_HADRON, NEUTRAL_HADRON, PHOTON], n),
        "pt": rng.uniform(1, 50, n),
        "eta": rng.uniform(1.6, 2.9, n) * rng.choice([-1, 1], n),
        "phi": rng.uniform(-np.pi, np.pi, n),
    }
    truth["energy"] = truth["pt"] * np.cosh(truth["eta"])
    reco = np.zeros(n, dtype=decode(np.zeros((0, 19)), np.zeros((0, 6)), np.zeros((0, 5))).dtype)
    for name in ("class_id", "pt", "eta", "phi", "energy"):
        reco[name] = truth[name]
    acc = PFAccumulator()
    acc.add(truth, reco)
    summary = acc.summary()
    assert summary["classes"]["charged_hadron"]["efficiency"] == 1.0
    assert summary["classes"]["photon"]["fake_rate"] == 0.0
    assert summary["jets"]["pt_response"] == pytest.approx(1.0, abs=1e-4)
    assert summary["met"]["resolution_xy"] == pytest.approx(0.0, abs=1e-3)
    jets = antikt_jets(truth["pt"], truth["eta"], truth["phi"], truth["energy"])
    assert len(jets) >= 1 and (jets[:, 0] > 20).all()
    rows, cols = match(
        np.array([2.0, 2.5]), np.array([0.0, 1.0]), np.array([2.51]), np.array([1.0]), 0.1
    )
    assert list(rows) == [1] and list(cols) == [0]
    np.testing.assert_allclose(missing_pt(np.array([10.0]), np.array([0.0])), [-10.0, 0.0])


@pytest.fixture(scope="module")
def fresh_elements() -> list[np.ndarray]:
    clustering = ClusteringPipeline()
    out = []
    for i in range(4):
        event = pf_event(FRESH_SEED, 10 + i)
        hits = event.hits.features()
        out.append(build_elements(hits, event.tracks.features(), clustering.cluster(hits)))
    return out


def test_an_event_gives_the_same_candidates_alone_or_in_a_batch(
    fresh_elements: list[np.ndarray],
) -> None:
    model, _ = load_mlpf()
    counts = [len(e) for e in fresh_elements]
    rows = torch.from_numpy(np.concatenate(fresh_elements))
    segment = torch.from_numpy(np.repeat(np.arange(len(counts)), counts))
    with torch.no_grad():
        batched = model(rows, segment)
        offsets = np.concatenate([[0], np.cumsum(counts)])
        for i, elements in enumerate(fresh_elements):
            alone = model(torch.from_numpy(elements), torch.zeros(len(elements), dtype=torch.int64))
            part = slice(offsets[i], offsets[i + 1])
            for a, b in zip(alone, batched, strict=True):
                np.testing.assert_allclose(a.numpy(), b[part].numpy(), rtol=1e-5, atol=1e-5)
            np.testing.assert_array_equal(
                decode(elements, alone[0].numpy(), alone[1].numpy()),
                decode(elements, batched[0][part].numpy(), batched[1][part].numpy()),
            )


def test_committed_checkpoint_and_export_parity(tmp_path_factory: pytest.TempPathFactory) -> None:
    model, info = load_mlpf()
    metrics = json.loads(DEFAULT_MLPF_CHECKPOINT.with_suffix(".metrics.json").read_text())
    assert info["steps"] == metrics["steps"] > 100
    assert metrics["config"]["model"] == model.config.to_dict()
    report = export_mlpf(DEFAULT_MLPF_CHECKPOINT, tmp_path_factory.mktemp("mlpf"))
    assert float(report["max_excess_error"]) <= PARITY_TOLERANCE  # type: ignore[arg-type]
    assert len(report["parity"]) == 4  # type: ignore[arg-type]


def test_in_process_chain_finds_the_charged_hadrons() -> None:
    pipeline = EventRecoPipeline()
    event = pf_event(FRESH_SEED, 20)
    truth = pf_truth(event)
    _, candidates = pipeline.reconstruct(event.hits.features(), event.tracks.features())
    charged = candidates[candidates["class_id"] == CHARGED_HADRON]
    true_charged = truth.class_id == CHARGED_HADRON
    rows, _ = match(
        truth.eta[true_charged], truth.phi[true_charged], charged["eta"], charged["phi"], 0.1
    )
    assert len(rows) >= 0.8 * true_charged.sum()


def test_training_elements_come_from_several_clusterings_of_a_mix_of_events() -> None:
    """Cluster-source augmentation: each event becomes one example per clustering; the tracks
    and their targets are the same in every example of an event, the clusters are not."""
    from recoserve.train.mlpf import prepare_elements

    data = prepare_elements(
        1, "validation", workers=1, samples=("jets_with_leptons", "gun"),
        sources=("network", "clue", "truth_assignment"),
    )  # fmt: skip
    assert len(data) == 6  # 2 samples x 1 event x 3 sources
    for event in (0, 1):
        examples = [data.batch([3 * event + s]) for s in range(3)]
        tracks = [e[0][e[0][:, 0] == 1.0] for e in examples]  # type column: 1 = track
        assert all(torch.equal(tracks[0], t) for t in tracks[1:])
        track_targets = [e[2][: len(tracks[0])] for e in examples]
        assert all(torch.equal(track_targets[0], t) for t in track_targets[1:])
        n_clusters = {int((e[0][:, 0] == 2.0).sum()) for e in examples}
        assert len(n_clusters) > 1  # the clusterings differ
    with pytest.raises(ValueError, match="unknown cluster sources"):
        prepare_elements(1, "validation", workers=1, sources=("oracle",))


def test_elements_are_cached_per_source_and_only_a_changed_source_is_prepared_again(
    tmp_path: Path,
) -> None:
    from recoserve.train.mlpf import element_dataset, prepare_elements

    sources = ("network", "clue")
    basis = {"gun": {"network": {"weights": "a"}, "clue": {"dc_3d": 3.5}}}
    first = element_dataset(tmp_path, "validation", {"gun": 2}, basis, 1, sources)
    fresh = prepare_elements(2, "validation", workers=1, samples=("gun",), sources=sources)
    for key in ("elements", "target_class", "target_regression", "offsets"):
        np.testing.assert_array_equal(getattr(first, key), getattr(fresh, key))
    files = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    assert len(files) == 2  # one per source
    renamed = {"gun": {**basis["gun"], "network": {"weights": "b"}}}
    again = element_dataset(tmp_path, "validation", {"gun": 2}, renamed, 1, sources)
    np.testing.assert_array_equal(again.elements, first.elements)
    now = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    assert len(now) == 3 and all(now[name] == files[name] for name in files)  # clue's kept


def test_mlpf_training_resumes_where_it_stopped(tmp_path: Path) -> None:
    """Two short runs with the same output: the second continues the step count, the
    learning curve and the optimiser state; the elements are prepared once."""
    from recoserve.nn.checkpoint import load_mlpf
    from recoserve.nn.mlpf import MLPFConfig
    from recoserve.train.loop import state_path
    from recoserve.train.mlpf import MLPFTrainConfig, train_mlpf

    config = MLPFTrainConfig(
        train_events=2, validation_events=1, batch_events=2, max_steps=3, validate_every=3,
        workers=1, model=MLPFConfig(hidden=16),
    )  # fmt: skip
    output = tmp_path / "mlpf.pt"
    first = train_mlpf(config, tmp_path / "data", output, log=lambda _: None)
    assert first["steps"] == 3 and len(first["history"]) == 1
    state = torch.load(state_path(output), weights_only=False)
    assert state["progress"]["step"] == 3 and state["optimizer"]["state"]
    cached = sorted(p.name for p in (tmp_path / "data").iterdir())
    assert len(cached) == 2  # train and validation elements
    longer = MLPFTrainConfig(**{**config.__dict__, "max_steps": 6})
    second = train_mlpf(longer, tmp_path / "data", output, log=lambda _: None)
    assert second["steps"] == 6 and [r["steps"] for r in second["runs"]] == [3, 3]
    assert json.dumps(second["history"][0]) == json.dumps(first["history"][0])
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == cached
    _, info = load_mlpf(output)
    assert info["steps"] == 6
    # A new run from these weights on a mix that adds a sample: their architecture, a step
    # count from zero, and only the new sample's elements prepared.
    grown = MLPFTrainConfig(
        **{**config.__dict__, "samples": ("jets_with_leptons", "gun:1"), "init_from": str(output)}
    )
    third = train_mlpf(grown, tmp_path / "data", tmp_path / "grown.pt", log=lambda _: None)
    assert third["steps"] == 3 and third["config"]["init_from"] == str(output)
    model, _ = load_mlpf(tmp_path / "grown.pt")
    assert model.config.hidden == 16 != MLPFTrainConfig().model.hidden
    added = sorted(set(p.name for p in (tmp_path / "data").iterdir()) - set(cached))
    assert len(added) == 2 and all("-gun1-" in name for name in added)


def test_samples_can_have_their_own_number_of_events() -> None:
    from recoserve.train.mlpf import MLPFTrainConfig

    config = MLPFTrainConfig(
        train_events=1000, validation_events=100, samples=("jets_with_leptons", "jets_pu140:50")
    )
    train, validation = config.sample_events()
    assert train == {"jets_with_leptons": 1000, "jets_pu140": 50}
    assert validation == {"jets_with_leptons": 100, "jets_pu140": 5}
    for bad in ("jets_pu140:0", "jets_pu140:many", "ttbar"):
        with pytest.raises(ValueError, match=r"jets_pu140|ttbar"):
            MLPFTrainConfig(samples=(bad,)).sample_events()


def test_the_loss_weighs_elements_or_events() -> None:
    """Per element it is the class-weighted cross entropy over all elements; per event, a big
    event of easy "none" elements no longer drowns a small event's particles."""
    import torch.nn.functional as F

    from recoserve.postprocess.candidates import NONE
    from recoserve.train.mlpf import MLPFLossWeights, mlpf_loss

    torch.manual_seed(0)
    n_big, n_small = 200, 4
    logits = torch.randn(n_big + n_small, 6)
    regression = torch.rand(n_big + n_small, 5) + 0.5
    target = torch.full((n_big + n_small,), NONE, dtype=torch.int64)
    target[n_big:] = torch.tensor([1, 2, 3, 5])
    segment = torch.cat(
        [torch.zeros(n_big, dtype=torch.int64), torch.ones(n_small, dtype=torch.int64)]
    )
    true_regression = torch.rand(n_big + n_small, 5) + 0.5
    per_element = mlpf_loss(
        (logits, regression), target, true_regression, MLPFLossWeights(), segment
    )
    class_weight = torch.ones(6)
    class_weight[NONE] = 0.5
    expected = F.cross_entropy(logits, target, weight=class_weight)
    assert torch.allclose(per_element["classification"], expected)
    per_event = mlpf_loss(
        (logits, regression), target, true_regression, MLPFLossWeights(per_event=True), segment
    )
    halves = [
        F.cross_entropy(logits[s], target[s], weight=class_weight)
        for s in (slice(0, n_big), slice(n_big, None))
    ]
    assert torch.allclose(per_event["classification"], (halves[0] + halves[1]) / 2)
    # the regression only has the small event's particles: both ways agree there
    assert torch.allclose(per_event["regression"], per_element["regression"])

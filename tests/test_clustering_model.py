"""The committed clustering checkpoint: it loads, exports with parity, and clusters showers."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import torch

from recoserve.export.clustering import PARITY_TOLERANCE, export_clustering
from recoserve.export.network import check_parity, parity_checks
from recoserve.inprocess import ClusteringPipeline
from recoserve.metrics.showers import summarize_clustering
from recoserve.metrics.tuning_store import file_sha256
from recoserve.nn.checkpoint import (
    DEFAULT_CLUSTERING_CHECKPOINT,
    load_clustering,
    save_clustering,
    weights_sha256,
)
from recoserve.nn.gravnet import GravNetConfig
from recoserve.sim.particles import GunConfig
from recoserve.sim.simulator import SimConfig, Simulator

FRESH_SEED = 777  # not a training, validation, evaluation or parity seed


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    return export_clustering(DEFAULT_CLUSTERING_CHECKPOINT, tmp_path_factory.mktemp("export"))


def test_checkpoint_loads_with_its_provenance() -> None:
    model, thresholds, info = load_clustering()
    assert 0 < thresholds.t_beta < 1 and thresholds.t_d > 0
    assert info["steps"] > 100
    metrics = json.loads(DEFAULT_CLUSTERING_CHECKPOINT.with_suffix(".metrics.json").read_text())
    assert metrics["config"]["seed"] == info["seed"]
    assert metrics["thresholds"] == asdict(thresholds)
    assert metrics["history"] and GravNetConfig(**metrics["config"]["model"]) == model.config


def test_the_weights_digest_ignores_thresholds_and_provenance(tmp_path: Path) -> None:
    # Tunings are keyed by it: new thresholds in the served file must not make them stale.
    model, thresholds, info = load_clustering()
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    save_clustering(a, model, thresholds, info)
    save_clustering(b, model, replace(thresholds, attach=thresholds.attach + 1.0), {})
    assert file_sha256(a) != file_sha256(b)
    assert weights_sha256(a) == weights_sha256(b) == weights_sha256(DEFAULT_CLUSTERING_CHECKPOINT)
    with torch.no_grad():
        next(model.parameters()).add_(1e-3)
    save_clustering(b, model, thresholds, info)
    assert weights_sha256(b) != weights_sha256(a)


def test_exports_match_eager_on_fresh_events(exported: dict[str, object]) -> None:
    checks = exported["parity"]
    assert isinstance(checks, list) and len(checks) == 4
    assert {c["rows"] > 0 for c in checks} == {True}
    assert float(exported["max_excess_error"]) <= PARITY_TOLERANCE  # type: ignore[arg-type]
    assert Path(str(exported["onnx"])).stat().st_size > 10_000


def test_parity_refuses_an_export_of_another_function(exported: dict[str, object]) -> None:
    """The exports checked against a network whose beta head's bias moved by 0.01 (as a wrong
    constant or a lost op would move it): float32's own error is granted, this is not."""
    model, _, _ = load_clustering()
    with torch.no_grad():
        model.beta_head.bias.add_(0.01)
    hits = Simulator(SimConfig(gun=GunConfig(n_particles=10))).event(FRESH_SEED, 1).hits.features()
    checks = parity_checks(
        model, Path(str(exported["torchscript"])), Path(str(exported["onnx"])), [hits]
    )
    assert checks[0]["onnx_excess_error"] > PARITY_TOLERANCE
    with pytest.raises(RuntimeError, match="export parity failed"):
        check_parity(checks)


def test_backends_give_identical_clusters(exported: dict[str, object]) -> None:
    hits = Simulator(SimConfig(gun=GunConfig(n_particles=30))).event(FRESH_SEED, 0).hits
    torch_pipe = ClusteringPipeline()
    onnx_pipe = ClusteringPipeline(backend="onnx", exported=str(exported["onnx"]))
    script_pipe = ClusteringPipeline(backend="torchscript", exported=str(exported["torchscript"]))
    reference = torch_pipe.cluster(hits.features())
    for other in (onnx_pipe.cluster(hits.features()), script_pipe.cluster(hits.features())):
        assert np.array_equal(other.hit_cluster, reference.hit_cluster)
        np.testing.assert_allclose(other.energy, reference.energy, rtol=1e-5)


def test_trained_model_finds_showers_on_fresh_events() -> None:
    pipeline = ClusteringPipeline()
    results = []
    for i, n in enumerate((20, 60)):
        event = Simulator(SimConfig(gun=GunConfig(n_particles=n))).event(FRESH_SEED, 10 + i)
        clusters = pipeline.cluster(event.hits.features())
        results.append((event, clusters.hit_cluster, clusters.energy))
    summary = summarize_clustering(results)
    # A sanity floor far below the measured performance (docs/clustering.md): a broken or
    # untrained checkpoint finds almost nothing.
    assert summary["efficiency_above_20GeV"] > 0.6
    assert 0.8 < summary["response_median"] < 1.2


def test_empty_event_gives_no_clusters() -> None:
    clusters = ClusteringPipeline().cluster(np.zeros((0, 5), np.float32))
    assert len(clusters) == 0 and len(clusters.hit_cluster) == 0


def test_training_resumes_where_it_stopped(tmp_path: Path) -> None:
    """Two short runs with the same output: the second continues the step count, the
    optimiser state and the learning curve, and both leave a servable checkpoint."""
    from dataclasses import replace

    import torch

    from recoserve.nn.gravnet import GravNetConfig
    from recoserve.train.clustering import ClusteringTrainConfig, state_path, train_clustering

    config = ClusteringTrainConfig(
        classes=("jets",), train_events=2, validation_events=1, minutes=5.0, max_steps=3,
        validate_every=3, workers=1, batch=2,
        model=replace(GravNetConfig.current(), hidden=16, blocks=1),
    )  # fmt: skip
    output = tmp_path / "gravnet_oc.pt"
    first = train_clustering(config, tmp_path / "data", output, log=lambda _: None)
    assert first["steps"] == 3 and len(first["history"]) == 1
    state = torch.load(state_path(output), weights_only=False)
    assert state["progress"]["step"] == 3 and state["optimizer"]["state"]
    longer = ClusteringTrainConfig(**{**config.__dict__, "max_steps": 6})
    second = train_clustering(longer, tmp_path / "data", output, log=lambda _: None)
    assert second["steps"] == 6 and len(second["history"]) == 2
    assert [r["steps"] for r in second["runs"]] == [3, 3]
    # the curve is continued, not restarted (compared as JSON: a rate with no clusters is NaN)
    assert json.dumps(second["history"][0]) == json.dumps(first["history"][0])
    _, thresholds, info = load_clustering(output)
    assert info["steps"] == 6 and 0 < thresholds.t_beta < 1

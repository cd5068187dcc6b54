"""GravNet pieces: the windowed kNN, segment isolation, export parity, the OC loss."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from recoserve.export.clustering import export_onnx
from recoserve.export.network import max_abs_difference, run_onnx
from recoserve.nn.gravnet import GravNetConfig, GravNetOC
from recoserve.nn.knn import CandidateSearch, sort_order, window_offsets
from recoserve.nn.losses import LOSSES, ObjectTargets, OCWeights, object_condensation_loss
from recoserve.sim.particles import GunConfig
from recoserve.sim.simulator import SimConfig, Simulator
from recoserve.train.clustering import batch_loss
from recoserve.train.crops import CropConfig, crop_item
from recoserve.train.targets import event_targets


def small_event_hits(n_particles: int, seed: int = 3) -> np.ndarray:
    sim = Simulator(SimConfig(gun=GunConfig(n_particles=n_particles)))
    return sim.event(seed, 0).hits.features()


Tensors = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def windowed_knn(
    coords: torch.Tensor,
    segment: torch.Tensor,
    order: torch.Tensor,
    k: int,
    offsets: tuple[int, ...],
) -> Tensors:
    """``CandidateSearch`` on rows in their original order, as the networks use it (sorted once
    by ``order``, back in order after): (index [N, k], squared distance, valid)."""
    search = CandidateSearch(offsets).eval()
    penalty = search.penalty(segment.index_select(0, order))
    row, d2, valid = search(coords.index_select(0, order), penalty, k)
    inverse = torch.argsort(order)
    neighbour = order.index_select(0, row.reshape(-1)).reshape(row.shape)
    return (
        neighbour.index_select(0, inverse),
        d2.index_select(0, inverse),
        valid.index_select(0, inverse),
    )


@pytest.fixture(scope="module")
def model() -> GravNetOC:
    torch.manual_seed(0)
    return GravNetOC(GravNetConfig()).eval()


def test_knn_is_exact_when_the_window_covers_the_event() -> None:
    torch.manual_seed(1)
    coords = torch.randn(40, 4)
    hits = torch.randn(40, 5) * 50
    segment = torch.zeros(40, dtype=torch.int64)
    index, d2, valid = windowed_knn(
        coords, segment, sort_order(hits, segment), k=8, offsets=window_offsets(48)
    )
    all_d2 = ((coords.unsqueeze(1) - coords.unsqueeze(0)) ** 2).sum(-1)
    brute = all_d2.topk(8, largest=False)
    assert valid.all()
    for i in range(40):
        assert set(index[i].tolist()) == set(brute.indices[i].tolist())
    np.testing.assert_allclose(d2.numpy(), brute.values.numpy(), rtol=1e-6, atol=1e-6)


def test_knn_never_crosses_events_and_flags_missing_neighbours() -> None:
    hits = torch.randn(10, 5) * 50
    segment = torch.tensor([0] * 7 + [1] * 3)
    index, d2, valid = windowed_knn(
        torch.randn(10, 4), segment, sort_order(hits, segment), 5, window_offsets(48)
    )
    assert torch.all(segment[index][valid] == segment.unsqueeze(1).expand(10, 5)[valid])
    assert valid[7:].sum(1).tolist() == [3, 3, 3]  # the small event has only 3 hits
    assert torch.all(d2[~valid] >= 1e29)


def test_knn_matches_a_gather_of_every_candidate_and_training_recomputes_the_same_distances() -> (
    None
):
    """The slice-per-offset search against the plain definition (gather each hit's candidates
    at its offsets in the sorted order, sort by distance); in training mode the chosen pairs'
    distances are recomputed with gradients and equal TopK's values."""
    torch.manual_seed(2)
    n, k = 300, 9
    offsets = (-20, -7, -3, -2, -1, 0, 1, 2, 3, 7, 20)
    coords = torch.randn(n, 4)
    segment = torch.tensor([0] * 180 + [1] * 120)
    search = CandidateSearch(offsets).eval()
    row, d2, valid = search(coords, search.penalty(segment), k)
    for i in range(n):
        rows = [i + o for o in offsets if 0 <= i + o < n and segment[i + o] == segment[i]]
        reference = sorted(float(((coords[i] - coords[j]) ** 2).sum()) for j in rows)[:k]
        assert valid[i].sum() == len(reference)
        np.testing.assert_allclose(d2[i][valid[i]].numpy(), reference, rtol=1e-6)
        assert set(row[i][valid[i]].tolist()) <= set(rows)
    trainable = coords.clone().requires_grad_(True)
    _, again, _ = search.train()(trainable, search.penalty(segment), k)
    assert again.requires_grad
    np.testing.assert_allclose(again.detach().numpy(), d2.numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match="symmetric"):
        CandidateSearch((-1, 0, 1, 2))  # each pair's distance is computed once, from one side


@pytest.mark.parametrize("design", ["first", "current"])
def test_batched_events_give_the_same_outputs_as_single_events(design: str) -> None:
    torch.manual_seed(0)
    config = GravNetConfig() if design == "first" else GravNetConfig.current()
    model = GravNetOC(config).eval()
    a, b = torch.from_numpy(small_event_hits(8, 1)), torch.from_numpy(small_event_hits(5, 2))
    with torch.no_grad():
        alone_a = model(a, torch.zeros(len(a), dtype=torch.int64))
        alone_b = model(b, torch.zeros(len(b), dtype=torch.int64))
        segment = torch.cat([torch.zeros(len(a)), torch.ones(len(b))]).to(torch.int64)
        both = model(torch.cat([a, b]), segment)
    for x, y, z in zip(alone_a, alone_b, both, strict=True):
        torch.testing.assert_close(z[: len(a)], x, atol=1e-5, rtol=0)
        torch.testing.assert_close(z[len(a) :], y, atol=1e-5, rtol=0)


@pytest.mark.parametrize("design", ["first", "current"])
def test_torchscript_and_onnx_match_eager(design: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = GravNetConfig() if design == "first" else GravNetConfig.current()
    model = GravNetOC(config).eval()
    scripted = torch.jit.script(model)
    onnx_path = export_onnx(model, tmp_path / "g.onnx", small_event_hits(2))
    for hits in (small_event_hits(1)[:1], small_event_hits(3), small_event_hits(25)):
        h, seg = torch.from_numpy(hits), torch.zeros(len(hits), dtype=torch.int64)
        with torch.no_grad():
            eager = [o.numpy() for o in model(h, seg)]
            ts = [o.numpy() for o in scripted(h, seg)]
        assert max_abs_difference(eager, ts) == 0.0
        assert max_abs_difference(eager, run_onnx(onnx_path, hits)) < 1e-4


def test_empty_event_runs_in_torchscript(model: GravNetOC) -> None:
    scripted = torch.jit.script(model)
    out = scripted(torch.zeros(0, 5), torch.zeros(0, dtype=torch.int64))
    assert [tuple(o.shape) for o in out] == [(0,), (0, 3), (0,), (0, 2), (0,), (0, 3)]


def test_loss_is_finite_and_decreases_on_a_tiny_overfit() -> None:
    torch.manual_seed(0)
    sim = Simulator(SimConfig(gun=GunConfig(n_particles=3, energy_min=30, energy_max=60)))
    hits, targets = event_targets(sim.event(5, 0))
    net = GravNetOC(GravNetConfig(hidden=32, blocks=2))
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    segment = torch.zeros(len(hits), dtype=torch.int64)
    losses = []
    for _ in range(60):
        terms = object_condensation_loss(net(hits, segment), targets)
        assert all(torch.isfinite(v) for v in terms.values())
        optimizer.zero_grad()
        terms["total"].backward()
        optimizer.step()
        losses.append(float(terms["total"]))
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])


def test_loss_of_a_noise_only_event() -> None:
    sim = Simulator(SimConfig(gun=GunConfig(n_particles=0)))
    hits, targets = event_targets(sim.event(1, 0))
    assert len(targets.energy) == 0 and len(hits) > 0
    net = GravNetOC(GravNetConfig(hidden=16, blocks=1))
    terms = object_condensation_loss(net(hits, torch.zeros(len(hits), dtype=torch.int64)), targets)
    assert torch.isfinite(terms["total"]) and float(terms["total"]) > 0
    terms["total"].backward()


def test_a_batch_of_endcaps_has_the_mean_loss_of_its_endcaps() -> None:
    torch.manual_seed(0)
    net = GravNetOC(replace(GravNetConfig.current(), hidden=16, blocks=2)).eval()
    sim = Simulator(SimConfig(gun=GunConfig(n_particles=4, energy_min=5, energy_max=60)))
    items = [event_targets(sim.event(7, i)) for i in range(3)]
    weights = OCWeights.current()
    batched = batch_loss(net, items, weights)
    alone = [batch_loss(net, [item], weights) for item in items]
    for key, value in batched.items():
        expected = sum(float(terms[key]) for terms in alone) / len(alone)
        assert float(value) == pytest.approx(expected, rel=1e-4, abs=1e-6), key


def _small_and_large_object(coords_of: dict[int, tuple[float, float, float]]) -> tuple:
    """Two objects, of 2 hits (condensation point: hit 0, at the origin) and 200 hits (hit 2,
    at x = 5), betas 0.9 at those points and 0.1 elsewhere; ``coords_of`` moves single hits.
    Returns (outputs, targets, q of a 0.1 hit, q of a 0.9 hit)."""
    n = 202
    beta = torch.full((n,), 0.1)
    beta[0], beta[2] = 0.9, 0.9
    coords = torch.zeros(n, 3)
    coords[2:, 0] = 5.0
    for hit, xyz in coords_of.items():
        coords[hit] = torch.tensor(xyz)
    targets = ObjectTargets(
        object_id=torch.tensor([0, 0] + [1] * 200), energy=torch.tensor([30.0, 30.0]),
        hit_energy=torch.tensor([30.0, 30.0]), energy_valid=torch.tensor([True, True]),
        position=torch.zeros(2, 2), time=torch.zeros(2), label=torch.zeros(2, dtype=torch.int64),
    )  # fmt: skip
    outputs = (beta, coords, torch.ones(n), torch.zeros(n, 2), torch.zeros(n),
               torch.zeros(n, 3))  # fmt: skip
    q = float(torch.atanh(torch.tensor(0.1)) ** 2 + 0.1)
    q_alpha = float(torch.atanh(torch.tensor(0.9)) ** 2 + 0.1)
    return outputs, targets, q, q_alpha


def test_per_object_potentials_weigh_a_small_shower_like_a_large_one() -> None:
    """Two objects, one of 2 hits and one of 200, each with one misplaced hit: with the
    per-object normalisation both misplacements cost the same; summed over hits the small
    object's would be diluted by the large one's hit count."""
    # one member of each object 1 away from its condensation point
    outputs, targets, q, q_alpha = _small_and_large_object({1: (0, 1, 0), 3: (5, 1, 0)})
    per_object = object_condensation_loss(outputs, targets, LOSSES["per-object"])["attractive"]
    # by hand: each object's pull is q_hit * q_alpha * 1 / size, averaged over the 2 objects
    assert float(per_object) == pytest.approx((q * q_alpha / 2 + q * q_alpha / 200) / 2, rel=1e-4)


def test_an_intruder_weighs_by_its_own_object_when_asked() -> None:
    """One hit of a 200-hit object sits on the condensation point of a 2-hit object. Per
    object (the ball's size), it costs q q_alpha / 2; by its own object, q q_alpha / 200."""
    # hit 3, of the large object, sits on the small object's condensation point
    outputs, targets, q, q_alpha = _small_and_large_object({3: (0, 0, 0)})
    push = q * q_alpha * (1.0 - 1e-3)  # relu(1 - sqrt(0 + 1e-6))
    ball = OCWeights(per_object=True, repulsion=1.0)
    own = OCWeights(per_object=True, by_own_object=True, repulsion=1.0)
    by_ball = object_condensation_loss(outputs, targets, ball)["repulsive"]
    by_own = object_condensation_loss(outputs, targets, own)["repulsive"]
    assert float(by_ball) == pytest.approx(push / 2 / 2, rel=1e-4)  # / size 2, / 2 objects
    assert float(by_own) == pytest.approx(push / 200 / 2, rel=1e-4)  # / size 200, / 2 objects


def test_a_crop_keeps_its_hits_objects_and_targets_consistent() -> None:
    """Large endcaps are cropped to at most ``max_hits`` hits around an object; small ones are
    left whole; objects are renumbered, and only objects cut by the crop lose their energy
    target."""
    hits, targets = event_targets(Simulator().event(9, 0))
    config = CropConfig(max_hits=len(hits) // 3, radius=0.6)
    net = GravNetOC(GravNetConfig(hidden=16, blocks=1))
    assert crop_item((hits, targets), CropConfig(max_hits=len(hits)), random.Random(0))[0] is hits
    for seed in range(4):
        cropped, t = crop_item((hits, targets), config, random.Random(seed))
        assert 0 < len(cropped) <= config.max_hits
        assert {tuple(row) for row in cropped.tolist()} <= {tuple(row) for row in hits.tolist()}
        ids = t.object_id[t.object_id >= 0]
        assert sorted(torch.unique(ids).tolist()) == list(range(len(t.energy)))
        for field in ("hit_energy", "energy_valid", "position", "time", "label"):
            assert len(getattr(t, field)) == len(t.energy), field
        in_crop = torch.zeros(len(t.energy), dtype=torch.float64)
        in_crop.index_add_(0, ids, cropped[t.object_id >= 0, 3].double())
        whole = in_crop >= config.kept_energy * t.hit_energy.double()
        assert not bool((t.energy_valid & ~whole).any())  # a cut object has no energy target
        assert bool(whole.any())  # the object the crop is centred on is (mostly) inside
        outputs = net(cropped, torch.zeros(len(cropped), dtype=torch.int64))
        assert torch.isfinite(object_condensation_loss(outputs, t)["total"])
    again = crop_item((hits, targets), config, random.Random(2))[0]
    assert torch.equal(again, crop_item((hits, targets), config, random.Random(2))[0])

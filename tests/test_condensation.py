"""Object-condensation inference on hand-built cases."""

from __future__ import annotations

import numpy as np

from recoserve.postprocess.condensation import Clusters, CondensationThresholds, condense

T = CondensationThresholds(t_beta=0.5, t_d=1.0)


def run(beta: list[float], coords: list[list[float]], energy: list[float] | None = None,
        factor: list[float] | None = None) -> Clusters:  # fmt: skip
    n = len(beta)
    energy_arr = np.ones(n) if energy is None else np.asarray(energy, float)
    factor_arr = np.ones(n) if factor is None else np.asarray(factor, float)
    position = np.column_stack([np.arange(n), -np.arange(n)]).astype(np.float32)
    time = np.arange(n, dtype=np.float32) / 10
    logits = np.tile([[0.0, 2.0, 0.0]], (n, 1))
    return condense(np.asarray(beta, np.float32), np.asarray(coords, float).reshape(n, 2),
                    energy_arr, factor_arr, position, time, logits, T)  # fmt: skip


def test_two_separated_seeds_make_two_clusters() -> None:
    c = run([0.9, 0.1, 0.1, 0.8, 0.2], [[0, 0], [0.3, 0], [0, 0.4], [5, 5], [5.2, 5]],
            energy=[1, 2, 3, 4, 5], factor=[1.5, 1, 1, 2.0, 1])  # fmt: skip
    assert c.hit_cluster.tolist() == [0, 0, 0, 1, 1]
    assert c.seed.tolist() == [0, 3]
    np.testing.assert_allclose(c.raw_energy, [6, 9])
    np.testing.assert_allclose(c.energy, [9, 18])  # factor read at the seed
    np.testing.assert_allclose(c.x, [0, 3])
    np.testing.assert_allclose(c.time, [0.0, 0.3])
    assert c.class_id.tolist() == [1, 1] and c.n_hits.tolist() == [3, 2]
    np.testing.assert_allclose(c.class_prob.sum(1), 1.0, rtol=1e-6)


def test_overlapping_showers_higher_beta_claims_first() -> None:
    # Seed B (beta 0.7) lies 1.5 away from seed A (0.9); the hit between them is within t_d of
    # both and goes to A, the stronger seed. A seed within t_d of a stronger one is absorbed.
    c = run([0.9, 0.7, 0.2, 0.6], [[0, 0], [1.5, 0], [0.8, 0], [0.5, 0]])
    assert c.hit_cluster.tolist() == [0, 1, 0, 0]
    assert len(c) == 2


def test_noise_stays_unassigned() -> None:
    c = run([0.9, 0.1, 0.3], [[0, 0], [3, 3], [0.2, 0]])
    assert c.hit_cluster.tolist() == [0, -1, 0]


def test_empty_event_and_single_hit() -> None:
    empty = run([], [])
    assert len(empty) == 0 and len(empty.hit_cluster) == 0 and empty.class_prob.shape == (0, 3)
    one = run([0.95], [[0, 0]], energy=[2.0])
    assert one.hit_cluster.tolist() == [0] and one.energy.tolist() == [2.0]
    weak = run([0.2], [[0, 0]])
    assert weak.hit_cluster.tolist() == [-1] and len(weak) == 0


def test_equal_betas_are_resolved_by_hit_index() -> None:
    c = run([0.8, 0.8], [[0.5, 0], [0, 0]])
    assert c.seed.tolist() == [0] and c.hit_cluster.tolist() == [0, 0]


def test_many_hits_are_fast_enough_to_be_tree_based() -> None:
    rng = np.random.default_rng(0)
    n = 50_000
    centers = rng.uniform(0, 100, (300, 3))
    owner = rng.integers(0, 300, n)
    coords = centers[owner] + rng.normal(0, 0.1, (n, 3))
    beta = np.full(n, 0.1, np.float32)
    first = np.unique(owner, return_index=True)[1]
    beta[first] = 0.9
    c = condense(beta, coords, np.ones(n), np.ones(n), np.zeros((n, 2)), np.zeros(n),
                 np.zeros((n, 3)), T)  # fmt: skip
    assert len(c) == len(first)
    # Every true group ends up in exactly one cluster.
    assert all(len(np.unique(c.hit_cluster[owner == k])) == 1 for k in range(0, 300, 17))


def test_the_energy_scale_multiplies_every_cluster_energy() -> None:
    beta, coords = [0.9, 0.1, 0.8], [[0, 0], [0.3, 0], [5, 5]]
    n = len(beta)
    args = (np.asarray(beta, np.float32), np.asarray(coords, float), np.asarray([1.0, 2, 4]),
            np.asarray([1.5, 1, 2.0]), np.zeros((n, 2)), np.zeros(n), np.zeros((n, 3)))  # fmt: skip
    plain = condense(*args, CondensationThresholds(t_beta=0.5, t_d=1.0))
    scaled = condense(*args, CondensationThresholds(t_beta=0.5, t_d=1.0, energy_scale=1.25))
    np.testing.assert_allclose(plain.energy, [4.5, 8.0])
    np.testing.assert_allclose(scaled.energy, plain.energy * 1.25)
    np.testing.assert_array_equal(scaled.raw_energy, plain.raw_energy)


def test_the_energy_scale_brings_the_median_response_to_one() -> None:
    from recoserve.metrics.tuning import response_scale

    assert response_scale({"response_median": 0.8}) == 1.25
    assert response_scale({"response_median": float("nan")}) == 1.0  # nothing matched


def test_seed_spacing_and_attach_keep_a_wide_shower_in_one_cluster() -> None:
    # One shower whose hits spread wider than t_d: A (beta 0.9) at 0, B (0.8) at 1.5, C at 1.8;
    # D at 5 is another thing's noise.
    beta, coords = [0.9, 0.8, 0.1, 0.1], [[0, 0], [1.5, 0], [1.8, 0], [5, 0]]

    def with_(**steps: float) -> list[int]:
        t = CondensationThresholds(t_beta=0.5, t_d=1.0, **steps)
        n = len(beta)
        return condense(np.asarray(beta, np.float32), np.asarray(coords, float), np.ones(n),
                        np.ones(n), np.zeros((n, 2)), np.zeros(n), np.zeros((n, 3)),
                        t).hit_cluster.tolist()  # fmt: skip

    assert with_() == [0, 1, 1, -1]  # B seeds a second cluster: the shower is split
    assert with_(seed_spacing=2.0) == [0, -1, -1, -1]  # B opens none; its rim is left over
    assert with_(seed_spacing=2.0, attach=2.0) == [0, 0, 0, -1]  # ... and joins A
    assert with_(attach=2.0) == [0, 1, 1, -1]  # attach alone takes only unclaimed hits


def test_thresholds_travel_as_triton_parameters() -> None:
    t = CondensationThresholds(t_beta=0.2, t_d=0.5, seed_spacing=2.0, attach=1.5, energy_scale=1.1)
    assert CondensationThresholds.from_params(t.as_params()) == t
    # a repository written before the fragment steps existed condenses as it did
    assert CondensationThresholds.from_params({"t_beta": "0.2", "t_d": "0.8"}) == (
        CondensationThresholds(t_beta=0.2, t_d=0.8, seed_spacing=1.0, attach=0.0, energy_scale=1.0)
    )

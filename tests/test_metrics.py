"""Energy-weighted IoU matching and the clustering summary."""

from __future__ import annotations

import numpy as np

from recoserve.metrics.matching import match_showers


def test_perfect_clustering_matches_everything() -> None:
    truth = np.array([0, 0, 1, 1, -1])
    m = match_showers(np.ones(5), truth, np.array([5, 5, 7, 7, -1]))
    assert m.truth_match.tolist() == [0, 1] and np.allclose(m.truth_iou, 1.0)
    assert m.pred_match.tolist() == [0, 1]


def test_split_shower_leaves_an_unmatched_piece() -> None:
    energy = np.array([10.0, 10.0, 1.0])
    m = match_showers(energy, np.array([0, 0, 0]), np.array([0, 0, 1]))
    assert m.truth_match.tolist() == [0]
    assert m.truth_iou[0] == 20.0 / 21.0
    assert m.pred_match.tolist() == [0, -1]


def test_matching_is_energy_weighted_and_respects_the_threshold() -> None:
    # The cluster holds the shower's low-energy half only: IoU = 1 / (1 + 9) < 0.5.
    energy = np.array([9.0, 1.0])
    m = match_showers(energy, np.array([0, 0]), np.array([-1, 0]))
    assert m.truth_match.tolist() == [-1] and m.pred_match.tolist() == [-1]


def test_one_to_one_assignment() -> None:
    # Two showers merged in one cluster: only one of them can match it.
    m = match_showers(np.array([6.0, 5.0]), np.array([0, 1]), np.array([0, 0]))
    assert sorted(m.truth_match.tolist()) == [-1, 0]
    assert m.truth_match[0] == 0  # the larger overlap wins

"""Matching reconstructed clusters to true showers by energy-weighted intersection over union.

IoU(t, p) = E(hits in both) / (E(t) + E(p) - E(hits in both)), energies being the hits'
measured energies. The one-to-one matching that maximises the total IoU is solved as an
assignment problem (Hungarian algorithm, scipy); pairs below ``min_iou`` are not matches.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment


@dataclass
class Matching:
    truth_ids: np.ndarray  # ids of the true showers considered
    truth_match: np.ndarray  # [T] index into pred_ids of the match, -1 if none
    truth_iou: np.ndarray  # [T]
    truth_hit_energy: np.ndarray  # [T] measured energy of the shower's hits
    pred_ids: np.ndarray
    pred_match: np.ndarray  # [P] index into truth_ids, -1 if none
    pred_hit_energy: np.ndarray  # [P]


def match_showers(
    hit_energy: np.ndarray,
    truth: np.ndarray,
    pred: np.ndarray,
    truth_ids: np.ndarray | None = None,
    min_iou: float = 0.5,
) -> Matching:
    """Match predicted clusters (``pred`` per hit, -1 = none) to true showers (``truth``)."""
    truth_ids = np.unique(truth[truth >= 0]) if truth_ids is None else np.asarray(truth_ids)
    pred_ids = np.unique(pred[pred >= 0])
    t_index = np.full(int(truth.max(initial=-1)) + 2, -1, dtype=np.int64)
    t_index[truth_ids] = np.arange(len(truth_ids))
    p_index = np.full(int(pred.max(initial=-1)) + 2, -1, dtype=np.int64)
    p_index[pred_ids] = np.arange(len(pred_ids))
    ti = np.where(truth >= 0, t_index[truth], -1)
    pi = np.where(pred >= 0, p_index[pred], -1)
    e_t = np.bincount(ti[ti >= 0], weights=hit_energy[ti >= 0], minlength=len(truth_ids))
    e_p = np.bincount(pi[pi >= 0], weights=hit_energy[pi >= 0], minlength=len(pred_ids))
    both = (ti >= 0) & (pi >= 0)
    inter = np.zeros((len(truth_ids), len(pred_ids)))
    np.add.at(inter, (ti[both], pi[both]), hit_energy[both])
    union = e_t[:, None] + e_p[None, :] - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    truth_match = np.full(len(truth_ids), -1, dtype=np.int64)
    truth_iou = np.zeros(len(truth_ids))
    pred_match = np.full(len(pred_ids), -1, dtype=np.int64)
    if iou.size:
        rows, cols = linear_sum_assignment(-iou)
        good = iou[rows, cols] >= min_iou
        truth_match[rows[good]] = cols[good]
        truth_iou[rows[good]] = iou[rows[good], cols[good]]
        pred_match[cols[good]] = rows[good]
    return Matching(truth_ids, truth_match, truth_iou, e_t, pred_ids, pred_match, e_p)

"""Scalable k-nearest-neighbour search in ordinary TorchScript / ONNX operations.

No N x N matrix. Once per event, hits are sorted along a Z-order (Morton) space-filling curve of
their *input* position, in projective coordinates (x, y scaled to the calorimeter face, and z),
so that the hits of one shower, which fans out from the vertex, sit close together in the order.
In every GravNet block each hit picks its ``k`` nearest neighbours *in the learned space* among
the ``window`` hits before and after it in that order. Cost and memory are O(N * window).

The order depends only on the raw inputs, computed with exact elementwise arithmetic, so the
candidates are bit-for-bit the same in eager PyTorch, TorchScript and ONNX Runtime (a key
computed from learned coordinates would move with 1e-7 differences between GEMM kernels and
reshuffle the blocks). The same function runs in training and in the exported graphs.

``segment`` (int64 [N]) separates events in a batch: it is the most significant part of the sort
key and candidates from another segment are masked, so hits of two events never interact.
"""

from __future__ import annotations

import torch
from torch import Tensor

MORTON_BITS = 10  # per axis; with the segment and the row number the key fits in int64
ROW_BITS = 20  # up to ~1M hits per request; segments (events per batch) up to 2^13
FAR = 1.0e30


def sort_order(hits: Tensor, segment: Tensor) -> Tensor:
    """Permutation sorting hits by (segment, Morton code of projective position, row).

    The key is unique (the row number breaks ties), so the order is the same in every backend.
    TorchScript cannot read module globals: the constants above appear as literals.
    """
    bits = 10
    row_bits = 20
    top = float((1 << bits) - 1)
    abs_z = torch.clamp(hits[:, 2].abs(), min=1.0)
    scale_to_face = 320.0 / abs_z
    # Fixed detector-wide bounds (not per-event min/max), so that the order of an event's hits
    # is the same whether it is sent alone or batched with others: |x|, |y| at the face < 170 cm,
    # |z| < 530 cm.
    qx = (hits[:, 0] * scale_to_face + 170.0) * (top / 340.0)
    qy = (hits[:, 1] * scale_to_face + 170.0) * (top / 340.0)
    qz = (hits[:, 2] + 530.0) * (top / 1060.0)
    q = torch.clamp(torch.stack([qx, qy, qz], dim=1), 0.0, top).to(torch.int64)
    n = q.shape[0]
    code = torch.zeros_like(q[:, 0])
    for bit in range(bits):
        for axis in range(3):
            b = torch.div(q[:, axis], 1 << bit, rounding_mode="floor") % 2
            code = code + b * (1 << (3 * bit + axis))
    row = torch.arange(n, dtype=torch.int64, device=hits.device)
    key = (segment * (1 << (3 * bits)) + code) * (1 << row_bits) + row
    return torch.argsort(key)


def windowed_knn(
    coords: Tensor, segment: Tensor, order: Tensor, k: int, window: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Approximate k nearest neighbours (self included) of every row of ``coords`` [N, D].

    ``order`` comes from ``sort_order``; the candidates of a hit are the ``window`` hits before
    and after it in that order (same segment only). Returns (index [N, k] int64, squared
    distance [N, k], valid [N, k] bool); invalid slots (tiny events) have index 0, distance FAR.
    A sliding window (rather than fixed blocks) makes the candidates of an event's hits the
    same whether the event is processed alone or inside a batch.
    """
    n = coords.shape[0]
    d = coords.shape[1]
    selection = coords.detach()  # select without gradients; chosen distances are redone below
    srt = selection.index_select(0, order)
    seg = segment.index_select(0, order)
    offsets = torch.arange(-window, window + 1, device=coords.device)
    cand_pos = torch.arange(n, device=coords.device).unsqueeze(1) + offsets.unsqueeze(0)
    in_range = (cand_pos >= 0) & (cand_pos < n)
    clamped = torch.where(in_range, cand_pos, torch.zeros_like(cand_pos))
    flat = clamped.reshape(-1)
    cand = srt.index_select(0, flat).reshape(n, 2 * window + 1, d)
    delta = srt.unsqueeze(1) - cand
    d2 = (delta * delta).sum(-1)
    ok = in_range & (seg.index_select(0, flat).reshape(n, 2 * window + 1) == seg.unsqueeze(1))
    d2 = torch.where(ok, d2, torch.full_like(d2, 1.0e30))  # FAR
    _, slot = torch.topk(d2, k, dim=1, largest=False, sorted=True)
    pos = torch.gather(clamped, 1, slot)
    valid = torch.gather(ok, 1, slot)
    inverse = torch.argsort(order)
    neighbour = order.index_select(0, pos.reshape(-1)).reshape(n, k).index_select(0, inverse)
    valid = valid.index_select(0, inverse)
    # Differentiable squared distances of the selected pairs (same arithmetic as above).
    diff = coords.unsqueeze(1) - coords.index_select(0, neighbour.reshape(-1)).reshape(n, k, d)
    selected = (diff * diff).sum(-1)
    selected = torch.where(valid, selected, torch.full_like(selected, 1.0e30))
    return neighbour, selected, valid

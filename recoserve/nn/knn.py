"""Scalable k-nearest-neighbour search in ordinary TorchScript / ONNX operations.

No N x N matrix. Once per event, hits are sorted along a Z-order (Morton) space-filling curve of
their *input* position, in projective coordinates (x, y scaled to the calorimeter face, and z),
so that the hits of one shower, which fans out from the vertex, sit close together in the order.
The order is cut into blocks of ``block`` hits; in every GravNet block each hit picks its ``k``
nearest neighbours *in the learned space* among the hits of its own block and the two adjacent
ones (3 x block candidates). Cost and memory are O(N * block).

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
Z_FACE = 320.0


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
    xyz = torch.stack([hits[:, 0] * scale_to_face, hits[:, 1] * scale_to_face, hits[:, 2]], dim=1)
    n = xyz.shape[0]
    # One extra row at the origin keeps min/max defined for an empty event; it only widens the
    # range (the origin lies between the endcaps) and is the same in every backend.
    padded = torch.cat([xyz, torch.zeros(1, 3, dtype=xyz.dtype, device=xyz.device)])
    lo = padded.min(dim=0, keepdim=True).values
    hi = padded.max(dim=0, keepdim=True).values
    scale = top / torch.clamp(hi - lo, min=1e-6)
    q = torch.clamp((xyz - lo) * scale, 0.0, top).to(torch.int64)
    code = torch.zeros_like(q[:, 0])
    for bit in range(bits):
        for axis in range(3):
            b = torch.div(q[:, axis], 1 << bit, rounding_mode="floor") % 2
            code = code + b * (1 << (3 * bit + axis))
    row = torch.arange(n, dtype=torch.int64, device=hits.device)
    key = (segment * (1 << (3 * bits)) + code) * (1 << row_bits) + row
    return torch.argsort(key)


def windowed_knn(
    coords: Tensor, segment: Tensor, order: Tensor, k: int, block: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Approximate k nearest neighbours (self included) of every row of ``coords`` [N, D].

    ``order`` comes from ``sort_order``. Returns (index [N, k] int64, squared distance [N, k],
    valid [N, k] bool). Rows with fewer than k candidates (tiny events) have invalid slots:
    index 0, distance FAR.
    """
    n = coords.shape[0]
    d = coords.shape[1]
    full = coords
    coords = coords.detach()  # select without gradients; distances of the chosen are redone below
    srt = coords.index_select(0, order)
    seg = segment.index_select(0, order)
    n_blocks = n // block + 1
    pad = n_blocks * block - n
    padded = torch.cat([srt, torch.zeros(pad, d, dtype=coords.dtype, device=coords.device)])
    seg_pad = torch.cat([seg, torch.full((pad,), -1, dtype=seg.dtype, device=seg.device)])
    zeros = torch.zeros(block, d, dtype=coords.dtype, device=coords.device)
    ext = torch.cat([zeros, padded, zeros]).reshape(n_blocks + 2, block, d)
    cand = torch.cat([ext[:-2], ext[1:-1], ext[2:]], dim=1)  # [B, 3*block, D]
    queries = padded.reshape(n_blocks, block, d)
    diff = queries.unsqueeze(2) - cand.unsqueeze(1)  # [B, block, 3*block, D]: exact per element
    d2 = (diff * diff).sum(-1)
    base = torch.arange(n_blocks, device=coords.device).unsqueeze(1) * block
    cand_pos = base + torch.arange(3 * block, device=coords.device).unsqueeze(0) - block
    in_range = (cand_pos >= 0) & (cand_pos < n)
    cand_seg = seg_pad.index_select(0, cand_pos.clamp(0, n_blocks * block - 1).reshape(-1))
    cand_seg = cand_seg.reshape(n_blocks, 3 * block)
    same = cand_seg.unsqueeze(1) == seg_pad.reshape(n_blocks, block).unsqueeze(2)
    ok = in_range.unsqueeze(1) & same
    d2 = torch.where(ok, d2, torch.full_like(d2, 1.0e30))  # FAR
    _, slot = torch.topk(d2, k, dim=2, largest=False, sorted=True)
    pos = torch.gather(cand_pos.unsqueeze(1).expand(n_blocks, block, 3 * block), 2, slot)
    valid = torch.gather(ok, 2, slot)
    pos = pos.reshape(n_blocks * block, k)[:n]
    valid = valid.reshape(n_blocks * block, k)[:n]
    pos = torch.where(valid, pos, torch.zeros_like(pos))  # valid slots lie in [0, n)
    neighbour = order.index_select(0, pos.reshape(-1)).reshape(n, k)
    inverse = torch.argsort(order)
    neighbour = neighbour.index_select(0, inverse)
    valid = valid.index_select(0, inverse)
    # Differentiable squared distances of the selected pairs (same arithmetic as above).
    delta = full.unsqueeze(1) - full.index_select(0, neighbour.reshape(-1)).reshape(n, k, d)
    selected = (delta * delta).sum(-1)
    selected = torch.where(valid, selected, torch.full_like(selected, 1.0e30))
    return neighbour, selected, valid

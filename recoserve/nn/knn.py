"""Scalable k-nearest-neighbour search in ordinary TorchScript / ONNX operations.

No N x N matrix: hits are sorted along a Z-order (Morton) space-filling curve of their first
three coordinates, cut into blocks of ``block`` hits, and each hit looks for its ``k`` nearest
neighbours among the hits of its own block and the two adjacent ones (3 x block candidates).
Cost and memory are O(N * block). The same function runs in training (eager), TorchScript and
ONNX, so the served model sees exactly the neighbours it was trained with.

``segment`` (int64 [N]) separates events in a batch: it is the most significant part of the sort
key and candidates from another segment are masked, so hits of two events never interact.
"""

from __future__ import annotations

import torch
from torch import Tensor

MORTON_BITS = 10  # per axis: 2^30 cells, exact in int64 together with the segment
ROW_BITS = 20  # up to ~1M hits per request; segments (events per batch) up to 2^13
FAR = 1.0e30


def morton_key(coords: Tensor, segment: Tensor) -> Tensor:
    """Unique int64 sort key: segment, then the Z-order code of the first three coordinates,
    then the row number (so that the order has no ties and is the same in every backend)."""
    bits = 10  # per axis (TorchScript cannot read module globals); see MORTON_BITS
    row_bits = 20  # see ROW_BITS
    top = float((1 << bits) - 1)
    xyz = coords[:, :3]
    lo = xyz.min(dim=0, keepdim=True).values if xyz.shape[0] > 0 else torch.zeros_like(xyz[:1])
    hi = xyz.max(dim=0, keepdim=True).values if xyz.shape[0] > 0 else torch.ones_like(xyz[:1])
    scale = top / torch.clamp(hi - lo, min=1e-6)
    q = torch.clamp((xyz - lo) * scale, 0.0, top).to(torch.int64)
    code = torch.zeros_like(q[:, 0])
    for bit in range(bits):
        for axis in range(3):
            b = torch.div(q[:, axis], 1 << bit, rounding_mode="floor") % 2
            code = code + b * (1 << (3 * bit + axis))
    row = torch.arange(coords.shape[0], dtype=torch.int64, device=coords.device)
    return (segment * (1 << (3 * bits)) + code) * (1 << row_bits) + row


def windowed_knn(
    coords: Tensor, segment: Tensor, k: int, block: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Approximate k nearest neighbours (self included) of every row of ``coords`` [N, D].

    Returns (index [N, k] int64, squared distance [N, k], valid [N, k] bool). Rows with fewer
    than k candidates (tiny events) have invalid slots: index 0-clamped, distance FAR.
    """
    n = coords.shape[0]
    d = coords.shape[1]
    order = torch.argsort(morton_key(coords.detach(), segment))
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
    d2 = (
        (queries * queries).sum(-1).unsqueeze(2)
        + (cand * cand).sum(-1).unsqueeze(1)
        - 2.0 * torch.bmm(queries, cand.transpose(1, 2))
    ).clamp(min=0.0)
    base = torch.arange(n_blocks, device=coords.device).unsqueeze(1) * block
    cand_pos = base + torch.arange(3 * block, device=coords.device).unsqueeze(0) - block
    in_range = (cand_pos >= 0) & (cand_pos < n)
    cand_seg = seg_pad.index_select(0, cand_pos.clamp(0, n_blocks * block - 1).reshape(-1))
    cand_seg = cand_seg.reshape(n_blocks, 3 * block)
    same = cand_seg.unsqueeze(1) == seg_pad.reshape(n_blocks, block).unsqueeze(2)
    ok = in_range.unsqueeze(1) & same
    d2 = torch.where(ok, d2, torch.full_like(d2, 1.0e30))  # FAR
    dist, slot = torch.topk(d2, k, dim=2, largest=False, sorted=True)
    pos = torch.gather(cand_pos.unsqueeze(1).expand(n_blocks, block, 3 * block), 2, slot)
    valid = torch.gather(ok, 2, slot)
    pos = pos.reshape(n_blocks * block, k)[:n]
    dist = dist.reshape(n_blocks * block, k)[:n]
    valid = valid.reshape(n_blocks * block, k)[:n]
    neighbour = order.index_select(0, pos.clamp(0, max(n - 1, 0)).reshape(-1)).reshape(n, k)
    inverse = torch.argsort(order)
    return (
        neighbour.index_select(0, inverse),
        dist.index_select(0, inverse),
        valid.index_select(0, inverse),
    )

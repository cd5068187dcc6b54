"""Scalable k-nearest-neighbour search in ordinary TorchScript / ONNX operations.

No N x N matrix. Once per event, hits are sorted by their *input* position, and in every GravNet
block each hit picks its ``k`` nearest neighbours *in the learned space* among a fixed set of
candidates: the hits at given offsets before and after it in that order. Cost and memory are
O(N * candidates). Two orders exist:

- ``sort_order`` (the first networks): a Z-order (Morton) curve of (x, y at the face, z). A
  shower, long in z and narrow across, falls into about a dozen disjoint stretches of it.
- ``face_order``: a 2-D Morton curve of the position projected to the calorimeter face (1 cm
  cells), then depth. All layers of a shower's core are contiguous. With ``dilated_offsets``
  (every hit within +-16, then every 8th out to +-256) the candidates reach about 90 % of a
  large shower's energy after three blocks, against 42 % for +-48 on the Morton order, at
  fewer candidates (93 vs 97); ``benchmarks/clustering_diagnostics.py`` measures it.

The order depends only on the raw inputs, computed with exact elementwise arithmetic, so the
candidates are bit-for-bit the same in eager PyTorch, TorchScript and ONNX Runtime (a key
computed from learned coordinates would move with 1e-7 differences between GEMM kernels and
reshuffle the blocks). The same function runs in training and in the exported graphs.

No ``from __future__ import annotations`` here: TorchScript must read ``CandidateSearch``'s
class-level buffer annotation as a type, not a string.

``segment`` (int64 [N]) separates events in a batch: it is the most significant part of the sort
key and candidates from another segment are masked, so hits of two events never interact.
"""

import torch
from torch import Tensor, nn

MORTON_BITS = 10  # per axis; with the segment and the row number the key fits in int64
ROW_BITS = 20  # up to ~1M hits per request; segments (events per batch) up to 2^13
FAR = 1.0e30


def sort_order(hits: Tensor, segment: Tensor) -> Tensor:
    """Permutation sorting hits by (segment, Morton code of projective position, row).

    The key is unique (the row number breaks ties), so the order is the same in every backend.
    TorchScript cannot read module globals: the constants above appear as literals.
    """
    hits = hits.to(torch.float32)  # float32 keys even in the float64 parity reference
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


def face_order(hits: Tensor, segment: Tensor) -> Tensor:
    """Permutation sorting hits by (segment, endcap, 2-D Morton code of the face-projected
    position in 1 cm cells, |z| in 1 cm steps, row): a unique key, the same in every backend.
    Bits: segment 13, endcap 1, Morton 18, depth 8, row 20 (60 in all)."""
    hits = hits.to(torch.float32)  # float32 keys even in the float64 parity reference
    abs_z = torch.clamp(hits[:, 2].abs(), min=1.0)
    scale_to_face = 320.0 / abs_z
    qx = torch.clamp(hits[:, 0] * scale_to_face + 170.0, 0.0, 511.0).to(torch.int64)
    qy = torch.clamp(hits[:, 1] * scale_to_face + 170.0, 0.0, 511.0).to(torch.int64)
    qz = torch.clamp(abs_z - 300.0, 0.0, 255.0).to(torch.int64)
    side = (hits[:, 2] < 0.0).to(torch.int64)
    code = torch.zeros_like(qx)
    for bit in range(9):
        code = code + (torch.div(qx, 1 << bit, rounding_mode="floor") % 2) * (1 << (2 * bit))
        code = code + (torch.div(qy, 1 << bit, rounding_mode="floor") % 2) * (1 << (2 * bit + 1))
    row = torch.arange(qx.shape[0], dtype=torch.int64, device=hits.device)
    key = (((segment * 2 + side) * (1 << 18) + code) * (1 << 8) + qz) * (1 << 20) + row
    return torch.argsort(key)


def window_offsets(window: int) -> tuple[int, ...]:
    """Every position within +-window: the candidates of ``sort_order`` networks."""
    return tuple(range(-window, window + 1))


def dilated_offsets(dense: int, reach: int, stride: int) -> tuple[int, ...]:
    """Every position within +-dense, then every ``stride``-th out to +-reach."""
    far = tuple(range(stride * (dense // stride + 1), reach + 1, stride))
    return tuple(-o for o in reversed(far)) + tuple(range(-dense, dense + 1)) + far


class CandidateSearch(nn.Module):
    """k nearest neighbours in a learned space among the hits at fixed ``offsets`` (0
    included) from each hit in the sorted order, same segment only: the neighbour search of
    every GravNet block, written for the CPU.

    Everything runs on rows already sorted (``sort_order`` / ``face_order``), so a candidate
    at offset o of row i is row i + o: the squared distances to all candidates are one
    shifted slice of a padded, feature-major copy of the coordinates per offset (the loop
    over the constant offsets is unrolled in TorchScript and ONNX), never an [N, M, D]
    gather or an int64 [N, M] index. Which candidates exist (inside the event, inside the
    batch) does not depend on the block: ``penalty`` computes that mask once per forward.
    In inference the selected distances are TopK's own values; in training they are
    recomputed with gradients for the k chosen pairs only (the selection itself needs none).
    """

    __constants__ = ("offset_values", "reach")

    offsets: Tensor

    def __init__(self, offsets: tuple[int, ...]) -> None:
        super().__init__()
        if set(offsets) != {-o for o in offsets}:
            raise ValueError("candidate offsets must be symmetric: o and -o")
        self.offset_values = tuple(sorted(offsets, key=lambda o: (abs(o), o)))
        offsets = self.offset_values
        self.reach = max(abs(o) for o in offsets)
        self.register_buffer("offsets", torch.tensor(offsets, dtype=torch.int64), False)

    def penalty(self, segment: Tensor) -> Tensor:
        """float [N, M]: 0 where row i + offsets[m] exists and is in row i's segment (rows
        sorted), else FAR. Added to the squared distances, it rules a candidate out."""
        n = segment.shape[0]
        padded = torch.nn.functional.pad(segment, (self.reach, self.reach), value=-1.0)
        other: list[Tensor] = []
        for o in self.offset_values:
            other.append(padded.narrow(0, self.reach + o, n))
        missing = torch.stack(other, dim=1) != segment.unsqueeze(1)
        return missing.to(torch.float32) * 1.0e30  # FAR

    def forward(self, coords: Tensor, penalty: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
        """(row [N, k] int64, squared distance [N, k], valid [N, k] bool) of the k nearest
        candidates of every sorted row of ``coords`` [N, D], nearest first; ``penalty`` from
        the method of that name. Invalid slots (events smaller than k) have distance FAR and
        point at a row of no consequence (their weight must be zero)."""
        n = coords.shape[0]
        selection = coords.detach().t()
        padded = torch.nn.functional.pad(selection, (self.reach, self.reach))
        # Each pair's distance once: row i's candidate at -o and row i - o's at +o are the same
        # pair, so the one is the other shifted by o rows (offsets come as 0, -1, +1, -2, ...).
        d2: list[Tensor] = []
        ahead = torch.zeros_like(selection[0])
        for o in self.offset_values:
            if o < 0:
                delta = padded.narrow(1, self.reach - o, n) - selection
                ahead = (delta * delta).sum(0)  # d(i, i - o)
                d2.append(torch.nn.functional.pad(ahead, (-o, 0)).narrow(0, 0, n))
            elif o > 0:
                d2.append(ahead)
            else:
                d2.append(torch.zeros_like(ahead))
        distance = torch.stack(d2, dim=0).t() + penalty  # d2 + FAR == FAR exactly
        nearest, slot = torch.topk(distance, k, dim=1, largest=False, sorted=True)
        row = torch.arange(n, dtype=torch.int64, device=coords.device).unsqueeze(1)
        row = torch.clamp(
            row + self.offsets.index_select(0, slot.reshape(-1)).reshape(n, k), 0, n - 1
        )
        valid = nearest < 1.0e29
        if self.training:  # the chosen pairs' distances again, now with gradients
            diff = coords.unsqueeze(1) - coords.index_select(0, row.reshape(-1)).reshape(n, k, -1)
            nearest = torch.where(valid, (diff * diff).sum(-1), nearest)
        return row, nearest, valid

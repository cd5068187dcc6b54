"""Machine-learned particle flow (arXiv:2101.08578): elements in, one candidate per element out.

Input: PF elements, float32 [E, N_ELEMENT_FEATURES] (``recoserve.postprocess.elements``), and
the event index of every element, int64 [E] (zeros for one event). Output per element:

- ``class_logits`` [E, 6] over ``PF_CLASSES`` (none, charged hadron, neutral hadron, photon,
  electron, muon);
- ``regression`` [E, 5]: the candidate's (pt, eta, sin phi, cos phi, energy) in GeV, predicted
  as corrections to the element's own values (pt and energy multiplicative, the rest additive).

The graph layer is the GravNet block of the clustering network: elements are ordered along a
Morton curve of their position at the calorimeter face (a track sits next to the clusters it
points at), and each element gathers its k nearest neighbours in a learned space among the
``window`` elements before and after it. Cost is linear in the number of elements, there is no
maximum element count and no padding, and elements of different events (``segment``) never
interact, so an event gives the same candidates alone or inside a batch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from recoserve.nn.gravnet import GravNetBlock, GravNetConfig
from recoserve.nn.knn import CandidateSearch, sort_order

N_CLASSES = 6
N_REGRESSION = 5
N_NORMALISED_FEATURES = 20
OUTPUT_NAMES = ("class_logits", "regression")


@dataclass(frozen=True)
class MLPFConfig:
    hidden: int = 96
    blocks: int = 3
    space_dims: int = 4
    propagate: int = 32
    k: int = 16
    window: int = 32

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    def graph(self) -> GravNetConfig:
        return GravNetConfig(
            hidden=self.hidden,
            blocks=self.blocks,
            space_dims=self.space_dims,
            propagate=self.propagate,
            k=self.k,
            window=self.window,
        )


def element_features(elements: Tensor) -> Tensor:
    """Normalised features from raw elements (columns as in ``ELEMENT_FEATURES``).

    TorchScript cannot read module globals, so the column numbers are literals here.
    """
    kind = elements[:, 0]
    is_track = (kind == 1.0).to(elements.dtype)
    is_cluster = (kind == 2.0).to(elements.dtype)
    pt = torch.clamp(elements[:, 1], min=1e-2)
    energy = torch.clamp(elements[:, 5], min=1e-2)
    x, y, z = elements[:, 6], elements[:, 7], elements[:, 8]
    face_time = torch.sqrt(x * x + y * y + z * z) / 29.9792458
    time = torch.clamp(elements[:, 12] - face_time, -5.0, 20.0) * is_cluster
    return torch.stack(
        [
            is_track,
            is_cluster,
            torch.log(pt),
            elements[:, 2] / 3.0,
            elements[:, 3],
            elements[:, 4],
            torch.log(energy),
            x / 100.0,
            y / 100.0,
            torch.sign(z),
            elements[:, 9],
            torch.log1p(elements[:, 10]) / 3.0,
            torch.log1p(elements[:, 11]),
            time / 2.0,
            elements[:, 13],
            elements[:, 14],
            elements[:, 15],
            elements[:, 16] / 5.0,
            elements[:, 17] / 50.0,
            elements[:, 18],
        ],
        dim=1,
    )


class MLPF(nn.Module):
    """GravNet-style MLPF (see module docstring)."""

    def __init__(self, config: MLPFConfig | None = None) -> None:
        super().__init__()
        self.config = config or MLPFConfig()
        cfg = self.config
        graph = cfg.graph()
        self.inputs = nn.Sequential(
            nn.Linear(N_NORMALISED_FEATURES, cfg.hidden),
            nn.ELU(),
            nn.Linear(cfg.hidden, cfg.hidden),
            nn.ELU(),
        )
        self.blocks = nn.ModuleList([GravNetBlock(cfg.hidden, graph) for _ in range(cfg.blocks)])
        self.candidate_search = CandidateSearch(graph.offsets())
        width = cfg.hidden * (cfg.blocks + 1)
        self.class_head = nn.Sequential(
            nn.Linear(width, 128), nn.ELU(), nn.Linear(128, 64), nn.ELU(), nn.Linear(64, N_CLASSES)
        )
        self.regression_head = nn.Sequential(
            nn.Linear(width + N_CLASSES, 128),
            nn.ELU(),
            nn.Linear(128, 64),
            nn.ELU(),
            nn.Linear(64, N_REGRESSION),
        )

    def forward(self, elements: Tensor, segment: Tensor) -> tuple[Tensor, Tensor]:
        features = element_features(elements)
        order = sort_order(elements[:, 6:9], segment)
        h = self.inputs(features).index_select(0, order)
        penalty = self.candidate_search.penalty(segment.index_select(0, order))  # once, all blocks
        outputs: list[Tensor] = [h]
        for block in self.blocks:
            h = block(h, penalty)
            outputs.append(h)
        trunk = torch.cat(outputs, dim=1)
        class_logits = self.class_head(trunk)
        delta = self.regression_head(torch.cat([trunk, class_logits], dim=1))
        inverse = torch.argsort(order)  # back to the elements' order
        class_logits, delta = class_logits.index_select(0, inverse), delta.index_select(0, inverse)
        pt = torch.clamp(elements[:, 1], min=1e-2) * torch.exp(torch.clamp(delta[:, 0], -6.0, 3.0))
        eta = elements[:, 2] + delta[:, 1]
        sin_phi = elements[:, 3] + delta[:, 2]
        cos_phi = elements[:, 4] + delta[:, 3]
        energy = torch.clamp(elements[:, 5], min=1e-2) * torch.exp(
            torch.clamp(delta[:, 4], -6.0, 3.0)
        )
        regression = torch.stack([pt, eta, sin_phi, cos_phi, energy], dim=1)
        return class_logits, regression

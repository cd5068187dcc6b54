"""GravNet with object-condensation heads (arXiv:1902.07987, arXiv:2002.03605).

The model takes raw hits, float32 [N, 5] = (x, y, z, energy, time) in cm, GeV, ns, plus the
event index of every hit (int64 [N], all zeros for a single event), and returns per hit:

- ``beta`` [N]: condensation strength in (0, 1) — high at one hit per shower, low for noise;
- ``ccoords`` [N, C]: coordinates in the clustering space (hits of a shower gather there);
- ``energy_factor`` [N]: shower energy / sum of its hit energies, read at the condensation point;
- ``position`` [N, 2]: the shower's entry point at the calorimeter face (x, y), cm;
- ``time`` [N]: the shower's arrival time at the face, ns;
- ``class_logits`` [N, 3]: electromagnetic, hadronic, minimum-ionising.

Input normalisation is part of the model, so the served model takes the raw HITS tensor.

TorchScript cannot read module-level constants, so Z_FRONT (320 cm) and the speed of light
(29.98 cm/ns) appear as literals inside ``forward``; and this module has no
``from __future__ import annotations``, because TorchScript must read the buffers' class-level
annotations as types, not strings.
"""

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from recoserve.nn.knn import (
    CandidateSearch,
    dilated_offsets,
    face_order,
    sort_order,
    window_offsets,
)
from recoserve.sim.geometry import HEX_AREA, N_EE, TILE_DETA, TILE_NPHI, Geometry

N_CLASSES = 3
N_RAW_FEATURES = 9
N_DETECTOR_FEATURES = N_RAW_FEATURES + 7


@dataclass(frozen=True)
class GravNetConfig:
    """Architecture. The defaults are those of the first networks, so that their checkpoints
    (whose configs predate ``inputs`` and ``candidates``) load unchanged; ``current()`` is what
    training uses now."""

    hidden: int = 64
    blocks: int = 3
    space_dims: int = 4  # learned coordinates for the neighbour search
    propagate: int = 32  # features sent to neighbours
    k: int = 16
    window: int = 48  # "window" candidates: +-window hits along the Morton order
    cluster_dims: int = 3
    inputs: str = "raw"  # "raw": position, energy, time; "detector": + depth, cell, MIPs
    candidates: str = "window"  # "window" (Morton order) or "dilated" (face order)
    dense: int = 16  # "dilated" candidates: every hit within +-dense ...
    reach: int = 256  # ... then every stride-th out to +-reach
    stride: int = 8

    def to_dict(self) -> dict[str, int | str]:
        return asdict(self)

    @staticmethod
    def current() -> "GravNetConfig":
        return GravNetConfig(inputs="detector", candidates="dilated")

    def offsets(self) -> tuple[int, ...]:
        if self.candidates == "window":
            return window_offsets(self.window)
        if self.candidates == "dilated":
            return dilated_offsets(self.dense, self.reach, self.stride)
        raise ValueError(f"unknown candidates {self.candidates!r}: window or dilated")


def hit_features(hits: Tensor) -> Tensor:
    """Normalised per-hit features from raw (x, y, z, energy, time)."""
    x, y, z, e, t = hits[:, 0], hits[:, 1], hits[:, 2], hits[:, 3], hits[:, 4]
    abs_z = z.abs()
    rho = torch.sqrt(x * x + y * y)
    dist = torch.sqrt(rho * rho + z * z)
    t_corr = torch.clamp(t - dist / 29.9792458, -5.0, 20.0)  # time after light-speed arrival
    log_e = torch.log(torch.clamp(e, min=1e-4) / 1e-3)
    return torch.stack(
        [
            x / 100.0,
            y / 100.0,
            (abs_z - 400.0) / 60.0,
            torch.sign(z),
            rho / 100.0,
            torch.log(abs_z / torch.clamp(rho, min=1.0)),  # ~ -ln(tan(theta/2)) proxy
            log_e / 5.0,
            t_corr / 2.0,
            e,
        ],
        dim=1,
    )


class DetectorFeatures(nn.Module):
    """What a physicist adds to (x, y, z, E, t): the layer's depth in X0 and lambda, the cell
    type and log area, and the energy in MIPs of that layer. Layer constants come from the
    detector geometry as non-persistent buffers (exported as constants, not in checkpoints)."""

    z_mid: torch.Tensor
    depth_x0: torch.Tensor
    depth_lambda: torch.Tensor
    mip: torch.Tensor
    fine_r_max: torch.Tensor
    silicon_r_max: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        geometry = Geometry()
        layers = geometry.layers
        as_tensor = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
        self.register_buffer("z_mid", as_tensor(0.5 * (layers.z[1:] + layers.z[:-1])), False)
        self.register_buffer("depth_x0", as_tensor(geometry.depth_x0), False)
        self.register_buffer("depth_lambda", as_tensor(geometry.depth_lambda), False)
        self.register_buffer("mip", as_tensor(layers.mip), False)
        self.register_buffer("fine_r_max", as_tensor(layers.fine_r_max), False)
        self.register_buffer("silicon_r_max", as_tensor(layers.silicon_r_max), False)
        self.n_ee = N_EE
        self.fine_area = HEX_AREA[0]
        self.coarse_area = HEX_AREA[1]
        self.tile_dphi_deta = 2.0 * 3.141592653589793 / TILE_NPHI * TILE_DETA

    def forward(self, hits: Tensor) -> Tensor:
        x, y, z, e = hits[:, 0], hits[:, 1], hits[:, 2], hits[:, 3]
        abs_z = z.abs()
        layer = (abs_z.unsqueeze(1) > self.z_mid.unsqueeze(0)).to(torch.int64).sum(1)
        rho = torch.sqrt(x * x + y * y)
        ee = layer < self.n_ee
        fine = ee & (rho < self.fine_r_max.index_select(0, layer))
        tile = (~ee) & (rho >= self.silicon_r_max.index_select(0, layer))
        coarse = ~(fine | tile)
        # A tile spans d_phi x d_eta: area = rho d_phi * rho coth(eta) d_eta
        tile_area = rho * torch.sqrt(rho * rho + abs_z * abs_z) / abs_z * rho
        tile_area = tile_area * self.tile_dphi_deta
        area = torch.where(
            fine,
            torch.full_like(rho, self.fine_area),
            torch.where(tile, tile_area, torch.full_like(rho, self.coarse_area)),
        )
        mips = torch.clamp(e, min=1e-5) / self.mip.index_select(0, layer)
        return torch.stack(
            [
                self.depth_x0.index_select(0, layer) / 50.0,
                self.depth_lambda.index_select(0, layer) / 5.0,
                fine.to(hits.dtype),
                coarse.to(hits.dtype),
                tile.to(hits.dtype),
                torch.log(torch.clamp(area, min=0.1)) / 2.0,
                torch.log(mips) / 3.0,
            ],
            dim=1,
        )


class GravNetBlock(nn.Module):
    """Dense -> learned space + propagated features -> kNN aggregation (mean, max) -> dense.

    Rows arrive sorted (``sort_order`` / ``face_order`` of the raw inputs), with ``penalty``
    from ``CandidateSearch.penalty``: the network sorts once per forward, not every block,
    and since every other layer works row by row it only puts its outputs back in order."""

    __constants__ = ("k",)  # the loop over neighbour slots is unrolled in the exported graph

    def __init__(self, n_in: int, config: GravNetConfig) -> None:
        super().__init__()
        self.k = config.k
        self.search = CandidateSearch(config.offsets())
        self.pre = nn.Sequential(nn.Linear(n_in, config.hidden), nn.ELU())
        self.space = nn.Linear(config.hidden, config.space_dims)
        self.propagate = nn.Linear(config.hidden, config.propagate)
        self.post = nn.Sequential(
            nn.Linear(config.hidden + 2 * config.propagate, config.hidden),
            nn.ELU(),
            nn.Linear(config.hidden, config.hidden),
            nn.ELU(),
        )
        self.norm = nn.LayerNorm(config.hidden)

    def forward(self, features: Tensor, penalty: Tensor) -> Tensor:
        h = self.pre(features)
        coords = self.space(h)
        prop = self.propagate(h)
        # k + 1 neighbours: the weights are measured from the (k+1)-th one, so a neighbour fades
        # to zero weight as it reaches the edge of the neighbourhood. The aggregation is then a
        # continuous function of the learned coordinates: two candidates at (almost) the same
        # distance at the edge, which 1e-7 differences between backends may swap, both weigh ~0.
        index, d2, valid = self.search(coords, penalty, self.k + 1)
        edge = torch.exp(-10.0 * d2[:, self.k :])
        weight = (torch.exp(-10.0 * d2[:, : self.k]) - edge).clamp(min=0.0)
        weight = weight * valid[:, : self.k].to(d2.dtype)
        # One neighbour slot at a time: [N, P] temporaries instead of an [N, k, P] gather (at
        # 186k hits: 800 MB peak instead of 1,370 MB; measured, docs/clustering.md).
        index, weight = index.t().contiguous(), weight.t().unsqueeze(2).contiguous()
        weighted = prop.index_select(0, index[0]) * weight[0]
        total, maximum = weighted, weighted
        for slot in range(1, self.k):
            weighted = prop.index_select(0, index[slot]) * weight[slot]
            total = total + weighted
            maximum = torch.maximum(maximum, weighted)
        mean = total / self.k
        return self.norm(self.post(torch.cat([h, mean, maximum], dim=1)))


class GravNetOC(nn.Module):
    """GravNet blocks and object-condensation output heads (see module docstring)."""

    def __init__(self, config: GravNetConfig | None = None) -> None:
        super().__init__()
        self.config = config or GravNetConfig()
        cfg = self.config
        if cfg.inputs not in ("raw", "detector"):
            raise ValueError(f"unknown inputs {cfg.inputs!r}: raw or detector")
        self.detector = cfg.inputs == "detector"
        self.face_order = cfg.candidates == "dilated"
        self.detector_features = DetectorFeatures()
        n_features = N_DETECTOR_FEATURES if self.detector else N_RAW_FEATURES
        self.inputs = nn.Sequential(nn.Linear(n_features, cfg.hidden), nn.ELU())
        self.blocks = nn.ModuleList([GravNetBlock(cfg.hidden, cfg) for _ in range(cfg.blocks)])
        self.candidate_search = CandidateSearch(cfg.offsets())
        self.trunk = nn.Sequential(
            nn.Linear(cfg.hidden * cfg.blocks, 128),
            nn.ELU(),
            nn.Linear(128, 64),
            nn.ELU(),
        )
        self.beta_head = nn.Linear(64, 1)
        self.cluster_head = nn.Linear(64, cfg.cluster_dims)
        self.energy_head = nn.Linear(64, 1)
        self.position_head = nn.Linear(64, 2)
        self.time_head = nn.Linear(64, 1)
        self.class_head = nn.Linear(64, N_CLASSES)

    def forward(
        self, hits: Tensor, segment: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        features = hit_features(hits)
        if self.detector:
            features = torch.cat([features, self.detector_features(hits)], dim=1)
        order = face_order(hits, segment) if self.face_order else sort_order(hits, segment)
        h = self.inputs(features).index_select(0, order)
        penalty = self.candidate_search.penalty(segment.index_select(0, order))  # once, all blocks
        outputs: list[Tensor] = []
        for block in self.blocks:
            h = block(h, penalty)
            outputs.append(h)
        trunk = self.trunk(torch.cat(outputs, dim=1)).index_select(0, torch.argsort(order))
        beta = torch.sigmoid(self.beta_head(trunk)).squeeze(1)
        ccoords = self.cluster_head(trunk)
        energy_factor = 1.0 + self.energy_head(trunk).squeeze(1)
        # Position: offset (in 10 cm) from the hit projected back to the face along its line of
        # sight from the origin.
        face_scale = 320.0 / torch.clamp(hits[:, 2].abs(), min=1.0)  # Z_FRONT
        projected = hits[:, :2] * face_scale.unsqueeze(1)
        position = projected + 10.0 * self.position_head(trunk)
        face_distance = torch.sqrt((projected * projected).sum(1) + 320.0 * 320.0)
        time = face_distance / 29.9792458 + self.time_head(trunk).squeeze(1)  # c in cm/ns
        class_logits = self.class_head(trunk)
        return beta, ccoords, energy_factor, position, time, class_logits


OUTPUT_NAMES = ("beta", "ccoords", "energy_factor", "position", "time", "class_logits")

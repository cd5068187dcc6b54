"""HGCal-like endcap calorimeter geometry: layers, materials and cells.

Two endcaps (z > 0 and z < 0), each with 50 sampling layers between z = 320 and 520 cm:

* CE-E, layers 0-25: tungsten/copper/lead absorbers of about 1 X0, silicon sensors with
  hexagonal cells: fine cells (0.52 cm2) at small radius, coarse cells (1.18 cm2) further out.
* CE-H, layers 26-49: steel absorbers (thin, then thick), silicon with coarse cells at small
  radius and scintillator tiles segmented in eta and phi at large radius.

The geometry is deliberately irregular: the hexagonal grids are rotated and shifted from layer to
layer, the fine/coarse boundary and the silicon/scintillator boundary move with depth, and the
tile grid is staggered in phi. A point belongs to the first cell, in the order fine hexagon,
coarse hexagon, tile, whose own centre lies inside that cell type's region; points that belong to
none fall in dead gaps (as between real wafers) and are lost.

Cell ids are int64: ``side | layer | type | u | v`` (see ``encode_cell_id``); a hit sits at the
centre of its cell, so ``locate(hit) == hit.cell_id`` and ``cell_center(cell_id) == hit``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

Z_FRONT = 320.0  # cm: calorimeter face
ETA_MIN, ETA_MAX = 1.5, 3.0  # physics acceptance
ETA_SENSOR_MIN, ETA_SENSOR_MAX = 1.45, 3.05  # sensitive area extends a little beyond

N_EE, N_EH = 26, 24
N_LAYERS = N_EE + N_EH

FINE, COARSE, TILE = 0, 1, 2
CELL_TYPE_NAMES = ("silicon-fine", "silicon-coarse", "scintillator")
HEX_AREA = {FINE: 0.52, COARSE: 1.18}  # cm2
SQRT3 = np.sqrt(3.0)

TILE_DETA = 0.025
TILE_NPHI = 288

_UV_BITS = 20
_UV_OFFSET = 1 << (_UV_BITS - 1)
_UV_MASK = (1 << _UV_BITS) - 1


def hex_side(area: float) -> float:
    """Side length of a regular hexagon of the given area."""
    return float(np.sqrt(area / (1.5 * SQRT3)))


@dataclass(frozen=True)
class LayerTable:
    """Per-layer constants as arrays indexed by layer number (vectorised lookups)."""

    z: np.ndarray  # |z| of the sensitive plane, cm
    x0: np.ndarray  # absorber in front of the layer, radiation lengths (normal incidence)
    lambda_i: np.ndarray  # absorber in front of the layer, interaction lengths
    mip: np.ndarray  # calibrated energy of a minimum-ionising particle, GeV
    r_min: np.ndarray  # sensitive inner radius, cm
    r_max: np.ndarray  # sensitive outer radius, cm
    fine_r_max: np.ndarray  # fine silicon for r < this
    silicon_r_max: np.ndarray  # silicon for r < this, scintillator beyond (CE-H)
    tile_eta_bins: np.ndarray  # number of tile eta bins (from ETA_SENSOR_MIN up), 0 in CE-E
    grid_angle: np.ndarray  # rotation of the hexagonal grid, rad
    grid_dx: np.ndarray
    grid_dy: np.ndarray
    tile_phi0: np.ndarray  # phi of the first tile edge, rad


def _build_layers() -> LayerTable:
    layer = np.arange(N_LAYERS)
    ee = layer < N_EE
    # Absorber per layer (normal incidence). CE-E alternates thinner and thicker cassettes.
    x0 = np.where(layer % 2 == 0, 0.92, 1.18)[:N_EE].astype(float)
    x0[0] = 1.5  # front material (tracker services, cryostat) counted in the first layer
    eh = np.arange(N_EH)
    steel_cm = np.where(eh < 12, 3.5, 6.8)
    steel_cm = steel_cm + 1.2  # copper cooling plates and sensors
    x0 = np.concatenate([x0, steel_cm / 1.76])
    lam = np.concatenate([np.full(N_EE, 0.052), steel_cm / 16.8])
    lam[0] += 0.15
    dz = np.concatenate([np.full(N_EE, 1.55), np.where(eh < 12, 5.3, 7.65)])
    dz[N_EE] = 4.2  # gap between CE-E and CE-H
    z = Z_FRONT + 1.2 + np.cumsum(dz) - dz[0]
    # MIP: ~8 MeV per X0 in the CE-E, ~11.4 MeV per cm of steel in the CE-H (EM scale).
    mip = np.where(ee, 0.008 * np.pad(x0[:N_EE], (0, N_EH)), 0.0114 * np.pad(steel_cm, (N_EE, 0)))
    r_min = z / np.sinh(ETA_SENSOR_MAX)
    r_max = z / np.sinh(ETA_SENSOR_MIN)
    # Fine cells at small radius; the boundary wanders with depth (irregular by design).
    fine_r_max = np.where(ee, 62.0 + 8.0 * np.sin(layer * 0.9), r_min)
    # CE-H: silicon out to a tile eta edge that moves from 1.70 to 2.00 with depth.
    tile_bins = np.where(ee, 0, np.round(10 + 12 * (layer - N_EE) / (N_EH - 1))).astype(int)
    eta_boundary = ETA_SENSOR_MIN + TILE_DETA * tile_bins
    silicon_r_max = np.where(ee, r_max, z / np.sinh(eta_boundary))
    grid_angle = np.deg2rad((layer * 7.0) % 60.0)
    grid_dx = 0.37 * np.sin(layer * 1.7)
    grid_dy = 0.29 * np.cos(layer * 2.3)
    tile_phi0 = np.where(layer % 2 == 0, 0.0, 0.5) * 2 * np.pi / TILE_NPHI
    return LayerTable(
        z=z,
        x0=x0,
        lambda_i=lam,
        mip=mip,
        r_min=r_min,
        r_max=r_max,
        fine_r_max=fine_r_max,
        silicon_r_max=silicon_r_max,
        tile_eta_bins=tile_bins,
        grid_angle=grid_angle,
        grid_dx=grid_dx,
        grid_dy=grid_dy,
        tile_phi0=tile_phi0,
    )


def encode_cell_id(
    side: np.ndarray, layer: np.ndarray, cell_type: np.ndarray, u: np.ndarray, v: np.ndarray
) -> np.ndarray:
    """Pack (side 0/1 for z>0/z<0, layer, type, u, v) into one int64 per cell."""
    head = (side.astype(np.int64) * 64 + layer.astype(np.int64)) * 4 + cell_type.astype(np.int64)
    return (
        (head << (2 * _UV_BITS))
        | ((u.astype(np.int64) + _UV_OFFSET) << _UV_BITS)
        | (v.astype(np.int64) + _UV_OFFSET)
    )


def decode_cell_id(
    cell_id: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Inverse of ``encode_cell_id``: (side, layer, type, u, v)."""
    cell_id = np.asarray(cell_id, dtype=np.int64)
    v = (cell_id & _UV_MASK) - _UV_OFFSET
    u = ((cell_id >> _UV_BITS) & _UV_MASK) - _UV_OFFSET
    head = cell_id >> (2 * _UV_BITS)
    return head // 256, (head // 4) % 64, head % 4, u, v


class Geometry:
    """The detector: layer constants, point-to-cell lookup and cell centres."""

    def __init__(self) -> None:
        self.layers = _build_layers()
        self.hex_side = {FINE: hex_side(HEX_AREA[FINE]), COARSE: hex_side(HEX_AREA[COARSE])}

    # -- material ------------------------------------------------------------------------------
    @cached_property
    def depth_x0(self) -> np.ndarray:
        """Cumulative radiation lengths from the face to each sensitive plane."""
        return np.cumsum(self.layers.x0)

    @cached_property
    def depth_lambda(self) -> np.ndarray:
        """Cumulative interaction lengths from the face to each sensitive plane."""
        return np.cumsum(self.layers.lambda_i)

    def layer_at_depth(self, depth: np.ndarray, unit: str = "x0") -> np.ndarray:
        """Layer whose absorber contains the given normal depth; N_LAYERS means it leaked."""
        cumulative = self.depth_x0 if unit == "x0" else self.depth_lambda
        return np.searchsorted(cumulative, depth, side="left")

    def z_to_depth(self, abs_z: np.ndarray, unit: str = "x0") -> np.ndarray:
        """Normal material depth in front of |z| (piecewise linear inside absorbers)."""
        cumulative = self.depth_x0 if unit == "x0" else self.depth_lambda
        zs = np.concatenate([[Z_FRONT], self.layers.z])
        return np.interp(abs_z, zs, np.concatenate([[0.0], cumulative]))

    def depth_to_z(self, depth: np.ndarray, unit: str = "x0") -> np.ndarray:
        cumulative = self.depth_x0 if unit == "x0" else self.depth_lambda
        zs = np.concatenate([[Z_FRONT], self.layers.z])
        return np.interp(depth, np.concatenate([[0.0], cumulative]), zs)

    # -- cells ---------------------------------------------------------------------------------
    def _to_grid(
        self, x: np.ndarray, y: np.ndarray, layer: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        lay = self.layers
        c, s = np.cos(lay.grid_angle[layer]), np.sin(lay.grid_angle[layer])
        dx, dy = x - lay.grid_dx[layer], y - lay.grid_dy[layer]
        return c * dx + s * dy, -s * dx + c * dy

    def _from_grid(
        self, gx: np.ndarray, gy: np.ndarray, layer: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        lay = self.layers
        c, s = np.cos(lay.grid_angle[layer]), np.sin(lay.grid_angle[layer])
        return c * gx - s * gy + lay.grid_dx[layer], s * gx + c * gy + lay.grid_dy[layer]

    @staticmethod
    def _hex_round(gx: np.ndarray, gy: np.ndarray, side: float) -> tuple[np.ndarray, np.ndarray]:
        """Axial coordinates (q, r) of the pointy-top hexagon containing each point."""
        qf = (SQRT3 / 3 * gx - gy / 3) / side
        rf = (2 / 3 * gy) / side
        sf = -qf - rf
        q, r, s = np.round(qf), np.round(rf), np.round(sf)
        dq, dr, ds = np.abs(q - qf), np.abs(r - rf), np.abs(s - sf)
        fix_q = (dq > dr) & (dq > ds)
        fix_r = ~fix_q & (dr > ds)
        q = np.where(fix_q, -r - s, q)
        r = np.where(fix_r, -q - s, r)
        return q.astype(np.int64), r.astype(np.int64)

    def _hex_center(
        self, q: np.ndarray, r: np.ndarray, layer: np.ndarray, cell_type: int
    ) -> tuple[np.ndarray, np.ndarray]:
        side = self.hex_side[cell_type]
        gx = side * SQRT3 * (q + r / 2.0)
        gy = side * 1.5 * r
        return self._from_grid(gx, gy, layer)

    def _tile_center(
        self, ieta: np.ndarray, iphi: np.ndarray, layer: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        eta = ETA_SENSOR_MIN + (ieta + 0.5) * TILE_DETA
        phi = self.layers.tile_phi0[layer] + (iphi + 0.5) * (2 * np.pi / TILE_NPHI)
        rho = self.layers.z[layer] / np.sinh(eta)
        return rho * np.cos(phi), rho * np.sin(phi)

    def _in_type_region(self, rho: np.ndarray, layer: np.ndarray, cell_type: int) -> np.ndarray:
        lay = self.layers
        inside = (rho >= lay.r_min[layer]) & (rho < lay.r_max[layer])
        if cell_type == FINE:
            return inside & (rho < lay.fine_r_max[layer])
        if cell_type == COARSE:
            return inside & (rho >= lay.fine_r_max[layer]) & (rho < lay.silicon_r_max[layer])
        return inside & (rho >= lay.silicon_r_max[layer])

    def _candidate(
        self, x: np.ndarray, y: np.ndarray, layer: np.ndarray, cell_type: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(u, v, centre x, centre y) of the cell of one type whose outline contains each point."""
        if cell_type == TILE:
            rho = np.hypot(x, y)
            eta = np.arcsinh(self.layers.z[layer] / np.maximum(rho, 1e-9))
            u = np.floor((eta - ETA_SENSOR_MIN) / TILE_DETA).astype(np.int64)
            phi = np.mod(np.arctan2(y, x) - self.layers.tile_phi0[layer], 2 * np.pi)
            v = np.minimum(np.floor(phi / (2 * np.pi / TILE_NPHI)).astype(np.int64), TILE_NPHI - 1)
            cx, cy = self._tile_center(u, v, layer)
            return u, v, cx, cy
        gx, gy = self._to_grid(x, y, layer)
        u, v = self._hex_round(gx, gy, self.hex_side[cell_type])
        cx, cy = self._hex_center(u, v, layer, cell_type)
        return u, v, cx, cy

    def _exists(
        self, cell_type: int, u: np.ndarray, cx: np.ndarray, cy: np.ndarray, layer: np.ndarray
    ) -> np.ndarray:
        """A cell exists if its centre lies in its type's region and no cell of a type that
        comes earlier (fine, then coarse, then tile) claims that centre. This makes the cells a
        partition in which every cell's centre belongs to the cell itself."""
        ok = self._in_type_region(np.hypot(cx, cy), layer, cell_type)
        if cell_type == TILE:
            ok &= (u >= 0) & (u < self.layers.tile_eta_bins[layer])
        for earlier in range(cell_type):
            if not ok.any():
                break
            idx = np.flatnonzero(ok)
            eu, _, ex, ey = self._candidate(cx[idx], cy[idx], layer[idx], earlier)
            ok[idx] &= ~self._exists(earlier, eu, ex, ey, layer[idx])
        return ok

    def locate(
        self, x: np.ndarray, y: np.ndarray, layer: np.ndarray, side: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cell id and cell centre (x, y) of each point; id -1 (centre NaN) in dead areas.

        ``side`` is 0 for the z > 0 endcap and 1 for z < 0; both have the same x-y layout.
        """
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        layer = np.asarray(layer, dtype=np.int64)
        side = np.asarray(side, dtype=np.int64)
        n = len(x)
        cell_id = np.full(n, -1, dtype=np.int64)
        cx = np.full(n, np.nan)
        cy = np.full(n, np.nan)
        todo = np.arange(n)
        for cell_type in (FINE, COARSE, TILE):
            if len(todo) == 0:
                break
            lay = layer[todo]
            u, v, hx, hy = self._candidate(x[todo], y[todo], lay, cell_type)
            ok = self._exists(cell_type, u, hx, hy, lay)
            hit = todo[ok]
            cell_id[hit] = encode_cell_id(
                side[hit], lay[ok], np.full(len(hit), cell_type), u[ok], v[ok]
            )
            cx[hit], cy[hit] = hx[ok], hy[ok]
            todo = todo[~ok]
        return cell_id, cx, cy

    def cell_center(self, cell_id: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(x, y, z) of the centre of each cell."""
        side, layer, cell_type, u, v = decode_cell_id(cell_id)
        x = np.empty(len(side))
        y = np.empty(len(side))
        for t in (FINE, COARSE):
            m = cell_type == t
            x[m], y[m] = self._hex_center(u[m], v[m], layer[m], t)
        m = cell_type == TILE
        x[m], y[m] = self._tile_center(u[m], v[m], layer[m])
        z = np.where(side == 0, 1.0, -1.0) * self.layers.z[layer]
        return x, y, z

    def cell_contains(self, cell_id: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Whether each point lies inside the outline of its cell (hexagon or eta-phi tile)."""
        _, layer, cell_type, u, v = decode_cell_id(cell_id)
        inside = np.zeros(len(cell_id), dtype=bool)
        gx, gy = self._to_grid(np.asarray(x, float), np.asarray(y, float), layer)
        for t in (FINE, COARSE):
            m = cell_type == t
            q, r = self._hex_round(gx[m], gy[m], self.hex_side[t])
            inside[m] = (q == u[m]) & (r == v[m])
        m = cell_type == TILE
        rho = np.hypot(x[m], y[m])
        eta = np.arcsinh(self.layers.z[layer[m]] / rho)
        phi = np.mod(np.arctan2(y[m], x[m]) - self.layers.tile_phi0[layer[m]], 2 * np.pi)
        inside[m] = (np.floor((eta - ETA_SENSOR_MIN) / TILE_DETA) == u[m]) & (
            np.floor(phi / (2 * np.pi / TILE_NPHI)) == v[m]
        )
        return inside

    def cell_is_valid(self, cell_id: np.ndarray) -> np.ndarray:
        """Whether each id names a cell that exists (see ``_exists``)."""
        side, layer, cell_type, u, v = decode_cell_id(cell_id)
        valid = (side <= 1) & (layer < N_LAYERS) & (cell_type <= TILE)
        tiles = valid & (cell_type == TILE)
        valid[tiles] &= (v[tiles] >= 0) & (v[tiles] < TILE_NPHI)
        idx = np.flatnonzero(valid)
        x, y, _ = self.cell_center(np.asarray(cell_id)[idx])
        for t in (FINE, COARSE, TILE):
            m = cell_type[idx] == t
            valid[idx[m]] = self._exists(t, u[idx[m]], x[m], y[m], layer[idx[m]])
        return valid

    # -- bookkeeping ---------------------------------------------------------------------------
    def cells_per_layer(self) -> np.ndarray:
        """Approximate number of cells of each type per layer and side: int [N_LAYERS, 3]."""
        lay = self.layers
        counts = np.zeros((N_LAYERS, 3))
        fine_outer = np.clip(lay.fine_r_max, lay.r_min, lay.r_max)
        si_outer = np.clip(lay.silicon_r_max, lay.r_min, lay.r_max)
        counts[:, FINE] = np.pi * (fine_outer**2 - lay.r_min**2) / HEX_AREA[FINE]
        counts[:, COARSE] = np.pi * (si_outer**2 - fine_outer**2) / HEX_AREA[COARSE]
        counts[:, TILE] = lay.tile_eta_bins * TILE_NPHI
        return np.round(counts).astype(np.int64)

    def type_annulus(self, layer: int, cell_type: int) -> tuple[float, float]:
        """Inner and outer radius of a cell type's region in a layer."""
        lay = self.layers
        edges = [
            lay.r_min[layer],
            min(lay.fine_r_max[layer], lay.r_max[layer]),
            min(lay.silicon_r_max[layer], lay.r_max[layer]),
            lay.r_max[layer],
        ]
        edges = list(np.maximum.accumulate(edges))
        return float(edges[cell_type]), float(edges[cell_type + 1])

    def section(self, layer: np.ndarray) -> np.ndarray:
        return np.where(np.asarray(layer) < N_EE, "CE-E", "CE-H")


GEOMETRY = Geometry()


def layer_rows(geometry: Geometry) -> list[dict[str, str]]:
    """One row of human-readable constants per layer (for `recoserve geometry` and docs)."""
    lay = geometry.layers
    cells = geometry.cells_per_layer()
    rows = []
    for i in range(N_LAYERS):
        rows.append(
            {
                "layer": str(i),
                "section": "CE-E" if i < N_EE else "CE-H",
                "z [cm]": f"{lay.z[i]:.2f}",
                "X0": f"{lay.x0[i]:.2f}",
                "lambda": f"{lay.lambda_i[i]:.3f}",
                "sum X0": f"{geometry.depth_x0[i]:.1f}",
                "sum lambda": f"{geometry.depth_lambda[i]:.2f}",
                "MIP [MeV]": f"{1000 * lay.mip[i]:.1f}",
                "r [cm]": f"{lay.r_min[i]:.1f}-{lay.r_max[i]:.1f}",
                "fine Si r <": f"{lay.fine_r_max[i]:.1f}" if i < N_EE else "-",
                "Si / scint r": f"{lay.silicon_r_max[i]:.1f}" if i >= N_EE else "-",
                "cells fine/coarse/tile": "/".join(str(c) for c in cells[i]),
            }
        )
    return rows

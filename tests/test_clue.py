"""CLUE on hand-built hits placed in real cells of the geometry."""

from __future__ import annotations

import numpy as np

from recoserve.baselines.clue import ClueParams, clue
from recoserve.events.model import Hits
from recoserve.sim.geometry import GEOMETRY, decode_cell_id, encode_cell_id

Point = tuple[float, float, int, float]


def make_hits(points: list[Point], cells: list[int] | None = None) -> Hits:
    """Hits (z > 0) at the cells containing (x, y, layer), or at the given cells, with energies."""
    layer = np.array([p[2] for p in points])
    if cells is None:
        x = np.array([p[0] for p in points])
        y = np.array([p[1] for p in points])
        cell, _, _ = GEOMETRY.locate(x, y, layer, np.zeros(len(points), dtype=int))
    else:
        cell = np.array(cells, dtype=np.int64)
    assert np.all(GEOMETRY.cell_is_valid(cell)) and len(np.unique(cell)) == len(cell)
    cx, cy, z = GEOMETRY.cell_center(cell)
    n = len(points)
    return Hits(x=cx, y=cy, z=z, energy=[p[3] for p in points], time=np.zeros(n), layer=layer,
                cell_id=cell, truth_particle=np.zeros(n), truth_fraction=np.ones(n),
                true_energy=np.zeros(n))  # fmt: skip


def blob(x0: float, y0: float, layer: int, energy: float) -> tuple[list[Point], list[int]]:
    """The cell at (x0, y0) with ``energy`` and its six hexagonal neighbours with energy / 4."""
    cell, _, _ = GEOMETRY.locate(
        np.array([x0]), np.array([y0]), np.array([layer]), np.zeros(1, int)
    )
    side, lay, kind, u, v = decode_cell_id(cell)
    steps = [(0, 0), (1, 0), (-1, 0), (0, 1), (0, -1), (1, -1), (-1, 1)]
    ids = [int(encode_cell_id(side, lay, kind, u + du, v + dv)[0]) for du, dv in steps]
    points = [(x0, y0, layer, energy)] + [(x0, y0, layer, energy / 4)] * 6
    return points, ids


def blobs(*specs: tuple[float, float, int, float]) -> Hits:
    points: list[Point] = []
    cells: list[int] = []
    for spec in specs:
        p, c = blob(*spec)
        points += p
        cells += c
    return make_hits(points, cells)


def test_two_blobs_in_a_layer_are_two_layer_clusters() -> None:
    hits = blobs((45.0, 0.0, 5, 1.0), (45.0, 10.0, 5, 1.0))
    result = clue(hits)
    assert len(np.unique(result.layer_cluster[:7])) == 1
    assert len(np.unique(result.layer_cluster[7:])) == 1
    assert result.layer_cluster[0] != result.layer_cluster[7]


def test_isolated_soft_hit_is_an_outlier_and_below_ecut_is_ignored() -> None:
    soft = 0.006  # 5 sigma noise: above ecut (3 sigma), below the seed density kappa * sigma
    tiny = 0.001  # below ecut = 3 sigma
    core, cells = blob(45.0, 0.0, 5, 1.0)
    extra = make_hits([(45.0, 20.0, 5, soft), (45.0, -20.0, 5, tiny)])
    hits = make_hits([*core, (45.0, 20.0, 5, soft), (45.0, -20.0, 5, tiny)],
                     [*cells, *extra.cell_id.tolist()])  # fmt: skip
    result = clue(hits)
    assert len(np.unique(result.layer_cluster[:7])) == 1 and result.layer_cluster[0] >= 0
    assert result.layer_cluster[7] == -1 and result.layer_cluster[8] == -1
    assert result.hit_cluster[7] == -1 and result.hit_cluster[8] == -1


def test_layer_clusters_are_associated_in_3d() -> None:
    # Two projective showers: blobs in layers 4-9 along two lines from the origin.
    specs = []
    for layer in range(4, 10):
        z = GEOMETRY.layers.z[layer]
        specs += [(42.0 * z / 320, 0.0, layer, 2.0), (0.0, 50.0 * z / 320, layer, 2.0)]
    hits = blobs(*specs)
    result = clue(hits, ClueParams())
    first = result.hit_cluster[np.abs(hits.y) < 1]
    second = result.hit_cluster[np.abs(hits.y) > 30]
    assert len(np.unique(first)) == 1 and len(np.unique(second)) == 1
    assert first[0] != second[0] and first[0] >= 0
    np.testing.assert_allclose(result.cluster_energy.sum(), hits.energy.sum(), rtol=1e-6)


def test_empty_event() -> None:
    result = clue(Hits.empty())
    assert len(result.hit_cluster) == 0 and len(result.cluster_energy) == 0

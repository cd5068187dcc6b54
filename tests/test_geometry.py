"""The calorimeter geometry: layers, cell shapes, point-to-cell lookup, and hits in cells."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from recoserve.events.model import Event
from recoserve.sim.geometry import (
    COARSE,
    ETA_SENSOR_MIN,
    FINE,
    GEOMETRY,
    HEX_AREA,
    N_EE,
    N_LAYERS,
    TILE_DETA,
    TILE_NPHI,
    decode_cell_id,
    encode_cell_id,
)

geo = GEOMETRY


def test_layers_span_the_endcap() -> None:
    z = geo.layers.z
    assert len(z) == N_LAYERS == 50
    assert np.all(np.diff(z) > 0)
    assert z[0] >= 320 and z[-1] <= 520
    assert 25 <= geo.depth_x0[N_EE - 1] <= 30  # CE-E contains EM showers
    assert 8 <= geo.depth_lambda[-1] <= 12  # whole calorimeter contains hadron showers


def test_cell_sizes_match_the_design() -> None:
    for cell_type, area in HEX_AREA.items():
        side = geo.hex_side[cell_type]
        assert abs(1.5 * np.sqrt(3) * side**2 - area) < 1e-9
    assert 0.5 <= HEX_AREA[FINE] < HEX_AREA[COARSE] <= 1.2
    for layer in range(N_EE, N_LAYERS):
        bins = geo.layers.tile_eta_bins[layer]
        eta_edges = ETA_SENSOR_MIN + TILE_DETA * np.arange(bins + 1)
        r = geo.layers.z[layer] / np.sinh(eta_edges)
        area = np.pi * (r[:-1] ** 2 - r[1:] ** 2) / TILE_NPHI
        assert np.all((area > 3) & (area < 40)), area


def test_geometry_is_irregular_from_layer_to_layer() -> None:
    lay = geo.layers
    assert len(np.unique(np.round(lay.grid_angle, 6))) > 5
    assert np.ptp(lay.fine_r_max[:N_EE]) > 5
    assert np.ptp(lay.silicon_r_max[N_EE:]) > 5
    assert len(np.unique(lay.tile_phi0)) == 2


@given(
    side=st.integers(0, 1),
    layer=st.integers(0, N_LAYERS - 1),
    cell_type=st.integers(0, 2),
    u=st.integers(-1000, 1000),
    v=st.integers(-1000, 1000),
)
def test_cell_id_round_trip(side: int, layer: int, cell_type: int, u: int, v: int) -> None:
    cell = encode_cell_id(*(np.array([k]) for k in (side, layer, cell_type, u, v)))
    assert [int(k[0]) for k in decode_cell_id(cell)] == [side, layer, cell_type, u, v]


def test_every_point_maps_to_the_cell_that_contains_it() -> None:
    rng = np.random.default_rng(3)
    n = 100_000
    layer = rng.integers(0, N_LAYERS, n)
    side = rng.integers(0, 2, n)
    rho = rng.uniform(geo.layers.r_min[layer], geo.layers.r_max[layer])
    phi = rng.uniform(-np.pi, np.pi, n)
    x, y = rho * np.cos(phi), rho * np.sin(phi)
    cell, cx, cy = geo.locate(x, y, layer, side)
    live = cell >= 0
    assert live.mean() > 0.98  # dead gaps between cell types stay small
    assert geo.cell_contains(cell[live], x[live], y[live]).all()
    assert geo.cell_is_valid(cell[live]).all()
    ex, ey, ez = geo.cell_center(cell[live])
    np.testing.assert_allclose(ex, cx[live])
    np.testing.assert_allclose(ey, cy[live])
    assert np.all(np.sign(ez) == np.where(side[live] == 0, 1, -1))
    again, _, _ = geo.locate(cx[live], cy[live], layer[live], side[live])
    assert np.array_equal(again, cell[live])  # a cell's own centre maps to the cell
    _, _, types, _, _ = decode_cell_id(cell[live])
    assert set(np.unique(types)) == {0, 1, 2}


def test_points_outside_the_sensors_are_dead() -> None:
    layer = np.array([0, 0, 30])
    x = np.array([5.0, 400.0, 0.0])
    y = np.array([0.0, 0.0, 1.0])
    cell, cx, _ = geo.locate(x, y, layer, np.zeros(3, dtype=int))
    assert np.all(cell == -1) and np.all(np.isnan(cx))


def test_every_hit_lies_inside_a_cell(reference_events: list[Event]) -> None:
    for event in reference_events:
        hits = event.hits
        side = (hits.z < 0).astype(int)
        cell, _, _ = geo.locate(hits.x, hits.y, hits.layer, side)
        assert np.array_equal(cell, hits.cell_id)
        assert geo.cell_is_valid(hits.cell_id).all()
        x, y, z = geo.cell_center(hits.cell_id)
        np.testing.assert_allclose(hits.x, x, atol=1e-4)
        np.testing.assert_allclose(hits.y, y, atol=1e-4)
        np.testing.assert_allclose(hits.z, z, atol=1e-4)
        assert len(np.unique(hits.cell_id)) == len(hits)  # one hit per cell

"""Digitisation: spots summed into cells, electronic noise, threshold, hit time and hit truth.

Per cell, the true energy is the sum of all spots; the truth particle is the particle with the
largest share and ``truth_fraction`` that share. The measured energy adds Gaussian electronic
noise; cells above threshold become hits. Cells with no deposit fire on noise alone with the
Gaussian tail probability above threshold; those hits have truth -1.

As in the real detector, only hits above ``time_threshold_mip`` (a few MIPs) get a time; the
others carry ``NO_TIME_NS``. Noise levels come in two scenarios, ``start`` and ``end`` of
detector life (radiation damage lowers the signal over noise; thresholds are raised to keep
the noise rate manageable): ``ReadoutConfig.for_scenario``. ``ReadoutConfig.legacy()`` is the
earlier readout (about 4 sigma thresholds, every hit timed), kept for comparison.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr, ndtri

from recoserve.events.model import NO_TIME_NS, Hits
from recoserve.sim.geometry import COARSE, FINE, N_LAYERS, TILE, Geometry, decode_cell_id

READOUT_WINDOW_NS = 25.0


NOISE_SCENARIOS = ("start", "end")


@dataclass(frozen=True)
class ReadoutConfig:
    """Noise and thresholds per cell type (fine, coarse, tile), in units of the layer's MIP
    energy. The defaults are the start of detector life: thresholds at about 3.3 sigma."""

    noise_mip: tuple[float, float, float] = (0.15, 0.17, 0.20)
    threshold_mip: tuple[float, float, float] = (0.5, 0.55, 0.7)
    noise_hits: bool = True
    time_stochastic: float = 0.5  # ns * MIP: sigma_t = a / (E / MIP) (+) c
    time_constant: float = 0.025  # ns
    time_threshold_mip: float = 3.0  # hits below get no time (NO_TIME_NS); 0 = all timed

    @classmethod
    def for_scenario(cls, scenario: str, noise_hits: bool = True) -> ReadoutConfig:
        """``start`` or ``end`` of detector life."""
        if scenario == "start":
            return cls(noise_hits=noise_hits)
        if scenario == "end":  # signal over noise halved; thresholds raised to ~3 sigma
            return cls(
                noise_mip=(0.30, 0.30, 0.32),
                threshold_mip=(0.9, 0.9, 1.0),
                noise_hits=noise_hits,
            )
        raise ValueError(f"unknown noise scenario {scenario!r}; known: {NOISE_SCENARIOS}")

    @classmethod
    def legacy(cls, noise_hits: bool = True) -> ReadoutConfig:
        """The earlier readout: about 4 sigma thresholds and a time on every hit."""
        return cls(noise_mip=(0.12, 0.14, 0.18), noise_hits=noise_hits, time_threshold_mip=0.0)


@dataclass(frozen=True)
class DigitizedEvent:
    hits: Hits
    deposited: np.ndarray  # per particle: all deposits in cells, GeV
    visible: np.ndarray  # per particle: deposits in cells above threshold, GeV


class Digitizer:
    def __init__(self, geometry: Geometry, config: ReadoutConfig | None = None) -> None:
        self.geometry = geometry
        self.config = config or ReadoutConfig()
        self._cells = geometry.cells_per_layer()

    def _per_cell(
        self, cell_type: np.ndarray, layer: np.ndarray, values: tuple[float, ...]
    ) -> np.ndarray:
        return np.asarray(values)[cell_type] * self.geometry.layers.mip[layer]

    def digitize(
        self, spots: dict[str, np.ndarray], n_particles: int, rng: np.random.Generator
    ) -> DigitizedEvent:
        geo, cfg = self.geometry, self.config
        cell, _, _ = geo.locate(spots["x"], spots["y"], spots["layer"], spots["side"])
        live = cell >= 0
        cell, particle = cell[live], spots["particle"][live]
        energy, time = spots["energy"][live], spots["time"][live]

        cells, cell_index = np.unique(cell, return_inverse=True)
        true_energy = np.bincount(cell_index, weights=energy, minlength=len(cells))
        mean_time = np.bincount(cell_index, weights=energy * time, minlength=len(cells))
        mean_time = mean_time / np.maximum(true_energy, 1e-30)
        # Share of each particle in each cell: unique (cell, particle) pairs.
        pair = cell_index.astype(np.int64) * max(n_particles, 1) + particle
        pairs, pair_index = np.unique(pair, return_inverse=True)
        pair_energy = np.bincount(pair_index, weights=energy, minlength=len(pairs))
        pair_cell = pairs // max(n_particles, 1)
        pair_particle = pairs % max(n_particles, 1)
        order = np.lexsort((-pair_energy, pair_cell))
        first = order[np.diff(pair_cell[order], prepend=-1) != 0]  # largest share per cell
        main_particle = pair_particle[first]
        main_share = pair_energy[first] / np.maximum(true_energy, 1e-30)

        _, layer, cell_type, _, _ = decode_cell_id(cells)
        noise = self._per_cell(cell_type, layer, cfg.noise_mip)
        threshold = self._per_cell(cell_type, layer, cfg.threshold_mip)
        measured = true_energy + noise * rng.standard_normal(len(cells))
        fired = measured > threshold

        deposited = np.bincount(pair_particle, weights=pair_energy, minlength=n_particles)
        visible = np.bincount(
            pair_particle, weights=pair_energy * fired[pair_cell], minlength=n_particles
        )
        mip_units = true_energy / geo.layers.mip[layer]
        sigma_t = np.hypot(cfg.time_stochastic / np.maximum(mip_units, 0.1), cfg.time_constant)
        hit_time = mean_time + sigma_t * rng.standard_normal(len(cells))
        measured_mip = measured / geo.layers.mip[layer]
        hit_time = np.where(measured_mip >= cfg.time_threshold_mip, hit_time, NO_TIME_NS)

        signal = _hits(
            geo,
            cells[fired],
            measured[fired],
            hit_time[fired],
            main_particle[fired],
            main_share[fired],
            true_energy[fired],
        )
        parts = [signal]
        if cfg.noise_hits:
            parts.append(self._noise_hits(rng, exclude=cells))
        hits = Hits.from_columns(
            {k: np.concatenate([p.columns()[k] for p in parts]) for k in Hits.SCHEMA}
        )
        order = np.argsort(hits.cell_id, kind="stable")
        return DigitizedEvent(hits.take(order), deposited, visible)

    def _noise_hits(self, rng: np.random.Generator, exclude: np.ndarray) -> Hits:
        """Cells without deposits whose noise alone passes threshold."""
        geo, cfg = self.geometry, self.config
        xs, ys, layers, sides = [], [], [], []
        for cell_type in (FINE, COARSE, TILE):
            ratio = cfg.threshold_mip[cell_type] / cfg.noise_mip[cell_type]
            p_fire = float(ndtr(-ratio))
            counts = rng.poisson(self._cells[:, cell_type] * p_fire, size=(2, N_LAYERS))
            for side in (0, 1):
                for layer in np.flatnonzero(counts[side]):
                    n = counts[side, layer]
                    r_in, r_out = geo.type_annulus(int(layer), cell_type)
                    r = np.sqrt(rng.uniform(r_in**2, r_out**2, n))
                    phi = rng.uniform(-np.pi, np.pi, n)
                    xs.append(r * np.cos(phi))
                    ys.append(r * np.sin(phi))
                    layers.append(np.full(n, layer))
                    sides.append(np.full(n, side))
        if not xs:
            return Hits.empty()
        cell, _, _ = geo.locate(
            np.concatenate(xs), np.concatenate(ys), np.concatenate(layers), np.concatenate(sides)
        )
        cell = np.unique(cell[cell >= 0])
        cell = cell[~np.isin(cell, exclude)]
        _, cell_layer, types, _, _ = decode_cell_id(cell)
        noise = self._per_cell(types, cell_layer, cfg.noise_mip)
        ratio = self._per_cell(types, cell_layer, cfg.threshold_mip) / noise
        tail = ndtr(-ratio) * rng.random(len(cell))
        energy = noise * ndtri(1.0 - np.maximum(tail, 1e-300))
        energy = np.maximum(energy, noise * ratio)
        time = rng.uniform(0.0, READOUT_WINDOW_NS, len(cell))
        timed = energy / geo.layers.mip[cell_layer] >= cfg.time_threshold_mip
        time = np.where(timed, time, NO_TIME_NS)
        n = len(cell)
        return _hits(geo, cell, energy, time, np.full(n, -1), np.zeros(n), np.zeros(n))


def _hits(
    geo: Geometry,
    cells: np.ndarray,
    energy: np.ndarray,
    time: np.ndarray,
    particle: np.ndarray,
    fraction: np.ndarray,
    true_energy: np.ndarray,
) -> Hits:
    x, y, z = geo.cell_center(cells)
    _, layer, _, _, _ = decode_cell_id(cells)
    return Hits(
        x=x,
        y=y,
        z=z,
        energy=energy,
        time=time,
        layer=layer,
        cell_id=cells,
        truth_particle=particle,
        truth_fraction=fraction,
        true_energy=true_energy,
    )

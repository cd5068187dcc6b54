"""Energy deposits of showers and minimum-ionising particles, as "spots" in sensitive layers.

A shower is a cloud of spots (small packets of visible energy, EM scale). Each spot gets a depth
along the shower axis from a longitudinal profile, is assigned to the layer whose absorber
contains that depth, and is placed in that layer's sensitive plane at a radial distance from the
axis drawn from a core + tail transverse profile. Spot energies fluctuate (Gamma distributed) so
that the sum over a shower has the chosen stochastic resolution; the digitisation step
(``recoserve.sim.digitize``) sums spots into cells.

* EM: Gamma longitudinal profile in radiation lengths, t_max = ln(E/Ec) + C (photons start after
  an exponential conversion depth); transverse profile r^2/(r^2+R^2) core and tail in Molière
  radii, widening with depth (as in GFlash).
* Hadrons: MIP deposits up to the first interaction (exponential in interaction lengths), then
  a fluctuating EM fraction split into pi0-like EM sub-showers (sub-clusters) plus a deeper,
  wider hadronic component with a non-compensating response h/e and fluctuating invisible
  energy. With ``substructure`` (the default) the shower is irregular as real ones are: the EM
  sub-showers start at their own depths (later interactions) and at angles up to ~0.6 rad, and
  part of the hadronic energy leaves as secondary hadrons at large angles (up to ~1 rad) that
  deposit compact fragments away from the core. ``ShowerConfig(substructure=False)`` is the
  earlier, axially symmetric model (kept for comparison).
* Muons: MIP deposits (Landau-like, Moyal distributed) in every layer they cross.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from recoserve.sim.geometry import N_EE, N_LAYERS, Geometry
from recoserve.sim.particles import C_CM_PER_NS


@dataclass(frozen=True)
class ShowerConfig:
    """Shower-model constants, tuned to the stand-alone resolutions in docs/simulation.md."""

    em_stochastic: float = 0.21  # GeV^1/2: sampling term of EM showers
    em_spot_energy: float = 0.045  # GeV per EM spot (granularity, not physics)
    critical_energy: float = 0.008  # GeV, W/Pb-like
    moliere_radius_ee: float = 2.6  # cm, CE-E
    moliere_radius_eh: float = 5.0  # cm, effective in the CE-H (steel + gaps)
    had_spot_energy: float = 0.12  # GeV per hadronic spot
    had_spot_shape: float = 1.5  # Gamma shape of hadronic spot energies
    h_over_e: float = 0.70  # response to the non-EM part of a hadron shower
    invisible_stochastic: float = 1.6  # GeV^1/2: fluctuation of the invisible energy
    em_fraction_e0: float = 0.7  # GeV, f_em = 1 - (E/E0)^(k-1)
    em_fraction_k: float = 0.82
    em_fraction_sigma: float = 0.10
    delayed_fraction: float = 0.05  # share of hadronic spots from slow neutrons
    delayed_tau: float = 3.0  # ns
    # Irregular hadron showers (False: the earlier axially symmetric model).
    substructure: bool = True
    secondary_rate: float = 0.9  # secondary hadrons ~ Poisson(rate * ln(1 + E_had / GeV))
    secondary_share: float = 0.45  # mean share of the hadronic energy carried by secondaries
    secondary_angle: float = 0.45  # rad, RMS polar angle of secondaries to the shower axis
    secondary_flight: float = 0.8  # lambda, mean free flight of a secondary before it showers
    core_width: float = 0.7  # with substructure: the halo is narrower (fragments carry spread)
    subshower_angle: float = 0.25  # rad, RMS tilt of EM sub-showers (x 1/sqrt(E/GeV), <= 0.6)
    subshower_depth: float = 0.5  # lambda, mean extra depth at which each sub-shower starts


@dataclass
class Deposits:
    """Spots of one event, before they are summed into cells."""

    x: list[np.ndarray] = field(default_factory=list)
    y: list[np.ndarray] = field(default_factory=list)
    layer: list[np.ndarray] = field(default_factory=list)
    side: list[np.ndarray] = field(default_factory=list)
    energy: list[np.ndarray] = field(default_factory=list)
    time: list[np.ndarray] = field(default_factory=list)
    particle: list[np.ndarray] = field(default_factory=list)

    def add(
        self,
        x: np.ndarray,
        y: np.ndarray,
        layer: np.ndarray,
        side: int,
        energy: np.ndarray,
        time: np.ndarray,
        particle: int,
    ) -> None:
        keep = layer < N_LAYERS  # spots behind the last layer leak out
        n = int(keep.sum())
        self.x.append(x[keep])
        self.y.append(y[keep])
        self.layer.append(layer[keep])
        self.side.append(np.full(n, side, dtype=np.int64))
        self.energy.append(energy[keep])
        self.time.append(time[keep])
        self.particle.append(np.full(n, particle, dtype=np.int64))

    def concatenate(self) -> dict[str, np.ndarray]:
        names = ("x", "y", "layer", "side", "energy", "time", "particle")
        if not self.x:
            return {
                n: np.zeros(0, np.int64 if n in ("layer", "side", "particle") else float)
                for n in names
            }
        return {n: np.concatenate(getattr(self, n)) for n in names}


@dataclass(frozen=True)
class Axis:
    """A straight shower axis: a start point, a unit direction and the time at the start."""

    start: np.ndarray
    direction: np.ndarray
    time: float

    @property
    def side(self) -> int:
        return 0 if self.direction[2] > 0 else 1

    @property
    def cos_theta(self) -> float:
        return float(abs(self.direction[2]))

    def at_z(self, abs_z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Axis point (x, y) in the planes |z| and the flight time from the start to them."""
        length = (abs_z - abs(self.start[2])) / self.cos_theta
        return (
            self.start[0] + length * self.direction[0],
            self.start[1] + length * self.direction[1],
            self.time + length / C_CM_PER_NS,
        )


class ShowerModel:
    """Generates the spots of EM showers, hadron showers and MIP tracks in a geometry."""

    def __init__(self, geometry: Geometry, config: ShowerConfig | None = None) -> None:
        self.geometry = geometry
        self.config = config or ShowerConfig()

    # -- helpers -------------------------------------------------------------------------------
    def _place(
        self,
        rng: np.random.Generator,
        axis: Axis,
        layer: np.ndarray,
        r_core: np.ndarray,
        r_tail: np.ndarray,
        p_core: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Transverse positions around the axis in each spot's layer plane, and arrival time."""
        n = len(layer)
        radius = np.where(rng.random(n) < p_core, r_core, r_tail)
        u = np.minimum(rng.random(n), 0.995)
        r = radius * np.sqrt(u / (1.0 - u))
        psi = rng.uniform(0.0, 2 * np.pi, n)
        z = self.geometry.layers.z[np.minimum(layer, N_LAYERS - 1)]
        ax, ay, t = axis.at_z(z)
        return ax + r * np.cos(psi), ay + r * np.sin(psi), t

    # -- EM ------------------------------------------------------------------------------------
    def em_shower(
        self,
        deposits: Deposits,
        rng: np.random.Generator,
        energy: float,
        axis: Axis,
        particle: int,
        photon: bool,
    ) -> None:
        """An electromagnetic shower of ``energy`` GeV starting at ``axis.start``."""
        cfg = self.config
        if energy <= 0:
            return
        geo = self.geometry
        t_max = max(np.log(energy / cfg.critical_energy) + (0.5 if photon else -0.5), 1.0)
        b = 0.5
        a = (b * t_max + 1.0) * (1.0 + 0.05 * rng.standard_normal())
        n = max(round(energy / cfg.em_spot_energy), 1)
        e_spot = energy / n
        shape = max(e_spot / cfg.em_stochastic**2, 1e-3)
        spot_energy = e_spot * rng.gamma(shape, 1.0 / shape, n)
        t0 = rng.exponential(9.0 / 7.0) if photon else 0.0
        depth_along = t0 + rng.gamma(max(a, 1.01), 1.0 / b, n)  # X0 along the axis
        start_depth = geo.z_to_depth(np.array([abs(axis.start[2])]), "x0")[0]
        normal = start_depth + depth_along * axis.cos_theta
        layer = geo.layer_at_depth(normal, "x0")
        tau = (depth_along - t0) / t_max
        r_m = np.where(layer < N_EE, cfg.moliere_radius_ee, cfg.moliere_radius_eh)
        r_core = r_m * (0.15 + 0.08 * tau)
        r_tail = r_m * (0.75 + 0.35 * tau)
        p_core = np.clip(0.88 - 0.1 * tau, 0.5, 0.88)
        x, y, t = self._place(rng, axis, layer, r_core, r_tail, p_core)
        deposits.add(x, y, layer, axis.side, spot_energy, t, particle)

    # -- MIP -----------------------------------------------------------------------------------
    def mip_track(
        self,
        deposits: Deposits,
        rng: np.random.Generator,
        axis: Axis,
        particle: int,
        last_abs_z: float = np.inf,
    ) -> None:
        """One Landau-like deposit per layer crossed, up to ``last_abs_z``."""
        geo = self.geometry
        layers = np.flatnonzero((geo.layers.z > abs(axis.start[2])) & (geo.layers.z < last_abs_z))
        if len(layers) == 0:
            return
        moyal = -np.log(rng.standard_normal(len(layers)) ** 2 + 1e-12)
        energy = geo.layers.mip[layers] / axis.cos_theta * np.maximum(1.0 + 0.12 * moyal, 0.3)
        x, y, t = axis.at_z(geo.layers.z[layers])
        deposits.add(x, y, layers, axis.side, energy, t, particle)

    # -- hadrons -------------------------------------------------------------------------------
    def em_fraction(self, energy: float, rng: np.random.Generator) -> float:
        """Fluctuating EM fraction of a hadron shower (Beta around Wigmans' mean)."""
        cfg = self.config
        mean = float(
            np.clip(1.0 - (energy / cfg.em_fraction_e0) ** (cfg.em_fraction_k - 1.0), 0.05, 0.9)
        )
        kappa = max(mean * (1 - mean) / cfg.em_fraction_sigma**2 - 1.0, 1.0)
        return float(rng.beta(mean * kappa, (1 - mean) * kappa))

    def hadron_shower(
        self,
        deposits: Deposits,
        rng: np.random.Generator,
        energy: float,
        axis: Axis,
        particle: int,
        charged: bool,
    ) -> None:
        """MIP track to the first interaction, then EM sub-showers and a hadronic component."""
        cfg = self.config
        geo = self.geometry
        start_lambda = geo.z_to_depth(np.array([abs(axis.start[2])]), "lambda")[0]
        interaction = start_lambda + rng.exponential(1.0) * axis.cos_theta  # normal depth, lambda
        total_lambda = geo.depth_lambda[-1]
        z_int = geo.depth_to_z(np.array([min(interaction, total_lambda)]), "lambda")[0]
        if charged:
            self.mip_track(deposits, rng, axis, particle, last_abs_z=z_int)
        if interaction >= total_lambda:
            return  # punch-through
        x_int, y_int, t_int = axis.at_z(np.array([z_int]))
        vertex = np.array([x_int[0], y_int[0], np.sign(axis.direction[2]) * z_int])
        f_em = self.em_fraction(energy, rng)
        e_em = f_em * energy
        e_had = (1.0 - f_em) * energy
        # EM part: pi0-like sub-showers with a spread of directions (sub-clusters).
        n_sub = 1 + rng.poisson(0.7 * np.log1p(e_em))
        shares = rng.dirichlet(np.full(n_sub, 1.2)) * e_em
        for share in shares:
            if cfg.substructure:
                tilt = min(cfg.subshower_angle / np.sqrt(max(share, 0.1)), 0.6)
                start = self._along(axis, vertex, rng.exponential(cfg.subshower_depth))
                direction = _tilted(axis.direction, rng.normal(0.0, tilt, 2))
            else:  # the earlier model, draw for draw
                start = vertex
                tilt = min(0.35 / max(share, 0.1), 0.3)
                direction = axis.direction + rng.normal(0.0, tilt, 3) * np.array([1.0, 1.0, 0.0])
                direction /= np.linalg.norm(direction)
            sub_axis = Axis(start, direction, float(t_int[0]))
            self.em_shower(deposits, rng, float(share), sub_axis, particle, photon=True)
        if cfg.substructure:
            e_had = self._secondary_fragments(deposits, rng, e_had, axis, vertex, t_int, particle)
        # Non-EM part: reduced, fluctuating visible energy, deeper and wider.
        visible = (
            e_had
            * cfg.h_over_e
            * max(
                1.0 + cfg.invisible_stochastic / np.sqrt(max(e_had, 1e-3)) * rng.standard_normal(),
                0.0,
            )
        )
        n = round(visible / cfg.had_spot_energy)
        if n == 0:
            return
        spot_energy = visible / n * rng.gamma(cfg.had_spot_shape, 1.0 / cfg.had_spot_shape, n)
        alpha = 1.6 + 0.12 * np.log(energy)
        depth_along = rng.gamma(alpha, 0.9, n)  # lambda after the interaction
        normal = interaction + depth_along * axis.cos_theta
        layer = geo.layer_at_depth(normal, "lambda")
        width = cfg.core_width if cfg.substructure else 1.0
        r_core = width * (2.5 + 2.0 * depth_along)
        r_tail = width * (9.0 + 6.0 * depth_along)
        had_axis = Axis(vertex, axis.direction, float(t_int[0]))
        x, y, t = self._place(rng, had_axis, layer, r_core, r_tail, np.full(n, 0.65))
        slow = rng.random(n) < cfg.delayed_fraction
        t = t + np.where(slow, rng.exponential(cfg.delayed_tau, n), 0.0)
        deposits.add(x, y, layer, had_axis.side, spot_energy, t, particle)

    # -- irregular substructure ----------------------------------------------------------------
    def _along(self, axis: Axis, point: np.ndarray, depth_lambda: float) -> np.ndarray:
        """The point ``depth_lambda`` interaction lengths (along the axis) behind ``point``."""
        geo = self.geometry
        z0 = abs(point[2])
        start = geo.z_to_depth(np.array([z0]), "lambda")[0]
        normal = min(start + depth_lambda * axis.cos_theta, geo.depth_lambda[-1])
        z1 = geo.depth_to_z(np.array([normal]), "lambda")[0]
        length = (z1 - z0) / axis.cos_theta
        return point + length * axis.direction

    def _secondary_fragments(
        self,
        deposits: Deposits,
        rng: np.random.Generator,
        e_had: float,
        axis: Axis,
        vertex: np.ndarray,
        t_int: np.ndarray,
        particle: int,
    ) -> float:
        """Secondary hadrons leaving the first interaction at large angles: each deposits a
        compact hadronic fragment along its own direction. Returns the hadronic energy left for
        the core."""
        cfg, geo = self.config, self.geometry
        n = int(rng.poisson(cfg.secondary_rate * np.log1p(e_had)))
        if n == 0 or e_had <= 0:
            return e_had
        carried = e_had * float(
            rng.beta(2.0 * cfg.secondary_share, 2.0 * (1 - cfg.secondary_share))
        )
        for share in rng.dirichlet(np.full(n, 0.8)) * carried:
            theta = min(abs(rng.normal(0.0, cfg.secondary_angle)), 1.0)
            psi = rng.uniform(0.0, 2 * np.pi)
            direction = _tilted(axis.direction, theta * np.array([np.cos(psi), np.sin(psi)]))
            sub = Axis(vertex, direction, float(t_int[0]))
            visible = share * cfg.h_over_e * max(1.0 + 0.5 * rng.standard_normal(), 0.0)
            k = round(visible / cfg.had_spot_energy)
            if k == 0:
                continue
            spot_energy = visible / k * rng.gamma(cfg.had_spot_shape, 1.0 / cfg.had_spot_shape, k)
            # A free flight to the secondary's own interaction, then a compact cascade.
            flight = rng.exponential(cfg.secondary_flight)
            depth_along = flight + rng.gamma(1.5, 0.45, k)  # lambda along its direction
            start = geo.z_to_depth(np.array([abs(vertex[2])]), "lambda")[0]
            layer = geo.layer_at_depth(start + depth_along * sub.cos_theta, "lambda")
            r_core = 1.2 + 1.0 * (depth_along - flight)
            r_tail = 4.0 + 3.0 * (depth_along - flight)
            x, y, t = self._place(rng, sub, layer, r_core, r_tail, np.full(k, 0.7))
            deposits.add(x, y, layer, sub.side, spot_energy, t, particle)
        return e_had - carried


def _tilted(direction: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """``direction`` turned by small angles (two transverse components, rad), kept pointing
    into the same endcap."""
    d = direction + np.array([angles[0], angles[1], 0.0]) * abs(direction[2])
    d = d / np.linalg.norm(d)
    if abs(d[2]) < 0.3:  # never run parallel to the layers
        d[2] = np.sign(direction[2]) * 0.3
        d = d / np.linalg.norm(d)
    return d

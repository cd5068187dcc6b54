"""The event simulator: primaries -> decays -> calorimeter showers -> hits, tracks and truth.

Deterministic: event ``i`` of seed ``s`` uses ``numpy.random.default_rng([s, i])``, so any event
can be regenerated alone, in any order or process, and always comes out the same.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recoserve.events.model import Event, Particles, Tracks
from recoserve.sim.digitize import Digitizer, ReadoutConfig
from recoserve.sim.generator import GeneratorEvent
from recoserve.sim.geometry import ETA_SENSOR_MAX, ETA_SENSOR_MIN, GEOMETRY, Geometry
from recoserve.sim.jets import JetGunConfig, shoot_jets
from recoserve.sim.particles import (
    GunConfig,
    ParticleList,
    apply_decays,
    propagate_to_face,
    shoot,
    shower_energy,
    species_of,
)
from recoserve.sim.pileup import PileupConfig, overlay_pileup
from recoserve.sim.showers import Axis, Deposits, ShowerConfig, ShowerModel


@dataclass(frozen=True)
class TrackerConfig:
    """Tracker acceptance and resolution (CMS Phase-2-like, coarse)."""

    max_eta: float = 3.0
    max_vertex_radius: float = 60.0  # cm: displaced decays beyond this leave no track
    efficiency: float = 0.98
    pt_resolution_constant: float = 0.01  # sigma(pt)/pt = c (+) s * pt, worse forward
    pt_resolution_slope: float = 2e-4  # 1/GeV
    angle_resolution: float = 1e-3  # rad in phi, and in eta
    position_resolution: float = 0.05  # cm at the calorimeter face (+ 2 cm*GeV / pt)


@dataclass(frozen=True)
class SimConfig:
    """Everything that defines a simulated sample. The defaults are the realistic detector
    (irregular hadron showers, start-of-life noise, timing above 3 MIPs); ``legacy()`` is the
    earlier one."""

    gun: GunConfig = field(default_factory=GunConfig)
    showers: ShowerConfig = field(default_factory=ShowerConfig)
    readout: ReadoutConfig = field(default_factory=ReadoutConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    b_field: float = 3.8  # tesla
    pileup: PileupConfig = field(default_factory=PileupConfig)
    jets: JetGunConfig | None = None  # when set, events come from the jet gun, not the gun

    @classmethod
    def legacy(cls, **changes: Any) -> SimConfig:
        """The earlier, easier detector model (axially symmetric hadron showers, ~4 sigma noise
        thresholds, a time on every hit), kept to compare against."""
        noise_hits = changes.pop("noise_hits", True)
        return cls(
            showers=ShowerConfig(substructure=False),
            readout=ReadoutConfig.legacy(noise_hits=noise_hits),
            **changes,
        )


class Simulator:
    """Simulates events with full truth in the HGCal-like geometry."""

    def __init__(self, config: SimConfig | None = None, geometry: Geometry = GEOMETRY) -> None:
        self.config = config or SimConfig()
        self.geometry = geometry
        self.showers = ShowerModel(geometry, self.config.showers)
        self.digitizer = Digitizer(geometry, self.config.readout)

    def event(self, seed: int, event_id: int) -> Event:
        """Event ``event_id`` of the particle-gun (or jet-gun) run with ``seed``."""
        rng = np.random.default_rng([seed, event_id])
        if self.config.jets is not None:
            primaries, _ = shoot_jets(self.config.jets, rng)
        else:
            primaries = shoot(self.config.gun, rng)
        return self.from_particles(primaries, rng, event_id)

    def from_generator(self, event: GeneratorEvent, seed: int, index: int) -> Event:
        """Simulate a generator event (its particles keep their generator index)."""
        rng = np.random.default_rng([seed, index])
        return self.from_particles(event.particles, rng, event.number)

    def events(self, n_events: int, seed: int, first_event: int = 0) -> Iterator[Event]:
        for event_id in range(first_event, first_event + n_events):
            yield self.event(seed, event_id)

    def from_particles(
        self, particles: ParticleList, rng: np.random.Generator, event_id: int
    ) -> Event:
        """Simulate given primary particles, plus pileup if configured (decays, showers,
        tracks, digitisation)."""
        if self.config.pileup.interactions > 0:
            overlay_pileup(particles, self.config.pileup, rng)
        decayed = apply_decays(particles, rng)
        n = len(particles)
        calo = np.full((n, 3), np.nan)
        deposits = Deposits()
        track_rows: list[int] = []
        crossing_at: dict[int, np.ndarray] = {}
        for i in range(n):
            species = species_of(particles.pdg[i])
            vertex, p4 = particles.vertex[i], particles.p4[i]
            if species.charge != 0 and self._tracked(vertex, p4, rng):
                track_rows.append(i)
            if decayed[i]:
                continue
            crossing = propagate_to_face(
                vertex, p4, species.charge, self.config.b_field, particles.time[i]
            )
            if not crossing.reached or not self._in_acceptance(crossing.position):
                continue
            calo[i] = crossing.position
            crossing_at[i] = crossing.position
            axis = Axis(crossing.position, crossing.direction, crossing.time)
            energy = shower_energy(species, float(p4[0]))
            if species.shower == "em":
                self.showers.em_shower(deposits, rng, energy, axis, i, photon=species.charge == 0)
            elif species.shower == "mip":
                self.showers.mip_track(deposits, rng, axis, i)
            elif species.shower == "hadron":
                self.showers.hadron_shower(
                    deposits, rng, energy, axis, i, charged=species.charge != 0
                )
        digi = self.digitizer.digitize(deposits.concatenate(), n, rng)
        return Event(
            event_id=event_id,
            hits=digi.hits,
            tracks=self._tracks(particles, track_rows, crossing_at, rng),
            particles=self._particle_table(particles, calo, digi.deposited, digi.visible),
        )

    def _in_acceptance(self, position: np.ndarray) -> bool:
        eta = np.arcsinh(abs(position[2]) / max(np.hypot(position[0], position[1]), 1e-9))
        return bool(ETA_SENSOR_MIN <= eta <= ETA_SENSOR_MAX)

    def _tracked(self, vertex: np.ndarray, p4: np.ndarray, rng: np.random.Generator) -> bool:
        cfg = self.config.tracker
        p3 = p4[1:]
        eta = np.arcsinh(p3[2] / max(np.hypot(p3[0], p3[1]), 1e-12))
        in_tracker = (
            abs(eta) <= cfg.max_eta and np.hypot(vertex[0], vertex[1]) < cfg.max_vertex_radius
        )
        return bool(in_tracker and rng.random() < cfg.efficiency)

    def _tracks(
        self,
        particles: ParticleList,
        rows: list[int],
        crossing_at: dict[int, np.ndarray],
        rng: np.random.Generator,
    ) -> Tracks:
        cfg = self.config.tracker
        if not rows:
            return Tracks.empty()
        p4 = np.array([particles.p4[i] for i in rows])
        charge = np.array([species_of(particles.pdg[i]).charge for i in rows])
        pt_true = np.hypot(p4[:, 1], p4[:, 2])
        eta_true = np.arcsinh(p4[:, 3] / pt_true)
        phi_true = np.arctan2(p4[:, 2], p4[:, 1])
        forward = 1.0 + np.maximum(np.abs(eta_true) - 1.5, 0.0)
        rel = np.hypot(cfg.pt_resolution_constant, cfg.pt_resolution_slope * pt_true) * forward
        k = len(rows)
        pt = pt_true * np.maximum(1.0 + rel * rng.standard_normal(k), 0.05)
        eta = eta_true + cfg.angle_resolution * rng.standard_normal(k)
        phi = np.angle(np.exp(1j * (phi_true + cfg.angle_resolution * rng.standard_normal(k))))
        face = np.array([crossing_at.get(i, np.full(3, np.nan)) for i in rows])
        sigma_pos = cfg.position_resolution + 2.0 / pt_true
        xy = face[:, :2] + sigma_pos[:, None] * rng.standard_normal((k, 2))
        return Tracks(
            pt=pt,
            eta=eta,
            phi=phi,
            charge=charge,
            p=pt * np.cosh(eta),
            x_calo=xy[:, 0],
            y_calo=xy[:, 1],
            z_calo=face[:, 2],
            n_layers=rng.integers(8, 15, k),
            truth_particle=np.array(rows),
        )

    @staticmethod
    def _particle_table(
        particles: ParticleList, calo: np.ndarray, deposited: np.ndarray, visible: np.ndarray
    ) -> Particles:
        if len(particles) == 0:
            return Particles.empty()
        p4 = np.array(particles.p4)
        vertex = np.array(particles.vertex)
        pt = np.hypot(p4[:, 1], p4[:, 2])
        return Particles(
            pdg=np.array(particles.pdg),
            charge=np.array([species_of(p).charge for p in particles.pdg]),
            energy=p4[:, 0],
            pt=pt,
            eta=np.arcsinh(p4[:, 3] / np.maximum(pt, 1e-12)),
            phi=np.arctan2(p4[:, 2], p4[:, 1]),
            vx=vertex[:, 0],
            vy=vertex[:, 1],
            vz=vertex[:, 2],
            calo_x=calo[:, 0],
            calo_y=calo[:, 1],
            calo_z=calo[:, 2],
            parent=np.array(particles.parent),
            deposited_energy=deposited,
            visible_energy=visible,
            vt=np.array(particles.time),
            interaction=np.array(particles.interaction),
            generator_index=np.array(particles.generator_index),
        )

"""The benchmark's event classes and their seeds: the one place that says which events exist.

Every physics number of the project (training, threshold tuning, the final tables) is reported
per event class, and each class has three seeds that never overlap: ``train`` (network
training), ``validation`` (checkpoint choice and every tuned threshold, CLUE's included) and
``test`` (the final tables only). Event ``i`` of a split is always the same event
(``numpy.random.default_rng([seed, i])``), so any subset can be regenerated anywhere.

Classes:

- ``gun``: 20-100 particles of the default species mix, energies log-uniform in 1-200 GeV, both
  endcaps (soft to hard, isolated and overlapping);
- ``dense``: 100 particles of 20-200 GeV into one endcap (the class of the original
  GravNet/object-condensation study: ~400 showers' worth of overlap per endcap);
- ``jets``: two jets of 50-300 GeV plus 0-4 leptons/photons/neutral hadrons of 5-100 GeV from
  the same vertex (the MLPF sample), no pileup;
- ``jets_pu140``: the same with 140 pileup interactions overlaid.

Any events file (for example generator events from ``recoserve simulate --from``) is the fifth
class of the evaluation (``--input``); it has no seeds and is never trained on by default.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from recoserve.events.model import Event
from recoserve.sim.jets import JetGunConfig, shoot_jets
from recoserve.sim.particles import GunConfig, ParticleList, shoot
from recoserve.sim.pileup import PileupConfig
from recoserve.sim.simulator import SimConfig, Simulator

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Seeds:
    train: int
    validation: int
    test: int

    def of(self, split: str) -> int:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; known: {SPLITS}")
        return int(getattr(self, split))


ParticleSource = Callable[[np.random.Generator], ParticleList]


@dataclass(frozen=True)
class EventClass:
    """A named kind of event: how its primaries are drawn, its pileup, and its seeds."""

    name: str
    description: str
    seeds: Seeds
    primaries: ParticleSource
    pileup: int = 0

    def config(self, legacy: bool = False, noise: str = "start") -> SimConfig:
        """The simulation settings of this class (``legacy``: the earlier detector model)."""
        from recoserve.sim.digitize import ReadoutConfig

        base = (
            SimConfig.legacy() if legacy else SimConfig(readout=ReadoutConfig.for_scenario(noise))
        )
        return replace(base, pileup=PileupConfig(self.pileup))

    def simulator(self, legacy: bool = False, noise: str = "start") -> Simulator:
        return Simulator(self.config(legacy, noise))

    def event(self, split: str, index: int, simulator: Simulator | None = None) -> Event:
        """Event ``index`` of ``split`` (deterministic)."""
        seed = self.seeds.of(split)
        rng = np.random.default_rng([seed, index])
        particles = self.primaries(rng)
        return (simulator or self.simulator()).from_particles(particles, rng, index)

    def events(
        self, split: str, n_events: int, simulator: Simulator | None = None, first: int = 0
    ) -> list[Event]:
        sim = simulator or self.simulator()
        return [self.event(split, i, sim) for i in range(first, first + n_events)]


def _gun_primaries(rng: np.random.Generator) -> ParticleList:
    n = int(rng.integers(20, 101))
    return shoot(GunConfig(n_particles=n, energy_min=1.0, energy_max=200.0, log_uniform=True), rng)


DENSE_GUN = GunConfig(n_particles=100, energy_min=20.0, energy_max=200.0, both_endcaps=False)


def _dense_primaries(rng: np.random.Generator) -> ParticleList:
    return shoot(DENSE_GUN, rng)


PF_JETS = JetGunConfig(n_jets=2, energy_min=50.0, energy_max=300.0)
PF_EXTRA_SPECIES = ("e-", "e+", "mu-", "mu+", "gamma", "pi+", "pi-", "K0L", "n")


def jet_primaries(rng: np.random.Generator) -> ParticleList:
    """Two jets plus 0-4 extra leptons, photons and hadrons from the same vertex."""
    particles, _ = shoot_jets(PF_JETS, rng)
    extra = shoot(
        GunConfig(
            n_particles=int(rng.integers(0, 5)),
            species=PF_EXTRA_SPECIES,
            energy_min=5.0,
            energy_max=100.0,
        ),
        rng,
    )
    extra.vertex = [particles.vertex[0]] * len(extra)  # one collision: one vertex
    particles.extend(extra)
    return particles


EVENT_CLASSES: dict[str, EventClass] = {
    c.name: c
    for c in (
        EventClass(
            "gun",
            "particle gun, 20-100 particles, log-uniform 1-200 GeV, both endcaps",
            Seeds(train=100, validation=200, test=300),
            _gun_primaries,
        ),
        EventClass(
            "dense",
            "dense gun, 100 particles of 20-200 GeV in one endcap",
            Seeds(train=120, validation=220, test=320),
            _dense_primaries,
        ),
        EventClass(
            "jets",
            "two jets of 50-300 GeV + 0-4 leptons/photons/hadrons, no pileup",
            Seeds(train=110, validation=210, test=310),
            jet_primaries,
        ),
        EventClass(
            "jets_pu140",
            "two jets of 50-300 GeV + 0-4 leptons/photons/hadrons, pileup 140",
            Seeds(train=130, validation=230, test=330),
            jet_primaries,
            pileup=140,
        ),
    )
}


def event_class(name: str) -> EventClass:
    try:
        return EVENT_CLASSES[name]
    except KeyError:
        raise ValueError(f"unknown event class {name!r}; known: {sorted(EVENT_CLASSES)}") from None


def pf_event(seed: int, event_id: int, simulator: Simulator | None = None) -> Event:
    """Event ``event_id`` of the jet sample with an arbitrary ``seed`` (tests, load tests)."""
    rng = np.random.default_rng([seed, event_id])
    return (simulator or Simulator()).from_particles(jet_primaries(rng), rng, event_id)


def classes_markdown() -> str:
    """The class table of docs/benchmark.md (a test checks the docs show the current one)."""
    lines = [
        "| class | events | pileup | train seed | validation seed | test seed |",
        "|---|---|---|---|---|---|",
    ]
    for c in EVENT_CLASSES.values():
        s = c.seeds
        lines.append(
            f"| `{c.name}` | {c.description} | {c.pileup} | {s.train} | {s.validation} | {s.test} |"
        )
    return "\n".join(lines)

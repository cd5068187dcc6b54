"""Simulation speed: wall time per 100-particle event on one core, and hit multiplicities,
for the realistic detector model and the legacy one in the same run (their ratio is the
number that matters: the realistic model must stay within 1.5x).

Run: `make bench-sim` (or `python benchmarks/sim_speed.py --events 20`). Writes
benchmarks/results/sim_speed.json. BLAS/OpenMP threads are pinned to one so the number is a
single-core time.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from recoserve.sim.particles import GunConfig  # noqa: E402
from recoserve.sim.simulator import SimConfig, Simulator  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--particles", type=int, default=100)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--output", type=Path, default=RESULTS / "sim_speed.json")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    gun = GunConfig(n_particles=args.particles)
    result: dict[str, object] = {"particles_per_event": args.particles, "events": args.events}
    for name, config in (("realistic", SimConfig(gun=gun)), ("legacy", SimConfig.legacy(gun=gun))):
        sim = Simulator(config)
        sim.event(args.seed, 10_000)  # warm-up (imports, caches)
        seconds, hits = [], []
        for i in range(args.events):
            start = time.perf_counter()
            event = sim.event(args.seed, i)
            seconds.append(time.perf_counter() - start)
            hits.append(len(event.hits))
        result[name] = {
            "seconds_per_event_mean": float(np.mean(seconds)),
            "seconds_per_event_p95": float(np.percentile(seconds, 95)),
            "seconds_per_event_max": float(np.max(seconds)),
            "hits_per_event_mean": float(np.mean(hits)),
            "hits_per_event_min": int(np.min(hits)),
            "hits_per_event_max": int(np.max(hits)),
        }
    realistic, legacy = result["realistic"], result["legacy"]
    assert isinstance(realistic, dict) and isinstance(legacy, dict)
    result["time_ratio_realistic_over_legacy"] = (
        realistic["seconds_per_event_mean"] / legacy["seconds_per_event_mean"]
    )
    result["machine"] = f"{platform.machine()}, python {platform.python_version()}"
    result["command"] = (
        f"python benchmarks/sim_speed.py --events {args.events} --particles {args.particles}"
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

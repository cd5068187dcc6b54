"""Overload, measured: what happens at about 4x the load that saturates one CPU Triton, with and
without the authenticated entry (Envoy) in front of it, in one run.

1. Saturation: a closed loop of 4 concurrent gRPC clients through the entry for 15 s gives the
   throughput X (events/s) of ~6k-hit events.
2. Overload: an open loop sends 4X events/s for 30 s (each request on its own schedule, whether
   or not earlier ones were answered; client timeout 30 s), once through the entry (at most
   ``--max-in-flight`` requests in flight, the rest refused at once with UNAVAILABLE and a retry
   hint) and once straight to Triton (its own queue bound: 128 requests, 60 s).
3. Backoff: ``RecoClient`` (3 retries, exponential backoff) sends 40 events through the
   overloaded entry while the open loop runs; every event is answered or refused, none hangs.

Records accepted / refused / timed-out counts, latency percentiles of each, and the peak
resident memory of Triton (with its Python-backend stubs) and of Envoy, sampled every 0.25 s.
Writes benchmarks/results/overload.json. Traffic goes to 127.0.0.1 only, and stops by itself.
Run: python benchmarks/overload.py
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
KEY = "overload-benchmark-key"


class MemoryPeak:
    """Peak resident memory (MB) of some processes and their children, sampled in a thread."""

    def __init__(self, pids: list[int]) -> None:
        self.processes = [psutil.Process(p) for p in pids]
        self.peak = self.baseline = self.sample()
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def sample(self) -> float:
        total = 0
        for process in self.processes:
            for p in [process, *process.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    total += p.memory_info().rss
        return total / 2**20

    def _run(self) -> None:
        while self.running:
            self.peak = max(self.peak, self.sample())
            time.sleep(0.25)

    def stop(self) -> dict[str, float]:
        self.running = False
        self.thread.join()
        return {"baseline_mb": round(self.baseline, 1), "peak_mb": round(self.peak, 1)}


def _infer_function(url: str, events: list[tuple[np.ndarray, np.ndarray]]) -> Callable[[int], str]:
    """One gRPC inference of event ``i`` (a client per thread); returns the outcome's name."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    from recoserve.client.sync import infer_inputs

    local = threading.local()

    def infer(i: int) -> str:
        if not hasattr(local, "client"):
            local.client = grpcclient.InferenceServerClient(url)
        hits, tracks = events[i % len(events)]
        inputs = infer_inputs({"HITS": hits, "TRACKS": tracks})
        try:
            local.client.infer("event_reco", inputs, headers={"x-api-key": KEY}, client_timeout=30)
            return "accepted"
        except InferenceServerException as err:
            status = str(err.status())
            if "UNAVAILABLE" in status or "RESOURCE_EXHAUSTED" in status:
                return "refused"
            if "DEADLINE" in status:
                return "timed_out"
            return f"error {status}: {err.message()[:80]}"

    return infer


def _percentiles(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    p = np.percentile(values, [50, 90, 99])
    return {"p50_s": round(float(p[0]), 3), "p90_s": round(float(p[1]), 3),
            "p99_s": round(float(p[2]), 3), "max_s": round(max(values), 3)}  # fmt: skip


def closed_loop(infer: Callable[[int], str], clients: int, seconds: float) -> float:
    """Events/s answered by ``clients`` threads sending back to back."""
    done = [0] * clients
    stop = time.perf_counter() + seconds

    def run(worker: int) -> None:
        i = worker
        while time.perf_counter() < stop:
            if infer(i) == "accepted":
                done[worker] += 1
            i += clients

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(run, range(clients)))
    return sum(done) / (time.perf_counter() - start)


def open_loop(infer: Callable[[int], str], rate: float, seconds: float) -> dict[str, Any]:
    """Send ``rate`` events/s for ``seconds`` on a fixed schedule; count and time outcomes."""
    outcomes: list[tuple[str, float]] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        start = time.perf_counter()
        outcome = infer(i)
        with lock:
            outcomes.append((outcome, time.perf_counter() - start))

    n = int(rate * seconds)
    start = time.perf_counter()
    with ThreadPoolExecutor(256) as pool:
        for i in range(n):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            pool.submit(one, i)
    kinds = sorted({kind for kind, _ in outcomes})
    return {
        "sent": n,
        "offered_per_s": round(rate, 2),
        "counts": {kind: sum(1 for k, _ in outcomes if k == kind) for kind in kinds},
        "latency": {kind: _percentiles([t for k, t in outcomes if k == kind]) for kind in kinds},
        "answered_per_s": round(
            sum(1 for k, _ in outcomes if k == "accepted") / (time.perf_counter() - start), 2
        ),
    }


def client_with_backoff(url: str, events: list[Any], n: int) -> dict[str, Any]:
    """RecoClient's retries under overload: outcomes and time per event."""
    from recoserve.client import RecoClient, RecoError

    answered, failed, times = 0, 0, []
    with RecoClient(url, api_key=KEY, timeout=30, retries=3, shared_memory="never") as client:
        for i in range(n):
            start = time.perf_counter()
            try:
                client.reconstruct(events[i % len(events)])
                answered += 1
            except RecoError:
                failed += 1
            times.append(time.perf_counter() - start)
    return {"events": n, "answered": answered, "gave_up": failed, "time": _percentiles(times)}


def main(max_in_flight: int, factor: float, seconds: float) -> None:
    from recoserve.benchmark.runner import SIZES, bench_events
    from recoserve.export.repository import build_repository, repository_is_current
    from recoserve.server.envoy import EntryPolicy, authenticated_entry
    from recoserve.server.triton import public_models_only, start_triton

    workdir = Path(tempfile.mkdtemp(prefix="recoserve-overload-"))
    repository = ROOT / "model_repository"
    if not repository_is_current(repository):
        build_repository(repository, "local")
    events = bench_events(SIZES["6k"], 8)
    policy = EntryPolicy(
        api_keys={KEY: "benchmark"},
        requests_per_minute=1_000_000,  # the in-flight bound, not the rate limit, is measured
        burst=100_000,
        max_in_flight=max_in_flight,
    )
    results: dict[str, Any] = {}
    with (
        start_triton(
            repository, log_path=workdir / "triton.log", extra_args=public_models_only()
        ) as server,
        authenticated_entry([server], policy, workdir) as entry,
    ):
        assert server.process is not None
        through_entry = _infer_function(entry.url, events)
        direct = _infer_function(server.grpc_url, events)
        for i in range(4):
            through_entry(i)  # warm up
        saturated = closed_loop(through_entry, 4, 15.0)
        rate = factor * saturated
        print(f"saturating throughput {saturated:.2f} events/s; offering {rate:.2f}/s")
        results["saturating_events_per_s"] = round(saturated, 2)
        for name, infer in (("through_entry", through_entry), ("direct_to_triton", direct)):
            memory = {
                "triton": MemoryPeak([server.process.pid]),
                "envoy": MemoryPeak([entry.process.pid]),
            }
            backoff: dict[str, Any] = {}
            if name == "through_entry":
                side = threading.Thread(
                    target=lambda out=backoff: out.update(
                        client_with_backoff(entry.url, events, 40)
                    )
                )
                side.start()
            results[name] = open_loop(infer, rate, seconds)
            if name == "through_entry":
                side.join()
                results[name]["recoclient_with_retries"] = backoff
            results[name]["memory"] = {k: m.stop() for k, m in memory.items()}
            print(name, json.dumps(results[name], indent=1))
            time.sleep(35)  # let the queue drain before the next run
    summary = {
        **results,
        "setup": (
            f"one embedded CPU Triton (2 cores, local repository), ~6k-hit events; entry with "
            f"max_in_flight={max_in_flight}; open loop at {factor}x the saturating rate for "
            f"{seconds:g} s; client timeout 30 s"
        ),
        "command": "python benchmarks/overload.py",
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "overload.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-in-flight", type=int, default=8)
    parser.add_argument("--factor", type=float, default=4.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    main(args.max_in_flight, args.factor, args.seconds)

"""`recoserve bench`: every way of running the full chain (event_reco), side by side, in one run
on the same machine and cores.

Modes:

- ``in-process``: the physical limit — ``EventRecoPipeline`` on ONNX Runtime (1 thread) in
  ``concurrency`` worker processes, no server;
- ``grpc``: Triton over gRPC (``RecoClient``, one per client thread, plain tensors);
- ``shm``: Triton with system shared memory for the tensors;
- ``stream``: one gRPC stream with ``concurrency`` requests in flight (``reconstruct_many``);
- ``rest-binary`` / ``rest-json``: the FastAPI gateway with npz or JSON bodies;
- ``naive``: a plain FastAPI + eager PyTorch + JSON server (``naive_server``).

Each (mode, event size, concurrency) sends the same events; we record events/s, latency
percentiles, CPU use of the serving processes (CPU seconds per wall second; 2.0 = both cores)
and their peak resident memory. Results: benchmarks/results/bench.csv, bench.json, bench.png.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from recoserve.benchmark.chain_cost import (
    CHAIN_SIZES,
    ChainCost,
    exported_pipeline,
    gun_events,
    measure_chain_cost,
    peak_memory,
    plot_chain_cost,
    served_peak_memory,
)

MODES = ("in-process", "grpc", "shm", "stream", "rest-binary", "rest-json", "naive")
SIZES = {"1k": 2, "6k": 10, "10k": 18, "20k": 36, "60k": 106}  # label -> gun particles
BENCH_SEED = 500
Event = tuple[np.ndarray, np.ndarray]


@dataclass
class Measurement:
    mode: str
    size: str
    hits: float  # mean hits per event
    concurrency: int
    events: int
    seconds: float
    events_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    cpu_cores: float  # CPU seconds of the serving side per wall second
    peak_rss_mb: float
    errors: int


def bench_events(particles: int, n: int) -> list[Event]:
    """``n`` particle-gun events as (hits, tracks) tables, as clients send them."""
    return [(e.hits.features(), e.tracks.features()) for e in gun_events(particles, n, BENCH_SEED)]


def _process_label(process: Any) -> str:
    """A Triton Python-backend stub by its model instance (e.g. ``event_reco_0_1``), any other
    process by its name; with the pid."""
    words = process.cmdline()
    stub = [w for w in words if w.count("_") >= 2 and w.rsplit("_", 2)[-1].isdigit()]
    return f"{stub[0] if stub else process.name()} ({process.pid})"


class ResourceMonitor:
    """CPU time and peak RSS of a set of process trees, sampled in a thread: of the trees
    together (``peak``) and of each process (``process_peaks``, by pid and command line)."""

    def __init__(self, pids: list[int]) -> None:
        import psutil

        self.roots = [psutil.Process(p) for p in pids]
        self.peak = 0.0
        self.process_peaks: dict[str, float] = {}
        self._stop = threading.Event()
        self._cpu0 = self._cpu()
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _tree(self) -> list[Any]:
        import psutil

        procs = []
        for root in self.roots:
            with contextlib.suppress(psutil.Error):
                procs += [root, *root.children(recursive=True)]
        return procs

    def _cpu(self) -> float:
        total = 0.0
        for p in self._tree():
            with contextlib.suppress(Exception):
                t = p.cpu_times()
                total += t.user + t.system
        return total

    def _sample(self) -> None:
        while not self._stop.is_set():
            rss = 0
            for p in self._tree():
                with contextlib.suppress(Exception):
                    mine = p.memory_info().rss
                    rss += mine
                    label = _process_label(p)
                    peak = max(self.process_peaks.get(label, 0.0), mine / 2**20)
                    self.process_peaks[label] = peak
            self.peak = max(self.peak, rss / 2**20)
            time.sleep(0.1)

    def stop(self) -> tuple[float, float]:
        """(CPU cores used on average, peak RSS in MB)."""
        self._stop.set()
        self._thread.join()
        wall = time.perf_counter() - self._t0
        return (self._cpu() - self._cpu0) / max(wall, 1e-9), self.peak


def _percentiles(latencies: list[float]) -> tuple[float, float, float]:
    if not latencies:
        return float("nan"), float("nan"), float("nan")
    p = np.percentile(np.array(latencies) * 1e3, [50, 95, 99])
    return float(p[0]), float(p[1]), float(p[2])


Call = Callable[[Event], None]
# A connection of one worker thread: (send one event, close the connection).
MakeCall = Callable[[], tuple[Call, Callable[[], None]]]


def drive(
    make_call: MakeCall, events: list[Event], concurrency: int, n_requests: int
) -> tuple[float, list[float], int]:
    """``concurrency`` threads, each with its own connection from ``make_call()`` (closed when
    the thread ends, whatever happens), send ``n_requests`` events in total; returns (wall
    seconds, latencies, errors)."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    counter = iter(range(n_requests))

    def worker() -> None:
        call, close = make_call()
        try:
            call(events[0])  # warm this connection up
            barrier.wait()
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                t0 = time.perf_counter()
                try:
                    call(events[i % len(events)])
                except Exception:
                    with lock:
                        errors[0] += 1
                    continue
                with lock:
                    latencies.append(time.perf_counter() - t0)
        finally:
            close()  # e.g. unregisters a client's shared-memory regions

    barrier = threading.Barrier(concurrency + 1)
    with ThreadPoolExecutor(concurrency) as pool:
        futures = [pool.submit(worker) for _ in range(concurrency)]
        barrier.wait()
        start = time.perf_counter()
        for f in futures:
            f.result()
        wall = time.perf_counter() - start
    return wall, latencies, errors[0]


# -- in-process workers (module level so that spawned processes can import them) ------------

_PIPELINE: Any = None


def _init_worker(repository: str, pids: Any = None) -> None:
    """Load the exported networks once per worker process; report its pid on ``pids`` (a
    multiprocessing queue) so that its CPU and memory can be measured."""
    global _PIPELINE
    if pids is not None:
        pids.put(os.getpid())
    os.environ["OMP_NUM_THREADS"] = "1"
    _PIPELINE = exported_pipeline(Path(repository))


def _run_one(event: Event) -> float:
    t0 = time.perf_counter()
    _PIPELINE.reconstruct(*event)
    return time.perf_counter() - t0


def _in_process(repository: Path, events: list[Event], concurrency: int, n: int) -> Measurement:
    context = get_context("spawn")
    pids = context.Queue()
    with context.Pool(concurrency, _init_worker, (str(repository), pids)) as pool:
        pool.map(_run_one, [events[0]] * concurrency)  # warm up every worker
        monitor = ResourceMonitor([pids.get(timeout=300) for _ in range(concurrency)])
        start = time.perf_counter()
        latencies = pool.map(_run_one, [events[i % len(events)] for i in range(n)], chunksize=1)
        wall = time.perf_counter() - start
        cpu, peak = monitor.stop()
    return measurement_of("in-process", events, concurrency, n, wall, latencies, 0, cpu, peak)


def measurement_of(
    mode: str,
    events: list[Event],
    concurrency: int,
    n: int,
    wall: float,
    latencies: list[float],
    errors: int,
    cpu: float,
    peak: float,
    size: str = "",
) -> Measurement:
    p50, p95, p99 = _percentiles(latencies)
    return Measurement(
        mode=mode,
        size=size,
        hits=float(np.mean([len(h) for h, _ in events])),
        concurrency=concurrency,
        events=n,
        seconds=wall,
        events_per_s=(n - errors) / wall,
        p50_ms=p50,
        p95_ms=p95,
        p99_ms=p99,
        cpu_cores=cpu,
        peak_rss_mb=peak,
        errors=errors,
    )


@contextlib.contextmanager
def _process(command: list[str], health: str) -> Iterator[subprocess.Popen[bytes]]:
    import httpx

    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            if process.poll() is not None:
                raise RuntimeError(f"{command[:3]} exited with {process.returncode} while starting")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(health, timeout=1).status_code == 200:
                    break
            time.sleep(0.2)
        else:
            raise RuntimeError(f"{command[:3]} did not answer {health} within 120 s")
        yield process
    finally:
        process.terminate()
        process.wait(20)


def run_bench(
    output_dir: Path,
    sizes: tuple[str, ...] = tuple(SIZES),
    concurrencies: tuple[int, ...] = (1, 2, 4, 8),
    modes: tuple[str, ...] = MODES,
    budget_s: float = 6.0,
    log: Callable[[str], None] = print,
    chain_sizes: tuple[str, ...] = tuple(CHAIN_SIZES),
) -> list[Measurement]:
    """The chains' cost per event (ML vs classical, one core; ``chain_cost``), then every
    serving mode × size × concurrency; CSV, JSON and plots to ``output_dir``. With ``modes``
    empty, only the chains' cost (and memory) is measured."""
    from recoserve.export.repository import build_repository
    from recoserve.server.triton import start_triton

    results: list[Measurement] = []
    memory: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="recoserve-bench-") as tmp:
        workdir = Path(tmp)
        repository = workdir / "model_repository"
        build_repository(repository, "local", parity=False)
        costs = measure_chain_cost(repository, chain_sizes, log=log) if chain_sizes else []
        largest = gun_events(CHAIN_SIZES[chain_sizes[-1]], 1)[0] if chain_sizes else None
        if largest is not None:
            memory["in_process"] = {"size": chain_sizes[-1], **peak_memory(repository, largest)}
            log(f"ML chain in-process memory: {memory['in_process']}")
        with start_triton(repository, log_path=workdir / "triton.log") as triton:
            assert triton.process is not None
            if largest is not None:
                served = served_peak_memory([triton.process.pid], triton.grpc_url, largest)
                memory["served"] = {"size": chain_sizes[-1], **served}
                log(f"served memory (Triton's process tree): {memory['served']}")
            if modes:
                results = _serving_modes(triton, repository, sizes, concurrencies, modes,
                                         budget_s, log)  # fmt: skip
    if costs:
        write_chain_cost(costs, memory, output_dir)
    if results:
        write_results(results, output_dir)
    return results


def _serving_modes(
    triton: Any,
    repository: Path,
    sizes: tuple[str, ...],
    concurrencies: tuple[int, ...],
    modes: tuple[str, ...],
    budget_s: float,
    log: Callable[[str], None],
) -> list[Measurement]:
    """Every serving mode × size × concurrency against the running ``triton``."""
    import httpx

    from recoserve.client import RecoClient
    from recoserve.server import bodies
    from recoserve.server.triton import free_ports

    gateway_port, naive_port = free_ports(2)
    results: list[Measurement] = []
    gateway_cmd = [
        sys.executable, "-m", "recoserve.cli", "gateway", "--triton", triton.grpc_url,
        "--port", str(gateway_port), "--rate-limit", "1000000",
    ]  # fmt: skip
    naive_cmd = [sys.executable, "-m", "recoserve.benchmark.naive_server", str(naive_port)]
    with (
        _process(gateway_cmd, f"http://127.0.0.1:{gateway_port}/healthz") as gateway,
        _process(naive_cmd, f"http://127.0.0.1:{naive_port}/healthz") as naive,
    ):
        assert triton.process is not None
        serving = {
            "grpc": [triton.process.pid],
            "shm": [triton.process.pid],
            "stream": [triton.process.pid],
            "rest-binary": [triton.process.pid, gateway.pid],
            "rest-json": [triton.process.pid, gateway.pid],
            "naive": [naive.pid],
        }
        for size in sizes:
            events = bench_events(SIZES[size], 6)
            t0 = time.perf_counter()
            _init_worker(str(repository))
            for e in events[:2]:
                _run_one(e)
            one = (time.perf_counter() - t0) / 3  # rough seconds per event on one core
            n_requests = int(np.clip(budget_s * 2 / max(one, 1e-3), 8, 400))

            def rest(kind: str, port: int, path: str) -> tuple[Call, Callable[[], None]]:
                client = httpx.Client(timeout=300)
                url = f"http://127.0.0.1:{port}{path}"

                def call(event: Event) -> None:
                    hits, tracks = event
                    if kind == "json":
                        body = {"hits": hits.tolist(), "tracks": tracks.tolist()}
                        response = client.post(url, json=body)
                    else:
                        buffer = io.BytesIO()
                        np.savez(buffer, hits=hits, tracks=tracks)
                        response = client.post(url, content=buffer.getvalue(), headers={
                            "content-type": bodies.NPZ, "accept": bodies.NPZ})  # fmt: skip
                        np.load(io.BytesIO(response.content))
                    response.raise_for_status()
                    if kind == "json":
                        response.json()

                return call, client.close

            def grpc(shm: str) -> tuple[Call, Callable[[], None]]:
                client = RecoClient(triton.grpc_url, shared_memory=shm, timeout=300)

                def call(event: Event) -> None:
                    client.reconstruct(event)

                return call, client.close

            factories: dict[str, MakeCall] = {
                "grpc": lambda: grpc("never"),
                "shm": lambda: grpc("always"),
                "rest-binary": lambda: rest("npz", gateway_port, "/v1/reconstruct"),
                "rest-json": lambda: rest("json", gateway_port, "/v1/reconstruct"),
                "naive": lambda: rest("json", naive_port, "/reconstruct"),
            }
            for concurrency in concurrencies:
                for mode in modes:
                    if mode == "in-process":
                        m = _in_process(repository, events, concurrency, n_requests)
                    elif mode == "stream":
                        with RecoClient(
                            triton.grpc_url, shared_memory="never", timeout=300
                        ) as client:
                            list(client.reconstruct_many(events[:2], in_flight=2))
                            monitor = ResourceMonitor(serving[mode])
                            start = time.perf_counter()
                            outs = list(client.reconstruct_many(
                                (events[i % len(events)] for i in range(n_requests)),
                                in_flight=concurrency))  # fmt: skip
                            wall = time.perf_counter() - start
                            cpu, peak = monitor.stop()
                            errors = sum(1 for o in outs if o.error)
                        m = measurement_of(mode, events, concurrency, n_requests, wall, [],
                                         errors, cpu, peak)  # fmt: skip
                    else:
                        monitor = ResourceMonitor(serving[mode])
                        wall, latencies, errors = drive(
                            factories[mode], events, concurrency, n_requests
                        )
                        cpu, peak = monitor.stop()
                        m = measurement_of(mode, events, concurrency, n_requests, wall,
                                         latencies, errors, cpu, peak)  # fmt: skip
                    m.size = size
                    results.append(m)
                    log(
                        f"{size:>4} c={concurrency} {mode:<12} {m.events_per_s:7.2f} ev/s "
                        f"p50 {m.p50_ms:8.1f} ms  cpu {m.cpu_cores:4.2f}  "
                        f"rss {m.peak_rss_mb:6.0f} MB  errors {m.errors}"
                    )
    return results


def write_chain_cost(costs: list[ChainCost], memory: dict[str, Any], output_dir: Path) -> None:
    """chain_cost.json (per size: ms per event of both chains and of each stage; memory) and
    chain_cost.png."""
    output_dir.mkdir(parents=True, exist_ok=True)
    summary = {
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
        "ml_over_classical": {c.size: c.ml_over_classical for c in costs},
        "memory_mb": memory,
        "sizes": [asdict(c) for c in costs],
    }
    (output_dir / "chain_cost.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot_chain_cost(costs, output_dir / "chain_cost.png")


def write_results(results: list[Measurement], output_dir: Path) -> None:
    output_dir.mkdir(parents=True, exist_ok=True)
    rows = [asdict(m) for m in results]
    with open(output_dir / "bench.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    summary = {
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "targets": targets(results),
        "measurements": rows,
    }
    (output_dir / "bench.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot(results, output_dir / "bench.png")


def _rate(results: list[Measurement], mode: str, size: str, concurrency: int) -> float:
    for m in results:
        if (m.mode, m.size, m.concurrency) == (mode, size, concurrency):
            return m.events_per_s
    return float("nan")


def targets(results: list[Measurement]) -> dict[str, Any]:
    """The ratios of the acceptance targets (issue: load tests and benchmarks)."""
    out: dict[str, Any] = {}
    for c in (2, 4, 8):
        limit = _rate(results, "in-process", "10k", c)
        grpc = _rate(results, "grpc", "10k", c)
        out[f"grpc_over_inprocess_10k_c{c}"] = grpc / limit
        out[f"shm_over_inprocess_10k_c{c}"] = _rate(results, "shm", "10k", c) / limit
        out[f"rest_binary_over_grpc_10k_c{c}"] = _rate(results, "rest-binary", "10k", c) / grpc
    for size in SIZES:
        out[f"grpc_over_naive_{size}_c8"] = _rate(results, "grpc", size, 8) / _rate(
            results, "naive", size, 8
        )
    return out


def plot(results: list[Measurement], path: Path) -> None:
    import matplotlib.pyplot as plt

    from recoserve.plotting import save_figure

    sizes = list(dict.fromkeys(m.size for m in results))
    fig, axes = plt.subplots(1, len(sizes), figsize=(5 * len(sizes), 4.5), squeeze=False)
    for ax, size in zip(axes[0], sizes, strict=True):
        for mode in MODES:
            points = sorted((m.concurrency, m.events_per_s) for m in results
                            if m.size == size and m.mode == mode)  # fmt: skip
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, marker="o", label=mode)
        hits = np.mean([m.hits for m in results if m.size == size])
        ax.set_title(f"{size} ({hits:.0f} hits/event)")
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel("events / s")
        ax.set_xscale("log", base=2)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    save_figure(fig, path)

"""gRPC load generator for Triton's event_reco: N client threads for a fixed time, CSV out.

    python loadtests/grpc_load.py --server 127.0.0.1:8001 --clients 4 --seconds 30 \
        --csv benchmarks/results/loadtest_grpc.csv

Each thread sends events back to back with its own RecoClient (with RECOSERVE_API_KEY, when
set, as its credential); per-second rows give the
throughput, latency percentiles and errors, so that a soak run shows drift over time. Sends only
to the given server (127.0.0.1 in our runs) and stops by itself.
"""

from __future__ import annotations

import argparse
import csv
import os
import threading
import time
from pathlib import Path

import numpy as np

from recoserve.client import RecoClient
from recoserve.sim.classes import pf_event


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="127.0.0.1:8001")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--events", type=int, default=8)
    parser.add_argument("--csv", type=Path, default=Path("benchmarks/results/loadtest_grpc.csv"))
    parser.add_argument("--interval", type=float, default=1.0, help="seconds per CSV row")
    parser.add_argument(
        "--rss-pid", type=int, default=0, help="also record this process tree's RSS"
    )
    args = parser.parse_args()
    if not args.server.startswith(("127.0.0.1:", "localhost:")):
        parser.error("load tests only target 127.0.0.1 / localhost")

    events = [pf_event(612, i) for i in range(args.events)]
    lock = threading.Lock()
    latencies: list[float] = []
    errors = [0]
    stop = time.monotonic() + args.seconds

    def client_loop(k: int) -> None:
        with RecoClient(
            args.server,
            shared_memory="never",
            retries=0,
            timeout=60,
            api_key=os.environ.get("RECOSERVE_API_KEY"),  # a server started with --api-key
        ) as client:
            i = k
            while time.monotonic() < stop:
                t0 = time.perf_counter()
                try:
                    client.reconstruct(events[i % len(events)])
                    with lock:
                        latencies.append(time.perf_counter() - t0)
                except Exception:
                    with lock:
                        errors[0] += 1
                i += 1

    threads = [threading.Thread(target=client_loop, args=(k,)) for k in range(args.clients)]
    for t in threads:
        t.start()
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with open(args.csv, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["t_s", "events_per_s", "p50_ms", "p99_ms", "errors", "server_rss_mb"])
        while any(t.is_alive() for t in threads):
            time.sleep(args.interval)
            with lock:
                window, latencies[:] = list(latencies), []
                failed, errors[0] = errors[0], 0
            p50, p99 = (np.percentile(np.array(window) * 1e3, [50, 99]) if window
                        else (float("nan"), float("nan")))  # fmt: skip
            writer.writerow([round(time.monotonic() - start, 1), len(window) / args.interval,
                             round(float(p50), 1), round(float(p99), 1), failed,
                             round(_rss(args.rss_pid), 1)])  # fmt: skip
            f.flush()
    for t in threads:
        t.join()


def _rss(pid: int) -> float:
    if not pid:
        return float("nan")
    import psutil

    root = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]) / 2**20


if __name__ == "__main__":
    main()

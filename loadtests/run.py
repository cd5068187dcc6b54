"""`make loadtest` / `make soak`: start the service on free 127.0.0.1 ports, load it, stop it.

    python loadtests/run.py                 # locust on the gateway + gRPC load, 30 s each
    python loadtests/run.py --soak 600      # 10 minutes of gRPC at saturation, memory tracked

Writes CSV files to benchmarks/results/ (loadtest_rest_*.csv from locust, loadtest_grpc.csv,
soak.csv) and, for a soak, soak.json: errors and memory growth between the first and the last
minute.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from recoserve.export.repository import build_repository
from recoserve.server.triton import free_ports, start_triton

HERE = Path(__file__).resolve().parent
RESULTS = HERE.parent / "benchmarks" / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--users", type=int, default=4)
    parser.add_argument("--soak", type=float, default=0.0, help="soak duration in seconds")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="recoserve-load-"))
    repository = workdir / "model_repository"
    build_repository(repository, "local", parity=False)
    RESULTS.mkdir(parents=True, exist_ok=True)
    with start_triton(repository, log_path=workdir / "triton.log") as triton:
        assert triton.process is not None
        if args.soak:
            soak(triton.grpc_url, triton.process.pid, args.soak, args.users)
            return
        port = free_ports(1)[0]
        gateway = subprocess.Popen([sys.executable, "-m", "recoserve.cli", "gateway", "--triton",
                                    triton.grpc_url, "--port", str(port),
                                    "--rate-limit", "1000000"])  # fmt: skip
        try:
            for _ in range(300):
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            subprocess.run(
                [sys.executable, "-m", "locust", "-f", str(HERE / "locustfile.py"), "--headless",
                 "-u", str(args.users), "-r", str(args.users), "-t", f"{int(args.seconds)}s",
                 "--host", f"http://127.0.0.1:{port}", "--csv", str(RESULTS / "loadtest_rest"),
                 "--only-summary"],
                check=False, timeout=args.seconds + 120,
            )  # fmt: skip
        finally:
            gateway.terminate()
        subprocess.run(
            [sys.executable, str(HERE / "grpc_load.py"), "--server", triton.grpc_url,
             "--clients", str(args.users), "--seconds", str(args.seconds),
             "--csv", str(RESULTS / "loadtest_grpc.csv")],
            check=True, timeout=args.seconds + 120,
        )  # fmt: skip


def soak(server: str, pid: int, seconds: float, clients: int) -> None:
    path = RESULTS / "soak.csv"
    subprocess.run(
        [sys.executable, str(HERE / "grpc_load.py"), "--server", server, "--clients",
         str(clients), "--seconds", str(seconds), "--csv", str(path), "--interval", "10",
         "--rss-pid", str(pid)],
        check=True, timeout=seconds + 300,
    )  # fmt: skip
    with open(path) as f:
        rows = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
    first = [r["server_rss_mb"] for r in rows if r["t_s"] <= 60]
    last = [r["server_rss_mb"] for r in rows if r["t_s"] >= rows[-1]["t_s"] - 60]
    summary = {
        "seconds": seconds,
        "clients": clients,
        "events": sum(r["events_per_s"] * 10 for r in rows),
        "errors": sum(r["errors"] for r in rows),
        "mean_events_per_s": sum(r["events_per_s"] for r in rows) / len(rows),
        "rss_first_minute_mb": max(first),
        "rss_last_minute_mb": max(last),
        "memory_growth": max(last) / max(first) - 1,
    }
    (RESULTS / "soak.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()

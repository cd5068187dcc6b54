"""Turn benchmarks/results/*.json into the tables of docs/benchmarks.md and README.md.

The tables sit between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->` markers and are
replaced in place, so the documents always show the recorded results.
Run: python benchmarks/summarize.py
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MODES = ("in-process", "grpc", "shm", "stream", "rest-binary", "rest-json", "naive")


def _load(name: str) -> dict[str, Any]:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else {}


def throughput_table(bench: dict[str, Any], concurrency: int) -> str:
    rows = bench["measurements"]
    sizes = list(dict.fromkeys(r["size"] for r in rows))
    head = (
        "| mode | "
        + " | ".join(
            f"{s} ({next(r['hits'] for r in rows if r['size'] == s):.0f} hits)" for s in sizes
        )
        + " |\n|---|"
        + "---|" * len(sizes)
        + "\n"
    )
    lines = []
    for mode in MODES:
        cells = []
        for size in sizes:
            m = [r for r in rows if (r["mode"], r["size"], r["concurrency"]) ==
                 (mode, size, concurrency)]  # fmt: skip
            cells.append(f"{m[0]['events_per_s']:.2f}" if m else "–")
        lines.append(f"| {mode} | " + " | ".join(cells) + " |")
    return head + "\n".join(lines) + "\n"


def detail_table(bench: dict[str, Any], size: str) -> str:
    rows = [r for r in bench["measurements"] if r["size"] == size]
    out = "| mode | clients | events/s | p50 ms | p95 ms | p99 ms | CPU cores | peak RSS MB |\n"
    out += "|---|---|---|---|---|---|---|---|\n"
    for r in sorted(rows, key=lambda r: (r["concurrency"], MODES.index(r["mode"]))):
        out += (f"| {r['mode']} | {r['concurrency']} | {r['events_per_s']:.2f} | "
                f"{r['p50_ms']:.0f} | {r['p95_ms']:.0f} | {r['p99_ms']:.0f} | "
                f"{r['cpu_cores']:.2f} | {r['peak_rss_mb']:.0f} |\n")  # fmt: skip
    return out.replace("| nan |", "| – |")


def chain_cost_table(cost: dict[str, Any]) -> str:
    """ML chain vs classical chain per event, one core (``recoserve bench``'s first part)."""
    sizes = cost["sizes"]
    out = "| | " + " | ".join(f"{s['hits']:,.0f} hits" for s in sizes) + " |\n"
    out += "|---|" + "---|" * len(sizes) + "\n"
    rows = [
        ("ML chain, ms", lambda s: f"{s['ml_ms']:.0f}"),
        ("… of which network + condensation",
         lambda s: f"{s['ml_stages_ms']['network + condensation']:.0f}"),
        ("classical chain, ms", lambda s: f"{s['classical_ms']:.0f}"),
        ("… of which CLUE", lambda s: f"{s['classical_stages_ms']['clue']:.0f}"),
        ("ML / classical", lambda s: f"{s['ml_over_classical']:.2f}"),
    ]  # fmt: skip
    for label, cell in rows:
        out += f"| {label} | " + " | ".join(cell(s) for s in sizes) + " |\n"
    return out


def _chain_ratio(cost: dict[str, Any], low: float, high: float) -> float | None:
    ratios = [s["ml_over_classical"] for s in cost.get("sizes", []) if low <= s["hits"] <= high]
    return max(ratios) if ratios else None


def targets_table(
    bench: dict[str, Any],
    scaling: dict[str, Any],
    soak: dict[str, Any],
    cost: dict[str, Any],
) -> str:
    t = bench.get("targets", {})
    memory = cost.get("memory_mb", {})
    in_process = memory.get("in_process", {}).get("peak_mb_after_each_call", [float("nan")])[-1]
    per_process = memory.get("served", {}).get("peak_per_process_mb", {})
    served = max(per_process.values(), default=float("nan"))

    def best(prefix: str) -> float:
        values = [v for k, v in t.items() if k.startswith(prefix) and not k.endswith("c1")]
        return min(values) if values else float("nan")

    rows = [
        ("Triton gRPC / in-process, 10k hits, 2–8 clients (worst)", "≥ 0.90",
         best("grpc_over_inprocess_10k")),
        ("shared memory / in-process, 10k hits, 2–8 clients (worst)", "≥ 0.97",
         best("shm_over_inprocess_10k")),
        ("REST binary / gRPC, 10k hits, 2–8 clients (worst)", "≥ 0.80",
         best("rest_binary_over_grpc_10k")),
        ("Triton gRPC / naive server, 8 clients, 10k hits", "≥ 3", t.get("grpc_over_naive_10k_c8")),
        ("GravNet time(60k) / time(6k), ONNX Runtime", "≤ 12",
         scaling.get("onnx_time_ratio_60k_over_6k")),
        ("GravNet peak memory at 200k hits, ONNX Runtime (GB)", "≤ 4",
         max((p["peak_rss_mb"] for p in scaling.get("points", []) if p["backend"] == "onnx"
              and p["hits"] >= 190_000), default=float("nan")) / 1024),
        ("ML chain / classical chain per event, one core, 7k–60k hits (worst)", "≤ 2",
         _chain_ratio(cost, 6_000, 70_000)),
        ("ML chain peak memory at 200k hits, in-process (GB)", "≤ 2", in_process / 1024),
        ("largest served process at 200k hits (GB)", "≤ 2", served / 1024),
        ("soak: errors", "0", soak.get("errors")),
        ("soak: memory growth", "< 10 %", soak.get("memory_growth")),
    ]  # fmt: skip
    out = "| target | required | measured |\n|---|---|---|\n"
    for label, required, value in rows:
        shown = "–" if value is None else (f"{value:.1%}" if "growth" in label else f"{value:.2f}")
        out += f"| {label} | {required} | {shown} |\n"
    return out


def replace(path: Path, name: str, text: str) -> None:
    source = path.read_text()
    pattern = re.compile(rf"(<!-- bench:{name} -->\n).*?(<!-- /bench:{name} -->)", re.S)
    if pattern.search(source):
        path.write_text(pattern.sub(lambda m: m.group(1) + text + m.group(2), source))


def main() -> None:
    bench = _load("bench.json")
    scaling = _load("clustering_scaling.json")
    soak = _load("soak.json")
    cost = _load("chain_cost.json")
    if not bench:
        raise SystemExit("no benchmarks/results/bench.json: run `recoserve bench` first")
    for path in (ROOT / "README.md", ROOT / "docs" / "benchmarks.md"):
        replace(path, "targets", targets_table(bench, scaling, soak, cost))
        if cost:
            replace(path, "chaincost", chain_cost_table(cost))
        replace(path, "throughput", throughput_table(bench, 8))
        replace(path, "detail10k", detail_table(bench, "10k"))


if __name__ == "__main__":
    main()

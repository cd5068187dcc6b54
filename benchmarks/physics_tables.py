"""Turn the physics benchmark's results (docs/results/benchmark/*.json) into the tables of
docs/benchmark.md and README.md.

Tables sit between `<!-- physics:NAME -->` and `<!-- /physics:NAME -->` markers and are
replaced in place, so the documents show the recorded results.
Run: python benchmarks/physics_tables.py
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results" / "benchmark"
CLASS_ORDER = ("gun", "dense", "jets", "jets_pu140")


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


def clustering_table(report: dict[str, Any]) -> str:
    classes = report.get("classes", {})
    keys = [c for c in CLASS_ORDER if c in classes] + sorted(
        c for c in classes if c not in CLASS_ORDER
    )
    lines = [
        "| class (test events) | algorithm | eff. > 20 GeV | eff. 5-20 GeV | fake > 10 GeV "
        "| fake > 1 GeV | pileup clusters > 10 GeV | response | resolution "
        "| eff. > 20 GeV, legacy truth | s/event |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key in keys:
        block = classes[key]
        for algo, label in (("network", "GravNet + OC"), ("clue", "CLUE (tuned)")):
            s = block[algo]
            legacy = block[f"{algo}_legacy_truth"]
            lines.append(
                f"| {key} ({block['events']}) | {label} | {_fmt(s['efficiency_above_20GeV'])} "
                f"| {_fmt(s['efficiency_5_20GeV'])} | {_fmt(s['fake_rate_above_10GeV'])} "
                f"| {_fmt(s['fake_rate_above_1GeV'])} "
                f"| {_fmt(s.get('pileup_cluster_fraction_above_10GeV', float('nan')))} "
                f"| {_fmt(s['response_median'])} "
                f"| {_fmt(s['resolution'])} | {_fmt(legacy['efficiency_above_20GeV'])} "
                f"| {_fmt(block['seconds_per_event'][algo + '_s'], 2)} |"
            )
    return "\n".join(lines)


def distance_table(report: dict[str, Any]) -> str:
    classes = report.get("classes", {})
    keys = [c for c in CLASS_ORDER if c in classes]
    if not keys:
        return ""
    bins = classes[keys[0]]["network"]["efficiency_vs_distance_above_20GeV"]
    head = " | ".join(f"{b['distance_min']:g}-{b['distance_max']:g} cm" for b in bins)
    lines = [f"| class | algorithm | {head} |", "|---|---|" + "---|" * len(bins)]
    for key in keys:
        for algo, label in (("network", "GravNet + OC"), ("clue", "CLUE (tuned)")):
            cells = " | ".join(
                _fmt(b["efficiency"], 2)
                for b in classes[key][algo]["efficiency_vs_distance_above_20GeV"]
            )
            lines.append(f"| {key} | {label} | {cells} |")
    return "\n".join(lines)


CHAIN_COLUMNS = (
    ("ch. had. eff.", "charged_hadron", "efficiency"),
    ("nu. had. eff.", "neutral_hadron", "efficiency"),
    ("nu. had. fake", "neutral_hadron", "fake_rate"),
    ("nu. had. σE/E", "neutral_hadron", "energy_resolution"),
    ("γ eff.", "photon", "efficiency"),
    ("γ fake", "photon", "fake_rate"),
    ("μ eff.", "muon", "efficiency"),
    ("μ fake", "muon", "fake_rate"),
)


def chain_table(reports: list[dict[str, Any]]) -> str:
    head = " | ".join(c[0] for c in CHAIN_COLUMNS)
    lines = [
        f"| class | chain | {head} | jet σpt/pt | MET σ (GeV) | s/event |",
        "|---|---|" + "---|" * (len(CHAIN_COLUMNS) + 3),
    ]
    for report in reports:
        for chain, result in report["chains"].items():
            cells = " | ".join(_fmt(result["classes"][c][k]) for _, c, k in CHAIN_COLUMNS)
            lines.append(
                f"| {report['class']} ({report['events']}) | {chain.replace('+', ' → ')} | {cells} "
                f"| {_fmt(result['jets']['pt_resolution'])} "
                f"| {_fmt(result['met']['resolution_xy'], 2)} "
                f"| {_fmt(report['seconds_per_event'][chain], 2)} |"
            )
    return "\n".join(lines)


SUMMARY_CHAINS = ("network+mlpf", "clue+rule_pf", "perfect+rule_pf")


def chain_summary_table(reports: list[dict[str, Any]]) -> str:
    """The served chain, the classical chain and the perfect-clustering bound, per class."""
    lines = [
        "| class | chain | ch. had. eff. | nu. had. σE/E | γ eff. | μ eff. | jet σpt/pt "
        "| MET σ (GeV) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    names = {
        "network+mlpf": "served: network → MLPF",
        "clue+rule_pf": "classical: CLUE → rule-based PF",
        "perfect+rule_pf": "bound: perfect clusters → rule-based PF",
    }
    for report in reports:
        for chain in SUMMARY_CHAINS:
            r = report["chains"].get(chain)
            if r is None:
                continue
            c = r["classes"]
            lines.append(
                f"| {report['class']} | {names[chain]} | {_fmt(c['charged_hadron']['efficiency'])} "
                f"| {_fmt(c['neutral_hadron']['energy_resolution'])} "
                f"| {_fmt(c['photon']['efficiency'])} | {_fmt(c['muon']['efficiency'])} "
                f"| {_fmt(r['jets']['pt_resolution'])} | {_fmt(r['met']['resolution_xy'], 2)} |"
            )
    return "\n".join(lines)


def replace_marker(text: str, name: str, table: str) -> str:
    pattern = re.compile(rf"(<!-- physics:{name} -->\n).*?(<!-- /physics:{name} -->)", re.S)
    return pattern.sub(lambda m: m.group(1) + table + "\n" + m.group(2), text)


def main() -> None:
    clustering_path = RESULTS / "clustering_benchmark.json"
    clustering = json.loads(clustering_path.read_text()) if clustering_path.exists() else {}
    chains = [
        json.loads(p.read_text())
        for name in CLASS_ORDER
        for p in [RESULTS / f"chain_{name}.json"]
        if p.exists()
    ]
    tables = {
        "clustering": clustering_table(clustering) if clustering else "",
        "distance": distance_table(clustering) if clustering else "",
        "chain": chain_table(chains) if chains else "",
        "chain-summary": chain_summary_table(chains) if chains else "",
    }
    for doc in (ROOT / "README.md", ROOT / "docs" / "benchmark.md"):
        text = doc.read_text()
        for name, table in tables.items():
            if table:
                text = replace_marker(text, name, table)
        doc.write_text(text)


if __name__ == "__main__":
    main()

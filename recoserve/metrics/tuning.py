"""Threshold tuning on validation events: a grid whose best point ends up inside it.

A best point on the edge of a grid says the grid was too small, not that the point is best; a
baseline tuned that way is under-tuned. ``grid_search`` therefore extends every axis whose
best value sits on an edge (geometrically, within the axis' hard bounds) and searches again,
until the best point is interior or the bound is reached (then it is reported as such).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from recoserve.postprocess.condensation import CondensationThresholds


@dataclass(frozen=True)
class Axis:
    """One tuned parameter: its starting values (ascending) and hard bounds."""

    name: str
    values: tuple[float, ...]
    lower: float = 0.0
    upper: float = float("inf")

    def extended(self, values: list[float], at_top: bool) -> list[float]:
        """One more value beyond the edge, at the same ratio as the last step."""
        if at_top:
            step = values[-1] / values[-2] if values[-2] > 0 else 2.0
            new = min(values[-1] * step, self.upper)
            return [*values, new] if new > values[-1] else values
        step = values[1] / values[0] if values[0] > 0 else 2.0
        new = max(values[0] / step, self.lower)
        return [new, *values] if new < values[0] else values


@dataclass
class GridResult:
    best: dict[str, float]
    best_score: float
    points: list[dict[str, Any]]  # every evaluated point with its score
    interior: dict[str, bool]  # per axis: best strictly inside the final grid

    def as_dict(self) -> dict[str, Any]:
        return {
            "best": self.best,
            "best_score": self.best_score,
            "interior": self.interior,
            "points": self.points,
        }


def grid_search(
    score: Callable[[dict[str, float]], float], axes: list[Axis], max_rounds: int = 6
) -> GridResult:
    """Maximise ``score`` over the product of the axes, growing edges that hold the best."""
    values = {a.name: list(a.values) for a in axes}
    seen: dict[tuple[float, ...], float] = {}
    for round_ in range(max_rounds):
        for combo in itertools.product(*(values[a.name] for a in axes)):
            if combo not in seen:
                seen[combo] = score(dict(zip(values, combo, strict=True)))
        best_combo = max(
            (c for c in seen if all(v in values[a.name] for v, a in zip(c, axes, strict=True))),
            key=lambda c: seen[c],
        )
        if round_ == max_rounds - 1:
            break
        grew = False
        for a, v in zip(axes, best_combo, strict=True):
            current = values[a.name]
            if v == current[-1] or v == current[0]:
                longer = a.extended(current, at_top=v == current[-1])
                grew |= len(longer) > len(current)
                values[a.name] = longer
        if not grew:
            break
    best = dict(zip(values, best_combo, strict=True))
    interior = {a.name: values[a.name][0] < best[a.name] < values[a.name][-1] for a in axes}
    points = [
        {**dict(zip(values, combo, strict=True)), "score": s} for combo, s in sorted(seen.items())
    ]
    return GridResult(best, seen[best_combo], points, interior)


CONDENSATION_AXES = [
    Axis("t_beta", (0.1, 0.2, 0.3, 0.5, 0.7), lower=0.01, upper=0.95),
    # Up to 1.8: how far a shower's hits spread around its condensation point is learned, and
    # differs between networks (a grid that stops at 0.8 can leave only "no clusters" best).
    Axis("t_d", (0.2, 0.35, 0.5, 0.8, 1.2, 1.8), lower=0.05),
]
"""The grid of the seed and claim thresholds (the first stage of ``tune_condensation``)."""

FRAGMENT_AXES = [
    Axis("seed_spacing", (1.0, 1.5, 2.0, 3.0), lower=1.0),
    Axis("attach", (0.0, 1.5, 2.0), lower=0.0),
]
"""The second stage's steps against fragments, tuned with t_d again (on the first stage's
values): they work at its scale."""


def response_scale(summary: dict[str, Any]) -> float:
    """The ``energy_scale`` that brings a clustering's median response (showers above 20 GeV,
    ``recoserve.metrics.showers``) to 1; 1 when nothing was matched."""
    median = summary["response_median"]
    return 1.0 / median if median > 0 and math.isfinite(median) else 1.0


def tune_condensation(
    summary: Callable[[CondensationThresholds], dict[str, Any]],
) -> tuple[CondensationThresholds, GridResult]:
    """The condensation parameters maximising ``selection_score`` of a clustering's
    ``summary`` (``recoserve.metrics.showers``) on validation events, and the grid behind them.

    Two grids (one over all four thresholds would cost 12x the first): (t_beta, t_d) with the
    fragment steps off, then (t_d, seed_spacing, attach) at that t_beta; the second holds the
    first's best point, so the result never scores below it. Then ``energy_scale`` is fit at
    the chosen point (``response_scale``)."""
    from recoserve.metrics.showers import selection_score

    def score(point: dict[str, float]) -> float:
        return selection_score(summary(CondensationThresholds(**point)))

    off = {"seed_spacing": 1.0, "attach": 0.0}
    first = grid_search(lambda p: score({**p, **off}), CONDENSATION_AXES)
    t_beta = {"t_beta": first.best["t_beta"]}
    t_d = Axis("t_d", tuple(sorted({p["t_d"] for p in first.points})), lower=0.05)
    second = grid_search(lambda p: score({**t_beta, **p}), [t_d, *FRAGMENT_AXES])
    grid = GridResult(
        best={**t_beta, **second.best},
        best_score=second.best_score,
        points=[{**p, **off} for p in first.points] + [{**t_beta, **p} for p in second.points],
        interior={**first.interior, **second.interior},
    )
    best = CondensationThresholds(**grid.best)
    return replace(best, energy_scale=response_scale(summary(best))), grid

"""Single-particle response and energy-resolution curves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import mplhep
import numpy as np

from recoserve.plotting import save_figure
from recoserve.sim.validation import stochastic_constant


def draw_resolution(scan: dict[str, dict[str, Any]], output: str | Path) -> Path:
    """Resolution (left) and response (right) vs energy, one curve and fit per species."""
    mplhep.style.use("CMS")
    fig, (ax_res, ax_resp) = plt.subplots(1, 2, figsize=(20, 8))
    grid = np.linspace(5, 250, 200)
    for name, result in scan.items():
        points = result["points"]
        fit = result["fit"]
        e = np.array([p["energy"] for p in points])
        res = np.array([p["resolution"] for p in points])
        err = np.array([p["resolution_error"] for p in points])
        label = f"{name}: a = {100 * fit['stochastic']:.1f} %, c = {100 * fit['constant']:.1f} %"
        line = ax_res.errorbar(e, res, yerr=err, fmt="o", label=label)
        ax_res.plot(
            grid,
            stochastic_constant(grid, fit["stochastic"], fit["constant"]),
            color=line[0].get_color(),
            lw=1.5,
        )
        ax_resp.plot(e, [p["response_median"] for p in points], "o-", label=name)
    ax_res.set_xlabel("E [GeV]")
    ax_res.set_ylabel(r"$\sigma_{eff}(E_{hits})/E_{hits}$")
    ax_res.set_xscale("log")
    ax_res.legend(fontsize=16, title=r"fit: $\sigma/E = a\,E^{-1/2} \oplus c$", title_fontsize=16)
    ax_resp.set_xlabel("E [GeV]")
    ax_resp.set_ylabel(r"median $E_{hits}/E_{true}$")
    ax_resp.set_xscale("log")
    ax_resp.axhline(1.0, color="0.5", lw=1)
    ax_resp.legend(fontsize=16)
    return save_figure(fig, output)


def draw_multiplicity(rows: list[dict[str, float]], output: str | Path) -> Path:
    """Hits per event vs pileup: all hits, hits from pileup particles, noise hits."""
    mplhep.style.use("CMS")
    fig, ax = plt.subplots(figsize=(10, 8))
    pu = [r["pileup"] for r in rows]
    ax.errorbar(pu, [r["hits_mean"] for r in rows], yerr=[r["hits_std"] for r in rows],
                fmt="o-", label="all hits")  # fmt: skip
    ax.plot(pu, [r["pileup_hits_mean"] for r in rows], "s--", label="hits from pileup")
    ax.plot(pu, [r["noise_hits_mean"] for r in rows], "^:", label="noise hits")
    ax.set_xlabel("pileup interactions")
    ax.set_ylabel("hits per event (2 jets)")
    ax.legend()
    return save_figure(fig, output)


def draw_profiles(
    profiles: dict[str, dict[str, dict[str, list[float]]]], energy: float, output: str | Path
) -> Path:
    """Longitudinal (per layer) and lateral (per radial bin) energy shares, per species and
    detector model."""
    mplhep.style.use("CMS")
    fig, (ax_long, ax_lat) = plt.subplots(1, 2, figsize=(20, 8))
    for name, models in profiles.items():
        for model, profile in models.items():
            style = "-" if model == "realistic" else "--"
            label = f"{name}, {model}"
            ax_long.plot(np.arange(len(profile["longitudinal"])), profile["longitudinal"], style,
                         label=label)  # fmt: skip
            edges = np.asarray(profile["lateral_bins"])
            density = np.asarray(profile["lateral"]) / np.diff(edges)
            ax_lat.step(edges[:-1], density, style, where="post", label=label)
    ax_long.set_xlabel("layer")
    ax_long.set_ylabel("share of the visible energy")
    ax_long.set_title(f"{energy:g} GeV, longitudinal", fontsize=18)
    ax_lat.set_xlabel("distance to the particle's axis [cm]")
    ax_lat.set_ylabel("share of the visible energy per cm")
    ax_lat.set_yscale("log")
    ax_lat.set_title(f"{energy:g} GeV, lateral", fontsize=18)
    for ax in (ax_long, ax_lat):
        ax.legend(fontsize=14)
    return save_figure(fig, output)

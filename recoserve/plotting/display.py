"""Static event display: x-y and r-z views of each endcap, coloured by truth particle."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import mplhep
import numpy as np

from recoserve.events.model import Event
from recoserve.plotting import save_figure

NOISE_COLOR = "0.75"
PILEUP_COLOR = "#9db4c8"


def _colors(truth: np.ndarray) -> np.ndarray:
    """A stable, well-spread colour per truth particle; grey for noise."""
    cmap = plt.get_cmap("tab20")
    rgba = np.array(cmap((np.maximum(truth, 0) * 7 % 20) / 19.0))
    rgba[truth < 0] = matplotlib.colors.to_rgba(NOISE_COLOR)
    return rgba


def draw_event(
    event: Event, output: str | Path, title: str | None = None, pileup_grey: bool = False
) -> Path:
    """Write a PNG with x-y and r-z views of both endcaps; marker area grows with energy.

    ``pileup_grey`` draws hits of pileup particles in one pale colour, so that the hard
    scatter (jets) stands out."""
    hits = event.hits
    mplhep.style.use("CMS")
    fig, axes = plt.subplots(2, 2, figsize=(16, 15))
    colors = _colors(hits.truth_particle)
    owner = hits.truth_particle
    layer_rank = (owner >= 0).astype(int) * 2  # draw noise, then pileup, then the hard scatter
    if pileup_grey and len(event.particles):
        from_pileup = (owner >= 0) & (event.particles.interaction[np.maximum(owner, 0)] > 0)
        colors[from_pileup] = matplotlib.colors.to_rgba(PILEUP_COLOR)
        layer_rank[from_pileup] = 1
    scale = max(float(hits.energy.max(initial=0.0)), 1e-9)
    size = 2.0 + 40.0 * np.sqrt(np.clip(hits.energy, 0, None) / scale)
    order = np.argsort(layer_rank, kind="stable")
    rho = np.hypot(hits.x, hits.y)
    for col, (sign, label) in enumerate(((1, "z > 0"), (-1, "z < 0"))):
        m = order[np.sign(hits.z[order]) == sign]
        ax = axes[0, col]
        ax.scatter(hits.x[m], hits.y[m], s=size[m], c=colors[m], linewidths=0)
        ax.set_xlabel("x [cm]")
        ax.set_ylabel("y [cm]")
        ax.set_title(f"x-y, {label}", fontsize=18)
        ax.set_aspect("equal")
        ax.set_xlim(-270, 270)
        ax.set_ylim(-270, 270)
        ax = axes[1, col]
        ax.scatter(np.abs(hits.z[m]), rho[m], s=size[m], c=colors[m], linewidths=0)
        ax.set_xlabel("|z| [cm]")
        ax.set_ylabel("r [cm]")
        ax.set_title(f"r-z, {label}", fontsize=18)
        ax.set_xlim(315, 525)
        ax.set_ylim(0, 270)
    n_noise = int((hits.truth_particle < 0).sum())
    fig.suptitle(
        title
        or f"event {event.event_id}: {len(hits)} hits ({n_noise} noise), "
        f"{len(np.unique(hits.truth_particle[hits.truth_particle >= 0]))} showering particles, "
        f"{len(event.tracks)} tracks\ncolour = truth particle, grey = noise"
        + (", pale blue = pileup" if pileup_grey else ""),
        fontsize=18,
    )
    return save_figure(fig, output)

"""Figures: event displays and performance curves (matplotlib + mplhep, no screen needed)."""

from __future__ import annotations

from pathlib import Path

from recoserve.extras import require

require("sim", "plots (recoserve.plotting)")

import matplotlib  # noqa: E402

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402


def save_figure(fig: Figure, output: str | Path, dpi: int = 80) -> Path:
    """Lay out, write (creating the folder) and close a figure; returns the path."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path

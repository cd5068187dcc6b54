"""Training: datasets from our simulation, training loops, threshold tuning."""

from recoserve.extras import require

require("train", "training (recoserve.train)")

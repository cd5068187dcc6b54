"""Training: datasets from our simulation, training loops, threshold tuning."""

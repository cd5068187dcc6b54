"""Figures: event displays and performance curves (matplotlib + mplhep, no screen needed)."""

"""Event data model and event files (Parquet, ROOT)."""

from recoserve.events.model import Event, Hits, Particles, Tracks
from recoserve.events.parquet import iter_events, read_events, write_events

__all__ = ["Event", "Hits", "Particles", "Tracks", "iter_events", "read_events", "write_events"]

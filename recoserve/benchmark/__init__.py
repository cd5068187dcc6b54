"""Benchmarks of the serving paths (`recoserve bench`) and the naive baseline server."""

from recoserve.extras import require

require("bench", "the serving benchmarks (recoserve.benchmark)")

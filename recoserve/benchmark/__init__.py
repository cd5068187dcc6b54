"""Benchmarks of the serving paths (`recoserve bench`) and the naive baseline server."""

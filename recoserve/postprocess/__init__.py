"""Post-processing shared by Triton's Python backend, the in-process path and the tests (numpy)."""

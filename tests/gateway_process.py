"""A `recoserve gateway` process for the tests: started on a free port, ready once /healthz
answers, and always stopped with the test that started it."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx

from recoserve.server.triton import free_ports


def start_gateway(
    triton: str, *args: str, quiet: bool = False
) -> tuple[subprocess.Popen[bytes], str]:
    """(the process, its base URL) of a gateway in front of ``triton``, once it answers."""
    port = free_ports(1)[0]
    output = subprocess.DEVNULL if quiet else None
    process = subprocess.Popen(
        [sys.executable, "-m", "recoserve.cli", "gateway", "--triton", triton,
         "--port", str(port), *args],
        stdout=output, stderr=output,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return process, base
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("gateway did not start")


@contextlib.contextmanager
def running_gateway(triton: str, *args: str) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """``start_gateway`` (quiet) as a context: the gateway stops when the block ends."""
    process, base = start_gateway(triton, *args, quiet=True)
    try:
        yield process, base
    finally:
        process.terminate()
        process.wait(10)

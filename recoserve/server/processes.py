"""Child servers that end with the process that started them, however it ends.

Ctrl-C, SIGTERM and test teardowns stop Triton and Envoy explicitly; a parent killed outright
(SIGKILL, the out-of-memory killer) runs no cleanup, and the children would live on, holding
their ports. On Linux the kernel can signal a child when its parent dies (``PR_SET_PDEATHSIG``):
Triton then gets SIGTERM, shuts down and takes its Python-backend stubs with it.

The "parent" is the thread that started the child: start servers from a thread that lives as
long as they should (the main thread, or the watchdog's).
"""

from __future__ import annotations

import ctypes
import signal
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1


def ends_with_parent(signum: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A ``preexec_fn`` for ``subprocess.Popen`` that asks the kernel to send ``signum`` to the
    child when its parent dies (None where the kernel cannot)."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)  # looked up before the fork, not in the child

    def set_parent_death_signal() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, int(signum), 0, 0, 0)

    return set_parent_death_signal

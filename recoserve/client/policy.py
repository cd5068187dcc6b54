"""The server-choice policy both clients share (sync and asyncio): which server to try, when to
ask for its health, and for how long a failed one is left alone.

Health is learnt, not asked before every call: a server that answered (an inference or a
health check) within ``HEALTH_TTL`` seconds is used without a health RPC, so a steady stream
of events costs one RPC per event. A transient failure puts the server in a cooldown; servers
not cooling down are tried first, in the order given, and a cooling one only after every other
failed its health check.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

HEALTH_TTL = 10.0  # seconds an answer vouches for a server's health


@dataclass
class ServerState:
    down_until: float = 0.0  # cooling down until (monotonic seconds)
    healthy_until: float = 0.0  # known healthy until (monotonic seconds)

    def answered(self) -> None:
        """It answered: up (no cooldown) and healthy for another ``HEALTH_TTL`` seconds."""
        self.down_until = 0.0
        self.healthy_until = time.monotonic() + HEALTH_TTL

    def failed(self, cooldown: float) -> None:
        """A transient failure: leave it alone for ``cooldown`` seconds, ask before reuse."""
        self.down_until = time.monotonic() + cooldown
        self.healthy_until = 0.0

    def known_healthy(self) -> bool:
        now = time.monotonic()
        return self.down_until <= now < self.healthy_until


class HasState(Protocol):
    state: ServerState


Server = TypeVar("Server", bound=HasState)


def in_order_of_preference(servers: Sequence[Server]) -> list[Server]:
    """Servers not cooling down first (in the order given), then the cooling ones."""
    now = time.monotonic()
    return sorted(servers, key=lambda s: s.state.down_until > now)

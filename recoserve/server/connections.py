"""Slow and many connections: the gateway's HTTP protocol with deadlines and a per-address cap.

uvicorn bounds idle keep-alive connections but not a request that arrives slowly: a client that
sends its headers a byte at a time ("slowloris") holds a connection for as long as it likes, and
a few hundred such clients starve everyone. ``guarded_protocol`` returns uvicorn's HTTP/1.1
protocol with three rules added:

- the request line and headers must arrive within ``header_timeout`` seconds of the connection
  (or of the previous response, on a kept-alive connection);
- the body must arrive within ``body_timeout`` seconds of the headers;
- one client address holds at most ``max_per_address`` connections; more are closed at once.

A connection that breaks a rule is closed (and logged once); the others are not slowed down.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("recoserve.gateway")


def guarded_protocol(
    header_timeout: float, body_timeout: float, max_per_address: int
) -> type[H11Protocol]:
    """An H11Protocol subclass with its own per-address connection count (one per server)."""
    open_connections: Counter[str] = Counter()

    class GuardedProtocol(H11Protocol):
        deadline: asyncio.TimerHandle | None = None
        address = ""
        waiting_for = ""

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self.address = self.client[0] if self.client else "unknown"
            open_connections[self.address] += 1
            if open_connections[self.address] > max_per_address:
                log.warning("closing a connection: over %d from one address", max_per_address)
                self.transport.close()
                return
            self._arm(header_timeout, "headers")

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            open_connections[self.address] -= 1
            if open_connections[self.address] <= 0:
                del open_connections[self.address]
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            idle = self.cycle is None or self.cycle.response_complete
            if idle and self.deadline is None:
                self._arm(header_timeout, "headers")  # a new request on a kept-alive connection
            super().data_received(data)
            cycle = self.cycle
            if cycle is not None and not cycle.response_complete:
                if not cycle.more_body:
                    self._disarm()  # the whole request is in
                elif self.waiting_for == "headers":
                    self._arm(body_timeout, "body")

        def on_response_complete(self) -> None:
            self._disarm()
            super().on_response_complete()

        def _arm(self, seconds: float, what: str) -> None:
            self._disarm()
            self.waiting_for = what
            self.deadline = self.loop.call_later(seconds, self._expired, what)

        def _disarm(self) -> None:
            if self.deadline is not None:
                self.deadline.cancel()
                self.deadline = None
            self.waiting_for = ""

        def _expired(self, what: str) -> None:
            self.deadline = None
            log.warning("closing a connection: its request %s did not arrive in time", what)
            self.transport.close()

    return GuardedProtocol


def uvicorn_options(header_timeout: float, body_timeout: float, max_per_address: int) -> Any:
    """Keyword arguments of ``uvicorn.run`` for a guarded gateway."""
    return {
        "http": guarded_protocol(header_timeout, body_timeout, max_per_address),
        "timeout_keep_alive": 5,
        "h11_max_incomplete_event_size": 64 * 1024,  # request line + headers
    }

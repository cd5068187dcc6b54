"""Slow and many connections against the real gateway over real sockets (127.0.0.1 only): a
slowloris client is cut off within seconds, a slow body too, one address cannot hold more than
its share of connections, and normal clients are served meanwhile."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest
from gateway_process import running_gateway

HEADER_TIMEOUT, BODY_TIMEOUT, PER_ADDRESS = 2.0, 3.0, 6


@pytest.fixture(scope="module")
def gateway() -> Iterator[tuple[str, int]]:
    """A gateway with short deadlines (no Triton needed: only /healthz is asked)."""
    with running_gateway(
        "127.0.0.1:9", "--header-timeout", str(HEADER_TIMEOUT), "--body-timeout",
        str(BODY_TIMEOUT), "--max-connections-per-address", str(PER_ADDRESS),
    ) as (_, base):  # fmt: skip
        yield "127.0.0.1", int(base.rsplit(":", 1)[1])


def _closed_after(sock: socket.socket, dribble: bytes, limit: float) -> float:
    """Seconds until the server closes ``sock`` while we send ``dribble`` a byte at a time,
    one every 0.2 s; ``limit`` if it never does."""
    start = time.monotonic()
    sock.settimeout(0.2)
    i = 0
    while time.monotonic() - start < limit:
        try:
            if sock.recv(4096) == b"":
                return time.monotonic() - start
        except TimeoutError:
            pass
        except OSError:
            return time.monotonic() - start
        try:
            sock.send(dribble[i % len(dribble) : i % len(dribble) + 1])
        except OSError:
            return time.monotonic() - start
        i += 1
    return limit


def _healthy(host: str, port: int) -> bool:
    return httpx.get(f"http://{host}:{port}/healthz", timeout=2).status_code == 200


def test_slow_headers_are_cut_off_while_others_are_served(gateway: tuple[str, int]) -> None:
    host, port = gateway
    with socket.create_connection((host, port)) as slow:
        slow.sendall(b"POST /v1/reconstruct HTTP/1.1\r\nHost: x\r\n")
        assert _healthy(host, port)  # served while the slow client is connected
        seconds = _closed_after(slow, b"X-Slow: aaaaaaaaaa\r\n", limit=HEADER_TIMEOUT + 8)
    assert seconds < HEADER_TIMEOUT + 3
    assert _healthy(host, port)


def test_a_slow_body_is_cut_off(gateway: tuple[str, int]) -> None:
    host, port = gateway
    with socket.create_connection((host, port)) as slow:
        slow.sendall(
            b"POST /v1/reconstruct HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100000\r\n\r\n{"
        )
        seconds = _closed_after(slow, b" ", limit=BODY_TIMEOUT + 8)
    assert seconds < BODY_TIMEOUT + 3


def test_one_address_holds_a_bounded_number_of_connections(gateway: tuple[str, int]) -> None:
    host, port = gateway
    held = [socket.create_connection((host, port)) for _ in range(PER_ADDRESS)]
    try:
        time.sleep(0.3)
        with socket.create_connection((host, port)) as extra:
            extra.settimeout(HEADER_TIMEOUT / 2)  # well before its own header deadline
            assert extra.recv(1) == b""  # closed at once, nothing answered
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.3)
    assert _healthy(host, port)  # the slots are free again

"""Who may call the gateway, and how often: API keys, JWT bearer tokens, rate limits.

``Authoriser`` answers one question per request — who is calling — or raises the error to send:
401 when authentication fails, 429 when an address fails too often or a caller exceeds its rate.
A caller is identified by a hash of its whole API key, its token's subject, or (with no
authentication configured) its address; limits are sliding one-minute windows in bounded memory.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any


class GatewayError(Exception):
    """An HTTP error of the gateway: its status and a message that names the problem."""

    def __init__(self, status: int, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = 5 if retry_after is None and status == 503 else retry_after


class RateLimiter:
    """Sliding one-minute window per key, in bounded memory: windows that emptied are dropped
    whenever the table grows past ``max_keys``."""

    def __init__(self, per_minute: int, max_keys: int = 10_000) -> None:
        self.per_minute = per_minute
        self.max_keys = max_keys
        self.calls: dict[str, deque[float]] = defaultdict(deque)

    def allow(self, key: str) -> bool:
        now = time.monotonic()
        if len(self.calls) >= self.max_keys and key not in self.calls:
            self._forget_idle(now)
        window = self.calls[key]
        while window and now - window[0] > 60.0:
            window.popleft()
        if len(window) >= self.per_minute:
            return False
        window.append(now)
        return True

    def retry_after(self, key: str) -> int:
        """Seconds until the oldest call of ``key`` leaves its window."""
        window = self.calls.get(key)
        return max(1, int(60.0 - (time.monotonic() - window[0])) + 1) if window else 1

    def _forget_idle(self, now: float) -> None:
        idle = [k for k, w in self.calls.items() if not w or now - w[-1] > 60.0]
        for key in idle:
            del self.calls[key]
        if len(self.calls) >= self.max_keys:  # all active: forget the longest idle half
            by_last = sorted(self.calls, key=lambda k: self.calls[k][-1])
            for key in by_last[: len(by_last) // 2]:
                del self.calls[key]


@dataclass
class Authoriser:
    """The credential checks and rate limits of one gateway (its settings)."""

    api_keys: frozenset[str] = frozenset()  # empty: no API-key check
    jwt_secret: str | None = None  # HS256 bearer tokens accepted when set
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    rate_limit_per_minute: int = 600
    failed_auth_per_minute: int = 30
    limiter: RateLimiter = field(init=False)
    failures: RateLimiter = field(init=False)

    def __post_init__(self) -> None:
        self.limiter = RateLimiter(self.rate_limit_per_minute)
        self.failures = RateLimiter(self.failed_auth_per_minute)

    @property
    def enabled(self) -> bool:
        return bool(self.api_keys) or self.jwt_secret is not None

    def __call__(self, request: Any) -> str:
        """The caller's identity for rate limiting; raises GatewayError 401 or 429."""
        address = request.client.host if request.client else "unknown"
        caller = address
        if self.enabled:
            try:
                caller = self.identify(request.headers)
            except GatewayError:
                if not self.failures.allow(address):
                    raise GatewayError(
                        429,
                        f"too many failed authentications from {address}",
                        self.failures.retry_after(address),
                    ) from None
                raise
        if not self.limiter.allow(caller):
            raise GatewayError(
                429,
                f"rate limit of {self.rate_limit_per_minute}/min exceeded",
                self.limiter.retry_after(caller),
            )
        return caller

    def identify(self, headers: Any) -> str:
        """``key:<hash>`` for a valid API key, ``sub:<subject>`` for a valid token."""
        key = headers.get("x-api-key")
        bearer = headers.get("authorization", "")
        if key is not None:
            if not any(hmac.compare_digest(key, k) for k in self.api_keys):
                raise GatewayError(401, "invalid API key (header X-API-Key)")
            return "key:" + hashlib.sha256(key.encode()).hexdigest()[:24]
        if bearer.lower().startswith("bearer ") and self.jwt_secret:
            import jwt

            try:
                claims = jwt.decode(
                    bearer[7:],
                    self.jwt_secret,
                    algorithms=["HS256"],
                    audience=self.jwt_audience,
                    issuer=self.jwt_issuer,
                    options={"require": ["exp", "sub"]},
                )
            except jwt.PyJWTError as err:
                raise GatewayError(401, f"invalid bearer token: {err}") from None
            return f"sub:{claims['sub']}"
        raise GatewayError(401, "authentication required: X-API-Key or Bearer token")

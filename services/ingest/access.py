"""Who may call ingest and how often: bearer tokens and per-client token-bucket rate limits (pure)."""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence


def bearer_ok(header: str | None, tokens: Sequence[str]) -> bool:
    """True when `Authorization: Bearer <t>` carries one of `tokens` (constant-time per token)."""
    if not header or not header.isascii():
        return False  # a non-ASCII byte arrives as a lone surrogate, which .encode() refuses
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return False
    given = value.strip().encode()
    ok = False
    for token in tokens:
        # Compare against every token, so timing does not reveal which one (or how many) exist.
        ok |= hmac.compare_digest(given, token.encode())
    return ok


def client_key(authorization: str | None, remote: str | None) -> str:
    """Rate-limit identity: a digest of the bearer token if any (never the token itself), else the address."""
    if authorization:
        return "t:" + hashlib.sha256(authorization.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return "a:" + (remote or "unknown")


class RateLimiter:
    """Token bucket per client; bounded memory (least recently seen clients are forgotten)."""

    def __init__(self, rate: float, burst: int, max_clients: int = 10_000,
                 clock: Callable[[], float] = time.monotonic):
        self.rate = rate
        self.burst = max(1, burst)
        self.max_clients = max_clients
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def acquire(self, key: str) -> float:
        """0.0 if the request may go ahead, else the seconds until it may (for Retry-After)."""
        if not self.enabled:
            return 0.0
        now = self._clock()
        tokens, at = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return wait


def retry_after(wait: float) -> str:
    return str(max(1, math.ceil(wait)))

"""Who may call ingest and how often: bearer tokens and token-bucket rate limits (pure).

A request is limited per principal once authenticated (the configured token it carries: one bucket per
token, however many addresses share it), else per client address (X-Forwarded-For only from a trusted
proxy, `services.common.exposure.client_address`). Keying on anything the client writes freely, such as
an arbitrary Authorization header, would give a new bucket per request.
"""

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


def principal(header: str | None, tokens: Sequence[str]) -> str | None:
    """Who an authenticated request is: a digest of the configured token it carries (never the token
    itself), or None when it carries none of them."""
    if not bearer_ok(header, tokens):
        return None
    given = (header or "").partition(" ")[2].strip().encode()
    for token in tokens:
        if hmac.compare_digest(given, token.encode()):
            return hashlib.sha256(token.encode()).hexdigest()[:16]
    return None  # pragma: no cover (bearer_ok said one matched)


def client_key(principal_id: str | None, client_address: str) -> str:
    """Rate-limit identity: the authenticated principal, else the client's address (never a header the
    client chose: a new Authorization value per request must not buy a new bucket)."""
    if principal_id:
        return "t:" + principal_id
    return "a:" + client_address


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

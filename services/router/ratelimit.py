"""Protecting receivers: a token-bucket rate limit and a circuit breaker, per receiver (pure, clock injected).

PagerDuty's Events API accepts about 120 events a minute per integration key and
answers 429 beyond that; waiting for a token is cheaper than burning retries on
429s. The breaker stops hammering a receiver that keeps failing: after
`failure_threshold` failures in a row it opens for `reset_after` seconds, then
lets one probe through (half-open); a success closes it again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

Clock = Callable[[], float]


@dataclass
class TokenBucket:
    rate: float            # tokens per second
    burst: float           # bucket size
    clock: Clock
    tokens: float = field(default=-1.0)
    updated: float = 0.0

    def __post_init__(self) -> None:
        if self.tokens < 0:
            self.tokens = self.burst
        self.updated = self.clock()

    @classmethod
    def per_minute(cls, n: float, clock: Clock, burst: float | None = None) -> TokenBucket:
        return cls(rate=n / 60.0, burst=burst if burst is not None else max(1.0, n / 6.0), clock=clock)

    def take(self, keep: float = 0.0) -> bool:
        """Take a token now if one is free beyond `keep` (tokens held back for more urgent callers)."""
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens < 1.0 + keep:
            return False
        self.tokens -= 1.0
        return True

    def reserve(self) -> float:
        """Take one token; return how long the caller must wait before using it (0 = now)."""
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        self.tokens -= 1.0
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


@dataclass
class CircuitBreaker:
    clock: Clock
    failure_threshold: int = 5
    reset_after: float = 30.0
    failures: int = 0
    opened_at: float | None = None
    probing: bool = False

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half_open" if self.clock() - self.opened_at >= self.reset_after else "open"

    def allow(self) -> bool:
        st = self.state
        if st == "closed":
            return True
        if st == "half_open" and not self.probing:
            self.probing = True  # exactly one probe until it reports back
            return True
        return False

    def retry_in(self) -> float:
        if self.opened_at is None:
            return 0.0
        return max(0.0, self.reset_after - (self.clock() - self.opened_at))

    def record_success(self) -> None:
        self.failures, self.opened_at, self.probing = 0, None, False

    def record_failure(self) -> None:
        self.failures += 1
        if self.probing or self.failures >= self.failure_threshold:
            self.opened_at = self.clock()
        self.probing = False

"""Delivering to one receiver: rate limit, circuit breaker, retries with backoff and jitter; the caller
dead-letters what still failed after the retry budget."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from services.common.codec import pb
from services.common.logging import get_logger
from services.router import metrics as rm
from services.router.ratelimit import CircuitBreaker, TokenBucket
from services.router.receivers import Receiver
from services.router.transport import DeliveryError

T = TypeVar("T")

log = get_logger("router.delivery")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    backoff: float = 0.5
    backoff_max: float = 30.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Full-jitter exponential backoff; a receiver's Retry-After wins when it asks for longer."""
        cap = min(self.backoff_max, self.backoff * (2 ** (attempt - 1)))
        d = random.uniform(cap / 2, cap)
        if retry_after is not None:
            d = max(d, min(retry_after, self.backoff_max))
        return d


@dataclass
class Outcome:
    delivered: bool
    attempts: int
    error: str = ""
    result: Any = None
    retryable: bool = True            # False: the receiver rejected the request itself (4xx)
    retry_after: float | None = None  # what the receiver asked for (429 / 503 Retry-After)


@dataclass
class ReceiverGuard:
    """Per-receiver protection shared by every delivery to it."""

    breaker: CircuitBreaker
    bucket: TokenBucket | None = None

    async def before_attempt(self) -> None:
        if not self.breaker.allow():
            raise DeliveryError(f"circuit open (retry in {self.breaker.retry_in():.1f}s) after: {self.last_error}",
                                True, self.breaker.retry_in())
        if self.bucket is not None:
            wait = self.bucket.reserve()
            if wait > 0:
                rm.RATE_LIMITED.labels(self.name).inc()
                await asyncio.sleep(wait)

    name: str = ""
    last_error: str = ""


async def attempt_once(name: str, call: Callable[[], Awaitable[T]]) -> Outcome:
    """One attempt, no sleeping: pages retry from the grouper's persisted state on later ticks, so one
    incident's failing receiver never holds the tick (and another incident's trigger) in a retry loop."""
    started = time.perf_counter()
    try:
        result = await call()
    except DeliveryError as exc:
        rm.DELIVERY_ATTEMPTS.labels(name, "retryable" if exc.retryable else "rejected").inc()
        return Outcome(False, 1, str(exc), retryable=exc.retryable, retry_after=exc.retry_after)
    rm.DELIVERY_ATTEMPTS.labels(name, "ok").inc()
    rm.DELIVERY_SECONDS.labels(name).observe(time.perf_counter() - started)
    return Outcome(True, 1, result=result)


async def deliver_with_retry(receiver: Receiver, routed: pb.RoutedMention, policy: RetryPolicy,
                             guard: ReceiverGuard | None = None) -> Outcome:
    return await call_with_retry(receiver.name, lambda: receiver.deliver(routed), policy, guard)


async def call_with_retry(name: str, call: Callable[[], Awaitable[T]], policy: RetryPolicy,
                          guard: ReceiverGuard | None = None) -> Outcome:
    started = time.perf_counter()
    last = ""
    for attempt in range(1, policy.attempts + 1):
        try:
            if guard is not None:
                await guard.before_attempt()
            try:
                result = await call()
            except DeliveryError as exc:
                if guard is not None and exc.retryable:
                    guard.breaker.record_failure()
                    guard.last_error = str(exc)[:300]
                raise
            if guard is not None:
                guard.breaker.record_success()
        except DeliveryError as exc:
            last = str(exc)
            rm.DELIVERY_ATTEMPTS.labels(name, "retryable" if exc.retryable else "rejected").inc()
            if not exc.retryable or attempt == policy.attempts:
                log.warning("delivery_failed", receiver=name, attempts=attempt, error=last[:200])
                return Outcome(False, attempt, last)
            rm.DELIVERY_RETRIES.labels(name).inc()
            await asyncio.sleep(policy.delay(attempt, exc.retry_after))
            continue
        rm.DELIVERY_ATTEMPTS.labels(name, "ok").inc()
        rm.DELIVERY_SECONDS.labels(name).observe(time.perf_counter() - started)
        return Outcome(True, attempt, result=result)
    return Outcome(False, policy.attempts, last)

"""Delivering one routed mention to one receiver: retries with backoff and jitter, then the DLQ."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass

from services.common.codec import pb
from services.common.logging import get_logger
from services.router import metrics as rm
from services.router.receivers import DeliveryError, Receiver

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


async def deliver_with_retry(receiver: Receiver, routed: pb.RoutedMention, policy: RetryPolicy) -> Outcome:
    started = time.perf_counter()
    last = ""
    for attempt in range(1, policy.attempts + 1):
        try:
            await receiver.deliver(routed)
        except DeliveryError as exc:
            last = str(exc)
            rm.DELIVERY_ATTEMPTS.labels(receiver.name, "retryable" if exc.retryable else "rejected").inc()
            if not exc.retryable or attempt == policy.attempts:
                log.warning("delivery_failed", receiver=receiver.name, attempts=attempt, error=last[:200])
                return Outcome(False, attempt, last)
            rm.DELIVERY_RETRIES.labels(receiver.name).inc()
            await asyncio.sleep(policy.delay(attempt, exc.retry_after))
            continue
        rm.DELIVERY_ATTEMPTS.labels(receiver.name, "ok").inc()
        rm.DELIVERY_SECONDS.labels(receiver.name).observe(time.perf_counter() - started)
        return Outcome(True, attempt)
    return Outcome(False, policy.attempts, last)

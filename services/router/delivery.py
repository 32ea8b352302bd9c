"""Delivering to one receiver: rate limit, circuit breaker, retries with backoff and jitter; the caller
dead-letters what still failed after the retry budget.

Every failed attempt is counted with its reason (`triage_router_delivery_attempts_total{outcome, reason}`,
services/common/errors.py), and the retry decision reads that reason: a rejected request (client_error,
auth_error) is not sent again.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from services.common.alerting.timeintervals import add_business_time
from services.common.codec import pb
from services.common.errors import DeliveryError, DeliveryReason
from services.common.logging import get_logger
from services.common.timeutil import ts_from_epoch
from services.router import metrics as router_metrics
from services.router.config import RouterSettings
from services.router.ratelimit import CircuitBreaker, TokenBucket
from services.router.receivers import Receiver
from services.router.registry import ReceiverConfig
from services.router.tree import Route

T = TypeVar("T")

log = get_logger("router.delivery")

DEFAULT_RATE_PER_MINUTE = {"pagerduty": 120.0, "opsgenie": 600.0, "slack": 60.0}


def routed_for(scored: pb.ScoredMention, route_path: str, receiver: str, queue: str, sla: dict[str, float],
               now: float, route: Route | None = None) -> pb.RoutedMention:
    """What a receiver gets for one mention: the scored mention, where it was routed, and its first-response
    deadline (`sla` by priority; business time when the route names an `sla_time_interval`)."""
    routed = pb.RoutedMention(route=route_path, receiver=receiver, queue=queue)
    routed.scored.CopyFrom(scored)
    routed.routed_at.CopyFrom(ts_from_epoch(now))
    due = sla.get(pb.Priority.Name(scored.priority)) if scored.priority else None
    if due:
        interval = route.sla_time_interval if route is not None else None
        routed.respond_by.CopyFrom(ts_from_epoch(add_business_time(now, due, interval)))
    return routed


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
    reason: DeliveryReason | None = None  # why the last attempt failed; None when delivered
    retry_after: float | None = None      # what the receiver asked for (429 / 503 Retry-After)

    @property
    def retriable(self) -> bool:
        """False: the receiver rejected the request itself (client_error, auth_error): no other attempt."""
        return self.reason is None or self.reason.retriable


def attempt_outcome(exc: DeliveryError) -> str:
    """The `outcome` label of a failed attempt: retryable (another attempt follows) or rejected."""
    return "retryable" if exc.retriable else "rejected"


@dataclass
class ReceiverGuard:
    """Per-receiver protection shared by every delivery to it."""

    breaker: CircuitBreaker
    bucket: TokenBucket | None = None

    @classmethod
    def for_receiver(cls, cfg: ReceiverConfig, settings: RouterSettings) -> ReceiverGuard:
        """The receiver's circuit breaker and rate limit (its `rate_per_minute`, else its kind's default)."""
        breaker = CircuitBreaker(time.monotonic, settings.delivery_breaker_failures,
                                 settings.delivery_breaker_reset_seconds)
        rate = cfg.options.get("rate_per_minute", DEFAULT_RATE_PER_MINUTE.get(cfg.kind))
        return cls(breaker, TokenBucket.per_minute(float(rate), time.monotonic) if rate else None, cfg.name)

    async def before_attempt(self) -> None:
        if not self.breaker.allow():
            # Open after failures worth retrying: the last one's reason is why no attempt is made now.
            raise DeliveryError(f"circuit open (retry in {self.breaker.retry_in():.1f}s) after: {self.last_error}",
                                self.last_reason or DeliveryReason.SERVER_ERROR, self.breaker.retry_in())
        if self.bucket is not None:
            wait = self.bucket.reserve()
            if wait > 0:
                router_metrics.RATE_LIMITED.labels(self.name).inc()
                await asyncio.sleep(wait)

    def failed(self, exc: DeliveryError) -> None:
        """A retriable failure counts towards opening the breaker."""
        self.breaker.record_failure()
        self.last_error = str(exc)[:300]
        self.last_reason = exc.reason

    name: str = ""
    last_error: str = ""
    last_reason: DeliveryReason | None = None


async def _call(name: str, call: Callable[[], Awaitable[T]]) -> T:
    """One call of a receiver. A receiver raises DeliveryError for every failure it knows; anything else (a
    request that cannot even be built from this mention, a bug) is a rejected delivery of this one item,
    dead-lettered with the reason like a 400, never an exception out of the router's batch: that batch would
    be retried forever and its partition would route nothing more (a poison pill)."""
    try:
        return await call()
    except DeliveryError:
        raise
    except Exception as exc:
        log.exception("delivery_request_failed", receiver=name, error=type(exc).__name__)
        raise DeliveryError(f"{name}: the request could not be made: {type(exc).__name__}: {str(exc)[:200]}",
                            DeliveryReason.CLIENT_ERROR) from exc


async def attempt_once(name: str, call: Callable[[], Awaitable[T]]) -> Outcome:
    """One attempt, no sleeping: pages retry from the grouper's persisted state on later ticks, so one
    incident's failing receiver never holds the tick (and another incident's trigger) in a retry loop."""
    started = time.perf_counter()
    try:
        result = await _call(name, call)
    except DeliveryError as exc:
        router_metrics.DELIVERY_ATTEMPTS.labels(name, attempt_outcome(exc), exc.reason).inc()
        return Outcome(False, 1, str(exc), reason=exc.reason, retry_after=exc.retry_after)
    router_metrics.DELIVERY_ATTEMPTS.labels(name, "ok", "").inc()
    router_metrics.DELIVERY_SECONDS.labels(name).observe(time.perf_counter() - started)
    return Outcome(True, 1, result=result)


async def deliver_with_retry(receiver: Receiver, routed: pb.RoutedMention, policy: RetryPolicy,
                             guard: ReceiverGuard | None = None) -> Outcome:
    return await call_with_retry(receiver.name, lambda: receiver.deliver(routed), policy, guard)


async def call_with_retry(name: str, call: Callable[[], Awaitable[T]], policy: RetryPolicy,
                          guard: ReceiverGuard | None = None) -> Outcome:
    started = time.perf_counter()
    last: DeliveryError | None = None
    for attempt in range(1, policy.attempts + 1):
        try:
            if guard is not None:
                await guard.before_attempt()
            try:
                result = await _call(name, call)
            except DeliveryError as exc:
                if guard is not None and exc.retriable:
                    guard.failed(exc)
                raise
            if guard is not None:
                guard.breaker.record_success()
        except DeliveryError as exc:
            last = exc
            router_metrics.DELIVERY_ATTEMPTS.labels(name, attempt_outcome(exc), exc.reason).inc()
            if not exc.retriable or attempt == policy.attempts:
                log.warning("delivery_failed", receiver=name, attempts=attempt, reason=exc.reason,
                            error=str(exc)[:200])
                return Outcome(False, attempt, str(exc), reason=exc.reason)
            router_metrics.DELIVERY_RETRIES.labels(name).inc()
            await asyncio.sleep(policy.delay(attempt, exc.retry_after))
            continue
        router_metrics.DELIVERY_ATTEMPTS.labels(name, "ok", "").inc()
        router_metrics.DELIVERY_SECONDS.labels(name).observe(time.perf_counter() - started)
        return Outcome(True, attempt, result=result)
    return Outcome(False, policy.attempts, str(last or ""), reason=last.reason if last else None)

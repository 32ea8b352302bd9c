"""What a worker's /healthz and /readyz answer: is its event loop turning, is its Kafka consumer fetching.

The metrics endpoint runs on its own thread, so "the HTTP server answers" proves nothing about the
worker: a loop blocked by a synchronous call, or a consumer that stopped fetching, keeps serving
/metrics. The probes therefore read two timestamps that only the worker's loop writes:

- the loop heartbeat, written every `interval` by a task on the worker's loop (`LoopHeartbeat.run`);
- the consumer's last fetch, written each time Faust's fetch loop finishes a fetch round or hands a
  record to a stream (`watch_faust_consumer`). The fetch loop stops while the group rebalances and
  while the agents' buffers are full, so a stuck agent shows here too.

`/healthz` (liveness) looks at the loop, and at the worker's Kafka producers (its own, and Faust's, which writes
the tables' changelogs: `faust_app.faust_producer`): Kafka trouble must not
restart pods, but a producer broken for good (`services.common.kafka.producer_failure`: aiokafka's sender task
ended, or the broker rejected its producer id) never delivers again while the worker lives, and a restart gives
it a new one. `/readyz` looks at all of them. Both answer 503 with the reason, one `check: detail` line each.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from services.common.kafka import producer_failure

Clock = Callable[[], float]


class LoopHeartbeat:
    """The last time a task on the worker's event loop ran; read from any thread."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self.last: float | None = None

    def beat(self) -> None:
        self.last = self._clock()

    async def run(self, interval: float = 1.0) -> None:
        """Beat every `interval` seconds until cancelled (start it on the loop you want watched)."""
        while True:
            self.beat()
            await asyncio.sleep(interval)

    def age(self) -> float | None:
        return None if self.last is None else self._clock() - self.last


class FetchWatch:
    """The last time the consumer fetched: a fetch round finished or a record went to a stream."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self.last: float | None = None

    def fetched(self) -> None:
        self.last = self._clock()

    def age(self) -> float | None:
        return None if self.last is None else self._clock() - self.last


@dataclass(frozen=True)
class ProbeAnswer:
    ok: bool
    lines: tuple[str, ...]

    @property
    def status(self) -> int:
        return 200 if self.ok else 503

    @property
    def body(self) -> str:
        return "\n".join(self.lines) + "\n"


def _check(name: str, age: float | None, limit: float, never: str) -> tuple[bool, str]:
    if age is None:
        return False, f"{name}: {never}"
    if age > limit:
        return False, f"{name}: stalled, last {age:.1f}s ago (limit {limit:g}s)"
    return True, f"{name}: ok, last {age:.1f}s ago"


class WorkerProbes:
    """The answers of a worker's /healthz and /readyz, from its loop heartbeat and consumer fetches."""

    def __init__(self, loop_stale_seconds: float, fetch_stale_seconds: float, clock: Clock = time.monotonic,
                 producers: Callable[[], Iterable[Any]] = tuple,
                 gates: Callable[[], Iterable[tuple[bool, str]]] = tuple) -> None:
        self.loop_stale_seconds = loop_stale_seconds
        self.fetch_stale_seconds = fetch_stale_seconds
        self.heartbeat = LoopHeartbeat(clock)
        self.fetch = FetchWatch(clock)
        self.producers = producers  # the worker's own aiokafka producers (None for one not started yet)
        # The worker's own readiness conditions, (ok, line) each: e.g. classify's agent past restoring the
        # deletions it remembers. Readiness only: a worker still waiting on Kafka is not broken.
        self.gates = gates

    def _loop(self) -> tuple[bool, str]:
        return _check("event loop", self.heartbeat.age(), self.loop_stale_seconds, "not started yet")

    def _consumer(self) -> tuple[bool, str]:
        return _check("kafka consumer", self.fetch.age(), self.fetch_stale_seconds, "has not fetched yet")

    def _producers(self) -> list[tuple[bool, str]]:
        failures = [why for p in self.producers() if p is not None and (why := producer_failure(p)) is not None]
        return [(False, f"kafka producer: broken, {why}") for why in failures]

    def healthz(self) -> ProbeAnswer:
        checks = [self._loop(), *self._producers()]
        return ProbeAnswer(all(ok for ok, _ in checks), tuple(line for _, line in checks))

    def readyz(self) -> ProbeAnswer:
        checks = [self._loop(), self._consumer(), *self._producers(), *self.gates()]
        return ProbeAnswer(all(ok for ok, _ in checks), tuple(line for _, line in checks))

    def routes(self) -> dict[str, Callable[[], ProbeAnswer]]:
        """Path -> answer, for `services.common.metrics.serve_metrics`."""
        return {"/healthz": self.healthz, "/readyz": self.readyz}


def watch_faust_consumer(consumer: Any, fetch: FetchWatch) -> None:
    """Record every fetch round and every record handed on by a Faust consumer in `fetch`.

    Faust's fetch loop (`Consumer._drain_messages`) looks `getmany` up each time the fetcher
    (re)starts, i.e. after every rebalance, so wrapping the instance's method before the worker
    starts sees all of them.
    """
    original = consumer.getmany

    async def getmany(timeout: float) -> AsyncIterator[Any]:
        async for item in original(timeout=timeout):
            fetch.fetched()
            yield item
        fetch.fetched()

    consumer.getmany = getmany

"""The long-lived pull connector loop shared by stream sources (Jetstream, Mastodon).

A subclass only says how to read its platform (`events()`, an async iterator of
`StreamEvent`); this base gives every connector the same guarantees:

- events go through `MentionIngestor` (normalise, brand tagging, dedupe, acks) in small batches;
  with brand filtering on, events that mention no tracked brand are counted and dropped;
- the cursor is checkpointed to `ingest.checkpoints` only after Kafka acknowledged the batch,
  together with the recent dedupe keys, so a restart resumes with no gap and no duplicate;
- while Kafka is down the connector disconnects and waits (pull sources pause), then resumes
  from its last checkpoint;
- failures reconnect with exponential backoff and jitter; state is in metrics (connected,
  lag behind the source, time of the last event, reconnects).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from services.common import topics
from services.common.logging import get_logger
from services.ingest import metrics as m
from services.ingest.adapters import Candidate
from services.ingest.checkpoints import encode_checkpoint, load_checkpoint
from services.ingest.ingestor import KafkaUnavailable, MentionIngestor
from services.ingest.normalize import dedupe_key

log = get_logger("ingest.connector")


@dataclass(frozen=True)
class StreamEvent:
    cursor: Any  # the platform's resume position after this event (orderable)
    candidate: Candidate | None  # None: an event that is not a post (still advances the cursor)
    event_time: float | None = None  # source clock, unix seconds (lag metric, recent-keys window)


class StreamConnector:
    """Base of pull connectors; run with `await connector.run()` (cancel to stop)."""

    def __init__(self, name: str, ingestor: MentionIngestor, *, filter_brands: bool = True, batch_size: int = 200,
                 batch_wait_seconds: float = 0.1, rewind_seconds: float = 5.0, backoff_initial: float = 0.5,
                 backoff_max: float = 30.0, checkpoint_every_seconds: float = 0.0):
        self.name = name
        self.ingestor = ingestor
        self.filter_brands = filter_brands
        self.batch_size = batch_size
        self.batch_wait = batch_wait_seconds
        self.rewind_seconds = rewind_seconds
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.cursor: Any = None
        self.connected = False
        self.produced = 0
        # (event time, dedupe key) of the last `rewind_seconds` (plus a margin) of produced mentions.
        self._recent: deque[tuple[float, str]] = deque()

    # -- for subclasses -------------------------------------------------------------------------------

    def events(self) -> AsyncIterator[StreamEvent]:
        """Connect (resuming after `self.cursor`) and yield events; end or raise when the connection drops."""
        raise NotImplementedError

    def newer(self, a: Any, b: Any) -> bool:
        """True when cursor `a` is after cursor `b` (numeric by default)."""
        return bool(a > b)

    def mark_connected(self) -> None:
        self.connected = True
        m.CONNECTOR_CONNECTED.labels(self.name).set(1)
        log.info("connector_connected", connector=self.name, cursor=self.cursor)

    # -- the loop -------------------------------------------------------------------------------------

    async def run(self) -> None:
        backoff = self.backoff_initial
        await self._restore()
        while True:
            await self.ingestor.kafka_up.wait()
            started = time.monotonic()
            try:
                await self._session()
                raise ConnectionError("stream ended")
            except asyncio.CancelledError:
                self._disconnected()
                raise
            except KafkaUnavailable:
                log.warning("connector_paused_kafka_down", connector=self.name, cursor=self.cursor)
            except Exception as exc:
                log.info("connector_disconnected", connector=self.name, error=type(exc).__name__,
                         detail=str(exc)[:200], retry_in=round(backoff, 2))
            self._disconnected()
            m.CONNECTOR_RECONNECTS.labels(self.name).inc()
            if time.monotonic() - started > 30:
                backoff = self.backoff_initial  # it had been working: start the backoff over
            await asyncio.sleep(backoff * random.uniform(0.8, 1.2))
            backoff = min(backoff * 2, self.backoff_max)

    def _disconnected(self) -> None:
        self.connected = False
        m.CONNECTOR_CONNECTED.labels(self.name).set(0)

    async def _restore(self) -> None:
        backoff = self.backoff_initial
        while True:
            await self.ingestor.kafka_up.wait()
            try:
                saved = await load_checkpoint(self.ingestor.settings.kafka_bootstrap, self.name,
                                              client_options=self.ingestor.settings.kafka_client_options())
                break
            except Exception as exc:
                log.info("checkpoint_load_failed", connector=self.name, error=type(exc).__name__)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.backoff_max)
        if saved:
            self.cursor = saved.get("cursor")
            for at, key in saved.get("recent", []):
                # Re-read events (rewound cursor) must be recognised as already produced.
                self.ingestor.dedupe.commit(key)
                self._recent.append((float(at), key))
            log.info("connector_resumed", connector=self.name, cursor=self.cursor, recent=len(self._recent))

    async def _session(self) -> None:
        queue: asyncio.Queue[StreamEvent | BaseException | None] = asyncio.Queue(maxsize=self.batch_size * 4)

        async def read() -> None:
            try:
                async for event in self.events():
                    await queue.put(event)
                await queue.put(None)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:
                await queue.put(exc)

        reader = asyncio.create_task(read(), name=f"{self.name}-reader")
        pending: list[StreamEvent] = []
        try:
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), timeout=self.batch_wait) if pending \
                        else await queue.get()
                except TimeoutError:
                    await self._flush(pending)
                    pending = []
                    continue
                if item is None or isinstance(item, BaseException):
                    await self._flush(pending)  # what arrived before the drop is kept
                    if isinstance(item, BaseException):
                        raise item
                    return
                pending.append(item)
                if len(pending) >= self.batch_size:
                    await self._flush(pending)
                    pending = []
        finally:
            reader.cancel()
            try:
                await reader
            except BaseException:
                pass

    async def _flush(self, events: list[StreamEvent]) -> None:
        if not events:
            return
        cands = [e.candidate for e in events if e.candidate is not None]
        mentions, failures = self.ingestor.build(cands)
        kept = [mn for mn in mentions if mn.brands or not (self.filter_brands and self.ingestor.matcher)]
        m.CONNECTOR_EVENTS.labels(self.name, "not_a_post").inc(len(events) - len(cands))
        m.CONNECTOR_EVENTS.labels(self.name, "filtered").inc(len(mentions) - len(kept))
        dead = [(c.raw, f"{self.name}: {e.field}: {e.reason}") for c, e in failures]
        accepted, dups = await self.ingestor.produce(kept, dead)  # KafkaUnavailable: cursor stays, re-read later
        m.CONNECTOR_EVENTS.labels(self.name, "produced").inc(len(accepted))
        m.CONNECTOR_EVENTS.labels(self.name, "duplicate").inc(len(dups))
        m.CONNECTOR_EVENTS.labels(self.name, "dead_lettered").inc(len(dead))
        self.produced += len(accepted)

        newest = self.cursor
        for e in events:
            if e.cursor is not None and (newest is None or self.newer(e.cursor, newest)):
                newest = e.cursor
        times = [e.event_time for e in events if e.event_time is not None]
        latest_time = max(times) if times else time.time()
        for mn in kept:
            self._recent.append((latest_time, dedupe_key(mn)))
        horizon = latest_time - self.rewind_seconds - 60
        while self._recent and (self._recent[0][0] < horizon or len(self._recent) > 5000):
            self._recent.popleft()
        record = encode_checkpoint(newest, [[t, k] for t, k in self._recent], connector=self.name, saved_at=time.time())
        await self.ingestor.send_records([(topics.INGEST_CHECKPOINTS, record, self.name.encode())])
        self.cursor = newest
        now = time.time()
        m.CONNECTOR_LAST_EVENT.labels(self.name).set(now)
        if times:
            m.CONNECTOR_LAG.labels(self.name).set(max(0.0, now - latest_time))

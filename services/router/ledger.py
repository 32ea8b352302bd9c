"""Which mention versions the router already put on each queue topic: what makes queue topics exactly-once
across crashes (docs/operating.md, "Exactly once to the queue topics").

Why not Kafka transactions: Faust's exactly-once mode has open duplicate/fencing bugs and wants three brokers
(see STACK-NOTES), and a transaction would not cover the webhooks anyway. Instead the router is idempotent,
and the queue topics themselves are its memory:

- every record the router produces to a queue topic carries the header `triage-version`: the mention id and
  its engagement counters (`mention_version`). A new engagement version of a post is an update and is routed
  again (keyed by mention id, so a compacting consumer keeps the newest); the same version again is a replay
  (a batch classify or the router scored/routed but did not commit before a crash) and is skipped;
- on start the worker reads the last `window` seconds of those headers from its queue topics. What Kafka
  acknowledged before a crash is on the topic, what it did not is not: there is no gap between "written"
  and "remembered" that a kill -9 could fall into, which a separate changelog of sent ids would have.

The ledger is pure (clock passed in); `load` is the only Kafka code.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer

from services.common.codec import pb
from services.common.logging import get_logger

VERSION_HEADER = "triage-version"

log = get_logger("router.ledger")


def mention_version(m: pb.Mention) -> str:
    """Same post with the same engagement counters = the same version (ingest's dedupe key, too)."""
    e = m.engagement
    return f"{m.mention_id}|{e.likes}|{e.reposts}|{e.replies}|{e.quotes}"


def _digest(version: str | bytes) -> bytes:
    raw = version.encode() if isinstance(version, str) else version
    return hashlib.blake2b(raw, digest_size=12).digest()


class RoutedLedger:
    """(topic, version) pairs routed within the last `window` seconds; ~100 bytes an entry."""

    def __init__(self, window: float):
        self.window = window
        self._seen: dict[tuple[str, bytes], float] = {}
        # mention id -> {queue topic: when}: where a deletion's notice must go (the version starts with the id).
        self._topics: dict[str, dict[str, float]] = {}

    def _note(self, topic: str, version: str | bytes, at: float) -> None:
        text = version.decode(errors="replace") if isinstance(version, bytes) else version
        self._topics.setdefault(text.split("|", 1)[0], {})[topic] = at

    def topics_of(self, mention_id: str) -> set[str]:
        """The queue topics this mention was put on within the window (empty: none known)."""
        return set(self._topics.get(mention_id, ()))

    def claim(self, topic: str, version: str, at: float) -> bool:
        """True when this version is new on `topic` (and is now taken); False for a replay."""
        key = (topic, _digest(version))
        if key in self._seen:
            return False
        self._seen[key] = at
        self._note(topic, version, at)
        return True

    def seen(self, topic: str, version: str) -> bool:
        return (topic, _digest(version)) in self._seen

    def release(self, topic: str, version: str) -> None:
        """The delivery failed (dead-lettered): a replay of the DLQ must be routable."""
        self._seen.pop((topic, _digest(version)), None)

    def remember(self, topic: str, version: str | bytes, at: float) -> None:
        self._seen[(topic, _digest(version))] = at
        self._note(topic, version, at)

    def expire(self, now: float) -> int:
        cutoff = now - self.window
        old = [k for k, at in self._seen.items() if at < cutoff]
        for k in old:
            del self._seen[k]
        for mention_id, where in list(self._topics.items()):
            for topic in [t for t, at in where.items() if at < cutoff]:
                del where[topic]
            if not where:
                del self._topics[mention_id]
        return len(old)

    def __len__(self) -> int:
        return len(self._seen)

    async def load(self, bootstrap: str, queue_topics: Iterable[str], now: float,
                   consumer_options: dict[str, object] | None = None) -> int:
        """Read the headers of the last `window` seconds of each queue topic; returns how many were read."""
        if self.window <= 0:
            return 0
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                                    auto_offset_reset="earliest", isolation_level="read_committed",
                                    **(consumer_options or {}))
        await consumer.start()
        n = 0
        try:
            wanted = set(queue_topics) & await consumer.topics()  # a topic never written holds nothing routed
            if wanted:
                consumer.subscribe(sorted(wanted))  # no group: every partition of them is assigned
                deadline = asyncio.get_running_loop().time() + 30
                while {tp.topic for tp in consumer.assignment()} != wanted:
                    if asyncio.get_running_loop().time() > deadline:
                        raise TimeoutError(f"no partition metadata for {sorted(wanted)}")
                    await asyncio.sleep(0.05)
                tps = sorted(consumer.assignment())
                ends = await consumer.end_offsets(tps)
                starts = await consumer.offsets_for_times({tp: int((now - self.window) * 1000) for tp in tps})
                todo = {}
                for tp in tps:
                    start = starts.get(tp)
                    if start is not None and start.offset < ends[tp]:
                        consumer.seek(tp, start.offset)
                        todo[tp] = ends[tp]
                    else:
                        consumer.pause(tp)
                while todo:
                    batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
                    for tp, recs in batch.items():
                        for r in recs:
                            for name, value in r.headers or ():
                                if name == VERSION_HEADER:
                                    self.remember(tp.topic, value, r.timestamp / 1000.0)
                                    n += 1
                    for tp in list(todo):
                        if await consumer.position(tp) >= todo[tp]:
                            consumer.pause(tp)
                            del todo[tp]
        finally:
            await consumer.stop()
        log.info("ledger_loaded", versions=n, topics=len(set(queue_topics)), window_s=self.window)
        return n

"""Contiguous fetches after a rebalance: a guard in a Faust consumer's fetch loop.

After a rebalance Faust seeks every assigned partition back to its committed offset. faust-streaming
0.15.3 (with aiokafka) can then still hand the worker records from beyond that offset: a fetch for the old
position was in flight. Faust takes the offsets it jumped over for a gap (which in a compacted topic they
may be), counts them as acked, and its next commit goes past them: records that no agent ever saw are lost.
Instrumented, `tests/e2e/test_scale_out.py` showed it: a seek of `mentions.raw` partition 1 to offset 68,
then record 72 as the first one fetched, then commits over 68-71; in one run of five a mention was missing
from the queue topics that way (its crisis-input record was committed past by a replica that never
processed it).

On topics whose offsets are contiguous (`cleanup.policy=delete`, no transactions: at-least-once) the guard
knows which offset must come next on each partition: the committed offset after a seek (the log start where
the group never committed one: a partition added by `triage topics grow`), then the last record's plus one.
A record beyond it is not handed on; the partition is seeked back to the expected offset (once per fetch
round, at most `max_rewinds` times for the same offset) and read again. Offsets that really
are gone (below the partition's log start: retention) are accepted as a gap, and so is a gap that survives
`max_rewinds` re-reads, with a warning each. Records at or before the expected offset pass: Faust itself
drops what it has read already.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any

from prometheus_client import Counter

from services.common.logging import get_logger
from services.common.topics import TopicSpec

log = get_logger("fetch_guard")

FETCH_REWINDS = Counter("triage_fetch_rewinds_total",
                        "Records fetched beyond the offset expected next (after a rebalance's seek): the partition "
                        "was seeked back to it and read again instead of committing past unread records", ["topic"])
FETCH_GAPS = Counter("triage_fetch_gaps_accepted_total",
                     "Offsets on a contiguous topic that were skipped as really absent (below the log start, or "
                     "still absent after re-reads)", ["topic"])


def contiguous_topics(specs: Iterable[TopicSpec]) -> set[str]:
    """The topics among `specs` whose offsets have no gaps (not compacted)."""
    return {s.name for s in specs if s.configs.get("cleanup.policy", "delete") == "delete"}


class FetchGuard:
    """Wraps a Faust consumer's `getmany`, `seek` and `seek_to_committed` (instance attributes: Faust looks
    them up on the instance, `getmany` each time its fetcher starts)."""

    def __init__(self, consumer: Any, contiguous: set[str], max_rewinds: int = 5):
        self.consumer = consumer
        self.contiguous = contiguous
        self.max_rewinds = max_rewinds
        self.expect: dict[Any, int] = {}            # partition -> offset expected next
        self.rewinds: dict[tuple[Any, int], int] = {}

    def install(self) -> FetchGuard:
        getmany, seek, seek_to_committed = (self.consumer.getmany, self.consumer.seek,
                                            self.consumer.seek_to_committed)

        async def guarded_getmany(timeout: float) -> AsyncIterator[Any]:
            sought: set[Any] = set()
            async for tp, message in getmany(timeout=timeout):
                if await self.admit(tp, message.offset, sought):
                    yield tp, message

        async def guarded_seek(partition: Any, offset: int) -> None:
            await seek(partition, offset)
            self.expected_at(partition, offset)

        async def guarded_seek_to_committed() -> Any:
            committed = await seek_to_committed()
            for tp, offset in committed.items():
                self.expected_at(tp, offset)
            await self.expect_log_start([tp for tp, offset in committed.items()
                                         if tp.topic in self.contiguous and (offset is None or offset < 0)])
            return committed

        self.consumer.getmany, self.consumer.seek = guarded_getmany, guarded_seek
        self.consumer.seek_to_committed = guarded_seek_to_committed
        return self

    def expected_at(self, tp: Any, offset: int | None) -> None:
        if offset is None or offset < 0:
            self.expect.pop(tp, None)   # no committed offset: the first record fetched sets it
        else:
            self.expect[tp] = offset

    async def expect_log_start(self, tps: list[Any]) -> None:
        """Partitions the group never committed (new ones after `triage topics grow`, a new group): the group reads
        them from their log start (`consumer_auto_offset_reset=earliest`), so that is the offset expected next. Not
        left to the first record fetched: a fetch still in flight from an earlier assignment of the partition
        would start past records this replica never handed on (revoked mid-batch), and they would be skipped."""
        if not tps:
            return
        try:
            earliest = await self.consumer.earliest_offsets(*tps)
        except Exception as exc:   # cannot tell: the first record fetched sets it, as before
            log.warning("fetch_guard_earliest_failed", topic=tps[0].topic, error=type(exc).__name__)
            return
        for tp in tps:
            if earliest.get(tp) is not None:
                self.expect[tp] = earliest[tp]

    async def admit(self, tp: Any, offset: int, sought: set[Any]) -> bool:
        """Whether a fetched record goes on to the streams; `sought`: partitions seeked back this round."""
        if tp.topic not in self.contiguous:
            return True
        want = self.expect.get(tp)
        if want is None or offset == want:
            self.expect[tp] = offset + 1
            self.rewinds.pop((tp, offset), None)   # read again as expected
            return True
        if offset < want:
            return True
        if tp in sought:
            return False   # the rest of a round whose partition is being read again
        tried = self.rewinds.get((tp, want), 0)
        if tried < self.max_rewinds and not await self._gone(tp, want):
            self.rewinds[(tp, want)] = tried + 1
            FETCH_REWINDS.labels(tp.topic).inc()
            log.warning("fetch_rewind", topic=tp.topic, partition=tp.partition, expected=want, fetched=offset,
                        attempt=tried + 1)
            sought.add(tp)
            await self.consumer.seek(tp, want)
            return False
        FETCH_GAPS.labels(tp.topic).inc(offset - want)
        log.warning("fetch_gap_accepted", topic=tp.topic, partition=tp.partition, expected=want, fetched=offset,
                    rereads=tried)
        self.expect[tp] = offset + 1
        return True

    async def _gone(self, tp: Any, offset: int) -> bool:
        """Whether `offset` is below the partition's log start (deleted by retention)."""
        try:
            earliest = (await self.consumer.earliest_offsets(tp)).get(tp)
        except Exception as exc:   # cannot tell: read again (bounded by max_rewinds)
            log.warning("fetch_guard_earliest_failed", topic=tp.topic, error=type(exc).__name__)
            return False
        return earliest is not None and offset < earliest


def guard_fetches(consumer: Any, specs: Iterable[TopicSpec], max_rewinds: int = 5) -> FetchGuard:
    return FetchGuard(consumer, contiguous_topics(specs), max_rewinds).install()

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

Records handed on and then dropped by Faust itself (`watch_flow`): at the end of a rebalance Faust's recovery
(`faust.tables.recovery.Recovery.on_recovery_completed`, also `_resume_streams`) resumes the stream partitions,
seeks them to their committed offsets (`Consumer.perform_seek`) and only then calls `app.flow_control.resume()`,
and mode's `FlowControlEvent.resume()` empties every agent's buffer (`self.clear()`). The fetcher runs all the
while (it was started for the changelog recovery), so records fetched between the seek and that resume are
handed on (Faust's read offset and the fetch position move past them, the guard admitted them) and then
dropped: no stream ever sees them and nothing reads them again. Faust's `Consumer._new_offset` then commits
past them as soon as a later record is acked (it checks the head of the acked offsets only `if
committed_offset:`, so never on a partition the group never committed, e.g. a new one after a grow: offset
0 of it was the mention lost). Seen on the real broker: a new partition's records 0-4 in the grow test, and
a replica's only record of the crisis input, delivered 1 ms before "Worker ready" and never processed. The
guard counts what the streams took (a sensor: `on_message_in`, called as a stream starts on a record) and, when
the flow-control resume empties the buffers, seeks each partition back to the first record no stream took.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import Any

import faust
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
        # partition -> first offset no stream has taken since the last seek (`watch_flow`); none while revoked
        self.untaken: dict[Any, int] = {}
        self.seeking: set[Any] = set()              # partitions being seeked back after a flow-control resume
        self._tasks: set[asyncio.Future[None]] = set()

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

    def watch_flow(self, app: Any) -> FetchGuard:
        """Read again what Faust's flow-control resume drops from the agents' buffers (see the module doc):
        wraps `app.flow_control.clear` (mode calls it from `suspend`-time revokes and from `resume`) and adds a
        sensor that sees each record a stream takes."""
        flow_control = app.flow_control
        clear = flow_control.clear

        def guarded_clear() -> None:
            resuming = flow_control.is_active()   # resume() lifts the suspension, then clears
            clear()
            if resuming:
                self.rewind_untaken()
            else:   # revoked (or stopping): the next seek to the committed offsets sets where to read from
                self.untaken.clear()

        flow_control.clear = guarded_clear
        app.sensors.add(_TakenSensor(self))
        return self

    def taken(self, tp: Any, offset: int) -> None:
        """A stream started on record `offset` of `tp`."""
        if tp in self.untaken and offset >= self.untaken[tp]:
            self.untaken[tp] = offset + 1

    def rewind_untaken(self) -> None:
        """The agents' buffers were just emptied: partitions with records handed on that no stream took are
        seeked back to the first of them (admitting nothing until the seek is done)."""
        try:
            assigned = set(self.consumer.assignment())
        except Exception:   # no consumer yet: nothing handed on
            return
        for tp, start in list(self.untaken.items()):
            want = self.expect.get(tp)
            if tp not in assigned or tp in self.seeking or want is None or start >= want:
                continue
            FETCH_REWINDS.labels(tp.topic).inc()
            log.warning("fetch_rewind_dropped", topic=tp.topic, partition=tp.partition, expected=want,
                        rewind_to=start)
            self.expect[tp] = start
            self.seeking.add(tp)
            task = asyncio.ensure_future(self._seek_back(tp, start))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _seek_back(self, tp: Any, offset: int) -> None:
        try:
            await self.consumer.seek(tp, offset)   # also resets Faust's read offset, so the records pass again
        except Exception as exc:   # revoked meanwhile: the next rebalance's seek decides
            log.warning("fetch_rewind_failed", topic=tp.topic, partition=tp.partition, error=type(exc).__name__)
        finally:
            self.seeking.discard(tp)

    def expected_at(self, tp: Any, offset: int | None) -> None:
        if offset is None or offset < 0:
            self.expect.pop(tp, None)   # no committed offset: the first record fetched sets it
            self.untaken.pop(tp, None)
        else:
            self.expect[tp] = offset
            # A seek back keeps what was handed on below it and not taken yet; after a revoke nothing is kept.
            self.untaken[tp] = min(offset, self.untaken.get(tp, offset))

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
                self.expect[tp] = self.untaken[tp] = earliest[tp]

    async def admit(self, tp: Any, offset: int, sought: set[Any]) -> bool:
        """Whether a fetched record goes on to the streams; `sought`: partitions seeked back this round."""
        if tp.topic not in self.contiguous:
            return True
        if tp in self.seeking:
            return False   # read again once the seek back (rewind_untaken) is done
        want = self.expect.get(tp)
        if want is None:
            self.untaken.setdefault(tp, offset)
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


class _TakenSensor(faust.Sensor):
    """Tells the guard which record each stream takes (`on_message_in`: a stream starts on it)."""

    def __init__(self, guard: FetchGuard) -> None:
        super().__init__()
        self.guard = guard

    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        self.guard.taken(tp, offset)


def guard_fetches(consumer: Any, specs: Iterable[TopicSpec], max_rewinds: int = 5, app: Any = None) -> FetchGuard:
    guard = FetchGuard(consumer, contiguous_topics(specs), max_rewinds).install()
    return guard.watch_flow(app) if app is not None else guard

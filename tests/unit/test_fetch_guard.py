"""The fetch guard: no record skipped after a rebalance's seek on a contiguous topic (services/common/fetch_guard.py).

The consumer below stands in for Faust's: a partition log, a fetch position, and the race seen on the real
broker (a fetch for the old position still in flight returns records past the offset just seeked to)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from faust.types import TP
from mode.utils.queues import FlowControlEvent, FlowControlQueue
from prometheus_client import REGISTRY

from services.common.fetch_guard import FetchGuard, contiguous_topics
from services.common.topics import CLASSIFY_CRISIS_INPUT, CORE_TOPICS, INCIDENTS, MENTIONS_RAW, MENTIONS_SCORED

RAW = TP(MENTIONS_RAW, 1)
COMPACTED = TP(INCIDENTS, 0)


def _counter(name: str, topic: str) -> float:
    return REGISTRY.get_sample_value(name, {"topic": topic}) or 0.0


@dataclass
class Record:
    offset: int


@dataclass
class Consumer:
    """One partition: `offsets` present in the log, a fetch position, `stale` records the first round returns."""

    tp: TP
    offsets: list[int]
    committed: int | None   # None: the group never committed this partition (a new one after a grow)
    stale: list[int] = field(default_factory=list)
    earliest: int = 0
    batch: int = 4
    position: int = 0
    seeks: list[int] = field(default_factory=list)

    async def seek_to_committed(self) -> dict[TP, int | None]:
        if self.committed is not None:   # aiokafka leaves the fetch position alone where nothing was committed
            self.position = self.committed
        return {self.tp: self.committed}

    async def seek(self, tp: TP, offset: int) -> None:
        self.seeks.append(offset)
        self.position = offset

    async def earliest_offsets(self, *tps: TP) -> dict[TP, int]:
        return {tp: self.earliest for tp in tps}

    def assignment(self) -> set[TP]:
        return {self.tp}

    async def getmany(self, timeout: float):
        if self.stale:
            records, self.stale = self.stale, []
            self.position = records[-1] + 1
        else:
            records = [o for o in self.offsets if o >= self.position][: self.batch]
            if records:
                self.position = records[-1] + 1
        for offset in records:
            yield self.tp, Record(offset)


async def _drain(consumer: Consumer, rounds: int) -> list[int]:
    await consumer.seek_to_committed()   # Faust's seek after the rebalance (the guard sees it)
    out = []
    for _ in range(rounds):
        async for _, message in consumer.getmany(timeout=1.0):
            out.append(message.offset)
    return out


def _guarded(consumer: Consumer, contiguous: set[str], max_rewinds: int = 5) -> Consumer:
    FetchGuard(consumer, contiguous, max_rewinds).install()
    return consumer


def test_records_past_the_seek_are_read_again_from_the_committed_offset():
    before = _counter("triage_fetch_rewinds_total", RAW.topic)
    consumer = Consumer(RAW, list(range(100)), committed=68, stale=[72, 73, 74])
    got = asyncio.run(_drain(_guarded(consumer, {RAW.topic}), 4))
    assert got == list(range(68, 80))            # 68-71 not skipped; 72-74 once, in order
    assert consumer.seeks == [68]
    assert _counter("triage_fetch_rewinds_total", RAW.topic) == before + 1


def test_unguarded_the_same_fetches_skip_the_records_faust_would_commit_past():
    consumer = Consumer(RAW, list(range(100)), committed=68, stale=[72, 73, 74])
    assert asyncio.run(_drain(consumer, 3))[:4] == [72, 73, 74, 75]   # what Faust got: 68-71 never seen


def test_a_single_record_jump_is_read_again_too():
    consumer = Consumer(RAW, list(range(50)), committed=36, stale=[37, 38])
    got = asyncio.run(_drain(_guarded(consumer, {RAW.topic}), 3))
    assert got[:4] == [36, 37, 38, 39]


def test_offsets_deleted_by_retention_are_a_gap_not_a_rewind():
    before = _counter("triage_fetch_gaps_accepted_total", RAW.topic)
    consumer = Consumer(RAW, list(range(80, 100)), committed=68, earliest=80)
    got = asyncio.run(_drain(_guarded(consumer, {RAW.topic}), 2))
    assert got == list(range(80, 88)) and consumer.seeks == []
    assert _counter("triage_fetch_gaps_accepted_total", RAW.topic) == before + 12


def test_a_gap_that_survives_the_rereads_is_accepted_instead_of_stalling():
    log = [o for o in range(100) if o != 70]      # an offset the broker never returns
    consumer = Consumer(RAW, log, committed=68, batch=2)
    got = asyncio.run(_drain(_guarded(consumer, {RAW.topic}, max_rewinds=2), 6))
    assert consumer.seeks == [70, 70]
    assert got == [68, 69, *range(71, 77)]       # 70 skipped after two re-reads, nothing twice


def test_a_partition_never_committed_is_read_from_its_log_start():
    # A partition added by `triage topics grow`: no committed offset. A replica read 0-2 of it, lost it in a
    # rebalance before committing and got it back; a fetch from its old position is still in flight.
    consumer = Consumer(TP(MENTIONS_RAW, 3), list(range(20)), committed=None, stale=[3, 4, 5])
    got = asyncio.run(_drain(_guarded(consumer, {MENTIONS_RAW}), 4))
    assert got[:6] == [0, 1, 2, 3, 4, 5] and consumer.seeks == [0]
    unguarded = Consumer(TP(MENTIONS_RAW, 3), list(range(20)), committed=None, stale=[3, 4, 5])
    assert asyncio.run(_drain(unguarded, 2))[0] == 3   # what Faust got: 0-2 never handed on, committed past


def test_compacted_topics_are_not_guarded():
    assert COMPACTED.topic not in contiguous_topics(CORE_TOPICS)
    assert {MENTIONS_RAW, CLASSIFY_CRISIS_INPUT, MENTIONS_SCORED} <= contiguous_topics(CORE_TOPICS)
    consumer = Consumer(COMPACTED, [0, 5, 9, 12], committed=0, stale=[5, 9])
    got = asyncio.run(_drain(_guarded(consumer, contiguous_topics(CORE_TOPICS)), 2))
    assert got == [5, 9, 12] and consumer.seeks == []


# Faust's end of a rebalance (faust.tables.recovery.Recovery.on_recovery_completed): the stream partitions are
# resumed and seeked to their committed offsets while the fetcher runs, then `app.flow_control.resume()` empties
# every agent's buffer. The app below holds mode's real flow control and one agent buffer managed by it.


@dataclass
class Sensors:
    added: list = field(default_factory=list)

    def add(self, sensor) -> None:  # type: ignore[no-untyped-def]
        self.added.append(sensor)

    def on_message_in(self, tp: TP, offset: int, message: object) -> None:   # a stream takes a record
        for sensor in self.added:
            sensor.on_message_in(tp, offset, message)


@dataclass
class App:
    flow_control: FlowControlEvent = field(default_factory=lambda: FlowControlEvent(initially_suspended=False))
    sensors: Sensors = field(default_factory=Sensors)


async def _recovery_end(consumer: Consumer, app: App, take: int = 0, rounds: int = 2) -> list[int]:
    """The perform_seek, a fetch handing records on into the agent's buffer (a stream takes the first `take` of
    them), the flow-control resume, then the fetches after it: the offsets handed on after the resume."""
    buffer: FlowControlQueue = FlowControlQueue(maxsize=64, flow_control=app.flow_control, clear_on_resume=True)
    await consumer.seek_to_committed()
    async for _, message in consumer.getmany(timeout=1.0):
        buffer.put_nowait(message)
    for _ in range(take):
        message = buffer.get_nowait()
        app.sensors.on_message_in(consumer.tp, message.offset, message)
    app.flow_control.resume()
    assert buffer.empty()   # what mode does: nothing handed on before the resume reaches a stream
    await asyncio.sleep(0)  # the guard's seek back runs
    out = []
    for _ in range(rounds):
        async for _, message in consumer.getmany(timeout=1.0):
            out.append(message.offset)
    return out


def _watched(consumer: Consumer, app: App) -> Consumer:
    FetchGuard(consumer, {consumer.tp.topic}).install().watch_flow(app)
    return consumer


def test_records_a_flow_control_resume_drops_are_read_again_from_the_first_one_no_stream_took():
    # A partition added by `triage topics grow` (never committed): records 0-3 handed on just before the resume.
    new = TP(MENTIONS_RAW, 3)
    consumer = _watched(Consumer(new, list(range(6)), committed=None), app := App())
    got = asyncio.run(_recovery_end(consumer, app))
    assert got == [0, 1, 2, 3, 4, 5] and consumer.seeks == [0]
    unwatched = Consumer(new, list(range(6)), committed=None)
    FetchGuard(unwatched, {MENTIONS_RAW}).install()
    assert asyncio.run(_recovery_end(unwatched, App())) == [4, 5]   # the loss: 0-3 never reach a stream


def test_what_a_stream_took_before_the_resume_is_not_read_again():
    consumer = _watched(Consumer(RAW, list(range(20)), committed=10), app := App())
    got = asyncio.run(_recovery_end(consumer, app, take=2))
    assert got[:3] == [12, 13, 14] and consumer.seeks == [12]


def test_a_revoke_clearing_the_buffers_seeks_nothing():
    consumer = _watched(Consumer(RAW, list(range(20)), committed=10), app := App())

    async def revoke() -> None:
        await consumer.seek_to_committed()
        async for _ in consumer.getmany(timeout=1.0):
            pass
        app.flow_control.suspend()
        app.flow_control.clear()    # Faust's revoke: the next rebalance's seek to the committed offsets decides
        await asyncio.sleep(0)

    asyncio.run(revoke())
    assert consumer.seeks == []

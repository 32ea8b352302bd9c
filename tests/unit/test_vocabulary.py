"""Shared vocabulary: priorities compared by rank, reach tiers, Signals from a mention, decode-or-dead-letter."""

from __future__ import annotations

import asyncio
from typing import Any

from services.classify.priority import PriorityPolicy, Signals
from services.common import codec, topics
from services.common.codec import pb
from services.common.deadletter import decode_or_dead_letter
from services.common.vocabulary import INTENT_THRESHOLD, Priority, more_urgent, reach_tier
from services.router.grouping import PageAction
from services.router.labels import labels_of


def test_priorities_compare_by_rank() -> None:
    assert more_urgent("P2", "P1") == "P1" and more_urgent("P1", "P3") == "P1"
    assert more_urgent("", "P4") == "P4"
    assert Priority.of(0) == "P4" and Priority.of(2) is Priority.P2 and Priority.P3.rank == 3
    assert PageAction.TRIGGER == "trigger"


def test_reach_tiers_and_threshold_are_shared() -> None:
    assert [reach_tier(n) for n in (9_999, 10_000, 100_000, 1_000_000)] == ["small", "medium", "large", "huge"]
    policy = PriorityPolicy()
    assert policy.intent_threshold == INTENT_THRESHOLD
    assert (policy.notable_reach_followers, policy.high_reach_followers) == (10_000, 100_000)
    sm = pb.ScoredMention(priority=pb.P2)
    sm.intents["complaint"] = INTENT_THRESHOLD
    sm.mention.author.follower_count = 150_000
    labels = labels_of(sm)
    assert (labels["priority"], labels["intents"], labels["reach"]) == ("P2", "complaint", "large")


def test_signals_from_mention() -> None:
    m = pb.Mention()
    m.author.follower_count, m.author.verified = 1200, True
    m.engagement.likes, m.engagement.reposts, m.engagement.replies, m.engagement.quotes = 3, 1, 2, 4
    assert Signals.from_mention(m, "inc-1") == Signals(1200, True, 3, 1, 2, 4, "inc-1")


class _Producer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    async def send(self, topic: str, value: bytes) -> Any:
        self.sent.append((topic, value))
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut


def test_decode_or_dead_letter() -> None:
    async def run() -> None:
        producer = _Producer()
        ok, fut = await decode_or_dead_letter(codec.encode(pb.Incident(id="i1")), pb.Incident, producer,
                                              service="router", source_topic=topics.INCIDENTS)
        assert ok is not None and ok.id == "i1" and fut is None and producer.sent == []
        bad, fut = await decode_or_dead_letter(b"\xff\xff not protobuf", pb.Incident, producer,
                                               service="router", source_topic=topics.INCIDENTS)
        assert bad is None and fut is not None
        await fut
        topic, value = producer.sent[0]
        dl = codec.decode(value, pb.DeadLetter)
        assert topic == topics.MENTIONS_DLQ and dl.source_topic == topics.INCIDENTS
        assert dl.original_type == "triage.v1.Incident" and dl.reason.startswith("undecodable Incident")

    asyncio.run(run())

"""The router's dead letters: what it could not deliver, parked on `mentions.dlq` with the reason.

Three kinds, each with what `triage dlq replay` (dlq_replay.py) needs to send it again: a routed
mention a receiver did not take (`routed`, a `triage.v1.RoutedMention`), a page (`page`, grouping's
`page_doc` JSON), and a record the router could not read at all (`unreadable`, never replayed).
Every method returns the producer's delivery future: await it before committing the input.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaProducer

from services.common import codec, topics
from services.common.codec import pb
from services.common.deadletter import dead_letter
from services.router import metrics as router_metrics
from services.router.grouping import PAGE_TYPE, Page, page_doc

ROUTED_TYPE = "triage.v1.RoutedMention"  # DeadLetter.original_type of a routed mention


class DeadLetters:
    """Writes the router's dead letters.

    Example:

        dead_letters = DeadLetters(producer)
        pending.append(await dead_letters.routed(routed, f"delivery failed: {outcome.error}", "oncall", 5))
        await asyncio.gather(*pending)   # before the commit
    """

    def __init__(self, producer: AIOKafkaProducer):
        self.producer = producer

    async def routed(self, routed: pb.RoutedMention, reason: str, receiver: str, attempts: int,
                     key: str | None = None) -> asyncio.Future[Any]:
        """A routed mention `receiver` did not take; keyed by its mention id unless `key` says otherwise."""
        return await self._send(codec.encode(routed), reason, receiver, attempts, ROUTED_TYPE,
                                routed.scored.mention.mention_id if key is None else key)

    async def page(self, page: Page, receiver: str, reason: str, attempts: int) -> asyncio.Future[Any]:
        """A page given up (rejected, or undelivered for the whole budget), keyed by its incident."""
        return await self._send(page_doc(page, receiver), f"page failed: {reason}", receiver, attempts, PAGE_TYPE,
                                page.group.id)

    async def unreadable(self, raw: bytes, reason: str, source_topic: str) -> asyncio.Future[Any]:
        """A consumed record that is not what its topic carries (e.g. an invalid page request)."""
        dl = dead_letter(raw, "router", reason, source_topic=source_topic, service="router")
        return await self.producer.send(topics.MENTIONS_DLQ, codec.encode(dl))

    async def _send(self, original: bytes, reason: str, receiver: str, attempts: int, original_type: str,
                    key: str) -> asyncio.Future[Any]:
        router_metrics.DEAD_LETTERED.labels(receiver).inc()
        dl = dead_letter(original, "router", reason, source_topic=topics.MENTIONS_SCORED, receiver=receiver,
                         attempts=attempts, original_type=original_type, service="router")
        return await self.producer.send(topics.MENTIONS_DLQ, codec.encode(dl), key=key.encode())

"""The deletion stage: a deleted mention leaves the router and the queue topics' consumers are told.

For each `MentionDeleted` read from `mentions.scored` (services/common/deletions.py) the router
- publishes the deletion as a notice on each queue topic the mention went to (the ledger knows the topics
  of the last window; for an older or unknown mention, and for an author's deletion, every queue topic),
  keyed by the mention id with the header `triage-type: triage.v1.MentionDeleted` (an author's to every
  partition), so inbox apps and the console remove the item;
- stops and forgets its SLA clock (no escalation of a post that no longer exists) and tombstones it on the
  state topic, which also held the scored mention (`sla:<mention id>`);
- drops it from the samples of the incident groups this replica holds (their next page no longer carries
  it) and persists those groups; with several replicas (`broadcast`) a copy of the deletion goes to every
  partition of the page requests, so the replica holding each group does the same (`on_page_requests`).
The router's `DeletionMemory` (RouterWorker) keeps a later or replayed copy of the mention from being routed.
Every call returns the futures to await before the batch is committed.
"""

from __future__ import annotations

import base64
from typing import Any

from aiokafka import AIOKafkaProducer

from services.common import codec, topics
from services.common.codec import pb
from services.common.deletions import covers, deletion_headers, deletion_key, is_author_deletion
from services.common.logging import get_logger
from services.router import metrics as router_metrics
from services.router.grouping import IncidentGrouper
from services.router.ledger import RoutedLedger
from services.router.registry import ReceiverSet
from services.router.sla import SlaItem, SlaTracker
from services.router.state import StateLog

log = get_logger("router.deletions")


def _item_covered(deleted: pb.MentionDeleted, item: SlaItem) -> bool:
    if deleted.mention_id:
        return item.mention_id == deleted.mention_id
    if not item.scored_b64:
        return False
    return covers(deleted, codec.decode(base64.b64decode(item.scored_b64), pb.ScoredMention).mention)


class DeletionStage:
    """Example:

        stage = DeletionStage(receivers, ledger, sla, state, producer, grouper)
        pending = await stage.delete(deleted)     # notices sent, SLA clock gone
    """

    def __init__(self, receivers: ReceiverSet, ledger: RoutedLedger, sla: SlaTracker, state: StateLog,
                 producer: AIOKafkaProducer, grouper: IncidentGrouper | None = None, broadcast: bool = False):
        self.receivers = receivers
        self.grouper = grouper or IncidentGrouper()
        self.ledger = ledger
        self.sla = sla
        self.state = state
        self.producer = producer
        # Several replicas (groups repartitioned by key): deletions also go to every page-requests partition.
        self.broadcast = broadcast

    async def drop_samples(self, mention_id: str) -> list[Any]:
        """The post out of the samples of the incident groups this replica holds; their state persisted."""
        return [await self.state.put(f"group:{g.key}", g.to_json(), g.key)
                for g in self.grouper.drop_samples_of(mention_id)]

    def notice_topics(self, deleted: pb.MentionDeleted) -> list[str]:
        known = self.ledger.topics_of(deleted.mention_id) if deleted.mention_id else set()
        return sorted(known or self.receivers.queue_topics())

    async def delete(self, deleted: pb.MentionDeleted) -> list[Any]:
        pending: list[Any] = []
        key, body = deletion_key(deleted).encode(), codec.encode(deleted)
        for topic in self.notice_topics(deleted):
            partitions = (sorted(await self.producer.partitions_for(topic)) if is_author_deletion(deleted)
                          else [None])
            for p in partitions:
                pending.append(await self.producer.send(topic, body, key=key, partition=p,
                                                        headers=deletion_headers()))
            router_metrics.DELETION_NOTICES.labels(topic).inc()
        for mention_id in self.sla.drop(lambda item: _item_covered(deleted, item)):
            pending.append(await self.state.put(f"sla:{mention_id}", None, mention_id))
        if deleted.mention_id:
            pending += await self.drop_samples(deleted.mention_id)
            if self.broadcast:
                # The groups showing it may be other replicas' (a group lives on its key's partition of the page
                # requests): a copy on every partition, after the page requests this replica sent (ordered).
                for p in sorted(await self.producer.partitions_for(topics.ROUTER_PAGE_REQUESTS)):
                    pending.append(await self.producer.send(topics.ROUTER_PAGE_REQUESTS, body, key=key, partition=p,
                                                            headers=deletion_headers()))
        log.info("mention_deleted", reason=pb.DeletionReason.Name(deleted.reason), notices=len(pending))
        return pending

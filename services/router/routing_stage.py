"""The routing stage: one scored mention to every receiver its routes name, once.

The routing tree (tree.py) gives the routes; the replay ledger (ledger.py) skips a mention
version already on one of its queue topics (a batch routed before a crash but not committed), so
its queue copies, pages and webhooks happen once. A paging route hands the mention to the
grouping stage; any other receiver gets it now, with retries (delivery.py), or it is
dead-lettered. A delivery with a first-response deadline starts its SLA clock (sla.py), written
to the state topic. Every call returns the futures to await before the batch is committed.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaProducer

from services.common import codec
from services.common import metrics as common_metrics
from services.common.codec import pb
from services.common.timeutil import epoch
from services.router import metrics as router_metrics
from services.router.config import RouterSettings
from services.router.dead_letters import DeadLetters
from services.router.delivery import ReceiverGuard, RetryPolicy, deliver_with_retry, routed_for
from services.router.grouping_stage import GroupingStage
from services.router.labels import labels_of
from services.router.ledger import RoutedLedger, mention_version
from services.router.registry import ReceiverSet
from services.router.sla import SlaItem, SlaTracker
from services.router.state import StateLog
from services.router.tree import RoutingTree


class RoutingStage:
    """Routes scored mentions.

    Example:

        routing = RoutingStage(settings, tree, receivers, guards, ledger, sla, grouping, dead_letters, state,
                               producer, clock=time.time)
        pending = await routing.route(scored)
    """

    def __init__(self, settings: RouterSettings, tree: RoutingTree, receivers: ReceiverSet,
                 guards: dict[str, ReceiverGuard], ledger: RoutedLedger, sla: SlaTracker, grouping: GroupingStage,
                 dead_letters: DeadLetters, state: StateLog, producer: AIOKafkaProducer, clock: Callable[[], float]):
        self.tree = tree
        self.receivers = receivers
        self.guards = guards
        self.policy = RetryPolicy(settings.delivery_attempts, settings.delivery_backoff_seconds,
                                  settings.delivery_backoff_max_seconds)
        self.ledger = ledger
        self.sla = sla
        self.grouping = grouping
        self.dead_letters = dead_letters
        self.state = state
        self.producer = producer
        self.clock = clock

    async def route(self, scored: pb.ScoredMention) -> list[Any]:
        """Deliver one mention to every receiver its routes name; returns futures to await before commit."""
        now = self.clock()
        labels = labels_of(scored)
        routes = self.tree.match(labels, now)
        pending: list[Any] = []
        seen: set[str] = set()
        prio = pb.Priority.Name(scored.priority) if scored.priority else "P4"
        version = mention_version(scored.mention)
        queue_topics = {r.receiver: self.receivers.queue_topic(r.receiver) for r in routes}
        queues = {name: topic for name, topic in queue_topics.items() if topic is not None}
        # A version already on one of its queue topics is a replay (a batch scored or routed before a crash
        # but not committed): its queue copies, pages and webhooks were done the first time.
        replay = any(self.ledger.seen(topic, version) for topic in queues.values())
        for route in routes:
            if route.receiver in seen:  # two routes naming one receiver deliver once
                continue
            seen.add(route.receiver)
            cfg = self.tree.receivers[route.receiver]
            topic = queues.get(route.receiver)
            if (replay and topic is None) or (topic is not None and not self.ledger.claim(topic, version, now)):
                router_metrics.DUPLICATES_SKIPPED.labels(route.receiver).inc()
                continue
            if cfg.kind != "kafka_queue" and self.tree.is_paging(route):
                pending += await self.grouping.take(scored, labels, route, prio, now, self.producer)
                continue
            routed = routed_for(scored, route.path, route.receiver, str(cfg.options.get("queue", "")), route.sla,
                                now, route)
            outcome = await deliver_with_retry(self.receivers.receivers[route.receiver], routed, self.policy,
                                               self.guards.get(route.receiver))
            if outcome.delivered:
                router_metrics.ROUTED.labels(route.receiver, prio).inc()
                common_metrics.MESSAGES_OUT.labels("router", route.receiver).inc()
            else:
                if topic is not None:
                    self.ledger.release(topic, version)
                pending.append(await self.dead_letters.routed(routed, f"delivery failed: {outcome.error}",
                                                              route.receiver, outcome.attempts))
            if routed.respond_by.seconds and prio != "P4":
                item = SlaItem(scored.mention.mention_id, routed.queue or route.receiver, prio, route.path, now,
                               epoch(routed.respond_by), route.escalate_to,
                               scored_b64=base64.b64encode(codec.encode(scored)).decode())
                if self.sla.open(item):
                    router_metrics.SLA_ITEMS.labels(prio).inc()
                    pending.append(await self.state.put(f"sla:{item.mention_id}", item.to_json(), item.mention_id))
        done = time.time()
        if scored.mention.created_at.seconds:
            router_metrics.END_TO_END.labels("created").observe(max(0.0, done - epoch(scored.mention.created_at)))
        if scored.mention.received_at.seconds:
            router_metrics.END_TO_END.labels("received").observe(max(0.0, done - epoch(scored.mention.received_at)))
        return pending

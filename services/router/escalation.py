"""The SLA escalation stage: mentions nobody answered in time go to the route's `escalate_to` receiver.

The clocks are sla.py's `SlaTracker`, started when a mention is routed (routing_stage.py) and
stopped by its first response (`respond`, from the `responses` topic).
On each tick every item past its deadline is escalated once: a paging receiver gets a one-off
page (`Group.for_sla_breach`, sent by the paging stage), any other receiver the mention again on
`<route>/sla-breach` with its original deadline; an escalation that fails is dead-lettered. Items
still unanswered `sla_retention_seconds` after their deadline are forgotten (bounded memory).
Every change is written to the state topic, keyed by mention id.
"""

from __future__ import annotations

import asyncio
import base64

from services.common import codec
from services.common.codec import pb
from services.common.logging import get_logger
from services.common.timeutil import ts_from_epoch
from services.router import metrics as router_metrics
from services.router.config import RouterSettings
from services.router.dead_letters import DeadLetters
from services.router.delivery import ReceiverGuard, RetryPolicy, deliver_with_retry, routed_for
from services.router.grouping import Group, Page, PageAction
from services.router.paging_stage import PagingStage
from services.router.registry import PAGING_KINDS, ReceiverSet
from services.router.sla import SlaItem, SlaTracker
from services.router.state import StateLog
from services.router.tree import RoutingTree

log = get_logger("router")


class SlaEscalation:
    """Escalates SLA breaches and expires old items.

    Example:

        escalation = SlaEscalation(settings, tree, sla, receivers, guards, paging, dead_letters, state)
        await escalation.respond(mention_id, at)      # a first response: the clock stops
        await escalation.tick(now)                    # escalate breaches, forget old items
    """

    def __init__(self, settings: RouterSettings, tree: RoutingTree, sla: SlaTracker, receivers: ReceiverSet,
                 guards: dict[str, ReceiverGuard], paging: PagingStage, dead_letters: DeadLetters, state: StateLog):
        self.settings = settings
        self.tree = tree
        self.sla = sla
        self.receivers = receivers
        self.guards = guards
        self.paging = paging
        self.dead_letters = dead_letters
        self.state = state
        self.policy = RetryPolicy(settings.delivery_attempts, settings.delivery_backoff_seconds,
                                  settings.delivery_backoff_max_seconds)

    async def tick(self, now: float) -> None:
        await asyncio.gather(*(self.escalate(item, now) for item in self.sla.breaches(now)))
        for mention_id in self.sla.expire(now, self.settings.sla_retention_seconds):
            await self.state.put(f"sla:{mention_id}", None, mention_id)
        router_metrics.OPEN_ITEMS.clear()
        for (queue, prio), n in self.sla.open_counts().items():
            router_metrics.OPEN_ITEMS.labels(queue, prio).set(n)

    async def respond(self, mention_id: str, at: float) -> None:
        """A first response stops the mention's clock (none is escalated after it)."""
        answered = self.sla.respond(mention_id, at)
        if answered is None:
            return
        router_metrics.FIRST_RESPONSE.labels(answered.item.priority).observe(answered.first_response_seconds)
        router_metrics.RESPONSES.labels(answered.item.priority, "in_time" if answered.in_time else "late").inc()
        await (await self.state.put(f"sla:{mention_id}", None, mention_id))

    async def escalate(self, item: SlaItem, now: float) -> None:
        router_metrics.SLA_BREACHES.labels(item.queue, item.priority).inc()
        log.warning("sla_breach", mention=item.mention_id, queue=item.queue, priority=item.priority,
                    overdue_s=round(now - item.due), escalate_to=item.escalate_to or "-")
        if item.escalate_to and item.escalate_to in self.receivers.names():
            scored = codec.decode(base64.b64decode(item.scored_b64), pb.ScoredMention) if item.scored_b64 \
                else pb.ScoredMention()
            cfg = self.tree.receivers[item.escalate_to]
            if cfg.kind in PAGING_KINDS:
                await self.paging.send(item.escalate_to, Page(PageAction.TRIGGER, Group.for_sla_breach(item, scored),
                                                              now))
            else:
                routed = routed_for(scored, item.route + "/sla-breach", item.escalate_to,
                                    str(cfg.options.get("queue", "")), {}, now)
                routed.respond_by.CopyFrom(ts_from_epoch(item.due))
                outcome = await deliver_with_retry(self.receivers.receivers[item.escalate_to], routed, self.policy,
                                                   self.guards.get(item.escalate_to))
                if not outcome.delivered:
                    await (await self.dead_letters.routed(routed, f"escalation failed: {outcome.error}",
                                                          item.escalate_to, outcome.attempts, key=item.mention_id))
        await (await self.state.put(f"sla:{item.mention_id}", item.to_json(), item.mention_id))

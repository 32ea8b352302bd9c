"""The grouping stage: a mention for a paging receiver is muted, or counted into its incident's group.

Muted first (Alertmanager's mute stages): by a silence (the routing file's, or the console's on the
`silences` topic) or by an inhibition (an open incident on `incidents` that already explains it).
Then it becomes a `PageRequest` (grouping.py) and is counted into its group (`count`); when replicas
share the work (`repartition`) the request goes through the `triage.router.page-requests` topic to
the replica that owns the group and is counted there. The groups a batch changed are written to the
state topic once, at the batch's end (`flush`). A resolved incident closes its groups (`incident_record`)
and its stragglers never open a new one.

An open incident record pages too (`incident_requests`, issue 24): routed by the labels a mention tagged with
it would carry (labels.py `incident_routing_labels`), muted the same way, it becomes a request for the same
group as its tagged mentions (`receiver|incident:<id>`), so a backlog whose every mention was scored before
the incident opened (none tagged) still pages, and an incident with tagged mentions still pages once. The
record's request never counts as a mention (grouping.py `add_incident`: idempotent). Deciding when to page
is the grouper's; sending, paging_stage.py's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaProducer

from services.common import metrics as common_metrics
from services.common import topics
from services.common.alerting.silence_feed import SilenceFeed
from services.common.codec import pb
from services.common.deadletter import decode_or_dead_letter
from services.common.logging import get_logger
from services.router import metrics as router_metrics
from services.router.grouping import (
    MAX_SAMPLES,
    RESOLVED_RETENTION,
    Group,
    IncidentGrouper,
    IncidentSummary,
    PageRequest,
    Sample,
    group_key,
)
from services.router.inhibition import incident_labels, inhibiting_rule
from services.router.labels import incident_routing_labels
from services.router.state import StateLog
from services.router.tree import Route, RoutingTree

log = get_logger("router")


class GroupingStage:
    """Mutes or groups the mentions of paging routes.

    Example:

        grouping = GroupingStage(tree, grouper, silences, clock=time.time)
        pending = await grouping.take(scored, labels, route, "P1", now, producer)
        pending += await grouping.flush(state)       # once per batch, before the commit
    """

    def __init__(self, tree: RoutingTree, grouper: IncidentGrouper, silences: SilenceFeed,
                 clock: Callable[[], float]):
        self.tree = tree
        self.grouper = grouper
        self.silences = silences
        self.clock = clock
        self.repartition = False  # True under Faust: requests go to the group's owner through their topic
        self.incidents: dict[str, dict[str, str]] = {}  # open classifier incidents (inhibition sources)
        self.severities: dict[str, float] = {}  # open classifier incidents' severity (0..1): their confidence
        self.resolved: dict[str, float] = {}  # resolved incident id -> when: its stragglers never open a group
        self._touched: dict[str, Group] = {}  # groups changed by the batch in progress, written once at its end

    def silence_record(self, key: bytes | None, value: bytes | None) -> None:
        """One record of the `silences` topic (the console's silences, followed whole by every replica)."""
        skipped = self.silences.fold(key, value)
        if skipped:
            common_metrics.MESSAGES_FAILED.labels("router", topics.SILENCES, "invalid_silence").inc()
            log.warning("silence_skipped", reason=skipped[:200])

    async def take(self, scored: pb.ScoredMention, labels: dict[str, str], route: Route, priority: str, now: float,
                   producer: AIOKafkaProducer) -> list[Any]:
        """Mute the mention, or count it into its group; returns futures to await before the commit."""
        if self.muted(labels, route.receiver, now):
            return []
        request = self.request(scored, labels, route, priority, now, self.confidence(scored))
        if self.repartition:
            # To the replica that owns the group (its partition of the page requests): one grouper per group.
            return [await producer.send(topics.ROUTER_PAGE_REQUESTS, request.encode(), key=request.key.encode())]
        self.count(request)
        return []

    def muted(self, labels: dict[str, str], receiver: str, now: float) -> bool:
        silence = self.tree.silenced_by(labels, now) or self.silences.match(labels, now)
        if silence is not None:
            router_metrics.PAGES_SUPPRESSED.labels(receiver, "silence").inc()
            log.info("page_silenced", receiver=receiver, comment=silence.comment[:80],
                     silence=getattr(silence, "id", "") or "routing file")
            return True
        hit = inhibiting_rule(self.tree.inhibit_rules, labels, self.incidents.values())
        if hit is not None:
            router_metrics.PAGES_SUPPRESSED.labels(receiver, "inhibition").inc()
            log.info("page_inhibited", receiver=receiver, by_incident=hit[1].get("incident", ""))
            return True
        return False

    def confidence(self, scored: pb.ScoredMention) -> float:
        """How sure the pipeline is that this is worth a page (0..1), for `triage_below_confidence`: the
        severity of the classifier incident it belongs to (10x the usual volume = 0.5, 100x = 1.0), else the
        mention's top intent score."""
        if scored.incident_id and scored.incident_id in self.severities:
            return self.severities[scored.incident_id]
        return max(scored.intents.values(), default=0.0)

    @staticmethod
    def request(scored: pb.ScoredMention, labels: dict[str, str], route: Route, priority: str,
                now: float, confidence: float = 1.0) -> PageRequest:
        mention = scored.mention
        held = route.holds_for_triage(confidence)
        return PageRequest(
            key=group_key(route.receiver, route.path, scored.incident_id, route.group_by, labels),
            receiver=route.receiver, route=route.path, incident_id=scored.incident_id,
            group_by=list(route.group_by), labels=labels, priority=priority, reasons=list(scored.reasons),
            sample=Sample(mention.mention_id, mention.text[:500], mention.url, labels["language"]), now=now,
            group_wait=route.group_wait, group_interval=route.group_interval,
            repeat_interval=route.repeat_interval, quiet_period=route.quiet_period,
            triage_timeout=route.triage_timeout if held else 0.0,
            triage_notify=route.triage_notify if held else "")

    def incident_requests(self, inc: pb.Incident, now: float) -> list[PageRequest]:
        """The page requests of an open incident record itself: one per paging receiver its labels route to
        (as for a mention tagged with it: first match, `continue`, each receiver once), unless muted."""
        labels = incident_routing_labels(inc)
        if labels is None:
            return []
        urls = {u.rstrip("/").rsplit("/", 1)[-1]: u for u in inc.evidence.sample_urls}
        summary = IncidentSummary(
            mentions=int(inc.mention_count), reasons=list(inc.reasons), languages=dict(inc.evidence.languages),
            samples=[Sample(mid, "", urls.get(mid.split(":", 1)[-1], ""), "")
                     for mid in inc.evidence.sample_mention_ids[:MAX_SAMPLES]])
        out: list[PageRequest] = []
        seen: set[str] = set()
        for route in self.tree.match(labels, now):
            if route.receiver in seen:
                continue
            seen.add(route.receiver)
            if self.tree.receivers[route.receiver].kind == "kafka_queue" or not self.tree.is_paging(route):
                continue
            if self.muted(labels, route.receiver, now):
                continue
            held = route.holds_for_triage(float(inc.severity))  # an incident's confidence: its severity
            out.append(PageRequest(
                key=group_key(route.receiver, route.path, inc.id, route.group_by, labels),
                receiver=route.receiver, route=route.path, incident_id=inc.id, group_by=list(route.group_by),
                labels=labels, priority=labels["priority"], reasons=list(inc.reasons),
                sample=summary.samples[0] if summary.samples else Sample("", "", "", labels["language"]), now=now,
                group_wait=route.group_wait, group_interval=route.group_interval,
                repeat_interval=route.repeat_interval, quiet_period=route.quiet_period,
                triage_timeout=route.triage_timeout if held else 0.0,
                triage_notify=route.triage_notify if held else "", incident=summary))
        return out

    async def page_incident(self, inc: pb.Incident, producer: AIOKafkaProducer) -> list[Any]:
        """Hand an open incident record's page requests to their groups' owners (as `take` does a mention's);
        returns futures to await before the record's offset is committed."""
        pending = []
        for request in self.incident_requests(inc, self.clock()):
            if self.repartition:
                pending.append(await producer.send(topics.ROUTER_PAGE_REQUESTS, request.encode(),
                                                   key=request.key.encode()))
            else:
                self.count(request)
        return pending

    def count(self, request: PageRequest) -> None:
        """Count a request into its group (on the group's owner)."""
        if request.incident_id and request.incident_id in self.resolved:
            return  # a straggler of a resolved incident: its queue delivery is enough
        g = self.grouper.add_request(request)
        if g is None:
            return
        if request.incident is None:  # (an incident record's request is no routed mention)
            router_metrics.ROUTED.labels(request.receiver, request.priority).inc()
        self._touched[g.key] = g

    async def flush(self, state: StateLog) -> list[Any]:
        """Write the groups the batch changed, once each (to their owner's state partition)."""
        touched, self._touched = self._touched, {}
        return [await state.put(f"group:{key}", g.to_json(), key) for key, g in touched.items()]

    async def incident_record(self, raw: bytes | None, producer: AIOKafkaProducer,
                              state: StateLog) -> pb.Incident | None:
        """One record of the incidents topic (followed whole by every replica): an open incident is an inhibition
        source; a resolved one closes the groups of it this replica owns. Returns the incident (None: a
        tombstone or a record that is no incident, dead-lettered)."""
        if not raw:
            return None  # a tombstone
        inc, dlq = await decode_or_dead_letter(raw, pb.Incident, producer, service="router",
                                               source_topic=topics.INCIDENTS)
        if inc is None:
            await dlq
            return None
        common_metrics.MESSAGES_IN.labels("router", topics.INCIDENTS).inc()
        if inc.state == pb.RESOLVED:
            self.incidents.pop(inc.id, None)
            self.severities.pop(inc.id, None)
            self.resolved[inc.id] = self.clock()
            futs = [await state.put(f"group:{g.key}", g.to_json(), g.key)
                    for g in self.grouper.close_incident(inc.id, self.clock())]
            await asyncio.gather(*futs)
        else:
            self.incidents[inc.id] = incident_labels(inc)
            self.severities[inc.id] = float(inc.severity)
        return inc

    def expire(self, now: float) -> None:
        """Forget resolved incidents after RESOLVED_RETENTION (their groups are gone by then too)."""
        for inc_id in [i for i, at in self.resolved.items() if now - at > RESOLVED_RETENTION]:
            del self.resolved[inc_id]

"""The router worker: thin Faust agents around `RouterWorker`, which routes scored mentions.

mentions.scored --(routing tree)--> queue topics / webhooks          one delivery per mention
                               \\--> grouping --> PagerDuty/Opsgenie/Slack/Alertmanager  one page per incident
incidents  --> closes incident groups (resolve), inhibition sources
responses  --> stops SLA clocks; a timer escalates breaches and sends due pages
undeliverable after the retry budget --> mentions.dlq (with receiver and reason); pages --> `pages` (audit)

Offsets of a batch are committed only after every delivery of it either
succeeded or was dead-lettered, and the grouping/SLA state it changed was
acknowledged by Kafka. Replays after a crash are skipped by the ledger
(ledger.py: the queue topics' `triage-version` headers), so each mention version
reaches a queue topic once. Pages are a persisted state machine (grouping.py):
one attempt per due page per tick, retried with backoff from the group's state
until delivered; a receiver failing for one incident never holds another's.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import faust
import httpx
from aiokafka import AIOKafkaProducer

from services.common import codec, topics
from services.common.alerting.silence_feed import SilenceFeed
from services.common.alerting.timeintervals import add_business_time
from services.common.codec import pb
from services.common.deadletter import dead_letter, decode_or_dead_letter
from services.common.faust_app import faust_app, retry_until_done
from services.common.follower import TopicFollower
from services.common.kafka import ensure_topics, make_producer
from services.common.lag import ConsumerLagMonitor, attach_to_faust
from services.common.logging import get_logger
from services.common.metrics import MESSAGES_FAILED, MESSAGES_IN, MESSAGES_OUT
from services.common.timeutil import epoch, ts_from_epoch
from services.common.topics import partition_for
from services.router import metrics as rm
from services.router.config import RouterSettings
from services.router.delivery import ReceiverGuard, RetryPolicy, attempt_once, call_with_retry, deliver_with_retry
from services.router.grouping import (
    PAGE_TYPE,
    RESOLVED_RETENTION,
    Group,
    IncidentGrouper,
    Page,
    PageAction,
    Sample,
    group_key,
    page_doc,
)
from services.router.inhibition import incident_labels, inhibiting_rule
from services.router.labels import labels_of
from services.router.ledger import RoutedLedger, mention_version
from services.router.ratelimit import CircuitBreaker, TokenBucket
from services.router.receivers import KafkaQueueReceiver
from services.router.registry import PAGING_KINDS, build_receivers
from services.router.sla import SlaItem, SlaTracker
from services.router.state import StateLog, state_topic
from services.router.tree import Route, RoutingTree

log = get_logger("router")

DEFAULT_RATE_PER_MINUTE = {"pagerduty": 120.0, "opsgenie": 600.0, "slack": 60.0}


def routed_for(sm: pb.ScoredMention, route_path: str, receiver: str, queue: str, sla: dict[str, float],
               now: float, route: Route | None = None) -> pb.RoutedMention:
    routed = pb.RoutedMention(route=route_path, receiver=receiver, queue=queue)
    routed.scored.CopyFrom(sm)
    routed.routed_at.CopyFrom(ts_from_epoch(now))
    due = sla.get(pb.Priority.Name(sm.priority)) if sm.priority else None
    if due:
        interval = route.sla_time_interval if route is not None else None
        routed.respond_by.CopyFrom(ts_from_epoch(add_business_time(now, due, interval)))
    return routed


class RouterWorker:
    def __init__(self, settings: RouterSettings, tree: RoutingTree, clock: Callable[[], float] = time.time):
        self.settings = settings
        self.tree = tree
        self.clock = clock
        self.policy = RetryPolicy(settings.delivery_attempts, settings.delivery_backoff_seconds,
                                  settings.delivery_backoff_max_seconds)
        # Pages: attempts are unbounded in count (bounded by page_retry_budget_seconds); triggers and resolves
        # back off to at most page_retry_max_seconds, updates to the delivery maximum.
        self.urgent_page_policy = RetryPolicy(1, settings.page_retry_backoff_seconds, settings.page_retry_max_seconds)
        self.update_page_policy = RetryPolicy(
            1, settings.page_retry_backoff_seconds,
            max(settings.page_retry_max_seconds, settings.delivery_backoff_max_seconds))
        self.ledger = RoutedLedger(settings.dedupe_window_seconds)
        self.producer: AIOKafkaProducer | None = None
        self.client: httpx.AsyncClient | None = None
        self.receivers: dict[str, Any] = {}
        self.guards: dict[str, ReceiverGuard] = {}
        self.grouper = IncidentGrouper()
        self.sla = SlaTracker()
        self.incidents: dict[str, dict[str, str]] = {}  # open classifier incidents (inhibition sources)
        self.resolved: dict[str, float] = {}  # resolved incident id -> when: its stragglers never open a group
        self.state: StateLog | None = None
        self.follower: TopicFollower | None = None
        self.silences = SilenceFeed()  # silences made on the console, followed whole (`silences` topic)
        self.silence_follower: TopicFollower | None = None
        # Scale-out (docs/scaling.md): the state partitions this replica owns (None: all of them, one process
        # without Faust, as in the in-process tests); under Faust, create_app sets an empty set and the
        # partition-assignment signals fill it. `repartition`: page requests go through the page-requests
        # topic to the group's owner instead of straight into the local grouper.
        self.owned: set[int] | None = None
        self.repartition = False
        self.partitions = topics.ROUTER_PARTITIONS
        self._loading: set[int] = set()  # assigned, state still loading: their messages wait for it
        self._loaded = asyncio.Event()
        self._loaded.set()
        self._touched: dict[str, Group] = {}  # groups changed by the batch in progress, written once at its end
        self._start_lock = asyncio.Lock()
        self._tick_lock = asyncio.Lock()

    # ---- lifecycle -------------------------------------------------------------------------------------------
    async def start(self) -> None:
        async with self._start_lock:
            if self.producer is not None:
                return
            security = self.settings.kafka_client_options()
            producer = make_producer(self.settings.kafka_bootstrap, f"{self.settings.kafka_client_id_prefix}-router",
                                     **security)
            await producer.start()
            self.producer = producer  # (other callers wait on the lock; reset below when the start fails)
            try:
                self.client = httpx.AsyncClient(timeout=self.settings.delivery_timeout_seconds)
                self.receivers = build_receivers(self.tree.receivers, producer, self.client,
                                                 console_url=self.settings.console_url)
                for name, cfg in self.tree.receivers.items():
                    breaker = CircuitBreaker(time.monotonic, self.settings.delivery_breaker_failures,
                                             self.settings.delivery_breaker_reset_seconds)
                    rate = cfg.options.get("rate_per_minute", DEFAULT_RATE_PER_MINUTE.get(cfg.kind))
                    bucket = TokenBucket.per_minute(float(rate), time.monotonic) if rate else None
                    self.guards[name] = ReceiverGuard(breaker, bucket, name)
                self.state = StateLog(self.settings.kafka_bootstrap, state_topic(self.settings.router_app_id), producer,
                                      client_options=security, replication=self.settings.topic_replication_factor,
                                      partitions=self.partitions)
                await self.state.ensure()
                self._restore(await self.state.load(self.owned))
                await self.ledger.load(self.settings.kafka_bootstrap, self._queue_topics(), time.time(), security)
                await ensure_topics(self.settings.kafka_bootstrap,
                                    topics.specs_named(topics.INCIDENTS, topics.SILENCES),
                                    self.settings.topic_replication_factor, client_options=security)
                # Every replica follows every incident (inhibition needs them all; a group's owner closes it).
                self.follower = TopicFollower(self.settings.kafka_bootstrap, topics.INCIDENTS, self._incident_record,
                                              client_id=f"{self.settings.kafka_client_id_prefix}-router-incidents",
                                              client_options=security)
                await self.follower.start()
                self.silence_follower = TopicFollower(
                    self.settings.kafka_bootstrap, topics.SILENCES, self._silence_record,
                    client_id=f"{self.settings.kafka_client_id_prefix}-router-silences", client_options=security)
                await self.silence_follower.start()
            except BaseException:
                # A failed start (broker not ready, a bad state record) is retried by the caller: leave nothing
                # half-open behind.
                await self.stop()
                raise

    def _queue_topics(self) -> list[str]:
        return [r.topic for r in self.receivers.values() if isinstance(r, KafkaQueueReceiver)]

    # ---- ownership of state partitions (scale-out) -----------------------------------------------------------
    def _partition(self, owner: str) -> int:
        return partition_for(owner, self.partitions)

    async def _owns(self, owner: str) -> bool:
        """Whether this replica owns `owner`'s partition (a mention id, a group key). A message of a partition
        whose state is still loading waits for it; one of a partition revoked a moment ago is left to the new
        owner (its offset is not this replica's to commit any more), counted as `not_owned`."""
        if self.owned is None:
            return True
        p = self._partition(owner)
        while p in self._loading:
            await self._loaded.wait()
        if p in self.owned:
            return True
        rm.NOT_OWNED.inc()
        return False

    def _drop(self, partitions: set[int]) -> None:
        """Forget the groups and SLA clocks of `partitions` (their state is durable on the state topic)."""
        if not partitions:
            return
        for key in [k for k in self.grouper.groups if self._partition(k) in partitions]:
            del self.grouper.groups[key]
        for mid in [m for m in self.sla.items if self._partition(m) in partitions]:
            del self.sla.items[mid]
        if self.owned is not None:
            self.owned -= partitions
        log.info("partitions_dropped", partitions=sorted(partitions), groups=len(self.grouper.groups),
                 sla_items=len(self.sla.items))

    async def on_partitions_revoked(self, partitions: set[int]) -> None:
        """Another replica may take these over: under the tick lock, so no page of theirs is in flight or sent
        after this returns."""
        async with self._tick_lock:
            if self.state is not None and self.owned is not None:
                self._drop(partitions & self.owned)

    async def on_partitions_assigned(self, partitions: set[int]) -> None:
        """Load the state of newly assigned partitions before their first message (Faust awaits this during
        the rebalance), and re-read the queue topics' recent versions: the previous owner may have routed
        mentions of them after this replica's ledger was loaded."""
        if self.owned is None:
            self.owned = set()
        # Messages of the new partitions wait (not skip) until their state is here, from now on: Faust may
        # resume the flow before this returns, and when the start or the load fails (a broker restarting) the
        # caller retries while they keep waiting. None is processed without its state, none is skipped as
        # "not owned" and committed (chaos run 2026-12-03: 280 mentions lost that way after a broker restart).
        self._loading = set(partitions) - self.owned
        self._loaded.clear()
        await self.start()
        assert self.state is not None
        async with self._tick_lock:
            self._drop(self.owned - partitions)
            new = partitions - self.owned
            self._loading = set(new)
            if new:
                self._restore(await self.state.load(new))
                await self.ledger.load(self.settings.kafka_bootstrap, self._queue_topics(), time.time(),
                                       self.settings.kafka_client_options())
            self.owned = set(partitions)
            self._loading = set()
            self._loaded.set()
            log.info("partitions_assigned", partitions=sorted(partitions), new=sorted(new),
                     groups=len(self.grouper.groups), sla_items=len(self.sla.items))

    def _restore(self, data: dict[str, dict[str, Any]]) -> None:
        for key, value in data.items():
            kind, _, ident = key.partition(":")
            if kind == "group":
                self.grouper.groups[ident] = Group.from_json(value)
            elif kind == "sla":
                self.sla.items[ident] = SlaItem.from_json(value)
            # (`incident:` records of older versions are ignored: every replica follows the incidents topic)
        log.info("state_restored", groups=len(self.grouper.open_groups()), sla_items=len(self.sla.items),
                 pages_retrying=sum(self.grouper.retrying().values()))

    async def stop(self) -> None:
        for follower in (self.follower, self.silence_follower):
            if follower is not None:
                await follower.stop()
        self.follower = self.silence_follower = None
        if self.client is not None:
            await self.client.aclose()
        if self.producer is not None:
            await self.producer.stop()
        self.producer = self.client = None

    # ---- mentions ----------------------------------------------------------------------------------------------
    async def _dead_letter_raw(self, raw: bytes, reason: str, source_topic: str) -> Any:
        assert self.producer is not None
        dl = dead_letter(raw, "router", reason, source_topic=source_topic, service="router")
        return await self.producer.send(topics.MENTIONS_DLQ, codec.encode(dl))

    async def _dead_letter(self, original: bytes, reason: str, receiver: str, attempts: int, original_type: str,
                           key: str) -> Any:
        assert self.producer is not None
        rm.DEAD_LETTERED.labels(receiver).inc()
        dl = dead_letter(original, "router", reason, source_topic=topics.MENTIONS_SCORED, receiver=receiver,
                         attempts=attempts, original_type=original_type, service="router")
        return await self.producer.send(topics.MENTIONS_DLQ, codec.encode(dl), key=key.encode())

    async def _deliver(self, sm: pb.ScoredMention, raw: bytes) -> list[Any]:
        """Deliver one mention to every receiver its routes name; returns futures to await before commit."""
        assert self.producer is not None and self.state is not None
        now = self.clock()
        labels = labels_of(sm)
        routes = self.tree.match(labels, now)
        pending: list[Any] = []
        seen: set[str] = set()
        prio = pb.Priority.Name(sm.priority) if sm.priority else "P4"
        version = mention_version(sm.mention)
        queues = {r.receiver: self.receivers[r.receiver].topic for r in routes
                  if isinstance(self.receivers.get(r.receiver), KafkaQueueReceiver)}
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
                rm.DUPLICATES_SKIPPED.labels(route.receiver).inc()
                continue
            if cfg.kind != "kafka_queue" and self.tree.is_paging(route):
                pending += await self._group(sm, labels, route, prio, now)
                continue
            routed = routed_for(sm, route.path, route.receiver, str(cfg.options.get("queue", "")), route.sla, now,
                                route)
            outcome = await deliver_with_retry(self.receivers[route.receiver], routed, self.policy,
                                               self.guards.get(route.receiver))
            if outcome.delivered:
                rm.ROUTED.labels(route.receiver, prio).inc()
                MESSAGES_OUT.labels("router", route.receiver).inc()
            else:
                if topic is not None:
                    self.ledger.release(topic, version)
                pending.append(await self._dead_letter(codec.encode(routed), f"delivery failed: {outcome.error}",
                                                       route.receiver, outcome.attempts, "triage.v1.RoutedMention",
                                                       sm.mention.mention_id))
            if routed.respond_by.seconds and prio != "P4":
                item = SlaItem(sm.mention.mention_id, routed.queue or route.receiver, prio, route.path, now,
                               epoch(routed.respond_by), route.escalate_to,
                               scored_b64=base64.b64encode(codec.encode(sm)).decode())
                if self.sla.open(item):
                    rm.SLA_ITEMS.labels(prio).inc()
                    pending.append(await self.state.put(f"sla:{item.mention_id}", item.to_json(), item.mention_id))
        done = time.time()
        if sm.mention.created_at.seconds:
            rm.END_TO_END.labels("created").observe(max(0.0, done - epoch(sm.mention.created_at)))
        if sm.mention.received_at.seconds:
            rm.END_TO_END.labels("received").observe(max(0.0, done - epoch(sm.mention.received_at)))
        return pending

    async def _group(self, sm: pb.ScoredMention, labels: dict[str, str], route: Route, prio: str,
                     now: float) -> list[Any]:
        assert self.state is not None
        silence = self.tree.silenced_by(labels, now) or self.silences.match(labels, now)
        if silence is not None:
            rm.PAGES_SUPPRESSED.labels(route.receiver, "silence").inc()
            log.info("page_silenced", receiver=route.receiver, comment=silence.comment[:80],
                     silence=getattr(silence, "id", "") or "routing file")
            return []
        hit = inhibiting_rule(self.tree.inhibit_rules, labels, self.incidents.values())
        if hit is not None:
            rm.PAGES_SUPPRESSED.labels(route.receiver, "inhibition").inc()
            log.info("page_inhibited", receiver=route.receiver, by_incident=hit[1].get("incident", ""))
            return []
        m = sm.mention
        gkey = group_key(route.receiver, route.path, sm.incident_id, route.group_by, labels)
        request = {"key": gkey, "receiver": route.receiver, "route": route.path, "incident_id": sm.incident_id,
                   "group_by": list(route.group_by), "labels": labels, "priority": prio, "reasons": list(sm.reasons),
                   "sample": asdict(Sample(m.mention_id, m.text[:500], m.url, labels["language"])), "now": now,
                   "group_wait": route.group_wait, "group_interval": route.group_interval,
                   "repeat_interval": route.repeat_interval, "quiet_period": route.quiet_period}
        if self.repartition:
            # To the replica that owns the group (its partition of the page requests): one grouper per group.
            assert self.producer is not None
            body = json.dumps(request, ensure_ascii=False, sort_keys=True).encode()
            return [await self.producer.send(topics.ROUTER_PAGE_REQUESTS, body, key=gkey.encode())]
        self._count_into_group(request)
        return []

    def _count_into_group(self, req: dict[str, Any]) -> None:
        if req["incident_id"] and req["incident_id"] in self.resolved:
            return  # a straggler of a resolved incident: its queue delivery is enough
        g = self.grouper.add(receiver=req["receiver"], route=req["route"], incident_id=req["incident_id"],
                             group_by=list(req["group_by"]), labels=dict(req["labels"]), priority=req["priority"],
                             reasons=list(req["reasons"]), sample=Sample(**req["sample"]), now=float(req["now"]),
                             group_wait=float(req["group_wait"]), group_interval=float(req["group_interval"]),
                             repeat_interval=float(req["repeat_interval"]), quiet_period=float(req["quiet_period"]))
        if g is None:
            return
        rm.ROUTED.labels(req["receiver"], req["priority"]).inc()
        self._touched[g.key] = g

    async def _flush_touched(self) -> list[Any]:
        """Write the groups the batch changed, once each (to their owner's state partition)."""
        assert self.state is not None
        touched, self._touched = self._touched, {}
        return [await self.state.put(f"group:{key}", g.to_json(), key) for key, g in touched.items()]

    async def process(self, records: list[bytes]) -> None:
        await self.start()
        assert self.producer is not None
        MESSAGES_IN.labels("router", topics.MENTIONS_SCORED).inc(len(records))
        pending: list[Any] = []
        jobs = []
        for raw in records:
            sm, dlq = await decode_or_dead_letter(raw, pb.ScoredMention, self.producer, service="router",
                                                  source_topic=topics.MENTIONS_SCORED)
            if sm is None:
                pending.append(dlq)
                continue
            if not await self._owns(sm.mention.mention_id):
                continue
            jobs.append(self._deliver(sm, raw))
        for futs in await asyncio.gather(*jobs):
            pending += futs
        pending += await self._flush_touched()
        await asyncio.gather(*pending)

    async def on_page_requests(self, records: list[bytes]) -> None:
        """The group owner's side of `_group`: count each request into its group, persist, then commit."""
        await self.start()
        assert self.producer is not None
        MESSAGES_IN.labels("router", topics.ROUTER_PAGE_REQUESTS).inc(len(records))
        pending: list[Any] = []
        for raw in records:
            try:
                req = json.loads(raw)
                if not await self._owns(str(req["key"])):
                    continue
                self._count_into_group(req)
            except (ValueError, KeyError, TypeError) as exc:
                pending.append(await self._dead_letter_raw(raw, f"invalid page request: {type(exc).__name__}: "
                                                                f"{str(exc)[:200]}", topics.ROUTER_PAGE_REQUESTS))
        pending += await self._flush_touched()
        await asyncio.gather(*pending)

    # ---- incidents and responses ----------------------------------------------------------------------------
    async def on_incident(self, raw: bytes) -> None:
        await self.start()
        await self._incident_record(None, raw)

    def _silence_record(self, key: bytes | None, value: bytes | None) -> None:
        skipped = self.silences.fold(key, value)
        if skipped:
            MESSAGES_FAILED.labels("router", topics.SILENCES, "invalid_silence").inc()
            log.warning("silence_skipped", reason=skipped[:200])

    async def _incident_record(self, _key: bytes | None, raw: bytes | None) -> None:
        """One record of the incidents topic (followed whole by every replica): open incidents are inhibition
        sources; a resolved one closes the groups of it that this replica owns."""
        assert self.state is not None and self.producer is not None
        if not raw:
            return  # a tombstone
        inc, dlq = await decode_or_dead_letter(raw, pb.Incident, self.producer, service="router",
                                               source_topic=topics.INCIDENTS)
        if inc is None:
            await dlq
            return
        MESSAGES_IN.labels("router", topics.INCIDENTS).inc()
        if inc.state == pb.RESOLVED:
            self.incidents.pop(inc.id, None)
            self.resolved[inc.id] = self.clock()
            futs = [await self.state.put(f"group:{g.key}", g.to_json(), g.key)
                    for g in self.grouper.close_incident(inc.id, self.clock())]
            await asyncio.gather(*futs)
        else:
            self.incidents[inc.id] = incident_labels(inc)

    async def on_response(self, raw: bytes) -> None:
        await self.start()
        assert self.state is not None
        ev, dlq = await decode_or_dead_letter(raw, pb.ResponseEvent, self.producer, service="router",
                                              source_topic=topics.RESPONSES)
        if ev is None:
            await dlq
            return
        MESSAGES_IN.labels("router", topics.RESPONSES).inc()
        if not await self._owns(ev.mention_id):
            return
        at = epoch(ev.at) or self.clock()
        answered = self.sla.respond(ev.mention_id, at)
        if answered is None:
            return
        rm.FIRST_RESPONSE.labels(answered.item.priority).observe(answered.first_response_seconds)
        rm.RESPONSES.labels(answered.item.priority, "in_time" if answered.in_time else "late").inc()
        await (await self.state.put(f"sla:{ev.mention_id}", None, ev.mention_id))

    # ---- timers: pages and SLA breaches ---------------------------------------------------------------------
    async def tick(self, now: float | None = None) -> None:
        await self.start()
        async with self._tick_lock:
            now = self.clock() if now is None else now
            for page, reason, attempts in self.grouper.give_up(now, self.settings.page_retry_budget_seconds):
                await self._page_dead_lettered(page, reason, attempts)
            # Every due page gets one attempt, concurrently and triggers first: a slow or failing receiver
            # costs one attempt per tick for its own incident only.
            await asyncio.gather(*(self._attempt_page(page) for page in self.grouper.due(now)))
            await asyncio.gather(*(self._escalate(item, now) for item in self.sla.breaches(now)))
            assert self.state is not None
            for mention_id in self.sla.expire(now, self.settings.sla_retention_seconds):
                await self.state.put(f"sla:{mention_id}", None, mention_id)
            self.ledger.expire(time.time())
            for inc_id in [i for i, at in self.resolved.items() if now - at > RESOLVED_RETENTION]:
                del self.resolved[inc_id]
            rm.OPEN_INCIDENTS.set(len(self.grouper.open_groups()))
            rm.PAGES_RETRYING.clear()
            for (receiver, action), n in self.grouper.retrying().items():
                rm.PAGES_RETRYING.labels(receiver, action).set(n)
            rm.OPEN_ITEMS.clear()
            for (queue, prio), n in self.sla.open_counts().items():
                rm.OPEN_ITEMS.labels(queue, prio).set(n)

    async def send_page(self, receiver_name: str, page: Page) -> bool:
        """A one-off page outside the grouper (an SLA escalation): retried in place with the delivery policy,
        recorded on `pages`, dead-lettered when it still failed (for `triage dlq replay`)."""
        count = page.group.count
        outcome = await call_with_retry(receiver_name, lambda: self.receivers[receiver_name].notify(page),
                                        self.policy, self.guards.get(receiver_name))
        if outcome.delivered:
            rm.PAGES.labels(receiver_name, page.action, "sent").inc()
        state = "delivered" if outcome.delivered else "dead_lettered"
        detail = f"{count} mentions" if outcome.delivered else outcome.error
        futs = [await self._record_page(page, receiver_name, state, outcome.attempts, detail)]
        if not outcome.delivered:
            futs.append(await self._dead_letter_page(page, receiver_name, outcome.error, outcome.attempts))
        await asyncio.gather(*futs)
        log.info("page", action=page.action, receiver=receiver_name, incident=page.group.id, mentions=count,
                 delivered=outcome.delivered)
        return outcome.delivered

    async def _record_page(self, page: Page, receiver: str, state: str, attempt: int, detail: str) -> Any:
        """The `pages` audit record of one attempt (after the group's state is durable)."""
        assert self.producer is not None
        rec = pb.PageRecord(incident_id=page.group.id, receiver=receiver, action=page.action,
                            delivered=state == "delivered", detail=detail[:500], state=state, attempt=attempt)
        rec.at.CopyFrom(ts_from_epoch(page.at))
        return await self.producer.send(topics.PAGES, codec.encode(rec), key=page.group.id.encode())

    async def _attempt_page(self, page: Page) -> None:
        """One delivery attempt of a due page. Delivered: the group moves on. Failed: the group keeps the page
        due and backs off (persisted, so a restart resumes it); a rejection (4xx) is dead-lettered at once."""
        assert self.state is not None
        g = page.group
        name = g.receiver
        guard = self.guards.get(name)
        if guard is not None and guard.bucket is not None:
            keep = guard.bucket.burst * self.settings.page_update_reserve if page.action == PageAction.UPDATE else 0
            if not guard.bucket.take(keep):
                rm.RATE_LIMITED.labels(name).inc()  # still due: the next tick tries again, triggers first
                return
        count = g.count
        attempt = int(g.outbox.get("attempts", 0)) + 1
        due_since = float(g.outbox.get("since", page.at))
        outcome = await attempt_once(name, lambda: self.receivers[name].notify(page))
        if outcome.delivered:
            self.grouper.mark_sent(page, count, str(outcome.result or ""))
            state, detail = "delivered", f"{count} mentions"
            rm.PAGES.labels(name, page.action, "sent").inc()
            rm.PAGE_DELAY.labels(page.action).observe(max(0.0, self.clock() - due_since))
        elif not outcome.retryable:
            self.grouper.abandon(g, page.action, page.at)
            state, detail = "dead_lettered", f"rejected by the receiver: {outcome.error}"
        else:
            policy = self.update_page_policy if page.action == PageAction.UPDATE else self.urgent_page_policy
            retry_in = policy.delay(attempt, outcome.retry_after)
            self.grouper.mark_failed(page, page.at, outcome.error, retry_in)
            state, detail = "retrying", f"attempt {attempt} failed, next in {retry_in:.1f} s: {outcome.error}"
        await (await self.state.put(f"group:{g.key}", g.to_json(), g.key))
        futs = [await self._record_page(page, name, state, attempt, detail)]
        if state == "dead_lettered":
            futs.append(await self._dead_letter_page(page, name, detail, attempt))
        await asyncio.gather(*futs)
        (log.info if state == "delivered" else log.warning)(
            "page_attempt", action=page.action, receiver=name, incident=g.id, mentions=count, state=state,
            attempt=attempt, error=outcome.error[:200] if not outcome.delivered else "")

    async def _dead_letter_page(self, page: Page, receiver: str, reason: str, attempts: int) -> Any:
        rm.PAGES.labels(receiver, page.action, "failed").inc()
        return await self._dead_letter(page_doc(page, receiver), f"page failed: {reason}", receiver, attempts,
                                       PAGE_TYPE, page.group.id)

    async def _page_dead_lettered(self, page: Page, reason: str, attempts: int) -> None:
        """`give_up` ended a pending page: persist the group, record it, and park the page in the DLQ."""
        assert self.state is not None
        await (await self.state.put(f"group:{page.group.key}", page.group.to_json(), page.group.key))
        await asyncio.gather(await self._record_page(page, page.group.receiver, "dead_lettered", attempts, reason),
                             await self._dead_letter_page(page, page.group.receiver, reason, attempts))
        log.warning("page_dead_lettered", action=page.action, receiver=page.group.receiver, incident=page.group.id,
                    reason=reason[:300])

    async def _escalate(self, item: SlaItem, now: float) -> None:
        assert self.state is not None
        rm.SLA_BREACHES.labels(item.queue, item.priority).inc()
        log.warning("sla_breach", mention=item.mention_id, queue=item.queue, priority=item.priority,
                    overdue_s=round(now - item.due), escalate_to=item.escalate_to or "-")
        if item.escalate_to and item.escalate_to in self.receivers:
            sm = codec.decode(base64.b64decode(item.scored_b64), pb.ScoredMention) if item.scored_b64 \
                else pb.ScoredMention()
            cfg = self.tree.receivers[item.escalate_to]
            if cfg.kind in PAGING_KINDS:
                m = sm.mention
                g = Group(key=f"sla|{item.mention_id}", id=f"sla-{item.mention_id}", receiver=item.escalate_to,
                          route=item.route, incident_id="", labels={"brand": m.brands[0] if m.brands else ""},
                          priority=item.priority, group_wait=0, group_interval=0, repeat_interval=0, quiet_period=0,
                          first_at=item.routed_at, last_at=item.routed_at, count=1,
                          reasons={f"no first response within the {item.priority} SLA": 1,
                                   **{r: 1 for r in sm.reasons}},
                          samples=[{"mention_id": m.mention_id, "text": m.text[:500], "url": m.url,
                                    "language": sm.language}])
                await self.send_page(item.escalate_to, Page(PageAction.TRIGGER, g, now))
            else:
                routed = routed_for(sm, item.route + "/sla-breach", item.escalate_to,
                                    str(cfg.options.get("queue", "")), {}, now)
                routed.respond_by.CopyFrom(ts_from_epoch(item.due))
                outcome = await deliver_with_retry(self.receivers[item.escalate_to], routed, self.policy,
                                                   self.guards.get(item.escalate_to))
                if not outcome.delivered:
                    await (await self._dead_letter(codec.encode(routed), f"escalation failed: {outcome.error}",
                                                   item.escalate_to, outcome.attempts, "triage.v1.RoutedMention",
                                                   item.mention_id))
        await (await self.state.put(f"sla:{item.mention_id}", item.to_json(), item.mention_id))


def create_app(settings: RouterSettings, worker: RouterWorker) -> faust.App:
    """N replicas of this app share the work by Kafka partitions (docs/scaling.md): `mentions.scored`,
    `responses` and the page requests are co-partitioned, so partition p of each (and of the state topic)
    belongs to one replica at a time; incidents and silences are followed whole by every replica."""
    worker.owned = set()
    worker.repartition = True
    app = faust_app(settings.router_app_id, settings, stream_buffer_maxsize=max(4 * settings.max_batch, 128),
                    broker_session_timeout=settings.router_session_timeout_seconds,
                    broker_heartbeat_interval=max(1.0, settings.router_session_timeout_seconds / 10))
    scored_topic = app.topic(topics.MENTIONS_SCORED)
    requests_topic = app.topic(topics.ROUTER_PAGE_REQUESTS)
    responses_topic = app.topic(topics.RESPONSES)
    attach_to_faust(app, ConsumerLagMonitor(
        "router", settings.router_app_id, [topics.MENTIONS_SCORED, topics.ROUTER_PAGE_REQUESTS, topics.RESPONSES],
        bootstrap=settings.kafka_bootstrap, client_options=settings.kafka_client_options()))
    owned_topics = {topics.MENTIONS_SCORED, topics.ROUTER_PAGE_REQUESTS, topics.RESPONSES}

    @app.agent(scored_topic, concurrency=1)
    async def route(stream: Any) -> None:
        async for values in stream.take(settings.max_batch, within=settings.max_wait_seconds):
            await retry_until_done(worker.process, list(values), what="router batch")

    @app.agent(requests_topic, concurrency=1)
    async def page_requests(stream: Any) -> None:
        async for values in stream.take(settings.max_batch, within=settings.max_wait_seconds):
            await retry_until_done(worker.on_page_requests, list(values), what="page requests")

    @app.agent(responses_topic, concurrency=1)
    async def responses(stream: Any) -> None:
        async for value in stream:
            await retry_until_done(worker.on_response, value, what="response")

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def _revoked(_: faust.App, revoked: set[Any], **__: Any) -> None:
        await worker.on_partitions_revoked({tp.partition for tp in revoked if tp.topic in owned_topics})

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def _assigned(_: faust.App, assigned: set[Any], **__: Any) -> None:
        await retry_until_done(worker.on_partitions_assigned,
                               {tp.partition for tp in assigned if tp.topic in owned_topics}, what="assignment")

    @app.timer(interval=settings.tick_seconds)
    async def tick() -> None:
        try:
            await worker.tick()
        except Exception as exc:  # a failed tick is retried by the next one; state is unchanged
            log.warning("tick_failed", error=type(exc).__name__, detail=str(exc)[:200])

    @app.on_before_shutdown.connect  # type: ignore[arg-type]  # faust's signal stubs reject async receivers
    async def _shutdown(app: faust.App, **_: Any) -> None:
        await worker.stop()

    return app

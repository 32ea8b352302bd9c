r"""The router worker: `RouterWorker` takes the router's input and wires its stages (its Faust agents: agents.py).

mentions.scored --routing_stage.py--> queue topics / webhooks        one delivery per mention
                                \--> grouping_stage.py --> paging_stage.py --> PagerDuty/Opsgenie/Slack/...
incidents / silences --> grouping_stage.py (close groups, inhibit, mute; an open incident pages itself)
triage.decisions --> triage_stage.py (page now / dismiss a held group); the timer records holds on `pages`
responses --> stop SLA clocks; a timer runs paging_stage.py (due pages) and escalation.py (SLA breaches)
undeliverable after the retry budget --> dead_letters.py (mentions.dlq); page attempts --> `pages`
ownership.py: which state partitions (groups, SLA clocks) this replica owns.

Offsets of a batch are committed only after every delivery of it either succeeded or was
dead-lettered, and the grouping/SLA state it changed was acknowledged by Kafka. Replays after a
crash are skipped by the ledger (ledger.py), so each mention version reaches a queue topic once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer

from services.common import metrics as common_metrics
from services.common import topics
from services.common.alerting.silence_feed import SilenceFeed
from services.common.codec import pb
from services.common.deadletter import decode_or_dead_letter
from services.common.deletion_log import DeletionLog
from services.common.deletions import DeletionMemory, is_author_deletion
from services.common.follower import OnRecord, TopicFollower
from services.common.kafka import ensure_topics, make_producer
from services.common.logging import get_logger
from services.common.timeutil import epoch
from services.router import metrics as router_metrics
from services.router.config import RouterSettings
from services.router.dead_letters import DeadLetters
from services.router.deletion_stage import DeletionStage
from services.router.delivery import ReceiverGuard
from services.router.escalation import SlaEscalation
from services.router.grouping import IncidentGrouper, PageRequest
from services.router.grouping_stage import GroupingStage
from services.router.ledger import RoutedLedger
from services.router.masking import mask_receivers
from services.router.ownership import PartitionOwnership, StateSource
from services.router.paging_stage import PagingStage
from services.router.registry import ReceiverSet, build_receivers
from services.router.routing_stage import RoutingStage
from services.router.sla import SlaTracker
from services.router.state import StateLog, state_topic
from services.router.tree import RoutingTree
from services.router.triage_stage import TriageStage

log = get_logger("router")


@dataclass(frozen=True)
class Stages:
    """What `RouterWorker.start` wires: the parts that need the producer, the state log and the receivers."""

    dead_letters: DeadLetters
    routing: RoutingStage
    paging: PagingStage
    escalation: SlaEscalation
    state: StateLog
    producer: AIOKafkaProducer
    deletions: DeletionStage
    triage: TriageStage


class RouterWorker:
    """The router: its input (`process`, `on_page_requests`, `on_triage_decisions`, `on_incident`, `on_response`,
    `tick`) to its stages.

    Example (one process, no Faust):

        worker = RouterWorker(RouterSettings(), routing_file.load("routes.yaml"))
        await worker.process([codec.encode(scored)])   # routed, grouped, state written: commit now
        await worker.tick()                            # due pages, SLA breaches
        await worker.stop()
    """

    def __init__(self, settings: RouterSettings, tree: RoutingTree, clock: Callable[[], float] = time.time):
        self.settings = settings
        self.tree = tree
        self.clock = clock
        self.ledger = RoutedLedger(settings.dedupe_window_seconds)
        # Deletions seen within the window: a later or replayed copy of a deleted mention is never routed. They
        # are checkpointed on the state topic (`deleted:` keys) and restored with the partitions' other state.
        self.deleted = DeletionMemory(settings.dedupe_window_seconds)
        self.deletion_log = DeletionLog(self.deleted)
        self.producer: AIOKafkaProducer | None = None
        self.client: httpx.AsyncClient | None = None
        self.receivers = ReceiverSet({}, {})
        self.stages: Stages | None = None
        self.grouper = IncidentGrouper()
        self.sla = SlaTracker()
        self.state: StateLog | None = None
        self.silences = SilenceFeed()  # silences made on the console, followed whole (`silences` topic)
        self.followers: list[TopicFollower] = []  # of the incidents and silences topics
        self._start_lock = asyncio.Lock()
        self._tick_lock = asyncio.Lock()
        # Scale-out (docs/scaling.md): under Faust, create_app makes `ownership.owned` an empty set that the
        # partition-assignment signals fill, and sets `grouping.repartition`: page requests go through the
        # page-requests topic to the group's owner instead of straight into the local grouper.
        self.ownership = PartitionOwnership(self.grouper, self.sla, self._tick_lock, settings.router_partitions,
                                            deletions=self.deletion_log)
        self.grouping = GroupingStage(tree, self.grouper, self.silences, clock)

    # ---- lifecycle -------------------------------------------------------------------------------------------
    async def start(self) -> Stages:
        async with self._start_lock:
            if self.stages is not None:
                return self.stages
            security = self.settings.kafka_client_options()
            producer = make_producer(self.settings.kafka_bootstrap, f"{self.settings.kafka_client_id_prefix}-router",
                                     **security)
            await producer.start()
            self.producer = producer  # (reset below when the start fails)
            try:
                self.client = httpx.AsyncClient(timeout=self.settings.delivery_timeout_seconds)
                # Personal data is masked at the one point between the router and what leaves it (masking.py).
                receivers = self.receivers = mask_receivers(
                    build_receivers(self.tree.receivers, producer, self.client, console_url=self.settings.console_url),
                    self.settings.mask_pii, self.settings.mask_pii_receivers)
                guards = {name: ReceiverGuard.for_receiver(cfg, self.settings)
                          for name, cfg in self.tree.receivers.items()}
                state = self.state = StateLog(
                    self.settings.kafka_bootstrap, state_topic(self.settings.router_app_id), producer,
                    client_options=security, replication=self.settings.topic_replication_factor,
                    partitions=self.ownership.partitions)
                await state.ensure()
                self.deletion_log.attach(state)
                self.ownership.restore(await state.load(self.ownership.owned))
                await self._reread_ledger()
                dead_letters = DeadLetters(producer)
                paging = PagingStage(self.settings, self.grouper, receivers.pagers, guards, state, producer,
                                     dead_letters, self.clock)
                escalation = SlaEscalation(self.settings, self.tree, self.sla, receivers, guards, paging,
                                           dead_letters, state)
                routing = RoutingStage(self.settings, self.tree, receivers, guards, self.ledger, self.sla,
                                       self.grouping, dead_letters, state, producer, self.clock)
                await ensure_topics(self.settings.kafka_bootstrap,
                                    topics.specs_named(topics.INCIDENTS, topics.SILENCES),
                                    self.settings.topic_replication_factor, client_options=security)
                # Every replica follows every incident (inhibition needs them all; a group's owner closes it).
                await self._follow(topics.INCIDENTS, self._incident_record, "incidents")
                await self._follow(topics.SILENCES, self.grouping.silence_record, "silences")
            except BaseException:
                # A failed start (broker not ready, a bad state record) is retried by the caller: leave nothing
                # half-open behind.
                await self.stop()
                raise
            deletions = DeletionStage(receivers, self.ledger, self.sla, state, producer, self.grouper,
                                      broadcast=self.grouping.repartition)
            triage = TriageStage(self.grouper, receivers.pagers, state, producer, self.clock)
            self.stages = Stages(dead_letters, routing, paging, escalation, state, producer, deletions, triage)
            return self.stages

    async def _follow(self, topic: str, on_record: OnRecord, name: str) -> None:
        follower = TopicFollower(self.settings.kafka_bootstrap, topic, on_record,
                                 client_id=f"{self.settings.kafka_client_id_prefix}-router-{name}",
                                 client_options=self.settings.kafka_client_options())
        self.followers.append(follower)
        await follower.start()

    async def stop(self) -> None:
        for follower in self.followers:
            await follower.stop()
        self.followers = []
        if self.client is not None:
            await self.client.aclose()
        if self.producer is not None:
            await self.producer.stop()
        self.producer = self.client = self.stages = None

    # ---- ownership of state partitions (ownership.py) ----------------------------------------------------------
    async def on_partitions_assigned(self, partitions: set[int]) -> None:
        await self.ownership.assign(partitions, self._started_state, self._reread_ledger)

    async def on_partitions_revoked(self, partitions: set[int]) -> None:
        await self.ownership.revoke(partitions)

    async def _started_state(self) -> StateSource:
        await self.start()
        assert self.state is not None
        return self.state

    async def _reread_ledger(self) -> None:
        await self.ledger.load(self.settings.kafka_bootstrap, self.receivers.queue_topics(), time.time(),
                               self.settings.kafka_client_options())

    # ---- intake: mentions, page requests, incidents, responses -----------------------------------------------
    async def process(self, records: list[bytes], deletion_flags: list[bool] | None = None) -> None:
        """Route a batch of `mentions.scored`; `deletion_flags[i]`: record i is a MentionDeleted (its type
        header). Deletions are taken first, so a mention deleted anywhere in the batch is not routed."""
        stages = await self.start()
        common_metrics.MESSAGES_IN.labels("router", topics.MENTIONS_SCORED).inc(len(records))
        pending: list[Any] = []
        jobs = []
        flags = deletion_flags or [False] * len(records)
        deletions = []
        for raw in (r for r, deletion in zip(records, flags, strict=True) if deletion):
            deleted, dlq = await decode_or_dead_letter(raw, pb.MentionDeleted, stages.producer, service="router",
                                                       source_topic=topics.MENTIONS_SCORED)
            if deleted is None:
                pending.append(dlq)
                continue
            # Every replica: an author's deletion reaches each partition once. Checkpointed before the commit.
            pending += await self.deletion_log.record(deleted)
            if is_author_deletion(deleted) or await self.ownership.owns(deleted.mention_id):
                deletions.append(deleted)
        for raw in (r for r, deletion in zip(records, flags, strict=True) if not deletion):
            scored, dlq = await decode_or_dead_letter(raw, pb.ScoredMention, stages.producer, service="router",
                                                      source_topic=topics.MENTIONS_SCORED)
            if scored is None:
                pending.append(dlq)
                continue
            if not await self.ownership.owns(scored.mention.mention_id):
                continue
            if self.deleted.covers(scored.mention):
                router_metrics.DELETED_NOT_ROUTED.inc()
                continue
            jobs.append(stages.routing.route(scored))
        for futs in await asyncio.gather(*jobs):
            pending += futs
        for deleted in deletions:
            pending += await stages.deletions.delete(deleted)
        pending += await self.grouping.flush(stages.state)
        await asyncio.gather(*pending)

    async def on_page_requests(self, records: list[bytes], deletion_flags: list[bool] | None = None) -> None:
        """The group owner's side of the grouping stage: count each request into its group, persist, commit.
        A deletion's copy (`deletion_flags[i]`, deletion_stage.py) drops the post from the groups held here."""
        stages = await self.start()
        common_metrics.MESSAGES_IN.labels("router", topics.ROUTER_PAGE_REQUESTS).inc(len(records))
        pending: list[Any] = []
        flags = deletion_flags or [False] * len(records)
        for raw, deletion in zip(records, flags, strict=True):
            if deletion:   # after the requests before it (counted into the groups in memory)
                deleted, dlq = await decode_or_dead_letter(raw, pb.MentionDeleted, stages.producer, service="router",
                                                           source_topic=topics.ROUTER_PAGE_REQUESTS)
                if deleted is None:
                    pending.append(dlq)
                elif deleted.mention_id:
                    pending += await stages.deletions.drop_samples(deleted.mention_id)
                continue
            try:
                request = PageRequest.decode(raw)
            except (ValueError, KeyError, TypeError) as exc:
                pending.append(await stages.dead_letters.unreadable(
                    raw, f"invalid page request: {type(exc).__name__}: {str(exc)[:200]}", topics.ROUTER_PAGE_REQUESTS))
                continue
            if await self.ownership.owns(request.key):
                self.grouping.count(request)
        pending += await self.grouping.flush(stages.state)
        await asyncio.gather(*pending)

    async def on_triage_decisions(self, records: list[bytes]) -> None:
        """A person's page now / dismiss on a held group (triage_stage.py), on the group's owner; each decision
        is persisted before this returns (then commit)."""
        stages = await self.start()
        common_metrics.MESSAGES_IN.labels("router", topics.TRIAGE_DECISIONS).inc(len(records))
        for raw in records:
            if not raw:
                continue  # a tombstone
            msg, dlq = await decode_or_dead_letter(raw, pb.TriageDecision, stages.producer, service="router",
                                                   source_topic=topics.TRIAGE_DECISIONS)
            if msg is None:
                await dlq
                continue
            if await self.ownership.owns(msg.group_key):
                await stages.triage.decide(msg)

    async def on_incident(self, raw: bytes | None) -> None:
        """One incident record, read in the router's consumer group (each record by one replica, its offset
        committed after this returns): folded in like the followed ones, and an open incident pages its
        paging routes' receivers itself (grouping_stage.py `page_incident`), whether or not any mention
        tagged with it arrives: a backlog scored before the incident opened tags none (issue 24). Its
        requests join the group of its tagged mentions on that group's owner, so it still pages once."""
        stages = await self.start()
        inc = await self.grouping.incident_record(raw, stages.producer, stages.state)
        if inc is None:
            return
        pending = await self.grouping.page_incident(inc, stages.producer)
        if not self.grouping.repartition:  # counted here (one process); else by the groups' owners
            pending += await self.grouping.flush(stages.state)
        await asyncio.gather(*pending)

    async def _incident_record(self, _key: bytes | None, raw: bytes | None) -> None:
        """A followed record (every replica reads every incident): inhibition sources and closing groups only;
        paging from a record is `on_incident`'s, one replica per record."""
        assert self.state is not None and self.producer is not None
        await self.grouping.incident_record(raw, self.producer, self.state)

    async def on_response(self, raw: bytes) -> None:
        """A first response stops the mention's SLA clock (escalation.py)."""
        stages = await self.start()
        ev, dlq = await decode_or_dead_letter(raw, pb.ResponseEvent, stages.producer, service="router",
                                              source_topic=topics.RESPONSES)
        if ev is None:
            await dlq
            return
        common_metrics.MESSAGES_IN.labels("router", topics.RESPONSES).inc()
        if await self.ownership.owns(ev.mention_id):
            await stages.escalation.respond(ev.mention_id, epoch(ev.at) or self.clock())

    # ---- timers: pages and SLA breaches (paging_stage.py, escalation.py) ---------------------------------------
    async def tick(self, now: float | None = None) -> None:
        stages = await self.start()
        async with self._tick_lock:
            now = self.clock() if now is None else now
            await stages.paging.tick(now)
            await stages.triage.tick(now)
            await stages.escalation.tick(now)
            self.ledger.expire(time.time())
            self.grouping.expire(now)
            await asyncio.gather(*await self.deletion_log.tombstone_expired())

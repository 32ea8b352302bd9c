"""The classify worker: a thin Faust agent around `Scorer`.

mentions.raw --(adaptive batches: prepare | model | emit, overlapped)--> mentions.scored
undecodable or unscorable records --> mentions.dlq (with the reason)

With crisis detection on, the worker runs as N replicas in two stages (docs/scaling.md): scoring on the
partitions of `mentions.raw` (keyed by mention id: a hot brand's posts spread over every replica), then
one record per named brand to `triage.classify.crisis-input`, keyed by brand; the replica owning a brand's
partition there runs its crisis detection, tags the mention (its first brand's copy) and produces it to
`mentions.scored`, and produces the incident updates.

Batches are cut by `batching.BatchPolicy` (small when traffic is light, up to `max_batch` under load)
and run through `pipeline.StagedBatches`: decoding + tokenisation of the next batch overlaps the model
on this one. Offsets are committed by Faust only after a batch's events are acked, and we ack only after
every output of the batch was acknowledged by Kafka (at-least-once). Agent concurrency stays 1
(faust-streaming #606).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import faust
from aiokafka import AIOKafkaProducer

from services.classify import metrics as cm
from services.classify.batching import BatchPolicy
from services.classify.config import ClassifySettings
from services.classify.crisis_agent import CrisisMonitor, attach_crisis, produce_incidents
from services.classify.deletion_gate import DeletionGate
from services.classify.pipeline import StagedBatches
from services.classify.sample_lifetime import attach_sample_lifetime
from services.classify.scorer import PreparedBatch, Scorer
from services.common import codec, topics
from services.common.deadletter import dead_letter
from services.common.deletion_log import DeletionLog
from services.common.deletions import deletion_headers, deletion_key, is_author_deletion, is_deletion
from services.common.faust_app import faust_app, retry_until_done
from services.common.kafka import make_producer
from services.common.lag import ConsumerLagMonitor, attach_to_faust
from services.common.logging import get_logger
from services.common.metrics import MESSAGES_FAILED, MESSAGES_IN, MESSAGES_OUT
from services.common.state_log import StateLog
from services.common.timeutil import epoch

log = get_logger("classify")

CRISIS_BRAND_HEADER = "triage-crisis-brand"      # which brand a crisis-input copy counts for
CRISIS_PRIMARY_HEADER = "triage-crisis-primary"  # "1" on the copy that goes on to mentions.scored


@dataclass
class DecodedBatch:
    """One batch after the prepare stage: what decoded (and was tokenised), and what did not; the deletions
    it carried (forwarded to `mentions.scored`) and the mentions dropped because they were deleted."""

    prepared: PreparedBatch
    undecodable: list[tuple[bytes, Exception]] = field(default_factory=list)
    deletions: list[codec.pb.MentionDeleted] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)


class ClassifyWorker:
    """Owns the scorer, the stage threads and the output producer of one worker process.

    A batch goes through `prepare` (decode + tokenise + language ID, "prepare" thread), `infer` (the model,
    "inference" thread) and `emit` (crisis annotation, produce, wait for acks; event loop). The Faust agent
    overlaps the three over consecutive batches (`pipeline.StagedBatches`); `process` runs them in turn.
    """

    def __init__(self, settings: ClassifySettings, scorer: Scorer):
        self.settings = settings
        self.scorer = scorer
        self.policy = BatchPolicy(settings.max_batch, settings.max_wait_seconds)
        self.prepare_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prepare")
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self.producer: AIOKafkaProducer | None = None
        self.crisis: CrisisMonitor | None = None  # set by create_app when crisis detection is on
        # True under Faust with crisis detection: scored mentions go through the crisis input (keyed by
        # brand) instead of being annotated in the scoring batch (one process, tests).
        self.crisis_stage = False
        # Deletions remembered for the dedupe window: judged in the prepare thread (`prepare`), checkpointed on
        # `<app id>-deletions` by `emit` before the batch is acked, restored by `start` (deletion_log.py).
        self.gate = DeletionGate(settings.classify_deletion_window_seconds)
        self.deletion_log = DeletionLog(self.gate.memory)
        self._start_lock = asyncio.Lock()
        # The classify agent is past `start` (the deletions remembered restored) and takes mentions: until then
        # the worker is not ready (`ready_gate`); a start that hangs shows there, not as a silent worker.
        self.consuming = False
        cm.MODEL_INFO.info({"version": scorer.model_version, "precision": scorer.encoder.precision.label,
                            "runtime": scorer.encoder.runtime})

    def ready_gate(self) -> tuple[bool, str]:
        """The classify agent's readiness line for /readyz (services/common/probes.py)."""
        if self.consuming:
            return True, "classify agent: consuming"
        return False, "classify agent: restoring the deletions it remembers, not consuming yet"

    async def start_producer(self) -> AIOKafkaProducer:
        if self.producer is None:
            self.producer = make_producer(self.settings.kafka_bootstrap,
                                          f"{self.settings.kafka_client_id_prefix}-classify",
                                          **self.settings.kafka_client_options())
            await self.producer.start()
        return self.producer

    async def start(self) -> AIOKafkaProducer:
        """The producer, and the deletions checkpointed by earlier runs restored (once per producer: a worker
        restarted, or whose producer was replaced, reads them again before it judges a mention)."""
        async with self._start_lock:
            producer = await self.start_producer()
            state = self.deletion_log.state
            if state is None or state.producer is not producer:
                spec = topics.classify_deletions_spec(self.settings.classify_app_id)
                state = StateLog(self.settings.kafka_bootstrap, spec.name, producer,
                                 client_options=self.settings.kafka_client_options(),
                                 replication=self.settings.topic_replication_factor, partitions=spec.partitions,
                                 configs=spec.configs)
                await state.ensure()
                self.deletion_log.restore(await state.load())
                self.deletion_log.attach(state)
            return producer

    async def stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()
            self.producer = None
        self.prepare_executor.shutdown(wait=False)
        self.executor.shutdown(wait=False)

    # ------------------------------------------------------------------ stages
    def prepare(self, records: list[bytes], deletion_flags: list[bool] | None = None) -> DecodedBatch:
        """Decode and tokenise (runs in the prepare thread); undecodable records are kept for the DLQ.
        `deletion_flags[i]`: record i is a MentionDeleted (its type header); deleted mentions are not scored."""
        flags = deletion_flags or [False] * len(records)
        admitted = self.gate.admit(list(zip(records, flags, strict=True)))
        return DecodedBatch(self.scorer.prepare(admitted.mentions), admitted.undecodable, admitted.deletions,
                            admitted.dropped)

    def infer(self, batch: DecodedBatch) -> list[codec.pb.ScoredMention]:
        """The model (runs in the inference thread)."""
        return self.scorer.score_prepared(batch.prepared)

    async def emit(self, n_records: int, batch: DecodedBatch | None,
                   result: list[codec.pb.ScoredMention] | BaseException, raw: list[bytes] | None = None) -> None:
        """Annotate, produce and wait until every output of the batch is acknowledged by Kafka.

        ``result`` is the model's output or the exception the prepare/model stage raised; then the
        batch's mentions (or, when not even decoding ran, its ``raw`` records) are dead-lettered with it.
        """
        MESSAGES_IN.labels("classify", topics.MENTIONS_RAW).inc(n_records)
        scored: list[codec.pb.ScoredMention] = []
        dead: list[codec.pb.DeadLetter] = []
        if batch is not None:
            for raw_bad, exc in batch.undecodable:
                MESSAGES_FAILED.labels("classify", "decode", type(exc).__name__).inc()
                dead.append(dead_letter(raw_bad, "classify", f"undecodable Mention: {exc}",
                                        source_topic=topics.MENTIONS_RAW, original_type="triage.v1.Mention",
                                        service="classify"))
        if isinstance(result, BaseException):
            log.error("scoring_failed", batch=n_records, error=type(result).__name__, detail=str(result)[:300])
            originals = ([codec.encode(m) for m in batch.prepared.mentions] if batch is not None
                         else list(raw or []))
            MESSAGES_FAILED.labels("classify", "score", type(result).__name__).inc(len(originals))
            dead += [dead_letter(o, "classify", f"scoring failed: {result}", source_topic=topics.MENTIONS_RAW,
                                 original_type="triage.v1.Mention", service="classify") for o in originals]
        else:
            scored = result
        if batch is not None and batch.prepared.mentions and scored:
            cm.INFERENCE_SECONDS.observe(scored[0].timings.inference_seconds)
            cm.BATCH_SIZE.observe(len(scored))
        # Tags mentions of open incidents (and re-decides them as P1) before they are produced; once per
        # batch, so a retried send below does not count the batch into the windows twice.
        inline = self.crisis is not None and scored and not self.crisis_stage
        updates = self.crisis.annotate(scored) if inline and self.crisis is not None else []
        deletions = batch.deletions if batch is not None else []
        if batch is not None and batch.dropped:
            cm.DELETED_UNSCORED.inc(len(batch.dropped))
        if deletions and self.crisis is not None and not self.crisis_stage:
            # Open incidents lose the deleted samples, and are re-published. (With the crisis stage the brands
            # are held by the owners of the crisis input's partitions: `_send` broadcasts the deletions there.)
            updates += self.crisis.forget([d.mention_id for d in deletions if d.mention_id])
        await retry_until_done(self._send, (scored, updates, dead, deletions), what="classify outputs")

    async def _send(self, outputs: tuple[list[codec.pb.ScoredMention], list[codec.pb.Incident],
                                         list[codec.pb.DeadLetter], list[codec.pb.MentionDeleted]]) -> None:
        scored, updates, dead, deletions = outputs
        producer = await self.start()
        futures = [await producer.send(topics.MENTIONS_DLQ, codec.encode(dl)) for dl in dead]
        now = time.time()
        for sm in scored:
            brands = list(dict.fromkeys(sm.mention.brands)) if self.crisis_stage else []
            if not brands:
                sm.ClearField("embedding_sketch")   # crisis detection's only: never on mentions.scored
                futures.append(await producer.send(
                    topics.MENTIONS_SCORED, codec.encode(sm), key=sm.mention.mention_id.encode()))
                continue
            body = codec.encode(sm)
            for i, brand in enumerate(brands):  # one copy per brand; the first brand's copy is the mention
                futures.append(await producer.send(
                    topics.CLASSIFY_CRISIS_INPUT, body, key=brand.encode(),
                    headers=[(CRISIS_BRAND_HEADER, brand.encode()), (CRISIS_PRIMARY_HEADER, b"1" if i == 0 else b"0")]))
        futures += await produce_incidents(producer, updates)
        futures += await forward_deletions(producer, deletions)
        if self.crisis_stage:
            # Whichever replica holds an incident showing the post: every partition of the crisis input, after
            # the scored copies this producer sent there (ordered), so the sample is dropped once it is in.
            futures += await broadcast_deletions(producer, topics.CLASSIFY_CRISIS_INPUT,
                                                 [d for d in deletions if d.mention_id])
        # Remembered across a restart: checkpointed before the batch is acked; expired ones tombstoned.
        futures += await self.deletion_log.checkpoint_deletions(deletions)
        futures += await self.deletion_log.tombstone_expired()
        await asyncio.gather(*futures)
        for sm in scored:
            cm.SCORED.labels(f"P{sm.priority}").inc()
            if sm.mention.received_at.seconds:
                cm.PIPELINE_LATENCY.observe(max(0.0, now - epoch(sm.mention.received_at)))
        if updates:
            MESSAGES_OUT.labels("classify", topics.INCIDENTS).inc(len(updates))
        MESSAGES_OUT.labels("classify", topics.CLASSIFY_CRISIS_INPUT if self.crisis_stage
                            else topics.MENTIONS_SCORED).inc(len(scored))

    async def process_crisis(self, events: list[tuple[bytes, str, bool]]) -> None:
        """The crisis stage: (scored mention, brand, primary) records of the brands this replica owns. Counts
        each into its brand's windows, tags the primary copies and produces them to `mentions.scored`, then
        the incident updates; acked (committed) only after Kafka acknowledged all of it."""
        assert self.crisis is not None
        producer = await self.start_producer()
        MESSAGES_IN.labels("classify", topics.CLASSIFY_CRISIS_INPUT).inc(len(events))
        scored, brands, primary, dead = [], [], [], []
        for raw, brand, is_primary in events:
            try:
                sm = codec.decode(raw, codec.pb.ScoredMention)
            except Exception as exc:
                MESSAGES_FAILED.labels("classify", "decode", type(exc).__name__).inc()
                dead.append(dead_letter(raw, "classify", f"undecodable ScoredMention: {exc}",
                                        source_topic=topics.CLASSIFY_CRISIS_INPUT,
                                        original_type="triage.v1.ScoredMention", service="classify"))
                continue
            scored.append(sm)
            brands.append(brand or (sm.mention.brands[0] if sm.mention.brands else ""))
            primary.append(is_primary)
        updates = self.crisis.annotate(scored, brands=brands) if scored else []
        out = [sm for sm, first in zip(scored, primary, strict=True) if first]
        for sm in out:
            sm.ClearField("embedding_sketch")   # crisis detection's only: never on mentions.scored

        async def send(_: Any) -> None:
            futures = [await producer.send(topics.MENTIONS_DLQ, codec.encode(dl)) for dl in dead]
            futures += [await producer.send(topics.MENTIONS_SCORED, codec.encode(sm),
                                            key=sm.mention.mention_id.encode()) for sm in out]
            futures += await produce_incidents(producer, updates)
            await asyncio.gather(*futures)

        await retry_until_done(send, None, what="crisis outputs")
        MESSAGES_OUT.labels("classify", topics.MENTIONS_SCORED).inc(len(out))
        if updates:
            MESSAGES_OUT.labels("classify", topics.INCIDENTS).inc(len(updates))

    async def forget_in_crisis(self, records: list[bytes]) -> None:
        """The crisis stage's side of a deletion (copies of `MentionDeleted` broadcast on the crisis input): the
        open incidents of the brands this replica holds lose the sample and are re-published."""
        assert self.crisis is not None
        ids = []
        for raw in records:
            try:
                ids.append(codec.decode(raw, codec.pb.MentionDeleted).mention_id)
            except Exception as exc:   # a broadcast copy: the original went on to mentions.scored
                MESSAGES_FAILED.labels("classify", "decode", type(exc).__name__).inc()
        updates = self.crisis.forget([i for i in ids if i])
        if updates:
            producer = await self.start_producer()
            await retry_until_done(lambda _: _gather(produce_incidents(producer, updates)), None,
                                   what="crisis deletions")
            MESSAGES_OUT.labels("classify", topics.INCIDENTS).inc(len(updates))

    async def process(self, records: list[bytes], deletion_flags: list[bool] | None = None) -> None:
        """One batch through the three stages in turn (tests, tools); the agent overlaps them instead."""
        loop = asyncio.get_running_loop()
        await retry_until_done(lambda _: self.start(), None, what="classify start")
        batch: DecodedBatch | None = None
        result: list[codec.pb.ScoredMention] | BaseException
        try:
            batch = await loop.run_in_executor(self.prepare_executor, self.prepare, records, deletion_flags)
            result = await loop.run_in_executor(self.executor, self.infer, batch)
        except Exception as exc:
            result = exc
        await self.emit(len(records), batch, result, raw=records)

    def staged(self, ack: Callable[[Any], Awaitable[Any]]) -> StagedBatches[DecodedBatch, Any]:
        """The overlapping stages over Faust events; ``ack`` is called per event once its outputs are acked."""

        async def emit(events: list[Any], batch: DecodedBatch | None, result: Any) -> None:
            await self.emit(len(events), batch, result, raw=[e.value for e in events])
            for event in events:
                await ack(event)

        def prepare(events: list[Any]) -> DecodedBatch:
            return self.prepare([e.value for e in events], [is_deletion(e.message.headers) for e in events])

        return StagedBatches(self.policy, prepare, self.infer, emit,
                             intake_limit=4 * self.settings.max_batch, prepare_pool=self.prepare_executor,
                             infer_pool=self.executor)


async def _gather(futures: Awaitable[list[Any]]) -> None:
    await asyncio.gather(*await futures)


async def broadcast_deletions(producer: AIOKafkaProducer, topic: str,
                              deletions: list[codec.pb.MentionDeleted]) -> list[Any]:
    """A copy of each deletion on every partition of `topic` (with the deletion type header)."""
    if not deletions:
        return []
    partitions = sorted(await producer.partitions_for(topic))
    return [await producer.send(topic, codec.encode(d), key=deletion_key(d).encode(), partition=p,
                                headers=deletion_headers()) for d in deletions for p in partitions]


async def forward_deletions(producer: AIOKafkaProducer, deletions: list[codec.pb.MentionDeleted]) -> list[Any]:
    """Deletions on to `mentions.scored`, keyed like their mention; an author's to every partition."""
    futures = []
    for d in deletions:
        key, body = deletion_key(d).encode(), codec.encode(d)
        partitions = (sorted(await producer.partitions_for(topics.MENTIONS_SCORED)) if is_author_deletion(d)
                      else [None])
        for p in partitions:
            futures.append(await producer.send(topics.MENTIONS_SCORED, body, key=key, partition=p,
                                               headers=deletion_headers()))
    if deletions:
        MESSAGES_OUT.labels("classify", topics.MENTIONS_SCORED).inc(len(futures))
    return futures


def attach_crisis_stage(app: faust.App, worker: ClassifyWorker, settings: ClassifySettings) -> None:
    """The crisis stage's agent and its ownership: brands follow their partition of the crisis input."""
    monitor = worker.crisis
    assert monitor is not None
    crisis_topic = app.topic(topics.CLASSIFY_CRISIS_INPUT)
    # The crisis input's count: run_worker refused to start when the topic has another (a brand hashed with the
    # wrong count would be owned by no replica, or by two).
    n = settings.classify_partitions
    owned: set[int] = set()
    monitor.owns = lambda brand: topics.partition_for(brand, n) in owned   # nothing until assigned

    def header(event: Any, name: str) -> str:
        for key, value in event.message.headers or ():
            if key == name:
                return bytes(value).decode(errors="replace")
        return ""

    @app.agent(crisis_topic, concurrency=1)
    async def crisis(stream: Any) -> None:
        # Manual acks, after the batch's outputs were acknowledged by Kafka. Not `take_events`: it acks its
        # buffer in a `finally`, so a worker stopped (SIGTERM, a rolling deploy) while a batch was being
        # processed would commit that batch unprocessed.
        async for batch in stream.noack_take(settings.max_batch, within=settings.max_wait_seconds):
            items = [(e.value, header(e, CRISIS_BRAND_HEADER), header(e, CRISIS_PRIMARY_HEADER) != "0")
                     for e in batch if not is_deletion(e.message.headers)]
            if items:
                await retry_until_done(worker.process_crisis, items, what="crisis batch")
            # After the batch's mentions: a deletion is broadcast after the copies of its mention.
            deleted = [e.value for e in batch if is_deletion(e.message.headers)]
            if deleted:
                await worker.forget_in_crisis(deleted)
            for event in batch:
                await stream.ack(event)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def _revoked(_: faust.App, revoked: set[Any], **__: Any) -> None:
        owned.difference_update(tp.partition for tp in revoked if tp.topic == topics.CLASSIFY_CRISIS_INPUT)
        monitor.reassign(monitor.owns)

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def _assigned(_: faust.App, assigned: set[Any], **__: Any) -> None:
        owned.clear()
        owned.update(tp.partition for tp in assigned if tp.topic == topics.CLASSIFY_CRISIS_INPUT)
        monitor.reassign(monitor.owns)  # gained brands load from the table once it is recovered
        log.info("crisis_partitions", partitions=sorted(owned))


def create_app(settings: ClassifySettings, worker: ClassifyWorker) -> faust.App:
    app = faust_app(settings.classify_app_id, settings,
                    stream_buffer_maxsize=max(4 * settings.max_batch, 64),
                    broker_session_timeout=settings.classify_session_timeout_seconds,
                    broker_heartbeat_interval=max(1.0, settings.classify_session_timeout_seconds / 10))
    raw_topic = app.topic(topics.MENTIONS_RAW)
    lagged = [topics.MENTIONS_RAW, topics.CLASSIFY_CRISIS_INPUT] if settings.crisis_enabled else [topics.MENTIONS_RAW]
    attach_to_faust(app, ConsumerLagMonitor("classify", settings.classify_app_id, lagged,
                                            bootstrap=settings.kafka_bootstrap,
                                            client_options=settings.kafka_client_options()))
    if settings.crisis_enabled:
        worker.crisis = attach_crisis(app, worker, settings)
        worker.crisis_stage = True
        attach_crisis_stage(app, worker, settings)
        attach_sample_lifetime(app, worker, settings, owns=lambda brand: worker.crisis is not None
                               and worker.crisis.owns(brand))

    @app.agent(raw_topic, concurrency=1)
    async def classify(stream: Any) -> None:
        # Manual acks: an event is acked only after its batch's outputs were acknowledged by Kafka, while
        # the next batches are already being prepared and scored (Faust commits the contiguous acked prefix).
        events = stream.noack()
        # The deletions remembered by earlier runs, before the first mention is judged.
        await retry_until_done(lambda _: worker.start(), None, what="classify start")
        worker.consuming = True
        async with worker.staged(events.ack).running() as batches:
            async for event in events.events():
                await batches.put(event)

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def _shutdown(app: faust.App, **_: Any) -> None:
        await worker.stop()

    return app

"""The classify worker: a thin Faust agent around `Scorer`.

mentions.raw --(adaptive batches: prepare | model | emit, overlapped)--> mentions.scored
undecodable or unscorable records --> mentions.dlq (with the reason)

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
from services.classify.pipeline import StagedBatches
from services.classify.scorer import PreparedBatch, Scorer
from services.common import codec, topics
from services.common.deadletter import dead_letter
from services.common.faust_app import faust_app, retry_until_done
from services.common.kafka import make_producer
from services.common.lag import ConsumerLagMonitor, attach_to_faust
from services.common.logging import get_logger
from services.common.metrics import MESSAGES_FAILED, MESSAGES_IN, MESSAGES_OUT
from services.common.timeutil import epoch

log = get_logger("classify")


@dataclass
class DecodedBatch:
    """One batch after the prepare stage: what decoded (and was tokenised), and what did not."""

    prepared: PreparedBatch
    undecodable: list[tuple[bytes, Exception]] = field(default_factory=list)


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
        cm.MODEL_INFO.info({"version": scorer.model_version, "precision": scorer.encoder.precision.label})

    async def start_producer(self) -> AIOKafkaProducer:
        if self.producer is None:
            self.producer = make_producer(self.settings.kafka_bootstrap,
                                          f"{self.settings.kafka_client_id_prefix}-classify")
            await self.producer.start()
        return self.producer

    async def stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()
            self.producer = None
        self.prepare_executor.shutdown(wait=False)
        self.executor.shutdown(wait=False)

    # ------------------------------------------------------------------ stages
    def prepare(self, records: list[bytes]) -> DecodedBatch:
        """Decode and tokenise (runs in the prepare thread); undecodable records are kept for the DLQ."""
        mentions, bad = [], []
        for raw in records:
            try:
                mentions.append(codec.decode(raw, codec.pb.Mention))
            except Exception as exc:
                bad.append((raw, exc))
        return DecodedBatch(self.scorer.prepare(mentions), bad)

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
        updates = self.crisis.annotate(scored) if self.crisis is not None and scored else []
        await retry_until_done(self._send, (scored, updates, dead), what="classify outputs")

    async def _send(self, outputs: tuple[list[codec.pb.ScoredMention], list[codec.pb.Incident],
                                         list[codec.pb.DeadLetter]]) -> None:
        scored, updates, dead = outputs
        producer = await self.start_producer()
        futures = [await producer.send(topics.MENTIONS_DLQ, codec.encode(dl)) for dl in dead]
        now = time.time()
        for sm in scored:
            futures.append(await producer.send(
                topics.MENTIONS_SCORED, codec.encode(sm), key=sm.mention.mention_id.encode()))
        futures += await produce_incidents(producer, updates)
        await asyncio.gather(*futures)
        for sm in scored:
            cm.SCORED.labels(f"P{sm.priority}").inc()
            if sm.mention.received_at.seconds:
                cm.PIPELINE_LATENCY.observe(max(0.0, now - epoch(sm.mention.received_at)))
        if updates:
            MESSAGES_OUT.labels("classify", topics.INCIDENTS).inc(len(updates))
        MESSAGES_OUT.labels("classify", topics.MENTIONS_SCORED).inc(len(scored))

    async def process(self, records: list[bytes]) -> None:
        """One batch through the three stages in turn (tests, tools); the agent overlaps them instead."""
        loop = asyncio.get_running_loop()
        batch: DecodedBatch | None = None
        result: list[codec.pb.ScoredMention] | BaseException
        try:
            batch = await loop.run_in_executor(self.prepare_executor, self.prepare, records)
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

        return StagedBatches(self.policy, lambda events: self.prepare([e.value for e in events]), self.infer, emit,
                             intake_limit=4 * self.settings.max_batch, prepare_pool=self.prepare_executor,
                             infer_pool=self.executor)


def create_app(settings: ClassifySettings, worker: ClassifyWorker) -> faust.App:
    app = faust_app(settings.classify_app_id, settings,
                    stream_buffer_maxsize=max(4 * settings.max_batch, 64))
    raw_topic = app.topic(topics.MENTIONS_RAW)
    attach_to_faust(app, ConsumerLagMonitor("classify", settings.classify_app_id, [topics.MENTIONS_RAW],
                                            bootstrap=settings.kafka_bootstrap))
    if settings.crisis_enabled:
        worker.crisis = attach_crisis(app, worker, settings)

    @app.agent(raw_topic, concurrency=1)
    async def classify(stream: Any) -> None:
        # Manual acks: an event is acked only after its batch's outputs were acknowledged by Kafka, while
        # the next batches are already being prepared and scored (Faust commits the contiguous acked prefix).
        events = stream.noack()
        async with worker.staged(events.ack).running() as batches:
            async for event in events.events():
                await batches.put(event)

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def _shutdown(app: faust.App, **_: Any) -> None:
        await worker.stop()

    return app

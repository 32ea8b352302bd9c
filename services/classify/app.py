"""The classify worker: a thin Faust agent around `Scorer`.

mentions.raw --(micro-batches, model in an executor)--> mentions.scored
undecodable or unscorable records --> mentions.dlq (with the reason)

Offsets are committed by Faust only after a batch's events are acked, and we
ack only after every output of the batch was acknowledged by Kafka
(at-least-once). Agent concurrency stays 1 (faust-streaming #606).
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import faust
from aiokafka import AIOKafkaProducer

from services.classify import metrics as cm
from services.classify.config import ClassifySettings
from services.classify.crisis_agent import CrisisMonitor, attach_crisis, produce_incidents
from services.classify.scorer import Scorer
from services.common import codec, topics
from services.common.deadletter import dead_letter, decode_or_dead_letter
from services.common.faust_app import faust_app, retry_until_done
from services.common.kafka import make_producer
from services.common.lag import ConsumerLagMonitor, attach_to_faust
from services.common.logging import get_logger
from services.common.metrics import MESSAGES_FAILED, MESSAGES_IN, MESSAGES_OUT
from services.common.timeutil import epoch

log = get_logger("classify")


class ClassifyWorker:
    """Owns the scorer, the executor and the output producer of one worker process."""

    def __init__(self, settings: ClassifySettings, scorer: Scorer):
        self.settings = settings
        self.scorer = scorer
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self.producer: AIOKafkaProducer | None = None
        self.crisis: CrisisMonitor | None = None  # set by create_app when crisis detection is on
        cm.MODEL_INFO.info({"version": scorer.model_version, "precision": scorer.encoder.precision.label})

    async def start_producer(self) -> AIOKafkaProducer:
        if self.producer is None:
            self.producer = make_producer(self.settings.kafka_bootstrap,
                                          f"{self.settings.kafka_client_id_prefix}-classify",
                                          **self.settings.kafka_client_options())
            await self.producer.start()
        return self.producer

    async def stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()
            self.producer = None
        self.executor.shutdown(wait=False)

    async def process(self, records: list[bytes]) -> None:
        """Score one batch and wait until every output is acknowledged by Kafka."""
        producer = await self.start_producer()
        MESSAGES_IN.labels("classify", topics.MENTIONS_RAW).inc(len(records))
        mentions, futures = [], []
        for raw in records:
            mention, dlq = await decode_or_dead_letter(raw, codec.pb.Mention, producer, service="classify",
                                                       source_topic=topics.MENTIONS_RAW)
            if mention is not None:
                mentions.append(mention)
            else:
                futures.append(dlq)
        if mentions:
            started = time.perf_counter()
            loop = asyncio.get_running_loop()
            try:
                scored = await loop.run_in_executor(self.executor, self.scorer.score_mentions, mentions)
            except Exception as exc:
                log.exception("scoring_failed", batch=len(mentions))
                MESSAGES_FAILED.labels("classify", "score", type(exc).__name__).inc(len(mentions))
                for mn in mentions:
                    dl = dead_letter(codec.encode(mn), "classify", f"scoring failed: {exc}",
                                     source_topic=topics.MENTIONS_RAW, original_type="triage.v1.Mention",
                                     service="classify")
                    futures.append(await producer.send(topics.MENTIONS_DLQ, codec.encode(dl)))
                scored = []
            cm.INFERENCE_SECONDS.observe(time.perf_counter() - started)
            cm.BATCH_SIZE.observe(len(mentions))
            now = time.time()
            # Tags mentions of open incidents (and re-decides them as P1) before they are produced.
            updates = self.crisis.annotate(scored) if self.crisis is not None else []
            for sm in scored:
                futures.append(await producer.send(
                    topics.MENTIONS_SCORED, codec.encode(sm), key=sm.mention.mention_id.encode()))
                cm.SCORED.labels(f"P{sm.priority}").inc()
                if sm.mention.received_at.seconds:
                    cm.PIPELINE_LATENCY.observe(max(0.0, now - epoch(sm.mention.received_at)))
            futures += await produce_incidents(producer, updates)
            if updates:
                MESSAGES_OUT.labels("classify", topics.INCIDENTS).inc(len(updates))
        await asyncio.gather(*futures)
        MESSAGES_OUT.labels("classify", topics.MENTIONS_SCORED).inc(len(mentions))


def create_app(settings: ClassifySettings, worker: ClassifyWorker) -> faust.App:
    app = faust_app(settings.classify_app_id, settings,
                    stream_buffer_maxsize=max(4 * settings.max_batch, 64))
    raw_topic = app.topic(topics.MENTIONS_RAW)
    attach_to_faust(app, ConsumerLagMonitor("classify", settings.classify_app_id, [topics.MENTIONS_RAW],
                                            bootstrap=settings.kafka_bootstrap,
                                            client_options=settings.kafka_client_options()))
    if settings.crisis_enabled:
        worker.crisis = attach_crisis(app, worker, settings)

    @app.agent(raw_topic, concurrency=1)
    async def classify(stream: Any) -> None:
        async for values in stream.take(settings.max_batch, within=settings.max_wait_seconds):
            await retry_until_done(worker.process, list(values), what="classify batch")

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def _shutdown(app: faust.App, **_: Any) -> None:
        await worker.stop()

    return app

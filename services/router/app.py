"""The router worker: a thin Faust agent that routes scored mentions through the routing tree.

mentions.scored --(routing tree)--> receivers (queue topics, webhooks, ...)
undeliverable after the retry budget --> mentions.dlq (with receiver and reason)

Offsets of a batch are committed only after every delivery of it either
succeeded or was dead-lettered with Kafka's acknowledgement (at-least-once).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import faust
import httpx
from aiokafka import AIOKafkaProducer

from services.common import codec, topics
from services.common.codec import pb
from services.common.deadletter import dead_letter
from services.common.faust_app import faust_app, retry_until_done
from services.common.kafka import make_producer
from services.common.logging import get_logger
from services.common.metrics import MESSAGES_FAILED, MESSAGES_IN, MESSAGES_OUT
from services.common.timeutil import epoch, ts_from_epoch
from services.router import metrics as rm
from services.router.config import RouterSettings
from services.router.delivery import RetryPolicy, deliver_with_retry
from services.router.labels import labels_of
from services.router.receivers import Receiver, build_receivers
from services.router.tree import RoutingTree

log = get_logger("router")


def routed_for(sm: pb.ScoredMention, route_path: str, receiver: str, queue: str, sla: dict[str, float],
               now: float) -> pb.RoutedMention:
    routed = pb.RoutedMention(route=route_path, receiver=receiver, queue=queue)
    routed.scored.CopyFrom(sm)
    routed.routed_at.CopyFrom(ts_from_epoch(now))
    due = sla.get(pb.Priority.Name(sm.priority)) if sm.priority else None
    if due:
        routed.respond_by.CopyFrom(ts_from_epoch(now + due))
    return routed


class RouterWorker:
    def __init__(self, settings: RouterSettings, tree: RoutingTree):
        self.settings = settings
        self.tree = tree
        self.policy = RetryPolicy(settings.delivery_attempts, settings.delivery_backoff_seconds,
                                  settings.delivery_backoff_max_seconds)
        self.producer: AIOKafkaProducer | None = None
        self.client: httpx.AsyncClient | None = None
        self.receivers: dict[str, Receiver] = {}

    async def start(self) -> None:
        if self.producer is None:
            self.producer = make_producer(self.settings.kafka_bootstrap,
                                          f"{self.settings.kafka_client_id_prefix}-router")
            await self.producer.start()
            self.client = httpx.AsyncClient(timeout=self.settings.delivery_timeout_seconds)
            self.receivers = build_receivers(self.tree.receivers, self.producer, self.client)

    async def stop(self) -> None:
        if self.client is not None:
            await self.client.aclose()
        if self.producer is not None:
            await self.producer.stop()
        self.producer = self.client = None

    async def _deliver(self, sm: pb.ScoredMention, raw: bytes) -> list[Any]:
        """Deliver one mention to every receiver its routes name; returns DLQ futures."""
        assert self.producer is not None
        now = time.time()
        routes = self.tree.match(labels_of(sm))
        dlq: list[Any] = []
        seen: set[str] = set()
        for route in routes:
            if route.receiver in seen:  # two routes naming one receiver deliver once
                continue
            seen.add(route.receiver)
            cfg = self.tree.receivers[route.receiver]
            routed = routed_for(sm, route.path, route.receiver, str(cfg.options.get("queue", "")), route.sla, now)
            outcome = await deliver_with_retry(self.receivers[route.receiver], routed, self.policy)
            prio = pb.Priority.Name(sm.priority) if sm.priority else "P4"
            if outcome.delivered:
                rm.ROUTED.labels(route.receiver, prio).inc()
                MESSAGES_OUT.labels("router", route.receiver).inc()
            else:
                rm.DEAD_LETTERED.labels(route.receiver).inc()
                dl = dead_letter(codec.encode(routed), "router", f"delivery failed: {outcome.error}",
                                 source_topic=topics.MENTIONS_SCORED, receiver=route.receiver,
                                 attempts=outcome.attempts, original_type="triage.v1.RoutedMention", service="router")
                dlq.append(await self.producer.send(topics.MENTIONS_DLQ, codec.encode(dl),
                                                    key=sm.mention.mention_id.encode()))
        done = time.time()
        if sm.mention.created_at.seconds:
            rm.END_TO_END.labels("created").observe(max(0.0, done - epoch(sm.mention.created_at)))
        if sm.mention.received_at.seconds:
            rm.END_TO_END.labels("received").observe(max(0.0, done - epoch(sm.mention.received_at)))
        return dlq

    async def process(self, records: list[bytes]) -> None:
        await self.start()
        assert self.producer is not None
        MESSAGES_IN.labels("router", topics.MENTIONS_SCORED).inc(len(records))
        pending: list[Any] = []
        jobs = []
        for raw in records:
            try:
                sm = codec.decode(raw, pb.ScoredMention)
            except Exception as exc:
                MESSAGES_FAILED.labels("router", "decode", type(exc).__name__).inc()
                dl = dead_letter(raw, "router", f"undecodable ScoredMention: {exc}",
                                 source_topic=topics.MENTIONS_SCORED, original_type="triage.v1.ScoredMention",
                                 service="router")
                pending.append(await self.producer.send(topics.MENTIONS_DLQ, codec.encode(dl)))
                continue
            jobs.append(self._deliver(sm, raw))
        for dlq in await asyncio.gather(*jobs):
            pending += dlq
        await asyncio.gather(*pending)


def create_app(settings: RouterSettings, worker: RouterWorker) -> faust.App:
    app = faust_app(settings.router_app_id, settings, stream_buffer_maxsize=max(4 * settings.max_batch, 128))
    scored_topic = app.topic(topics.MENTIONS_SCORED)

    @app.agent(scored_topic, concurrency=1)
    async def route(stream: Any) -> None:
        async for values in stream.take(settings.max_batch, within=settings.max_wait_seconds):
            await retry_until_done(worker.process, list(values), what="router batch")

    @app.on_before_shutdown.connect
    async def _shutdown(app: faust.App, **_: Any) -> None:
        await worker.stop()

    return app




"""A worker whose own aiokafka producer broke for good fails its liveness probe (a restart gives it a new producer);
one that merely cannot reach Kafka does not (services/common/probes.py)."""

from __future__ import annotations

import asyncio

from aiokafka.errors import KafkaError
from support import break_producer_sender

from services.common import topics
from services.common.kafka import make_producer
from services.common.probes import WorkerProbes


async def test_a_producer_whose_sender_ended_fails_liveness(kafka_bootstrap: str) -> None:
    producer = make_producer(kafka_bootstrap, "probe-test")
    await producer.start()
    try:
        probes = WorkerProbes(loop_stale_seconds=10, fetch_stale_seconds=60, producers=lambda: (producer, None))
        probes.heartbeat.beat()
        await producer.send_and_wait(topics.MENTIONS_DLQ, b"probe-test")
        assert probes.healthz().ok, probes.healthz().body

        break_producer_sender(producer)
        try:
            await asyncio.wait_for(producer.send_and_wait(topics.MENTIONS_DLQ, b"probe-test"), 10)
        except KafkaError:
            pass
        answer = probes.healthz()
        assert answer.status == 503
        assert answer.lines[1] == "kafka producer: broken, its sender task ended (KafkaError)", answer.lines
        assert probes.readyz().status == 503
    finally:
        await producer.stop()

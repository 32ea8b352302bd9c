"""Consumer lag as an SRE and the autoscaler read it: per partition, from the group's committed
offsets, on the real broker.

The gauge must equal end offset - committed offset after commits, count from the log start for a
group that never committed (and after retention deleted the head), never auto-create a topic, and
disappear (not freeze) when Kafka cannot be asked.
"""

from __future__ import annotations

import asyncio
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.records_to_delete import RecordsToDelete
from prometheus_client import REGISTRY
from support import free_port

from services.common.lag import ConsumerLagMonitor, partition_lag
from services.devtools.kafka_broker import create_topics


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _gauge(service: str, topic: str, partition: int, name: str = "triage_consumer_lag_messages") -> float | None:
    return REGISTRY.get_sample_value(name, {"service": service, "topic": topic, "partition": str(partition)})


def _offset(service: str, topic: str, partition: int) -> float | None:
    return _gauge(service, topic, partition, "triage_consumer_committed_offset")


async def _produce(bootstrap: str, topic: str, per_partition: dict[int, int]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        futures = [await producer.send(topic, f"{p}:{i}".encode(), partition=p)
                   for p, n in per_partition.items() for i in range(n)]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def _commit(bootstrap: str, group: str, offsets: dict[TopicPartition, int]) -> None:
    # A consumer of the group with a manual assignment commits without joining (no rebalance).
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(offsets))
        await consumer.commit(offsets)
    finally:
        await consumer.stop()


def test_partition_lag_arithmetic() -> None:
    assert partition_lag(end=10, committed=4, beginning=0) == 6
    assert partition_lag(end=10, committed=None, beginning=3) == 7  # never committed: from log start
    assert partition_lag(end=10, committed=-1, beginning=0) == 10
    assert partition_lag(end=10, committed=2, beginning=8) == 2  # head deleted by retention
    assert partition_lag(end=5, committed=5, beginning=0) == 0


async def test_lag_follows_commits_per_partition(kafka_bootstrap: str) -> None:
    topic, group, service = _name("lag"), _name("group"), _name("svc")
    await create_topics(kafka_bootstrap, {topic: 3})
    await _produce(kafka_bootstrap, topic, {0: 5, 1: 3})
    monitor = ConsumerLagMonitor(service, group, [topic], bootstrap=kafka_bootstrap, timeout=15)
    try:
        # The group has committed nothing yet: everything is lag, and an empty partition has none.
        lags = await monitor.measure()
        assert lags == {TopicPartition(topic, 0): 5, TopicPartition(topic, 1): 3, TopicPartition(topic, 2): 0}
        assert [_gauge(service, topic, p) for p in range(3)] == [5, 3, 0]
        assert [_offset(service, topic, p) for p in range(3)] == [0, 0, 0]

        await _commit(kafka_bootstrap, group, {TopicPartition(topic, 0): 2, TopicPartition(topic, 1): 3})
        await _produce(kafka_bootstrap, topic, {2: 4})
        await monitor.measure()
        assert [_gauge(service, topic, p) for p in range(3)] == [3, 0, 4]
        assert [_offset(service, topic, p) for p in range(3)] == [2, 3, 0]

        # Retention (here: an explicit delete) moves the log start past the committed offset 2:
        # the group will resume at 4, so only one record is still to read.
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            await admin.delete_records({TopicPartition(topic, 0): RecordsToDelete(before_offset=4)})
        finally:
            await admin.close()
        await monitor.measure()
        assert _gauge(service, topic, 0) == 1
        assert _offset(service, topic, 0) == 4
    finally:
        await monitor.stop()
    # Stopping removes the series instead of leaving the last value behind.
    assert _gauge(service, topic, 0) is None and _offset(service, topic, 0) is None


async def test_missing_topic_is_not_created_and_has_no_series(kafka_bootstrap: str) -> None:
    missing, service = _name("absent"), _name("svc")
    monitor = ConsumerLagMonitor(service, _name("group"), [missing], bootstrap=kafka_bootstrap)
    try:
        assert await monitor.measure() == {}
    finally:
        await monitor.stop()
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        assert missing not in await admin.list_topics()
    finally:
        await admin.close()


async def test_unreachable_kafka_counts_errors_and_drops_stale_series(kafka_bootstrap: str) -> None:
    topic, group, service = _name("lag"), _name("group"), _name("svc")
    await create_topics(kafka_bootstrap, {topic: 1})
    await _produce(kafka_bootstrap, topic, {0: 2})
    monitor = ConsumerLagMonitor(service, group, [topic], bootstrap=kafka_bootstrap)
    await monitor.measure()
    assert _gauge(service, topic, 0) == 2

    # Point the running monitor at a port nobody listens on, as if the cluster went away.
    await monitor._reset_clients()
    monitor.bootstrap = f"127.0.0.1:{free_port()}"
    monitor.interval, monitor.timeout = 0.2, 2.0
    await monitor.start()
    try:
        for _ in range(100):
            errors = REGISTRY.get_sample_value("triage_consumer_lag_errors_total", {"service": service}) or 0
            if errors >= 2:
                break
            await asyncio.sleep(0.2)
        assert errors >= 2, "failed measurements are counted, and the loop keeps trying"
        assert _gauge(service, topic, 0) is None, "a lag nobody can measure must not look like a flat line"
        assert _offset(service, topic, 0) is None
    finally:
        await monitor.stop()

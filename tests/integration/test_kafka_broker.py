"""The test broker behaves like the Kafka the services rely on: idempotent produce, manual commits,
topic creation with configs, and data (messages and committed offsets) that survive a broker restart."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from services.devtools.kafka_broker import KafkaBroker, KafkaBrokerError, create_topics, wait_until_ready


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _producer(bootstrap: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")


def _consumer(bootstrap: str, topic: str, group: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )


async def _produce(producer: AIOKafkaProducer, topic: str, values: list[bytes]) -> None:
    # send() the batch, then await the acks together (not send_and_wait per message).
    futures = [await producer.send(topic, value=v, key=v.split(b":")[0]) for v in values]
    await asyncio.gather(*futures)


async def _consume(consumer: AIOKafkaConsumer, count: int, within: float = 30.0) -> list[ConsumerRecord]:
    """Read ``count`` records, then commit (at-least-once: commit after processing)."""
    records: list[ConsumerRecord] = []
    async with asyncio.timeout(within):
        while len(records) < count:
            batch = await consumer.getmany(timeout_ms=500, max_records=200)
            for partition_records in batch.values():
                records.extend(partition_records)
    await consumer.commit()
    return records


async def test_idempotent_producer_roundtrip_with_manual_commit(kafka_bootstrap: str) -> None:
    topic, group = _name("roundtrip"), _name("group")
    await create_topics(kafka_bootstrap, {topic: 3})
    values = [f"post{i % 7}:{i}".encode() for i in range(500)]

    producer = _producer(kafka_bootstrap)
    await producer.start()
    try:
        await _produce(producer, topic, values)
    finally:
        await producer.stop()

    consumer = _consumer(kafka_bootstrap, topic, group)
    await consumer.start()
    try:
        records = await _consume(consumer, len(values))
        partitions = [TopicPartition(topic, p) for p in range(3)]
        end_offsets = await consumer.end_offsets(partitions)
        committed = {tp: await consumer.committed(tp) for tp in partitions}
    finally:
        await consumer.stop()

    assert sorted(r.value for r in records) == sorted(values)  # nothing lost, nothing duplicated
    for key in {r.key for r in records}:  # one key, one partition, producer order kept
        same_key = [r for r in records if r.key == key]
        assert len({r.partition for r in same_key}) == 1
        assert [r.value for r in same_key] == [v for v in values if v.split(b":")[0] == key]
    assert committed == end_offsets


async def test_create_topics_is_idempotent_and_applies_configs(kafka_bootstrap: str) -> None:
    compacted, plain = _name("incidents"), _name("queue")
    configs = {compacted: {"cleanup.policy": "compact"}}

    assert sorted(await create_topics(kafka_bootstrap, {compacted: 2, plain: 4}, configs)) == sorted([compacted, plain])
    assert await create_topics(kafka_bootstrap, {compacted: 2, plain: 4}, configs) == []
    assert await create_topics(kafka_bootstrap, [plain]) == []

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        described = {t["topic"]: t for t in await admin.describe_topics([compacted, plain])}
        [config_response] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, compacted)])
    finally:
        await admin.close()
    assert len(described[compacted]["partitions"]) == 2
    assert len(described[plain]["partitions"]) == 4
    entries = {entry[0]: entry[1] for entry in config_response.resources[0][4]}
    assert entries["cleanup.policy"] == "compact"


async def test_topics_are_auto_created_on_first_produce(kafka_bootstrap: str) -> None:
    topic = _name("auto")
    producer = _producer(kafka_bootstrap)
    await producer.start()
    try:
        metadata = await producer.send_and_wait(topic, b"hello")
    finally:
        await producer.stop()
    assert metadata.topic == topic and metadata.offset == 0


async def test_messages_and_offsets_survive_a_restart(
    kafka_broker_factory: Callable[..., KafkaBroker],
) -> None:
    broker = kafka_broker_factory()
    bootstrap, ports = broker.bootstrap_servers, (broker.port, broker.controller_port)
    topic, group = _name("durable"), _name("group")
    await create_topics(bootstrap, {topic: 2})
    before = [f"post{i % 5}:before-{i}".encode() for i in range(200)]
    after = [f"post{i % 5}:after-{i}".encode() for i in range(50)]

    producer = _producer(bootstrap)
    await producer.start()
    try:
        await _produce(producer, topic, before)
        consumer = _consumer(bootstrap, topic, group)
        await consumer.start()
        try:
            first = await _consume(consumer, 120)  # commit part of the topic, not all of it
        finally:
            await consumer.stop()

        broker.restart()
        assert (broker.bootstrap_servers, broker.port, broker.controller_port) == (bootstrap, *ports)
        await wait_until_ready(bootstrap, timeout=30)

        # The same (idempotent) producer reconnects and keeps working.
        await _produce(producer, topic, after)
    finally:
        await producer.stop()

    # The group resumes from its committed offsets: the rest of `before`, then `after`.
    consumer = _consumer(bootstrap, topic, group)
    await consumer.start()
    try:
        rest = await _consume(consumer, len(before) + len(after) - len(first))
    finally:
        await consumer.stop()
    assert sorted(r.value for r in first + rest) == sorted(before + after)

    # And a new group still reads everything written before the restart from the start.
    consumer = _consumer(bootstrap, topic, _name("replay"))
    await consumer.start()
    try:
        replay = await _consume(consumer, len(before) + len(after))
    finally:
        await consumer.stop()
    assert sorted(r.value for r in replay) == sorted(before + after)


async def test_broker_survives_kill_and_restart(kafka_broker_factory: Callable[..., KafkaBroker]) -> None:
    broker = kafka_broker_factory()
    topic = _name("crash")
    producer = _producer(broker.bootstrap_servers)
    await producer.start()
    try:
        await _produce(producer, topic, [b"k:acked"])
    finally:
        await producer.stop()

    broker.kill()  # no clean shutdown: log recovery on the next start
    assert not broker.is_running()
    broker.start()

    consumer = _consumer(broker.bootstrap_servers, topic, _name("group"))
    await consumer.start()
    try:
        records = await _consume(consumer, 1)
    finally:
        await consumer.stop()
    assert [r.value for r in records] == [b"k:acked"]


def test_bad_config_fails_the_fixture_with_kafkas_reason(
    kafka_broker_factory: Callable[..., KafkaBroker],
) -> None:
    with pytest.raises(pytest.fail.Exception, match=r"(?s)did not start.*num\.partitions"):
        kafka_broker_factory(extra_config={"num.partitions": "not-a-number"})


def test_start_reports_the_log_tail_when_the_jvm_exits(
    kafka_broker_factory: Callable[..., KafkaBroker],
) -> None:
    first = kafka_broker_factory()
    first.stop()
    # Same (formatted) data dir, other node id: the JVM starts, then refuses the stored identity.
    impostor = KafkaBroker(
        first.data_dir,
        libs_dir=first.libs_dir,
        extra_config={"node.id": "2", "controller.quorum.voters": f"2@127.0.0.1:{first.controller_port}"},
    )
    with pytest.raises(KafkaBrokerError, match=r"(?s)exited with code 1.*Stored node id 1"):
        impostor.start()
    assert not impostor.is_running()


def test_start_refuses_a_port_in_use(kafka_broker: KafkaBroker, tmp_path: Path) -> None:
    broker = KafkaBroker(tmp_path / "other", port=kafka_broker.port, libs_dir=kafka_broker.libs_dir)
    with pytest.raises(KafkaBrokerError, match=f"port 127.0.0.1:{kafka_broker.port} is already in use"):
        broker.start()
    assert not broker.is_running()
    with socket.create_connection(("127.0.0.1", kafka_broker.port), timeout=2):
        pass  # the session broker is untouched

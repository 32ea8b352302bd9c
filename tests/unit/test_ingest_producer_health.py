"""When ingest takes its Kafka producer for broken and replaces it (services/ingest/ingestor.py `_producer_broken`,
services/common/kafka.py `producer_failure`): the decisions alone, without a broker. The replacement itself, with a
real broker and a real aiokafka sender that ends, is tests/integration/test_ingest_kafka_outage.py."""

from __future__ import annotations

import asyncio
import gc

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, OutOfOrderSequenceNumber, RequestTimedOutError, UnknownProducerId
from aiokafka.structs import TopicPartition

from services.common.kafka import producer_failure, retire_producer
from services.ingest.config import IngestSettings
from services.ingest.dedupe import DedupeWindow
from services.ingest.ingestor import MentionIngestor


def ingestor(stuck_seconds: float = 0.05, stuck_after: int = 3) -> MentionIngestor:
    settings = IngestSettings(producer_stuck_seconds=stuck_seconds, producer_stuck_after=stuck_after)
    ing = MentionIngestor(None, settings, DedupeWindow(60, 1000))
    ing.producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:9")  # never started: its sender task is None
    return ing


def failed_send(ing: MentionIngestor) -> None:
    """What `send_records` does when a send begun in the current up period fails."""
    ing._send_failed(ing.producer, ing._up_period, KafkaConnectionError("closed"))


async def test_rejected_producer_state_is_a_broken_producer_at_once_even_as_a_cause() -> None:
    producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:9")
    assert producer_failure(producer) is None
    assert producer_failure(producer, RequestTimedOutError()) is None
    assert producer_failure(producer, KafkaConnectionError("closed")) is None
    assert "OutOfOrderSequenceNumber" in (producer_failure(producer, OutOfOrderSequenceNumber()) or "")
    try:
        try:
            raise UnknownProducerId()
        except UnknownProducerId as exc:
            raise RuntimeError("wrapped") from exc
    except RuntimeError as wrapped:
        assert "UnknownProducerId" in (producer_failure(producer, wrapped) or "")


async def test_one_outage_is_not_a_stuck_producer_however_many_sends_fail_in_it() -> None:
    ing = ingestor()
    ing._mark(True)
    for _ in range(10):  # a burst of requests all fail as the broker goes away: one up period
        failed_send(ing)
    await asyncio.sleep(0.1)
    ing._mark(True)  # Kafka answers again
    assert ing._producer_broken() is None


async def test_sends_failing_each_time_kafka_answers_again_make_a_stuck_producer() -> None:
    ing = ingestor()
    for _ in range(2):
        ing._mark(True)
        failed_send(ing)
    ing._mark(True)
    assert ing._producer_broken() is None  # two up periods ended in a failed send: not yet
    failed_send(ing)
    assert ing._producer_broken() is None  # three, but within producer_stuck_seconds of the first
    await asyncio.sleep(0.1)
    assert "3 times in a row" in (ing._producer_broken() or "")


async def test_a_send_that_succeeds_clears_the_count() -> None:
    ing = ingestor()
    for _ in range(3):
        ing._mark(True)
        failed_send(ing)
    ing._send_succeeded(ing.producer)
    await asyncio.sleep(0.1)
    assert ing._producer_broken() is None


async def test_a_late_ack_from_a_replaced_producer_does_not_clear_the_new_ones_count() -> None:
    ing = ingestor()
    retired = AIOKafkaProducer(bootstrap_servers="127.0.0.1:9")  # the one `_replace_producer` retired
    for _ in range(3):
        ing._mark(True)
        failed_send(ing)
    ing._send_succeeded(retired)  # a send begun on it before the replacement is acknowledged now
    await asyncio.sleep(0.1)
    assert "3 times in a row" in (ing._producer_broken() or "")


async def test_an_ack_awaited_counts_only_the_time_kafka_has_answered() -> None:
    ing = ingestor(stuck_seconds=0.2)
    loop = asyncio.get_running_loop()
    ing._unsettled["forum:1"] = loop.time()  # an attempt sent as the broker went away
    await asyncio.sleep(0.3)
    assert ing._producer_broken() is None  # Kafka down: aiokafka may deliver it when it is back
    ing._mark(True)
    assert ing._producer_broken() is None  # back just now
    await asyncio.sleep(0.25)
    assert "waited" in (ing._producer_broken() or "")  # up for longer than the limit and still no ack


async def test_a_retired_producers_failed_sends_fail_their_waiters_and_log_nothing_once_abandoned() -> None:
    """`retire_producer` fails what a replaced producer still holds: a send still awaited gets the error; one
    whose caller gave up (and the batch's drain waiter) is collected without "Future exception was never
    retrieved" (session 21's CI output)."""
    loop = asyncio.get_running_loop()
    logged: list[str] = []
    loop.set_exception_handler(lambda _loop, context: logged.append(str(context.get("message"))))
    try:
        producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:9")  # never started: its batches stay queued
        accumulator = producer._message_accumulator
        awaited = await accumulator.add_message(TopicPartition("t", 0), b"k", b"kept", timeout=1)
        await accumulator.add_message(TopicPartition("t", 1), b"k", b"abandoned", timeout=1)
        await retire_producer(producer, 0.2)
        assert awaited.done() and "replaced before delivering" in str(awaited.exception())
        del producer, accumulator, awaited
        for _ in range(2):
            gc.collect()
            await asyncio.sleep(0)
        assert logged == []
    finally:
        loop.set_exception_handler(None)

"""The chaos suite's diagnosis of a missing mention (services/devtools/chaos.py `trace_mentions`): where it is on
classify's topics and what the groups committed there."""

from __future__ import annotations

import os
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

from services.common import codec, topics
from services.common.codec import pb
from services.common.kafka import ensure_topics, make_producer
from services.common.topics import all_topic_specs
from services.devtools.chaos import QUEUES, trace_mentions


async def test_a_trace_names_each_mentions_offsets_and_the_log_lines_about_it(kafka_bootstrap: str,
                                                                           tmp_path: Path) -> None:
    found, absent = f"x:trace-{os.getpid()}-{time.time_ns()}", f"x:trace-absent-{os.getpid()}"
    mention = pb.Mention(mention_id=found, text="app down")
    await ensure_topics(kafka_bootstrap, all_topic_specs(QUEUES))
    producer = make_producer(kafka_bootstrap, "trace-test")
    await producer.start()
    try:
        meta = await producer.send_and_wait(topics.MENTIONS_RAW, codec.encode(mention), key=found.encode())
    finally:
        await producer.stop()
    group = f"trace-test-{os.getpid()}-{time.time_ns()}"
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topics.MENTIONS_RAW, meta.partition)
        consumer.assign([tp])
        await consumer.commit({tp: meta.offset + 1})
    finally:
        await consumer.stop()
    (tmp_path / "classify.log").write_text(f"noise\nfetch_gap_accepted topic=mentions.raw partition=1\n{found} seen\n")
    lines = await trace_mentions(kafka_bootstrap, [found, absent], [group], tmp_path)
    assert lines[0] == f"{found}: {topics.MENTIONS_RAW}[{meta.partition}]@{meta.offset}"
    assert lines[1] == f"{absent}: on none of them"
    assert lines[2] == f"group {group} committed: {topics.MENTIONS_RAW}[{meta.partition}]={meta.offset + 1}"
    assert lines[3] == "classify.log: 2 line(s) on skipped/re-read offsets or these mentions:"
    assert lines[4:] == ["  fetch_gap_accepted topic=mentions.raw partition=1", f"  {found} seen"]

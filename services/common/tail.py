"""`triage tail TOPIC`: print decoded messages of a pipeline topic as JSON lines."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaConnectionError

from services.common import codec


async def tail(topic: str, bootstrap: str, from_beginning: bool, max_messages: int, idle_timeout: float,
               client_options: Mapping[str, Any] | None = None) -> int:
    cls = codec.type_for_topic(topic)
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest" if from_beginning else "latest",
                                request_timeout_ms=10000, **dict(client_options or {}))
    try:
        await consumer.start()
    except KafkaConnectionError as exc:
        await consumer.stop()
        print(f"tail: cannot reach Kafka at {bootstrap}: {exc}", file=sys.stderr)
        return 2
    count = 0
    try:
        while max_messages <= 0 or count < max_messages:
            batch = await consumer.getmany(timeout_ms=int(idle_timeout * 1000) if idle_timeout else 1000)
            if not batch and idle_timeout:
                break
            for records in batch.values():
                for rec in records:
                    try:
                        line = codec.to_json(codec.decode(rec.value, cls))
                    except Exception as exc:
                        line = f'{{"undecodable": "{type(exc).__name__}", "offset": {rec.offset}}}'
                    print(line, flush=True)
                    count += 1
                    if 0 < max_messages <= count:
                        return 0
    finally:
        await consumer.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    from services.common.settings import ServiceSettings

    parser = argparse.ArgumentParser(prog="triage tail", description=__doc__)
    parser.add_argument("topic", help="e.g. mentions.scored, incidents, triage.queue.urgent (or just `urgent`)")
    parser.add_argument("--bootstrap", default=None)
    parser.add_argument("--from-beginning", action="store_true")
    parser.add_argument("--max", type=int, default=0, help="stop after this many messages")
    parser.add_argument("--idle-timeout", type=float, default=0.0, help="stop after this many quiet seconds")
    args = parser.parse_args(argv)
    topic = args.topic
    try:
        codec.type_for_topic(topic)
    except KeyError:
        from services.common.topics import queue_topic

        topic = queue_topic(topic)
    settings = ServiceSettings()
    bootstrap = args.bootstrap or settings.kafka_bootstrap
    try:
        return asyncio.run(tail(topic, bootstrap, args.from_beginning, args.max, args.idle_timeout,
                                settings.kafka_client_options()))
    except KeyboardInterrupt:
        return 0

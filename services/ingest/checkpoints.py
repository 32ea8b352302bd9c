"""Durable connector cursors in the compacted `ingest.checkpoints` topic (key = connector name).

A connector saves its checkpoint only after Kafka acknowledged the mentions it
covers, so a restart resumes at or before the first unacknowledged event: no
gap. The checkpoint also carries the dedupe keys of the last few seconds of
events, which a restarted connector loads into the dedupe window, so the
events it re-reads (a rewound cursor, a batch whose checkpoint was not yet
saved) are recognised: no duplicate.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from services.common import topics


async def load_checkpoint(bootstrap: str, name: str, timeout: float = 30.0,
                          client_options: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """The latest checkpoint of connector `name`, or None; reads the topic to its end."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                                auto_offset_reset="earliest", request_timeout_ms=int(timeout * 1000),
                                **dict(client_options or {}))
    await consumer.start()
    try:
        if topics.INGEST_CHECKPOINTS not in await consumer.topics():
            return None
        # One partition by design (topics.CORE_TOPICS): every checkpoint is read at start-up anyway.
        tps = [TopicPartition(topics.INGEST_CHECKPOINTS, 0)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        latest: dict[str, Any] | None = None
        key = name.encode()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while [tp for tp in tps if await consumer.position(tp) < end[tp]]:
            if loop.time() > deadline:
                raise TimeoutError(f"reading {topics.INGEST_CHECKPOINTS} took over {timeout:.0f}s")
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for r in records:
                    if r.key == key:
                        latest = json.loads(r.value) if r.value else None
        return latest
    finally:
        await consumer.stop()


def encode_checkpoint(cursor: Any, recent_keys: list[list[Any]], **extra: Any) -> bytes:
    """`recent_keys`: [event time, dedupe key] pairs of the mentions produced in the rewind window."""
    return json.dumps({"cursor": cursor, "recent": recent_keys, **extra}, separators=(",", ":")).encode()

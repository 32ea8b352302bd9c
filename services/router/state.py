"""The router's durable state: incident groups, SLA clocks and open incidents on a compacted topic.

Keys are `group:<key>`, `sla:<mention id>` and `incident:<id>`; values are JSON,
an empty value deletes (a tombstone, which compaction removes). The worker reads
the whole topic before it handles its first message, so a restart neither
re-pages an incident it already paged nor forgets one still open. (Faust tables
would do the same, but they can only be written from inside a stream event and
the group_wait/SLA decisions are taken by timers.)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from services.common.kafka import ensure_topics
from services.common.topics import TopicSpec


def state_topic(app_id: str) -> str:
    return f"{app_id}-state-changelog"


class StateLog:
    def __init__(self, bootstrap: str, topic: str, producer: AIOKafkaProducer, *,
                 client_options: Mapping[str, Any] | None = None, replication: int = 1):
        self.bootstrap, self.topic, self.producer = bootstrap, topic, producer
        # The cluster's security options (settings.kafka_client_options()) and replication factor
        # (settings.topic_replication_factor): the state is as precious as Faust's changelogs.
        self.client_options = dict(client_options or {})
        self.replication = replication

    async def ensure(self) -> None:
        await ensure_topics(self.bootstrap, [TopicSpec(self.topic, 1, {"cleanup.policy": "compact"})],
                            self.replication, client_options=self.client_options)

    async def load(self) -> dict[str, dict[str, Any]]:
        """Every live key's latest value, read from the beginning to the current end."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False, group_id=None,
                                    auto_offset_reset="earliest", **self.client_options)
        await consumer.start()
        out: dict[str, dict[str, Any]] = {}
        try:
            tp = TopicPartition(self.topic, 0)
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            end = (await consumer.end_offsets([tp]))[tp]
            while await consumer.position(tp) < end:
                batch = await consumer.getmany(tp, timeout_ms=1000)
                for r in batch.get(tp, []):
                    key = r.key.decode()
                    if r.value:
                        out[key] = json.loads(r.value)
                    else:
                        out.pop(key, None)
        finally:
            await consumer.stop()
        return out

    async def put(self, key: str, value: dict[str, Any] | None) -> Any:
        """Send (returns the delivery future; await it before committing what depends on it)."""
        body = json.dumps(value, ensure_ascii=False, sort_keys=True).encode() if value is not None else b""
        return await self.producer.send(self.topic, body, key=key.encode())

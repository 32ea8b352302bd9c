"""The router's durable state: incident groups and SLA clocks on a compacted, partitioned topic.

Keys are `group:<group key>` and `sla:<mention id>`; values are JSON, an empty value
deletes (a tombstone, which compaction removes). Each record goes to the partition
its *owning key* hashes to (the group key, co-partitioned with the page requests;
the mention id, co-partitioned with `mentions.scored` and `responses`), so the
replica that owns partition p of those topics reads partition p of this one when
it is assigned p, before it handles p's first message: a restart or a rebalance
neither re-pages an incident already paged nor forgets one still open. (Faust
tables would do the same, but they can only be written from inside a stream event
and the group_wait/SLA decisions are taken by timers.)
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from services.common.kafka import ensure_topics
from services.common.topics import DEFAULT_PARTITIONS, TopicSpec, partition_for


def state_topic(app_id: str) -> str:
    return f"{app_id}-state-changelog"


class StateLog:
    def __init__(self, bootstrap: str, topic: str, producer: AIOKafkaProducer, *,
                 client_options: Mapping[str, Any] | None = None, replication: int = 1,
                 partitions: int = DEFAULT_PARTITIONS):
        self.bootstrap, self.topic, self.producer = bootstrap, topic, producer
        # The cluster's security options (settings.kafka_client_options()) and replication factor
        # (settings.topic_replication_factor): the state is as precious as Faust's changelogs.
        self.client_options = dict(client_options or {})
        self.replication = replication
        self.partitions = partitions

    async def ensure(self) -> None:
        await ensure_topics(self.bootstrap, [TopicSpec(self.topic, self.partitions, {"cleanup.policy": "compact"})],
                            self.replication, client_options=self.client_options)
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, **self.client_options)
        await admin.start()
        try:
            for _ in range(50):  # a topic created a moment ago has no partition metadata yet
                (desc,) = await admin.describe_topics([self.topic])
                found = len(desc.get("partitions") or [])
                if found:
                    break
                await asyncio.sleep(0.2)
        finally:
            await admin.close()
        if found != self.partitions:
            raise RuntimeError(f"the router's state topic {self.topic} has {found} partitions, "
                               f"TRIAGE_ROUTER_PARTITIONS says {self.partitions} (co-partitioned with "
                               "mentions.scored): `triage topics grow --stage router` grows and re-keys it, see "
                               "docs/scaling.md")

    async def load(self, partitions: Iterable[int] | None = None) -> dict[str, dict[str, Any]]:
        """Every live key's latest value in `partitions` (default: all), read from the beginning to the end."""
        wanted = sorted(set(range(self.partitions) if partitions is None else partitions))
        # Per partition, as Kafka compacts: `triage topics grow` moves a key by a copy at its new partition and a
        # tombstone at its old one, and that tombstone must not delete the copy (read in any order).
        by_partition: dict[int, dict[str, dict[str, Any]]] = {p: {} for p in wanted}
        out: dict[str, dict[str, Any]] = {}
        if not wanted:
            return out
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False, group_id=None,
                                    auto_offset_reset="earliest", **self.client_options)
        await consumer.start()
        try:
            tps = [TopicPartition(self.topic, p) for p in wanted]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            todo = {tp for tp in tps if ends[tp] > 0}
            while todo:
                batch = await consumer.getmany(*todo, timeout_ms=1000)
                for tp, recs in batch.items():
                    live = by_partition[tp.partition]
                    for r in recs:
                        key = r.key.decode()
                        if r.value:
                            live[key] = json.loads(r.value)
                        else:
                            live.pop(key, None)
                todo = {tp for tp in todo if await consumer.position(tp) < ends[tp]}
        finally:
            await consumer.stop()
        for p in wanted:
            out.update(by_partition[p])
        return out

    async def put(self, key: str, value: dict[str, Any] | None, owner: str) -> Any:
        """Send to the partition of `owner` (the group key or mention id the record belongs to); returns the
        delivery future: await it before committing what depends on it."""
        body = json.dumps(value, ensure_ascii=False, sort_keys=True).encode() if value is not None else b""
        return await self.producer.send(self.topic, body, key=key.encode(),
                                        partition=partition_for(owner, self.partitions))

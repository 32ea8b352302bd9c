"""A compacted, partitioned log of JSON state: what a worker must find again after a restart or a rebalance.

Each record goes to the partition its *owning key* hashes to (`put(key, value, owner)`), so a topic laid out
with the partition count of a worker's input is co-partitioned with it: the replica that owns partition p of
the input reads partition p of the log (`load([p])`) when it is assigned p, before it handles p's first
message. An empty value deletes a key (a tombstone, which compaction removes).

Used by the router for its groups and SLA clocks (services/router/state.py) and by classify and the router for
the deletions they remember (services/common/deletion_log.py). (Faust tables would do the same, but they can
only be written from inside a stream event, and these are written from timers and worker threads too.)

Example:

    log = StateLog(bootstrap, "triage-router-state-changelog", producer, partitions=6)
    await log.ensure()
    await (await log.put("sla:x:1", {"due": 1.0}, "x:1"))     # acked: safe to commit what depends on it
    state = await log.load([0, 3])                             # {key: value} of partitions 0 and 3
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


class StateLog:
    def __init__(self, bootstrap: str, topic: str, producer: AIOKafkaProducer, *,
                 client_options: Mapping[str, Any] | None = None, replication: int = 1,
                 partitions: int = DEFAULT_PARTITIONS, configs: Mapping[str, str] | None = None):
        self.bootstrap, self.topic, self.producer = bootstrap, topic, producer
        self.configs = dict(configs or {"cleanup.policy": "compact"})
        # The cluster's security options (settings.kafka_client_options()) and replication factor
        # (settings.topic_replication_factor): the state is as precious as Faust's changelogs.
        self.client_options = dict(client_options or {})
        self.replication = replication
        self.partitions = partitions

    async def ensure(self) -> None:
        await ensure_topics(self.bootstrap, [TopicSpec(self.topic, self.partitions, self.configs)],
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
            raise RuntimeError(f"the state topic {self.topic} has {found} partitions, the layout says "
                               f"{self.partitions} (TRIAGE_ROUTER_PARTITIONS for the router's, co-partitioned with "
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

    async def put(self, key: str, value: dict[str, Any] | None, owner: str, partition: int | None = None) -> Any:
        """Send to the partition of `owner` (the group key or mention id the record belongs to), or to
        `partition`; returns the delivery future: await it before committing what depends on it."""
        body = json.dumps(value, ensure_ascii=False, sort_keys=True).encode() if value is not None else b""
        return await self.producer.send(self.topic, body, key=key.encode(),
                                        partition=partition_for(owner, self.partitions) if partition is None
                                        else partition)

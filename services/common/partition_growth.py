"""Growing a scale-out unit's partitions on a live cluster: `triage topics grow` (docs/scaling.md, "Growing
partitions").

Partitions cap the replicas of a worker, and Kafka can grow a topic but never shrink one. Growing is not only
`kafka-topics --alter`: records are placed by `murmur2(key) % partitions`, so after a grow most keys hash to
another partition, and whatever is keyed by partition must move with them, in this order:

1. **The stage is stopped and drained** (checked here, refused otherwise): its consumer group has no member,
   and nothing is left unread on the topics whose consumers judge a record by its key's hash. The router
   decides ownership of a mention or a group by `partition_for(key, count)`; a record of the old layout still
   waiting on partition p would reach the replica owning p, which (new count) owns another partition for
   that key and would skip it as "not owned". Classify decides a brand's crisis owner the same way on the
   crisis input. `mentions.raw` may keep a backlog: scoring has no keyed state, any replica scores any record.
2. **Every co-partitioned topic of the stage grows to the same count** (`GrowthPlan.topics`): Faust assigns
   partition p of each to one replica only when the counts are equal.
3. **Keyed state is re-keyed**: each live record of the router's state changelog (`group:<key>`,
   `sla:<mention id>`) is written to the partition its owner key hashes to under the new count, then its old
   copy is tombstoned; a replica assigned partition p then loads exactly the groups and SLA clocks it owns.
   Classify's crisis state needs nothing: it is a GlobalTable every replica reads whole.
4. The workers restart with the new count (TRIAGE_<STAGE>_PARTITIONS); one with the old count refuses to start.

Each step is idempotent: running the command again after an interruption finishes the job (topics already at
the count are left alone; a key found in two partitions keeps the copy at its new place).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions

from services.common import topics
from services.common.deletions import key_owner
from services.common.kafka import make_producer, topic_partition_counts
from services.common.lag import partition_lag

Stage = Literal["classify", "router"]
STAGES: tuple[Stage, ...] = ("classify", "router")


class GrowthRefused(RuntimeError):
    """A precondition of the procedure does not hold; nothing was changed."""


@dataclass(frozen=True)
class GrowthPlan:
    """What growing one stage's partitions touches."""

    stage: Stage
    group: str                     # the stage's consumer group (its Faust app id)
    topics: tuple[str, ...]        # grown together (co-partitioned)
    drained: tuple[str, ...]       # must have no lag: their consumers judge a record by its key's hash
    rekeyed: tuple[str, ...] = ()  # state topics whose records move to their key's new partition


def plan_growth(stage: Stage, app_id: str | None = None) -> GrowthPlan:
    """The plan for `stage`; `app_id` is the stage's Faust app id (its consumer group), default the services'."""
    if stage == "classify":
        group = app_id or "triage-classify"
        return GrowthPlan(stage, group, topics.CLASSIFY_COPARTITIONED, drained=(topics.CLASSIFY_CRISIS_INPUT,))
    group = app_id or "triage-router"
    state = topics.router_state_spec(group).name
    return GrowthPlan(stage, group, (*topics.ROUTER_COPARTITIONED, state), drained=topics.ROUTER_COPARTITIONED,
                      rekeyed=(state,))


def router_state_owner(key: str) -> str | None:
    """The key a router state record is partitioned by (`StateLog.put`'s `owner`): the group key of
    `group:<key>`, the mention id of `sla:<mention id>` and of a remembered deletion `deleted:id:<mention id>`;
    None for anything else (left where it is: an author's `deleted:author:...` is on every partition)."""
    kind, sep, ident = key.partition(":")
    if sep and kind == "deleted":
        return key_owner(ident)
    return ident if sep and kind in ("group", "sla") else None


@dataclass
class Move:
    """One record to write: `value` None is a tombstone."""

    key: str
    value: bytes | None
    partition: int


@dataclass
class Rekeying:
    """The writes that put every live state record at its owner's partition under `partitions`."""

    partitions: int
    copies: list[Move] = field(default_factory=list)      # written (and acknowledged) first
    tombstones: list[Move] = field(default_factory=list)  # then these
    moved: int = 0
    kept: int = 0


def rekey(live: Mapping[str, Mapping[int, bytes]], partitions: int,
          owner_of: Callable[[str], str | None] = router_state_owner) -> Rekeying:
    """Pure: `live` is key -> {partition: latest value} of a compacted state topic (a key may be live in two
    partitions after an interrupted run). Each key gets its value written at its new partition (unless it is
    there already), then tombstones at the others; the copies are acknowledged before any tombstone is sent,
    so a crash in between leaves a duplicate for the next run to clean, never a loss."""
    out = Rekeying(partitions)
    for key, copies in sorted(live.items()):
        owner = owner_of(key)
        if owner is None or not copies:
            out.kept += len(copies)
            continue
        target = topics.partition_for(owner, partitions)
        if set(copies) == {target}:
            out.kept += 1
            continue
        if target not in copies:
            out.copies.append(Move(key, next(iter(copies.values())), target))
        out.tombstones += [Move(key, None, p) for p in sorted(copies) if p != target]
        out.moved += 1
    return out


async def group_members(admin: AIOKafkaAdminClient, group: str) -> int:
    """How many members the consumer group has now (0 when it is empty or unknown)."""
    [response] = await admin.describe_consumer_groups([group])
    for described in response.to_object()["groups"]:
        if described["group"] == group:
            return len(described.get("members") or [])
    return 0


async def group_lag(admin: AIOKafkaAdminClient, consumer: AIOKafkaConsumer, group: str,
                    names: Iterable[str], counts: Mapping[str, int]) -> dict[str, int]:
    """Records of `names` the group has not committed yet, per topic (a partition it never committed counts
    from its beginning: the group starts there, `consumer_auto_offset_reset=earliest`)."""
    parts = [TopicPartition(t, p) for t in names if t in counts for p in range(counts[t])]
    if not parts:
        return {}
    committed = await admin.list_consumer_group_offsets(group, partitions=parts)
    ends = await consumer.end_offsets(parts)
    beginnings = await consumer.beginning_offsets(parts)
    lag: dict[str, int] = {}
    for tp in parts:
        meta = committed.get(tp)
        offset = meta.offset if meta is not None and meta.offset >= 0 else None
        lag[tp.topic] = lag.get(tp.topic, 0) + partition_lag(ends[tp], offset, beginnings[tp])
    return lag


async def read_live(consumer: AIOKafkaConsumer, topic: str, count: int) -> dict[str, dict[int, bytes]]:
    """key -> {partition: latest value} of every live key of a compacted topic, read to its current end."""
    tps = [TopicPartition(topic, p) for p in range(count)]
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    ends = await consumer.end_offsets(tps)
    live: dict[str, dict[int, bytes]] = {}
    todo = {tp for tp in tps if ends[tp] > 0}
    while todo:
        batch = await consumer.getmany(*todo, timeout_ms=1000)
        for tp, records in batch.items():
            for r in records:
                if r.key is None:
                    continue
                key = r.key.decode()
                if r.value:
                    live.setdefault(key, {})[tp.partition] = r.value
                else:
                    live.get(key, {}).pop(tp.partition, None)
        todo = {tp for tp in todo if await consumer.position(tp) < ends[tp]}
    return {k: v for k, v in live.items() if v}


@dataclass
class GrowthReport:
    plan: GrowthPlan
    partitions: int
    before: dict[str, int]
    grown: list[str]
    rekeyed: dict[str, Rekeying]

    def lines(self) -> list[str]:
        out = [f"{t}: {self.before.get(t, 0)} -> {self.partitions} partitions"
               + ("" if t in self.grown else " (already)") for t in self.plan.topics]
        out += [f"{t}: {r.moved} keys moved to their new partition, {r.kept} in place" for t, r in self.rekeyed.items()]
        return out


async def grow(bootstrap: str, plan: GrowthPlan, partitions: int, *, dry_run: bool = False,
               client_options: Mapping[str, Any] | None = None, client_id: str = "triage-grow") -> GrowthReport:
    """Check the procedure's preconditions, grow `plan.topics` to `partitions` and re-key `plan.rekeyed`.
    Raises GrowthRefused, having changed nothing, when the stage still runs, has a backlog on a drained topic,
    or a topic has more partitions already (Kafka cannot shrink one)."""
    options = dict(client_options or {})
    counts = await topic_partition_counts(bootstrap, plan.topics, options)
    missing = [t for t in plan.topics if t not in counts]
    if missing:
        raise GrowthRefused(f"no such topic: {', '.join(missing)} (create the topics first: triage topics create)")
    bigger = {t: n for t, n in counts.items() if n > partitions}
    if bigger:
        raise GrowthRefused(f"Kafka cannot shrink a topic: {', '.join(f'{t} has {n}' for t, n in bigger.items())} "
                            f"partitions, more than {partitions}")
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id=client_id, **options)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, client_id=client_id, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest", **options)
    await admin.start()
    await consumer.start()
    try:
        members = await group_members(admin, plan.group)
        if members:
            raise GrowthRefused(f"consumer group {plan.group} has {members} member(s): stop every {plan.stage} "
                                "replica first (scale it to 0), the new count must reach all of them at once; a "
                                "replica with static membership (POD_NAME) stays a member for its session timeout "
                                "after it stopped")
        lag = {t: n for t, n in (await group_lag(admin, consumer, plan.group, plan.drained, counts)).items() if n}
        if lag:
            backlog = ", ".join(f"{t} ({n} records)" for t, n in lag.items())
            raise GrowthRefused(f"{plan.stage} has not drained {backlog}: stop what produces them, let the stage "
                                "finish them, then stop it (docs/scaling.md)")
        grown = [t for t in plan.topics if counts[t] < partitions]
        report = GrowthReport(plan, partitions, counts, grown, {})
        if dry_run:
            return report
        if grown:
            await admin.create_partitions({t: NewPartitions(total_count=partitions) for t in grown})
        after = await topic_partition_counts(bootstrap, plan.topics, options, timeout=30.0)
        short = {t: n for t, n in after.items() if n != partitions}
        if short:
            raise RuntimeError(f"the broker did not grow {short} to {partitions} partitions; run the command again")
        for topic in plan.rekeyed:
            report.rekeyed[topic] = await _rekey_topic(bootstrap, consumer, topic, partitions, options, client_id)
        return report
    finally:
        await consumer.stop()
        await admin.close()


async def _rekey_topic(bootstrap: str, consumer: AIOKafkaConsumer, topic: str, partitions: int,
                       options: Mapping[str, Any], client_id: str) -> Rekeying:
    plan = rekey(await read_live(consumer, topic, partitions), partitions)
    producer: AIOKafkaProducer = make_producer(bootstrap, client_id, **options)
    await producer.start()
    try:
        for writes in (plan.copies, plan.tombstones):   # no tombstone before every new copy is acknowledged
            futures = [await producer.send(topic, w.value, key=w.key.encode(), partition=w.partition)
                       for w in writes]
            for f in futures:
                await f
    finally:
        await producer.stop()
    return plan

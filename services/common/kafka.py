"""aiokafka plumbing shared by the services: idempotent producers and topic setup.

Every client takes the cluster's security options (TLS, SASL) as keyword arguments: pass
`**settings.kafka_client_options()` (services/common/settings.py), empty on a plaintext listener.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    InvalidProducerEpoch,
    InvalidProducerIdMapping,
    OutOfOrderSequenceNumber,
    ProducerFenced,
    TopicAlreadyExistsError,
    UnknownProducerId,
)

from services.common.topics import CLASSIFY_COPARTITIONED, ROUTER_COPARTITIONED, TopicSpec


def make_producer(bootstrap: str, client_id: str, **overrides: object) -> AIOKafkaProducer:
    """An idempotent producer (`acks=all`): a retry never duplicates, an ack means durable.

    `overrides` are aiokafka options, the security ones (`settings.kafka_client_options()`) included."""
    options: dict[str, object] = {
        "bootstrap_servers": bootstrap,
        "client_id": client_id,
        "enable_idempotence": True,
        "acks": "all",
        "linger_ms": 5,
        "max_batch_size": 256 * 1024,
        "request_timeout_ms": 15000,
        "retry_backoff_ms": 200,
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)  # type: ignore[arg-type]


#: The broker no longer accepts the producer's id, epoch or sequence numbers (it lost the producer's state, or
#: fenced it). The Java producer recovers by bumping its epoch (KIP-360); aiokafka does not, so every later batch
#: to that partition fails the same way. Only a new producer (a new producer id) delivers again.
PRODUCER_STATE_ERRORS: tuple[type[BaseException], ...] = (
    OutOfOrderSequenceNumber, UnknownProducerId, InvalidProducerEpoch, InvalidProducerIdMapping, ProducerFenced)


def producer_failure(producer: AIOKafkaProducer, error: BaseException | None = None) -> str | None:
    """Why `producer` will deliver nothing more (it must be replaced by a new one), or None while it still can.

    Two ways an aiokafka producer breaks for good while Kafka itself is fine:
    - its background sender task ended. aiokafka (0.14) fails the batches it held with the sender's error and
      then fails every later `send` at once with that same error (`MessageAccumulator.fail_all`); a cancelled
      sender leaves later sends waiting forever. aiokafka has no public health check, so this reads the task
      (`producer._sender.sender_task`), which is None until `start()`.
    - `error` (a failed send, or its cause) is one of `PRODUCER_STATE_ERRORS`.
    """
    task = getattr(getattr(producer, "_sender", None), "sender_task", None)
    if task is not None and task.done() and not getattr(producer, "_closed", False):
        exc = None if task.cancelled() else task.exception()
        return f"its sender task ended ({type(exc).__name__ if exc is not None else 'cancelled'})"
    seen: set[int] = set()
    while error is not None and id(error) not in seen:  # the error, then its causes
        if isinstance(error, PRODUCER_STATE_ERRORS):
            return f"the broker rejected its producer state ({type(error).__name__})"
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


async def retire_producer(producer: AIOKafkaProducer, timeout: float) -> None:
    """Stop a replaced producer: give it `timeout` s to deliver what it holds, then fail whatever it still holds
    (its send futures settle: nothing waits on a producer that will never deliver) and close its connections."""
    try:
        with contextlib.suppress(Exception):  # a timeout, or the broken sender's own error: cleaned up below
            await asyncio.wait_for(producer.stop(), timeout)
    finally:
        accumulator = getattr(producer, "_message_accumulator", None)  # aiokafka's: no public way to fail its batches
        if accumulator is not None:
            accumulator.fail_all(RuntimeError("the producer was replaced before delivering this"))
            _retrieve_failures(accumulator)
        sender = getattr(producer, "_sender", None)  # a stop cut short leaves its sender task running: end it
        with contextlib.suppress(Exception):
            if sender is not None:
                await asyncio.wait_for(sender.close(), timeout)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(producer.client.close(), timeout)


def _retrieve_failures(accumulator: Any) -> None:
    """Mark the failed batches' futures as retrieved: a caller still awaiting one gets its error as before, but
    one whose caller had given up (a send abandoned on timeout; a batch's drain waiter nobody waits on) no
    longer logs "Future exception was never retrieved" when it is collected."""
    batches = [b for queue in getattr(accumulator, "_batches", {}).values() for b in queue]
    batches += list(getattr(accumulator, "_pending_batches", ()))
    for batch in batches:
        futures = [getattr(batch, "future", None), getattr(batch, "_drain_waiter", None)]
        futures += [f for f, _ in getattr(batch, "_msg_futures", ())]
        for future in futures:
            if isinstance(future, asyncio.Future) and future.done() and not future.cancelled():
                future.exception()


async def ensure_topics(bootstrap: str, specs: Iterable[TopicSpec], replication: int = 1,
                        client_options: Mapping[str, Any] | None = None, leader_timeout: float = 60.0) -> None:
    """Create missing topics with their partition counts and configs (existing ones are left alone), and wait until
    each new partition has a leader (at most `leader_timeout` s).

    `replication` is the cluster's (`settings.topic_replication_factor`: 1 on a dev broker, 3 in prod)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="triage-admin", **dict(client_options or {}))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [
            NewTopic(s.name, num_partitions=s.partitions, replication_factor=replication, topic_configs=s.configs)
            for s in specs
            if s.name not in existing
        ]
        if new:
            try:
                await admin.create_topics(new)
            except TopicAlreadyExistsError:
                pass
            await _wait_for_leaders(admin, [t.name for t in new], leader_timeout)
    finally:
        await admin.close()


async def _wait_for_leaders(admin: AIOKafkaAdminClient, names: list[str], timeout: float) -> None:
    """Until every partition of ``names`` has a leader. A freshly created partition has none for a moment (seconds
    on a loaded broker), and aiokafka fails a producer's batch for a partition without a leader once it is
    `request_timeout_ms` old, idempotent or not (NotLeaderForPartitionError): a worker started right after
    `ensure_topics` must find its topics ready."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        described = await admin.describe_topics(names)
        waiting = [t["topic"] for t in described if t["error_code"] or not t["partitions"]]
        waiting += [f"{t['topic']}[{p['partition']}]" for t in described for p in t["partitions"] if p["leader"] < 0]
        if not waiting:
            return
        if loop.time() >= deadline:
            raise TimeoutError(f"no leader after {timeout:.0f}s for: {', '.join(sorted(waiting)[:10])}")
        await asyncio.sleep(0.25)


async def wait_for_kafka(bootstrap: str, timeout: float = 30.0,
                         client_options: Mapping[str, Any] | None = None) -> None:
    """Wait until the cluster answers a metadata request; raise TimeoutError naming the address."""
    deadline = asyncio.get_running_loop().time() + timeout
    last: Exception | None = None
    while asyncio.get_running_loop().time() < deadline:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000, **dict(client_options or {}))
        try:
            await admin.start()
            await admin.list_topics()
            return
        except Exception as exc:
            last = exc
            await asyncio.sleep(0.5)
        finally:
            await admin.close()
    raise TimeoutError(f"Kafka at {bootstrap} did not answer within {timeout:.0f}s: {last}")


class PartitionCountMismatch(RuntimeError):
    """A topic has another partition count than the deployment's settings give it. A worker refuses to start
    on it rather than adapt: the router hashes mention ids and group keys to its state partitions with its
    configured count (and classify brands to its crisis partitions), so a wrong count makes a replica skip as
    "not owned" what it was assigned, or load state that is not its own (docs/scaling.md)."""


def partition_setting(topic: str) -> str:
    """The setting that decides `topic`'s partition count."""
    if topic in CLASSIFY_COPARTITIONED:
        return "TRIAGE_CLASSIFY_PARTITIONS"
    if topic.endswith("-crisis-state-changelog"):   # classify's crisis-state table (a GlobalTable)
        return "TRIAGE_CRISIS_STATE_PARTITIONS"
    if topic in ROUTER_COPARTITIONED or topic.endswith("-state-changelog"):   # topics.router_state_spec
        return "TRIAGE_ROUTER_PARTITIONS"
    return "services/common/topics.py"


async def topic_partition_counts(bootstrap: str, names: Iterable[str],
                                 client_options: Mapping[str, Any] | None = None,
                                 timeout: float = 10.0) -> dict[str, int]:
    """Partition count of each existing topic in `names` (a topic created a moment ago may show none yet: it is
    asked again until `timeout`). Missing topics are left out."""
    wanted = set(names)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="triage-admin", **dict(client_options or {}))
    await admin.start()
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            # All topics' metadata: naming topics would auto-create missing ones on brokers that allow it.
            counts = {t["topic"]: len(t["partitions"] or []) for t in await admin.describe_topics()
                      if t["topic"] in wanted and not t["error_code"]}
            if all(counts.values()) or asyncio.get_running_loop().time() > deadline:
                return counts
            await asyncio.sleep(0.2)
    finally:
        await admin.close()


async def check_partitions(bootstrap: str, specs: Iterable[TopicSpec],
                           client_options: Mapping[str, Any] | None = None) -> None:
    """Raise PartitionCountMismatch, naming each topic, both counts and the setting, when an existing topic's
    partition count is not its spec's."""
    wanted = {s.name: s.partitions for s in specs}
    found = await topic_partition_counts(bootstrap, wanted, client_options)
    wrong = [f"{name} has {found[name]} partitions, the settings say {n} ({partition_setting(name)})"
             for name, n in wanted.items() if name in found and found[name] != n]
    if wrong:
        raise PartitionCountMismatch(
            "; ".join(wrong) + ". Set the setting to the topics' count, or grow the topics with `triage topics grow` "
            "(docs/scaling.md, \"Growing partitions\"); Kafka cannot shrink a topic.")

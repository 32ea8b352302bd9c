"""aiokafka plumbing shared by the services: idempotent producers and topic setup.

Every client takes the cluster's security options (TLS, SASL) as keyword arguments: pass
`**settings.kafka_client_options()` (services/common/settings.py), empty on a plaintext listener.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

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

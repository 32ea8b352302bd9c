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

from services.common.topics import TopicSpec


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
                        client_options: Mapping[str, Any] | None = None) -> None:
    """Create missing topics with their partition counts and configs (existing ones are left alone).

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
    finally:
        await admin.close()


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

"""The console's /readyz tells the truth: it answers 200 only once the views hold everything Kafka held when
the console started, so a rollout never sends responders to a half-rebuilt, empty console."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
from aiokafka import AIOKafkaProducer
from support import running_app
from test_console_kafka import _routed

from services.common import topics
from services.common.kafka import ensure_topics
from services.common.topics import all_topic_specs
from services.console.app import build_app
from services.console.config import ConsoleSettings

N = 3000


async def test_readyz_is_200_only_when_the_views_hold_what_was_there_at_start(kafka_bootstrap: str) -> None:
    await ensure_topics(kafka_bootstrap, all_topic_specs())
    tag = uuid.uuid4().hex[:8]
    queue = f"ready-{tag}"
    await ensure_topics(kafka_bootstrap, [topics.TopicSpec(topics.queue_topic(queue), 3)])
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        futures = [await producer.send(topics.queue_topic(queue), _routed(f"{tag}-{k}", queue),
                                       key=f"x:{tag}-{k}".encode()) for k in range(N)]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    settings = ConsoleSettings(kafka_bootstrap=kafka_bootstrap, console_group_id=f"it-ready-{tag}",
                               console_max_items=N + 10)
    async with running_app(build_app(settings)) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        deadline = time.monotonic() + 90
        answers = []
        while time.monotonic() < deadline:
            ready = await client.get("/readyz")
            answers.append(ready.status_code)
            if ready.status_code == 200:
                break
            assert ready.status_code == 503 and ready.json()["loaded"] is False
            await asyncio.sleep(0.02)
        assert answers[-1] == 200, "the console never became ready"
        items = (await client.get(f"/api/queues/{queue}", params={"all": "1"})).json()
        assert items["loaded"] is True and len(items["items"]) == N

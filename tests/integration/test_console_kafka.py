"""The console rebuilds its views from Kafka on every start, even in a consumer group that committed.

Two runs of the console with the same group id against the real broker: the second one, started
after the first committed its offsets, still shows every item (it reads from offset 0), and sees
the response the first one published as already answered.
"""

from __future__ import annotations

import uuid

import httpx
from aiokafka import AIOKafkaProducer
from support import running_app, wait_for

from services.common import codec, topics
from services.common.codec import pb
from services.common.kafka import ensure_topics
from services.common.timeutil import now_ts
from services.common.topics import all_topic_specs
from services.console.app import build_app
from services.console.config import ConsoleSettings


def _routed(ext: str, queue: str) -> bytes:
    m = pb.Mention(source=pb.SOURCE_X, external_id=ext, mention_id=f"x:{ext}", text=f"text {ext}",
                   created_at=now_ts(), brands=["acme"])
    s = pb.ScoredMention(mention=m, language="en", priority=pb.P2)
    s.intents["question"] = 0.8
    return codec.encode(pb.RoutedMention(scored=s, queue=queue, routed_at=now_ts()))


async def test_a_restarted_console_reads_everything_again(kafka_bootstrap: str) -> None:
    await ensure_topics(kafka_bootstrap, all_topic_specs())
    tag = uuid.uuid4().hex[:8]
    queue = f"console-{tag}"
    await ensure_topics(kafka_bootstrap, [topics.TopicSpec(topics.queue_topic(queue), 3)])
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        for k in range(5):
            await producer.send_and_wait(topics.queue_topic(queue), _routed(f"{tag}-{k}", queue),
                                         key=f"x:{tag}-{k}".encode())
    finally:
        await producer.stop()
    settings = ConsoleSettings(kafka_bootstrap=kafka_bootstrap, console_group_id=f"it-console-{tag}")

    async def items(url: str, all_: bool = False) -> list[dict]:  # type: ignore[type-arg]
        async with httpx.AsyncClient(timeout=5) as client:
            r = await client.get(f"{url}/api/queues/{queue}", params={"all": "1"} if all_ else {})
            return r.json().get("items", []) if r.status_code == 200 else []

    async with running_app(build_app(settings)) as url:
        await wait_for(lambda: _count(items(url), 5), timeout=60, what="the first console to read 5 items")
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            page = (await client.get(f"/queues/{queue}")).text
            csrf = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
            r = await client.post("/actions/response", data={"csrf": csrf, "queue": queue,
                                                             "mention_id": f"x:{tag}-0", "kind": "responded"})
            assert r.status_code == 303, r.text
        await wait_for(lambda: _count(items(url), 4), timeout=10, what="the answered item to leave the queue")
        await _settle()  # let the auto-commit store the group's offsets

    async with running_app(build_app(settings)) as url:
        await wait_for(lambda: _count(items(url, all_=True), 5), timeout=60,
                       what="the restarted console to read all 5 items again")
        await wait_for(lambda: _count(items(url), 4), timeout=30, what="the response to be read back")
        answered = [(i["mention_id"], i["state"]) for i in await items(url, all_=True) if i["state"] != "open"]
        assert answered == [(f"x:{tag}-0", "responded")]


async def _count(result, n: int) -> bool:  # type: ignore[no-untyped-def]
    return len(await result) == n


async def _settle() -> None:
    import asyncio

    await asyncio.sleep(6)

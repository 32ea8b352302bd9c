"""Kafka outages: ingest starts without Kafka, answers 503 while it is down, loses nothing it acknowledged,
and recovers by itself when the broker returns (a private broker from `kafka_broker_factory`)."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
from support import consume, running_app, wait_for

from services.common import codec, topics
from services.common.codec import pb
from services.common.kafka import ensure_topics
from services.common.topics import all_topic_specs
from services.ingest.app import build_app
from services.ingest.config import IngestSettings


def mention(i: int) -> dict:
    return {"source": "forum", "external_id": f"outage-{i}", "text": f"Acme Bank post {i}"}


async def test_broker_down_at_start_then_stopped_mid_traffic(kafka_broker_factory):
    broker = kafka_broker_factory()
    await ensure_topics(broker.bootstrap_servers, all_topic_specs())
    await asyncio.to_thread(broker.stop)

    settings = IngestSettings(kafka_bootstrap=broker.bootstrap_servers, produce_timeout_seconds=4,
                              retry_after_seconds=1, kafka_probe_interval_seconds=0.3)
    async with running_app(build_app(settings)) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        # 1. Start-up tolerated a missing broker: alive, not ready, push requests get 503 + Retry-After.
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/readyz")).status_code == 503
        r = await client.post("/v1/mentions", json=mention(-1))
        assert r.status_code == 503 and r.headers["Retry-After"] == "1"

        await asyncio.to_thread(broker.start)
        await wait_for(lambda: _ready(client), 60, "ingest ready after the broker started")

        # 2. Traffic while the broker stops and comes back; the client retries what got 503.
        acked: set[str] = set()
        statuses: list[int] = []
        stopper: asyncio.Task[None] | None = None
        restarted = False
        pending = list(range(200))
        i = 0
        while pending:
            n = pending[0]
            r = await client.post("/v1/mentions", json=mention(n))
            statuses.append(r.status_code)
            assert r.status_code in (202, 503), r.text
            if r.status_code == 202:
                acked.update(r.json()["accepted"] + r.json()["duplicates"])
                pending.pop(0)
            else:
                assert r.headers["Retry-After"] == "1"
                await asyncio.sleep(0.2)
            i += 1
            if n == 50 and stopper is None:
                stopper = asyncio.create_task(asyncio.to_thread(broker.stop))
            if stopper is not None and stopper.done() and not restarted and statuses.count(503) >= 3:
                assert (await client.get("/readyz")).status_code == 503
                await stopper
                restarted = True
                await asyncio.to_thread(broker.start)
            assert i < 5000, "ingest did not recover"
        assert restarted and 503 in statuses
        assert statuses[-1] == 202
        assert (await client.get("/readyz")).status_code == 200

    # 3. Every acknowledged mention is on the topic, once.
    records = await consume(broker.bootstrap_servers, [topics.MENTIONS_RAW], idle=2.0, timeout=60)
    on_topic = Counter(codec.decode(v, pb.Mention).mention_id for _, _, v in records)
    assert acked == {f"forum:outage-{n}" for n in range(200)}
    assert acked <= set(on_topic)
    # A retry while an earlier attempt was still in flight got 503, not a second copy.
    assert max(on_topic.values()) == 1


async def _ready(client: httpx.AsyncClient) -> bool:
    return (await client.get("/readyz")).status_code == 200

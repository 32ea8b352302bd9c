"""Two console replicas on the real broker: a claim made on one is on the other's card, and the second
responder cannot take the item until the first hands it over (the `claims` topic, folded by both)."""

from __future__ import annotations

import re
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
from services.console.config import ConsoleSettings, ConsoleToken

ANA, BO = "ana-token-0123456789ab", "bo-token-0123456789abcd"


def _routed(ext: str, queue: str) -> bytes:
    m = pb.Mention(source=pb.SOURCE_X, external_id=ext, mention_id=f"x:{ext}", text=f"app down {ext}",
                   created_at=now_ts(), brands=["acme"])
    s = pb.ScoredMention(mention=m, language="en", priority=pb.P2)
    s.intents["complaint"] = 0.9
    return codec.encode(pb.RoutedMention(scored=s, queue=queue, routed_at=now_ts()))


def _csrf(html: str) -> str:
    return re.search(r'name="csrf" value="([0-9a-f]+)"', html).group(1)  # type: ignore[union-attr]


async def _signed_in(url: str, token: str) -> httpx.AsyncClient:
    client = httpx.AsyncClient(base_url=url, timeout=10)
    page = await client.get("/login")
    r = await client.post("/login", data={"csrf": _csrf(page.text), "token": token})
    assert r.status_code == 303, r.text
    return client


async def test_a_claim_on_one_console_replica_shows_on_the_other(kafka_bootstrap: str) -> None:
    await ensure_topics(kafka_bootstrap, all_topic_specs())
    tag = uuid.uuid4().hex[:8]
    queue = f"claims-{tag}"
    mention = f"x:{tag}-0"
    await ensure_topics(kafka_bootstrap, [topics.TopicSpec(topics.queue_topic(queue), 3)])
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topics.queue_topic(queue), _routed(f"{tag}-0", queue), key=mention.encode())
    finally:
        await producer.stop()
    tokens = [ConsoleToken(name="ana", token=ANA), ConsoleToken(name="bo", token=BO)]  # type: ignore[arg-type]

    def settings(replica: str) -> ConsoleSettings:
        return ConsoleSettings(kafka_bootstrap=kafka_bootstrap, console_group_id=f"it-claims-{tag}-{replica}",
                               console_tokens=tokens, insecure_dev=False, console_claim_ttl_seconds=600)

    async with running_app(build_app(settings("a"))) as url_a, running_app(build_app(settings("b"))) as url_b:
        ana, bo = await _signed_in(url_a, ANA), await _signed_in(url_b, BO)
        try:
            async def card(client: httpx.AsyncClient) -> str:
                html = (await client.get(f"/queues/{queue}")).text
                return html.split(f'data-mention="{mention}"', 1)[1] if f'data-mention="{mention}"' in html else ""

            await wait_for(lambda: card(ana), timeout=60, what="replica a to show the item")
            await wait_for(lambda: card(bo), timeout=60, what="replica b to show the item")
            item = {"queue": queue, "mention_id": mention}
            r = await ana.post("/actions/claim", data={**item, "csrf": _csrf(await card(ana))})
            assert r.status_code == 303, r.text

            async def bo_sees_ana() -> bool:
                return "ana is on it" in await card(bo)

            await wait_for(bo_sees_ana, timeout=30, what="replica b to show ana's claim")
            api = (await bo.get(f"/api/queues/{queue}")).json()
            assert api["items"][0]["claim"]["holder"] == "ana"
            r = await bo.post("/actions/claim", data={**item, "csrf": _csrf(await card(bo))})
            assert r.status_code == 409 and "ana is on it" in r.text

            r = await ana.post("/actions/claim/hand-over", data={**item, "csrf": _csrf(await card(ana)), "to": "bo"})
            assert r.status_code == 303, r.text

            async def bo_holds_it() -> bool:
                return "you are on it" in await card(bo) and "from ana" in await card(bo)

            await wait_for(bo_holds_it, timeout=30, what="replica b to show the hand-over to bo")
        finally:
            await ana.aclose()
            await bo.aclose()


async def test_who_is_viewing_an_item_on_one_replica_shows_on_the_other(kafka_bootstrap: str) -> None:
    """Presence heartbeats cross replicas through `triage.console.presence`, and lapse after the expiry."""
    await ensure_topics(kafka_bootstrap, all_topic_specs())
    tag = uuid.uuid4().hex[:8]
    queue = f"presence-{tag}"
    mention = f"x:{tag}-0"
    await ensure_topics(kafka_bootstrap, [topics.TopicSpec(topics.queue_topic(queue), 3)])
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topics.queue_topic(queue), _routed(f"{tag}-0", queue), key=mention.encode())
    finally:
        await producer.stop()
    tokens = [ConsoleToken(name="ana", token=ANA), ConsoleToken(name="bo", token=BO)]  # type: ignore[arg-type]

    def settings(replica: str) -> ConsoleSettings:
        return ConsoleSettings(kafka_bootstrap=kafka_bootstrap, console_group_id=f"it-presence-{tag}-{replica}",
                               console_tokens=tokens, insecure_dev=False, console_presence_expiry_seconds=4)

    async with running_app(build_app(settings("a"))) as url_a, running_app(build_app(settings("b"))) as url_b:
        ana, bo = await _signed_in(url_a, ANA), await _signed_in(url_b, BO)
        try:
            async def item_on(client: httpx.AsyncClient) -> dict | None:  # type: ignore[type-arg]
                items = (await client.get(f"/api/queues/{queue}")).json().get("items", [])
                return items[0] if items else None

            await wait_for(lambda: item_on(ana), timeout=60, what="replica a to show the item")
            await wait_for(lambda: item_on(bo), timeout=60, what="replica b to show the item")
            assert (await ana.get(f"/queues/{queue}")).status_code == 200  # ana looks at the queue on replica a

            async def bo_sees_ana() -> bool:
                item = await item_on(bo)
                return item is not None and [v["name"] for v in item["viewers"]] == ["ana"]

            await wait_for(bo_sees_ana, timeout=10, what="replica b to show ana viewing the item")
            assert "also viewing: ana" in (await bo.get(f"/queues/{queue}")).text

            async def ana_gone() -> bool:
                item = await item_on(bo)
                return item is not None and item["viewers"] == []

            await wait_for(ana_gone, timeout=15, what="ana to drop off once her page stopped sending heartbeats")
        finally:
            await ana.aclose()
            await bo.aclose()

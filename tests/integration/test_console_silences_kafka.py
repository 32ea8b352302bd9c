"""Silences made on the console's incident page reach the router's SilenceFeed through the real broker.

The console publishes to the compacted `silences` topic; the router follows it whole with the shared
TopicFollower (no consumer group, as every router replica does) into SilenceFeed.fold: a page for the
brand is muted while the silence is active and not after it is expired, a restarted follower reads both
records back, and an undecodable record is skipped, not fatal.
"""

from __future__ import annotations

import html
import time
import uuid

import httpx
from aiokafka import AIOKafkaProducer
from support import running_app, wait_for

from services.common import codec, topics
from services.common.alerting.silence_feed import SilenceFeed
from services.common.codec import pb
from services.common.follower import TopicFollower
from services.common.kafka import ensure_topics
from services.common.timeutil import now_ts
from services.common.topics import all_topic_specs
from services.console.app import build_app
from services.console.config import ConsoleSettings


def _router_side(bootstrap: str, name: str) -> tuple[SilenceFeed, TopicFollower]:
    feed = SilenceFeed()
    return feed, TopicFollower(bootstrap, topics.SILENCES, feed.fold, client_id=name)


async def test_silence_created_and_expired_in_the_console_mutes_then_unmutes_router_pages(
        kafka_bootstrap: str) -> None:
    await ensure_topics(kafka_bootstrap, all_topic_specs())
    tag = uuid.uuid4().hex[:8]
    brand, incident_id = f"acme{tag}", f"inc-{tag}"
    labels = {"brand": brand, "incident": incident_id, "priority": "P1", "intent": "outage_report"}
    inc = pb.Incident(id=incident_id, brand=brand, kind=pb.OUTAGE_CLUSTER, state=pb.OPEN, severity=0.9,
                      opened_at=now_ts(), updated_at=now_ts(), mention_count=12, reasons=["12 outage reports"])
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topics.INCIDENTS, codec.encode(inc), key=incident_id.encode())
        await producer.send_and_wait(topics.SILENCES, b"\xff\xfe not a silence", key=f"bad-{tag}".encode())
    finally:
        await producer.stop()

    feed, router_side = _router_side(kafka_bootstrap, f"it-silences-{tag}")
    await router_side.start()
    settings = ConsoleSettings(kafka_bootstrap=kafka_bootstrap, console_group_id=f"it-console-silence-{tag}")
    try:
        assert feed.match(labels, time.time()) is None and feed.skipped >= 1  # the bad record, skipped
        async with running_app(build_app(settings)) as url, httpx.AsyncClient(base_url=url, timeout=20) as client:
            async def incident_shown() -> bool:
                return (await client.get(f"/api/incidents/{incident_id}")).status_code == 200

            await wait_for(incident_shown, timeout=60, what="the console to read the incident")
            page = (await client.get(f"/incidents/{incident_id}")).text
            assert f'brand="{brand}"' in html.unescape(page)  # the form starts with the incident's labels
            csrf = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
            r = await client.post("/actions/silence", data={
                "csrf": csrf, "incident_id": incident_id, "matchers": f'brand="{brand}"\nincident="{incident_id}"',
                "duration": "1h", "comment": "status page is up", "created_by": "ana"})
            assert r.status_code == 303, r.text
            active = (await client.get(f"/api/incidents/{incident_id}")).json()["silences"]
            assert len(active) == 1 and active[0]["state"] == "active"
            silence_id = active[0]["id"]

            async def muted() -> bool:
                return feed.match(labels, time.time()) is not None

            await wait_for(muted, timeout=30, what="the router's feed to hold the console's silence")
            hit = feed.match(labels, time.time())
            assert hit is not None and hit.id == silence_id and hit.created_by == "ana"
            assert feed.match({**labels, "brand": "globex"}, time.time()) is None

            r = await client.post("/actions/silence/expire", data={"csrf": csrf, "silence_id": silence_id})
            assert r.status_code == 303, r.text

            async def unmuted() -> bool:
                return feed.match(labels, time.time()) is None

            await wait_for(unmuted, timeout=30, what="the expiry to reach the router's feed")
            # A second, still active silence, to see the restart below read both kinds back.
            r = await client.post("/actions/silence", data={
                "csrf": csrf, "incident_id": incident_id, "matchers": f'brand="{brand}"\nintent="complaint"',
                "duration": "30m", "comment": "known complaint wave", "created_by": "bo"})
            assert r.status_code == 303, r.text
    finally:
        await router_side.stop()

    feed2, restarted = _router_side(kafka_bootstrap, f"it-silences-{tag}-2")
    await restarted.start()
    try:
        now = time.time()
        mine = {s.comment: s for s in feed2.silences.values() if s.incident_id == incident_id}
        assert set(mine) == {"status page is up", "known complaint wave"}
        assert mine["status page is up"].state(now) == "expired" and mine["known complaint wave"].state(now) == "active"
        assert feed2.match(labels, now) is None                               # expired one: gone
        assert feed2.match({**labels, "intent": "complaint"}, now) is not None  # active one: kept
        assert f"bad-{tag}" not in feed2.silences
    finally:
        await restarted.stop()

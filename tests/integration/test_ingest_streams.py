"""Stream connectors against local servers speaking the platforms' protocols (Jetstream WebSocket,
Mastodon SSE + timelines): a disconnect mid-stream and a process restart lose and duplicate nothing."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from typing import Any

from aiohttp import web
from support import consume, running_app, wait_for

from services.common import codec, topics
from services.common.codec import pb
from services.common.kafka import ensure_topics
from services.common.topics import all_topic_specs
from services.ingest.config import IngestSettings
from services.ingest.dedupe import DedupeWindow
from services.ingest.ingestor import MentionIngestor, load_matcher
from services.ingest.jetstream import JetstreamConnector
from services.ingest.mastodon import MastodonConnector

BASE_US = 1_725_911_162_000_000


async def make_ingestor(bootstrap: str) -> MentionIngestor:
    settings = IngestSettings(kafka_bootstrap=bootstrap)
    ingestor = MentionIngestor(None, settings, DedupeWindow(3600, 100_000), load_matcher(settings))
    await ingestor.connect()
    return ingestor


async def produced_ids(bootstrap: str, marker: str) -> Counter[str]:
    records = await consume(bootstrap, [topics.MENTIONS_RAW], idle=1.5, timeout=30)
    ids = (codec.decode(v, pb.Mention).external_id for _, _, v in records)
    return Counter(i for i in ids if marker in i)


class FakeJetstream:
    """/subscribe with wantedCollections and cursor (time_us, inclusive), as Jetstream serves it.

    `plans[n]` shapes connection n: ("drop", k) cuts the TCP connection after k events,
    ("stall", i) stops sending after event index i and holds the connection open,
    ("pace", ms) sends one event every `ms` milliseconds.
    """

    def __init__(self, events: list[dict[str, Any]], plans: list[tuple[str, int]]):
        self.events, self.plans = events, plans
        self.requests: list[dict[str, Any]] = []

    async def subscribe(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        wanted = request.query.getall("wantedCollections", [])
        cursor = int(request.query.get("cursor", "0"))
        n = len(self.requests)
        self.requests.append({"wanted": wanted, "cursor": cursor})
        plan = self.plans[n] if n < len(self.plans) else ("all", 0)
        sent = 0
        for index, ev in enumerate(self.events):
            if ev["time_us"] < cursor:
                continue
            if ev["kind"] == "commit" and wanted and ev["commit"]["collection"] not in wanted:
                continue
            if plan[0] == "drop" and sent == plan[1]:
                assert request.transport is not None
                request.transport.close()  # a network failure, not a clean close
                return ws
            if plan[0] == "stall" and index > plan[1]:
                break
            if ws.closed:
                break
            await ws.send_str(json.dumps(ev))
            sent += 1
            if plan[0] == "pace":
                await asyncio.sleep(plan[1] / 1000)
            elif sent % 20 == 0:
                await asyncio.sleep(0.01)
        async for _ in ws:  # hold the connection until the client leaves
            pass
        return ws


def jetstream_events(marker: str, n: int) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        t = BASE_US + i * 100_000  # 10 events per second of source time
        did = f"did:plc:{marker}{i % 7}"
        if i % 5 == 4:
            out.append({"did": did, "time_us": t, "kind": "commit", "commit": {
                "rev": f"r{i}", "operation": "create", "collection": "app.bsky.feed.like", "rkey": f"l{i}",
                "record": {"$type": "app.bsky.feed.like", "createdAt": "2024-09-09T19:46:02.102Z"}}})
            continue
        text = f"Acme Bank app down again ({i})" if i % 5 != 3 else f"lovely weather ({i})"
        out.append({"did": did, "time_us": t, "kind": "commit", "commit": {
            "rev": f"r{i}", "operation": "create", "collection": "app.bsky.feed.post", "rkey": f"p{i}",
            "record": {"$type": "app.bsky.feed.post", "createdAt": "2024-09-09T19:46:02.102Z", "langs": ["en"],
                       "text": text}, "cid": f"bafy{i}"}})
    return out


async def test_jetstream_disconnect_and_restart_lose_and_duplicate_nothing(kafka_bootstrap):
    await ensure_topics(kafka_bootstrap, all_topic_specs())
    marker = uuid.uuid4().hex[:8]
    events = jetstream_events(marker, 299)  # the last one is a post (likes are not sent)
    server = FakeJetstream(events, plans=[("drop", 120), ("stall", 218)])
    app = web.Application()
    app.router.add_get("/subscribe", server.subscribe)
    name = f"jetstream-{marker}"
    expected = {f"at://{e['did']}/app.bsky.feed.post/{e['commit']['rkey']}" for e in events
                if e["commit"]["collection"] == "app.bsky.feed.post" and "Acme" in e["commit"]["record"]["text"]}
    async with running_app(app) as url:
        first = await make_ingestor(kafka_bootstrap)
        conn = JetstreamConnector(first, f"{url.replace('http', 'ws')}/subscribe", name=name, backoff_initial=0.1)
        task = asyncio.create_task(conn.run())
        # Connection 1 is cut after 120 events; connection 2 resumes and stalls after event 218.
        await wait_for(lambda: conn.cursor == events[218]["time_us"], 60, "first process to reach event 218")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await first.close()

        # A new process: empty memory, resumes from the checkpoint in Kafka.
        second = await make_ingestor(kafka_bootstrap)
        conn2 = JetstreamConnector(second, f"{url.replace('http', 'ws')}/subscribe", name=name)
        task2 = asyncio.create_task(conn2.run())
        await wait_for(lambda: conn2.cursor == events[-1]["time_us"], 60, "second process to reach the end")
        task2.cancel()
        await asyncio.gather(task2, return_exceptions=True)
        await second.close()

    assert [r["wanted"] for r in server.requests] == [["app.bsky.feed.post"]] * 3
    assert server.requests[0]["cursor"] == 0
    # Each reconnect resumed from an acknowledged cursor, rewound 5 s.
    for req in server.requests[1:]:
        assert req["cursor"] > 0 and (req["cursor"] - BASE_US) % 100_000 == 0
    assert server.requests[2]["cursor"] == events[218]["time_us"] - 5_000_000
    got = await produced_ids(kafka_bootstrap, marker)
    assert set(got) == expected  # nothing missing, unrelated posts and likes filtered
    assert max(got.values()) == 1, [k for k, v in got.items() if v > 1][:5]  # nothing twice


class FakeMastodon:
    """/api/v1/streaming/public (SSE `event: update`) and /api/v1/timelines/public?min_id= (REST)."""

    def __init__(self, marker: str):
        self.marker = marker
        self.posted: list[dict[str, Any]] = []
        self.connections = 0
        self.timeline_calls: list[str] = []

    def status(self, i: int) -> dict[str, Any]:
        sid = str(110_000_000_000_000_000 + i)
        text = f"<p>@AcmeBank can&#39;t log in ({i})</p>" if i % 10 else f"<p>cat pictures ({i})</p>"
        return {"id": sid, "uri": f"https://m.example/users/u/statuses/{self.marker}-{i}",
                "url": f"https://m.example/@u/{sid}", "created_at": "2026-11-23T10:00:00.000Z", "content": text,
                "account": {"id": "1", "acct": "u", "display_name": "U", "followers_count": 5}, "language": "en",
                "reblogs_count": 0, "favourites_count": 0, "replies_count": 0, "reblog": None}

    def post(self, i: int) -> dict[str, Any]:
        s = self.status(i)
        self.posted.append(s)
        return s

    async def stream(self, request: web.Request) -> web.StreamResponse:
        self.connections += 1
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b":)\n\n")
        if self.connections == 1:
            for i in range(1, 31):
                await resp.write(f"event: update\ndata: {json.dumps(self.post(i))}\n\n".encode())
            await resp.write(b":thump\n\n")
            await asyncio.sleep(0.3)
            for i in range(31, 61):
                self.post(i)  # posted while the client is disconnected
            assert request.transport is not None
            request.transport.close()
            return resp
        await asyncio.sleep(0.3)
        for i in range(61, 91):
            await resp.write(f"event: update\ndata: {json.dumps(self.post(i))}\n\n".encode())
            await resp.write(b"event: delete\ndata: 123\n\n")
        while True:
            await asyncio.sleep(1)
            await resp.write(b":thump\n\n")

    async def timeline(self, request: web.Request) -> web.Response:
        min_id = int(request.query["min_id"])
        self.timeline_calls.append(request.query["min_id"])
        newer = [s for s in self.posted if int(s["id"]) > min_id][: int(request.query.get("limit", "20"))]
        return web.json_response(list(reversed(newer)))  # newest first, as Mastodon answers


async def test_mastodon_reconnect_backfills_the_gap_without_duplicates(kafka_bootstrap):
    await ensure_topics(kafka_bootstrap, all_topic_specs())
    marker = uuid.uuid4().hex[:8]
    server = FakeMastodon(marker)
    app = web.Application()
    app.router.add_get("/api/v1/streaming/public", server.stream)
    app.router.add_get("/api/v1/timelines/public", server.timeline)
    async with running_app(app) as url:
        ingestor = await make_ingestor(kafka_bootstrap)
        conn = MastodonConnector(ingestor, url, name=f"mastodon-{marker}", token="t", backoff_initial=0.1)
        task = asyncio.create_task(conn.run())
        await wait_for(lambda: conn.cursor == int(server.status(90)["id"]), 60, "all 90 statuses")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await ingestor.close()
    assert server.connections == 2 and server.timeline_calls[0] == server.status(30)["id"]
    got = await produced_ids(kafka_bootstrap, marker)
    assert set(got) == {f"https://m.example/users/u/statuses/{marker}-{i}" for i in range(1, 91) if i % 10}
    assert max(got.values()) == 1


async def test_jetstream_pauses_while_kafka_is_down_and_resumes_without_loss(kafka_broker_factory):
    broker = kafka_broker_factory()
    await ensure_topics(broker.bootstrap_servers, all_topic_specs())
    marker = uuid.uuid4().hex[:8]
    events = jetstream_events(marker, 299)
    server = FakeJetstream(events, plans=[("pace", 15)] * 10)
    app = web.Application()
    app.router.add_get("/subscribe", server.subscribe)
    settings = IngestSettings(kafka_bootstrap=broker.bootstrap_servers, produce_timeout_seconds=3,
                              kafka_probe_interval_seconds=0.3)
    ingestor = MentionIngestor(None, settings, DedupeWindow(3600, 100_000), load_matcher(settings))
    await ingestor.connect()
    async with running_app(app) as url:
        conn = JetstreamConnector(ingestor, f"{url.replace('http', 'ws')}/subscribe", name=f"js-{marker}",
                                  backoff_initial=0.1, backoff_max=1)
        task = asyncio.create_task(conn.run())
        await wait_for(lambda: conn.produced >= 40, 60, "some mentions before the outage")
        await asyncio.to_thread(broker.stop)
        await wait_for(lambda: not conn.connected and not ingestor.kafka_up.is_set(), 90, "the connector to pause")
        paused_requests = len(server.requests)
        await asyncio.sleep(2)
        assert len(server.requests) == paused_requests  # no reconnect storm while Kafka is down
        await asyncio.to_thread(broker.start)
        await wait_for(lambda: conn.cursor == events[-1]["time_us"], 90, "the connector to finish after recovery")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    await ingestor.close()
    expected = {f"at://{e['did']}/app.bsky.feed.post/{e['commit']['rkey']}" for e in events
                if e["commit"]["collection"] == "app.bsky.feed.post" and "Acme" in e["commit"]["record"]["text"]}
    got = await produced_ids(broker.bootstrap_servers, marker)
    assert set(got) == expected
    assert max(got.values()) == 1

"""Polling connectors against local servers shaped like an RSS feed and Reddit's listing API:
conditional GETs (ETag / Last-Modified -> 304), per-source intervals, nothing produced twice."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

from aiohttp import web
from support import consume, running_app, wait_for

from services.common import codec, topics
from services.common.codec import pb
from services.common.kafka import ensure_topics
from services.common.topics import all_topic_specs
from services.ingest.config import IngestSettings
from services.ingest.dedupe import DedupeWindow
from services.ingest.ingestor import MentionIngestor, load_matcher
from services.ingest.polling import Poller

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ingest"


class ConditionalSource:
    """Serves `body` with an ETag or Last-Modified; answers 304 when the client already has it."""

    def __init__(self, body: bytes, ctype: str, validator: str):
        self.body, self.ctype, self.validator = body, ctype, validator
        self.version = 1
        self.requests: list[dict[str, str]] = []

    def update(self, body: bytes) -> None:
        self.body, self.version = body, self.version + 1

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(dict(request.headers))
        if self.validator == "etag":
            tag = f'"v{self.version}"'
            if request.headers.get("If-None-Match") == tag:
                return web.Response(status=304, headers={"ETag": tag})
            return web.Response(body=self.body, content_type=self.ctype, headers={"ETag": tag})
        stamp = f"Sun, 20 Sep 2026 09:{self.version:02d}:00 GMT"
        if request.headers.get("If-Modified-Since") == stamp:
            return web.Response(status=304)
        return web.Response(body=self.body, content_type=self.ctype, headers={"Last-Modified": stamp})


async def test_rss_and_reddit_pollers_use_conditional_gets_and_produce_once(kafka_bootstrap):
    await ensure_topics(kafka_bootstrap, all_topic_specs())
    marker = uuid.uuid4().hex[:8]
    rss_text = (FIXTURES / "rss_feed.xml").read_text().replace("forum-10", f"forum-{marker}-10")
    rss_text = rss_text.replace("Sun, 20 Sep 2026", "Mon, 23 Nov 2026")
    rss = ConditionalSource(rss_text.encode(), "application/rss+xml", "etag")
    listing = json.loads((FIXTURES / "reddit_search_new.json").read_text().replace("1h0abc", f"{marker}x"))
    for child in listing["data"]["children"]:
        child["data"]["created_utc"] = 1_795_400_000.0  # 2026-11-23
    reddit = ConditionalSource(json.dumps(listing).encode(), "application/json", "last_modified")
    app = web.Application()
    app.router.add_get("/feed.xml", rss.handle)
    app.router.add_get("/search.json", reddit.handle)

    settings = IngestSettings(kafka_bootstrap=kafka_bootstrap)
    ingestor = MentionIngestor(None, settings, DedupeWindow(3600, 10_000), load_matcher(settings))
    await ingestor.connect()
    async with running_app(app) as url:
        pollers = [Poller(ingestor, f"{url}/feed.xml", "feed", f"rss-{marker}", interval_seconds=0.2),
                   Poller(ingestor, f"{url}/search.json?q=acme&sort=new", "reddit", f"reddit-{marker}",
                          interval_seconds=0.3)]
        tasks = [asyncio.create_task(p.run()) for p in pollers]
        await wait_for(lambda: all(p.not_modified >= 2 for p in pollers), 30, "both pollers to see 304s")
        # A new forum post appears: the next poll gets the changed feed and only the new item is produced.
        rss.update(rss_text.replace("</channel>", f"""<item><title>Acme Card declined</title>
            <link>https://forum.example/t/103</link><guid>forum-{marker}-103</guid>
            <pubDate>Mon, 23 Nov 2026 09:07:00 GMT</pubDate></item></channel>""").encode())
        await wait_for(lambda: pollers[0].produced >= 2, 30, "the new feed item")
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    await ingestor.close()

    assert rss.requests[1].get("If-None-Match") == '"v1"'
    assert reddit.requests[1].get("If-Modified-Since") == "Sun, 20 Sep 2026 09:01:00 GMT"
    assert all("social-triage" in r["User-Agent"] for r in rss.requests + reddit.requests)
    records = await consume(kafka_bootstrap, [topics.MENTIONS_RAW], idle=1.5, timeout=30)
    ids = [codec.decode(v, pb.Mention).mention_id for _, _, v in records]
    ours = sorted(i for i in ids if marker in i)
    # Gardening post filtered out (no tracked brand); each of the rest exactly once.
    assert ours == sorted([f"forum:forum-{marker}-101", f"forum:forum-{marker}-103",
                           f"reddit:t3_{marker}xd", f"reddit:t3_{marker}xe"])

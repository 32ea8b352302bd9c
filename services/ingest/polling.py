"""Polling connectors: RSS/Atom feeds and Reddit search/new listings (JSON), with conditional GETs.

Each poller asks its URL every `interval_seconds` with `If-None-Match` /
`If-Modified-Since` from the previous answer (a 304 costs the source nothing),
and yields the items it has not produced yet. The cursor is the newest item
time acknowledged by Kafka; items older than the cursor minus the rewind are
skipped, and the ones around it are dropped by the dedupe window (restored from
the checkpoint after a restart). It shares the connector loop, so it pauses
while Kafka is down and backs off when the source fails.
"""

from __future__ import annotations

import asyncio
import json
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp

from services.ingest import metrics as m
from services.ingest.adapters import Candidate, PayloadError, html_to_text, reddit_listing
from services.ingest.connector import StreamConnector, StreamEvent
from services.ingest.ingestor import MentionIngestor

ATOM = "{http://www.w3.org/2005/Atom}"


def _parse_time(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))  # Atom: RFC 3339
    except ValueError:
        try:
            dt = parsedate_to_datetime(value)  # RSS: RFC 822
        except (TypeError, ValueError):
            return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def feed_items(body: bytes) -> list[tuple[float | None, Candidate]]:
    """(published time, candidate) per RSS 2.0 <item> or Atom <entry>; raises PayloadError for non-feeds."""
    try:
        root = ET.fromstring(body)  # expat refuses external entities; billion-laughs is capped by expat >= 2.4
    except ET.ParseError as exc:
        raise PayloadError(f"not XML: {exc}") from None
    out = []
    if root.tag == "rss":
        for item in root.iter("item"):
            link = (item.findtext("link") or "").strip()
            guid = (item.findtext("guid") or link).strip()
            title = (item.findtext("title") or "").strip()
            desc = html_to_text(item.findtext("description") or "")
            when = _parse_time(item.findtext("pubDate"))
            obj = {"source": "forum", "external_id": guid[:256], "text": f"{title}\n\n{desc}".strip(), "url": link,
                   "created_at": when, "author": {"handle": (item.findtext("author") or "").strip()[:256]}}
            out.append((when, Candidate(obj, ET.tostring(item))))
    elif root.tag == f"{ATOM}feed":
        for entry in root.iter(f"{ATOM}entry"):
            link_el = entry.find(f"{ATOM}link[@rel='alternate']") or entry.find(f"{ATOM}link")
            link = link_el.get("href", "") if link_el is not None else ""
            title = (entry.findtext(f"{ATOM}title") or "").strip()
            body_text = html_to_text(entry.findtext(f"{ATOM}summary") or entry.findtext(f"{ATOM}content") or "")
            when = _parse_time(entry.findtext(f"{ATOM}published") or entry.findtext(f"{ATOM}updated"))
            obj = {"source": "forum", "external_id": (entry.findtext(f"{ATOM}id") or link).strip()[:256],
                   "text": f"{title}\n\n{body_text}".strip(), "url": link, "created_at": when,
                   "author": {"handle": (entry.findtext(f"{ATOM}author/{ATOM}name") or "").strip()[:256]}}
            out.append((when, Candidate(obj, ET.tostring(entry))))
    else:
        raise PayloadError(f"not an RSS or Atom feed (root element {root.tag!r})")
    return out


class Poller(StreamConnector):
    """Polls one URL; `kind` is "feed" (RSS/Atom) or "reddit" (a listing: search.json?sort=new, /new.json)."""

    def __init__(self, ingestor: MentionIngestor, url: str, kind: str, name: str, interval_seconds: float = 60.0,
                 user_agent: str = "social-triage-ingest/1.0", **options: Any):
        super().__init__(name, ingestor, **options)
        if kind not in ("feed", "reddit"):
            raise ValueError(f"unknown poller kind {kind!r}")
        self.url, self.kind, self.interval = url, kind, interval_seconds
        self.user_agent = user_agent
        self.etag: str | None = None
        self.last_modified: str | None = None
        self.not_modified = 0

    def items(self, body: bytes) -> list[tuple[float | None, Candidate]]:
        if self.kind == "feed":
            return feed_items(body)
        try:
            payload = json.loads(body)
        except ValueError:
            raise PayloadError("Reddit answered with something that is not JSON") from None
        cands, _after = reddit_listing(payload)
        return [(c.obj.get("created_at") if isinstance(c.obj.get("created_at"), float | int) else None, c)
                for c in cands]

    async def events(self) -> AsyncIterator[StreamEvent]:
        timeout = aiohttp.ClientTimeout(total=30)
        # A new session (after a failure or a Kafka outage) starts with an unconditional GET: items
        # handed over before the failure may not have been acknowledged.
        self.etag = self.last_modified = None
        async with aiohttp.ClientSession(timeout=timeout, headers={"User-Agent": self.user_agent}) as session:
            first = True
            while True:
                if not first:
                    await asyncio.sleep(self.interval)
                first = False
                headers: dict[str, str] = {}
                if self.etag:
                    headers["If-None-Match"] = self.etag
                if self.last_modified:
                    headers["If-Modified-Since"] = self.last_modified
                async with session.get(self.url, headers=headers) as resp:
                    if resp.status == 304:
                        self.not_modified += 1
                        self.mark_connected()
                        continue
                    resp.raise_for_status()
                    body = await resp.content.read(self.ingestor.settings.max_body_bytes)
                    etag, modified = resp.headers.get("ETag"), resp.headers.get("Last-Modified")
                self.mark_connected()
                try:
                    found = self.items(body)
                except PayloadError as exc:
                    m.CONNECTOR_EVENTS.labels(self.name, "malformed").inc()
                    raise ConnectionError(str(exc)) from None
                floor = (self.cursor - self.rewind_seconds) if isinstance(self.cursor, int | float) else None
                fresh = sorted(((t, c) for t, c in found if floor is None or t is None or t >= floor),
                               key=lambda tc: tc[0] or 0.0)
                for when, cand in fresh:
                    yield StreamEvent(when, cand, when)
                # Validators are remembered only once the items were handed over: a failure refetches them.
                self.etag, self.last_modified = etag, modified

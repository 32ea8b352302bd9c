"""Mastodon streaming connector: `update` events over Server-Sent Events, with REST backfill on reconnect.

    GET /api/v1/streaming/public | /api/v1/streaming/hashtag?tag=T | /api/v1/streaming/list?list=ID
    event: update
    data: {Status}

The streaming API has no resume cursor, so the connector remembers the id of
the last acknowledged status (Mastodon ids are time-ordered) and, after each
reconnect, first reads what it missed from the matching timeline
(`/api/v1/timelines/public|tag/T|list/ID?min_id=...`), oldest first, while the
new stream connection buffers what arrives meanwhile. Overlaps are dropped by
the dedupe window.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import aiohttp

from services.ingest import metrics as m
from services.ingest.adapters import mastodon_status
from services.ingest.connector import StreamConnector, StreamEvent
from services.ingest.ingestor import MentionIngestor


def _id(status: Any) -> int | None:
    sid = status.get("id") if isinstance(status, dict) else None
    return int(sid) if isinstance(sid, str) and sid.isdigit() else None


def _time(status: dict[str, Any]) -> float | None:
    try:
        return datetime.fromisoformat(str(status.get("created_at")).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class MastodonConnector(StreamConnector):
    def __init__(self, ingestor: MentionIngestor, base_url: str, stream: str = "public", tag: str = "",
                 list_id: str = "", token: str = "", name: str = "mastodon", **options: Any):
        super().__init__(name, ingestor, **options)
        if stream not in ("public", "hashtag", "list"):
            raise ValueError(f"unknown Mastodon stream {stream!r}: use public, hashtag or list")
        self.base = base_url.rstrip("/")
        self.stream, self.tag, self.list_id = stream, tag, list_id
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}

    def stream_request(self) -> tuple[str, dict[str, str]]:
        if self.stream == "hashtag":
            return f"{self.base}/api/v1/streaming/hashtag", {"tag": self.tag}
        if self.stream == "list":
            return f"{self.base}/api/v1/streaming/list", {"list": self.list_id}
        return f"{self.base}/api/v1/streaming/public", {}

    def timeline_url(self) -> str:
        if self.stream == "hashtag":
            return f"{self.base}/api/v1/timelines/tag/{self.tag}"
        if self.stream == "list":
            return f"{self.base}/api/v1/timelines/list/{self.list_id}"
        return f"{self.base}/api/v1/timelines/public"

    def _event(self, status: Any) -> StreamEvent | None:
        sid = _id(status)
        if sid is None:
            m.CONNECTOR_EVENTS.labels(self.name, "malformed").inc()
            return None
        return StreamEvent(sid, mastodon_status(status), _time(status))

    async def _backfill(self, session: aiohttp.ClientSession) -> AsyncIterator[StreamEvent]:
        since = self.cursor
        while isinstance(since, int):
            async with session.get(self.timeline_url(), params={"min_id": str(since), "limit": "40"},
                                   headers=self._headers) as resp:
                resp.raise_for_status()
                page = await resp.json()
            statuses = sorted((s for s in page if _id(s) is not None), key=lambda s: _id(s) or 0)
            if not statuses:
                return
            for status in statuses:
                event = self._event(status)
                if event is not None:
                    yield event
            since = _id(statuses[-1])

    async def events(self) -> AsyncIterator[StreamEvent]:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=120)  # heartbeats come every ~10 s
        url, params = self.stream_request()
        async with aiohttp.ClientSession(timeout=timeout) as session, \
                session.get(url, params=params, headers={**self._headers, "Accept": "text/event-stream"}) as resp:
            resp.raise_for_status()
            self.mark_connected()
            async for event in self._backfill(session):
                yield event
            name, data = "", []
            async for raw in resp.content:
                line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                if line.startswith(":"):
                    continue  # heartbeat comment
                if line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].lstrip(" "))
                elif line == "":
                    if name == "update" and data:
                        try:
                            status = json.loads("\n".join(data))
                        except ValueError:
                            status = None
                        update = self._event(status)
                        if update is not None:
                            yield update
                    name, data = "", []
        raise ConnectionError("Mastodon closed the stream")

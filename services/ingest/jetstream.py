"""Bluesky Jetstream connector: JSON commit events over a WebSocket, resumable by a microsecond cursor.

    wss://jetstream2.us-east.bsky.network/subscribe?wantedCollections=app.bsky.feed.post&cursor=<time_us>

The cursor is the `time_us` of the last event whose mentions Kafka acknowledged.
On reconnect it is rewound a few seconds (Jetstream's advice for gapless
playback, e.g. when switching instances); the events read twice are dropped by
the dedupe window, which a restarted process refills from the checkpoint.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from services.ingest import metrics as m
from services.ingest.adapters import BSKY_POST, jetstream_event
from services.ingest.connector import StreamConnector, StreamEvent
from services.ingest.ingestor import MentionIngestor


class JetstreamConnector(StreamConnector):
    def __init__(self, ingestor: MentionIngestor, url: str, collections: tuple[str, ...] = (BSKY_POST,),
                 name: str = "jetstream", **options: Any):
        super().__init__(name, ingestor, **options)
        self.url = url
        self.collections = collections

    def params(self) -> list[tuple[str, str]]:
        params = [("wantedCollections", c) for c in self.collections]
        if isinstance(self.cursor, int) and self.cursor > 0:
            params.append(("cursor", str(max(0, self.cursor - int(self.rewind_seconds * 1_000_000)))))
        return params

    async def events(self) -> AsyncIterator[StreamEvent]:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
        async with aiohttp.ClientSession(timeout=timeout) as session, \
                session.ws_connect(self.url, params=self.params(), heartbeat=30, max_msg_size=4 * 1024 * 1024) as ws:
            self.mark_connected()
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    if msg.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                        break
                    continue
                try:
                    event = json.loads(msg.data)
                    time_us = event["time_us"]
                    if not isinstance(time_us, int) or isinstance(time_us, bool):
                        raise TypeError("time_us")
                except (ValueError, KeyError, TypeError):
                    m.CONNECTOR_EVENTS.labels(self.name, "malformed").inc()
                    continue
                yield StreamEvent(time_us, jetstream_event(event), time_us / 1e6)
        raise ConnectionError(f"Jetstream closed the connection (close code {ws.close_code})")

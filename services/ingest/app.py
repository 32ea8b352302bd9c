"""The ingest HTTP API: validate, normalise, de-duplicate and durably produce mentions.

A 202 is only ever sent after Kafka acknowledged every accepted mention
(idempotent producer, acks=all); if Kafka cannot take them, the answer is 503
with Retry-After and nothing is marked as seen, so the client's retry is safe.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web
from aiokafka import AIOKafkaProducer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.common import codec, topics
from services.common.kafka import make_producer
from services.common.logging import get_logger
from services.common.metrics import MESSAGES_IN, MESSAGES_OUT
from services.ingest import metrics as m
from services.ingest.config import IngestSettings
from services.ingest.dedupe import DedupeWindow
from services.ingest.normalize import Limits, MentionError, dedupe_key, normalize, parse_body

log = get_logger("ingest")

JSON_TYPES = {"application/json"}
NDJSON_TYPES = {"application/x-ndjson", "application/jsonl", "application/ndjson", "application/json-seq"}

SETTINGS_KEY = web.AppKey("settings", IngestSettings)
DEDUPE_KEY = web.AppKey("dedupe", DedupeWindow)


def _error(status: int, reason: str, errors: list[dict[str, Any]] | None = None,
           headers: dict[str, str] | None = None) -> web.Response:
    body: dict[str, Any] = {"error": reason}
    if errors:
        body["errors"] = errors
    return web.json_response(body, status=status, headers=headers)


class MentionIngestor:
    """The request-independent core: turns validated mentions into acknowledged Kafka records."""

    def __init__(self, producer: AIOKafkaProducer | None, settings: IngestSettings, dedupe: DedupeWindow):
        # Created in the app's startup (aiokafka needs a running loop).
        self.producer: AIOKafkaProducer = producer  # type: ignore[assignment]
        self.settings = settings
        self.dedupe = dedupe

    async def produce(self, mentions: list[Any]) -> tuple[list[str], list[str]]:
        """Produce new mentions; returns (accepted ids, duplicate ids). Raises on Kafka failure."""
        fresh, dups, keys = [], [], []
        for mention in mentions:
            key = dedupe_key(mention)
            if self.dedupe.reserve(key):
                fresh.append(mention)
                keys.append(key)
            else:
                dups.append(mention.mention_id)
                m.MENTIONS_DUPLICATE.labels(codec.pb.Source.Name(mention.source)).inc()
        try:
            started = time.perf_counter()
            futures = [
                await self.producer.send(
                    topics.MENTIONS_RAW, value=codec.encode(mn), key=mn.mention_id.encode()
                )
                for mn in fresh
            ]
            await asyncio.wait_for(asyncio.gather(*futures), timeout=self.settings.produce_timeout_seconds)
            m.PRODUCE_SECONDS.observe(time.perf_counter() - started)
        except BaseException:
            for key in keys:
                self.dedupe.release(key)
            m.KAFKA_UP.set(0)
            raise
        m.KAFKA_UP.set(1)
        for key in keys:
            self.dedupe.commit(key)
        m.DEDUPE_ENTRIES.set(len(self.dedupe))
        for mn in fresh:
            m.MENTIONS_ACCEPTED.labels(codec.pb.Source.Name(mn.source)).inc()
            MESSAGES_OUT.labels("ingest", topics.MENTIONS_RAW).inc()
        return [mn.mention_id for mn in fresh], dups


INGESTOR_KEY = web.AppKey("ingestor", MentionIngestor)


async def post_mentions(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS_KEY]
    ctype = request.content_type
    if ctype not in JSON_TYPES | NDJSON_TYPES:
        m.MENTIONS_REJECTED.labels("content_type").inc()
        return _error(415, f"unsupported Content-Type {ctype!r}; send application/json or application/x-ndjson")
    if request.content_length is not None and request.content_length > settings.max_body_bytes:
        m.MENTIONS_REJECTED.labels("too_large").inc()
        return _error(413, f"body of {request.content_length} bytes exceeds the limit of {settings.max_body_bytes}")
    try:
        body = await request.content.read(settings.max_body_bytes + 1)
    except (TimeoutError, ConnectionError):
        return _error(400, "request body could not be read")
    if len(body) > settings.max_body_bytes:
        m.MENTIONS_REJECTED.labels("too_large").inc()
        return _error(413, f"body exceeds the limit of {settings.max_body_bytes} bytes")

    try:
        items = parse_body(body, "application/json" if ctype in JSON_TYPES else "application/x-ndjson")
    except MentionError as exc:
        m.MENTIONS_REJECTED.labels("malformed").inc()
        return _error(400, str(exc), [exc.as_dict()])
    if not items:
        m.MENTIONS_REJECTED.labels("empty").inc()
        return _error(400, "no mentions in the body")
    if len(items) > settings.max_batch:
        m.MENTIONS_REJECTED.labels("too_large").inc()
        return _error(413, f"{len(items)} mentions exceed the batch limit of {settings.max_batch}")

    limits = Limits(settings.max_text_chars, settings.max_raw_payload_bytes, settings.future_skew_seconds)
    now = time.time()
    mentions, errors = [], []
    for value, raw, line in items:
        try:
            mentions.append(normalize(value, raw, limits, now=now))
        except MentionError as exc:
            exc.line = line
            errors.append(exc.as_dict())
    MESSAGES_IN.labels("ingest", "http").inc(len(items))
    if errors:
        # All or nothing: a batch with invalid items is rejected whole so the
        # client can fix and resend it without guessing what was kept.
        m.MENTIONS_REJECTED.labels("invalid_field").inc(len(errors))
        first = errors[0]
        where = f"line {first['line']}: " if ctype in NDJSON_TYPES or len(items) > 1 else ""
        return _error(422, f"{len(errors)} invalid mention(s); first: {where}{first['field']}: {first['reason']}",
                      errors)
    for mn in mentions:
        if mn.text_truncated:
            m.MENTIONS_TRUNCATED.inc()

    try:
        accepted, duplicates = await request.app[INGESTOR_KEY].produce(mentions)
    except Exception as exc:
        log.warning("produce_failed", error=type(exc).__name__, detail=str(exc)[:200], mentions=len(mentions))
        return _error(503, "Kafka did not acknowledge the mentions; nothing was accepted, retry later",
                      headers={"Retry-After": str(settings.retry_after_seconds)})
    return web.json_response({"accepted": accepted, "duplicates": duplicates}, status=202)


async def healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    producer = request.app[INGESTOR_KEY].producer
    try:
        await asyncio.wait_for(producer.client.fetch_all_metadata(), timeout=3)
    except Exception as exc:
        m.KAFKA_UP.set(0)
        return _error(503, f"Kafka unreachable: {type(exc).__name__}")
    m.KAFKA_UP.set(1)
    return web.json_response({"status": "ready"})


async def metrics_page(_: web.Request) -> web.Response:
    resp = web.Response(body=generate_latest())
    resp.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    return resp


@web.middleware
async def count_requests(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        m.HTTP_REQUESTS.labels(request.path if exc.status != 404 else "other", str(exc.status)).inc()
        raise
    endpoint = request.match_info.route.resource.canonical if request.match_info.route.resource else "other"
    m.HTTP_REQUESTS.labels(endpoint, str(response.status)).inc()
    return response


def build_app(settings: IngestSettings, producer: AIOKafkaProducer | None = None) -> web.Application:
    app = web.Application(client_max_size=settings.max_body_bytes + 1024, middlewares=[count_requests])
    app[SETTINGS_KEY] = settings
    dedupe = DedupeWindow(settings.dedupe_window_seconds, settings.dedupe_max_entries)
    app[DEDUPE_KEY] = dedupe
    ingestor = MentionIngestor(producer, settings, dedupe)
    app[INGESTOR_KEY] = ingestor

    async def lifecycle(app: web.Application) -> Any:
        if ingestor.producer is None:
            ingestor.producer = make_producer(
                settings.kafka_bootstrap, f"{settings.kafka_client_id_prefix}-ingest"
            )
        prod = ingestor.producer
        await prod.start()
        log.info("ingest_started", kafka=settings.kafka_bootstrap)
        yield
        await prod.stop()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_post("/v1/mentions", post_mentions)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_page)
    return app

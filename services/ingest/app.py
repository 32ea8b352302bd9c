"""The ingest HTTP API: validate, normalise, de-duplicate and durably produce mentions.

A 202 is only ever sent after Kafka acknowledged every accepted mention
(idempotent producer, acks=all); if Kafka cannot take them, the answer is 503
with Retry-After and an `outcome` (`not_accepted`, or `unknown` when an ack came
late and the records may be stored); a key counts as seen only once acknowledged,
so the client's retry is safe either way (late records come back as duplicates).

Every source goes through `MentionIngestor` (`ingestor.py`); the HTTP helpers
shared with the webhooks are in `http.py`; connection handling (timeouts, pipelining,
per-client connection limit) and the server runner are in `connections.py`. Start-up does not need Kafka: the
producer is (re)connected in the background and `/readyz` answers 503 until it is.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from aiokafka import AIOKafkaProducer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.common.exposure import client_address
from services.common.logging import get_logger
from services.ingest import access, deletions, jsonparse, webhooks
from services.ingest import metrics as m
from services.ingest.brands import BrandMatcher
from services.ingest.config import IngestSettings
from services.ingest.dedupe import DedupeWindow
from services.ingest.faults import FAULTS, limit_aiohttp_logs
from services.ingest.http import (
    DEDUPE_KEY,
    INGESTOR_KEY,
    JSON_TYPES,
    NDJSON_TYPES,
    SETTINGS_KEY,
    error_response,
    ingest_body,
    read_body,
    unavailable,
)
from services.ingest.ingestor import KafkaUnavailable, MentionIngestor, load_matcher
from services.ingest.normalize import MentionError
from services.ingest.sources import build_connectors

log = get_logger("ingest")

LIMITER_KEY = web.AppKey("limiter", access.RateLimiter)
_DIAGNOSTIC_PATHS = {"/healthz", "/readyz", "/metrics"}


def _unauthenticated(request: web.Request, endpoint: str) -> web.Response | None:
    """The 401 for a request without a valid API token (closed by default), or None when it may go on."""
    settings = request.app[SETTINGS_KEY]
    if not settings.api_tokens and not settings.insecure_dev:
        m.AUTH_REJECTED.labels(endpoint, "not_configured").inc()
        return error_response(401, "no API token is configured (TRIAGE_API_TOKENS): every request is refused",
                              headers={"WWW-Authenticate": "Bearer"})
    if settings.api_tokens:
        tokens = [t.get_secret_value() for t in settings.api_tokens]
        if not access.bearer_ok(request.headers.get("Authorization"), tokens):
            reason = "missing" if "Authorization" not in request.headers else "invalid"
            m.AUTH_REJECTED.labels(endpoint, reason).inc()
            return error_response(401, "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"})
    return None


async def post_mentions(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS_KEY]
    if (refused := _unauthenticated(request, "/v1/mentions")) is not None:
        return refused
    ctype = request.content_type
    if ctype not in JSON_TYPES | NDJSON_TYPES:
        m.MENTIONS_REJECTED.labels("content_type").inc()
        return error_response(415, f"unsupported Content-Type {ctype!r}; send application/json or application/x-ndjson")
    body = await read_body(request, settings)
    if isinstance(body, web.Response):
        return body
    return await ingest_body(request, body, ctype)


async def post_deletions(request: web.Request) -> web.Response:
    """`POST /v1/deletions`: a post (source + external_id) or an author (source + handle or id) is deleted.

    Authenticated like /v1/mentions; all or nothing (422 with the field and reason of each bad item);
    202 {"deleted": [keys]} once Kafka acknowledged every MentionDeleted."""
    settings = request.app[SETTINGS_KEY]
    if (refused := _unauthenticated(request, "/v1/deletions")) is not None:
        return refused
    if request.content_type not in JSON_TYPES:
        return error_response(415, f"unsupported Content-Type {request.content_type!r}; send application/json")
    body = await read_body(request, settings)
    if isinstance(body, web.Response):
        return body
    try:
        parsed = jsonparse.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return error_response(400, "body is not valid UTF-8 JSON", [{"field": "$", "reason": "malformed"}])
    items = parsed if isinstance(parsed, list) else [parsed]
    if not items:
        return error_response(400, "no deletions in the body")
    if len(items) > settings.max_batch:
        return error_response(413, f"{len(items)} deletions exceed the batch limit of {settings.max_batch}")
    built, errors = [], []
    for i, obj in enumerate(items):
        try:
            built.append(deletions.from_api(obj, line=i + 1 if isinstance(parsed, list) else None))
        except MentionError as exc:
            errors.append(exc.as_dict())
    if errors:
        return error_response(422, f"{len(errors)} invalid deletion(s); first: {errors[0]['field']}: "
                                   f"{errors[0]['reason']}", errors)
    try:
        keys = await request.app[INGESTOR_KEY].produce_deletions(built)
    except KafkaUnavailable as exc:
        log.warning("produce_failed", endpoint="/v1/deletions", detail=str(exc)[:200], outcome=exc.outcome)
        return unavailable(settings, exc)
    return web.json_response({"deleted": keys}, status=202)


async def healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    ingestor = request.app[INGESTOR_KEY]
    if not ingestor.kafka_up.is_set():
        return error_response(503, "Kafka unreachable (ingest reconnects on its own)")
    try:
        await asyncio.wait_for(ingestor.producer.client.fetch_all_metadata(), timeout=3)
    except Exception as exc:
        ingestor.mark_down()
        return error_response(503, f"Kafka unreachable: {type(exc).__name__}")
    return web.json_response({"status": "ready"})


async def metrics_page(request: web.Request) -> web.Response:
    dedupe = request.app[DEDUPE_KEY]
    m.DEDUPE_ENTRIES.set(dedupe.prune())  # expiry shows without traffic
    m.DEDUPE_BYTES.set(dedupe.size_bytes())
    resp = web.Response(body=generate_latest())
    resp.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    return resp


def _endpoint(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource else "other"


@web.middleware
async def count_requests(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        m.HTTP_REQUESTS.labels(_endpoint(request) if exc.status != 404 else "other", str(exc.status)).inc()
        raise
    except Exception as exc:
        # Whatever slipped through is a counted 500 with a JSON body, logged once per cause (rate-limited,
        # one traceback per cause), never a traceback per request nor a dropped connection.
        FAULTS.report(_endpoint(request), exc)
        m.HTTP_REQUESTS.labels(_endpoint(request), "500").inc()
        return error_response(500, "internal error (logged); the request was not accepted")
    m.HTTP_REQUESTS.labels(_endpoint(request), str(response.status)).inc()
    return response


def _principal(request: web.Request) -> str | None:
    """The API token a /v1/mentions or /v1/deletions request authenticated with (its digest), None for any other."""
    settings = request.app[SETTINGS_KEY]
    if request.path not in ("/v1/mentions", "/v1/deletions") or not settings.api_tokens:
        return None
    return access.principal(request.headers.get("Authorization"), [t.get_secret_value() for t in settings.api_tokens])


@web.middleware
async def rate_limit(request: web.Request, handler: Any) -> web.StreamResponse:
    limiter = request.app[LIMITER_KEY]
    if limiter.enabled and request.method == "POST" and request.path not in _DIAGNOSTIC_PATHS:
        # Authenticate first, then limit who it is; unauthenticated requests share their address's bucket.
        settings = request.app[SETTINGS_KEY]
        address = client_address(request.remote, request.headers.get("X-Forwarded-For"), settings.trusted_proxies)
        key = access.client_key(_principal(request), address)
        wait = limiter.acquire(key)
        if wait > 0:
            m.RATE_LIMITED.labels(_endpoint(request)).inc()
            return error_response(429, "too many requests from this client",
                                  headers={"Retry-After": access.retry_after(wait)})
    return await handler(request)


def build_app(settings: IngestSettings, producer: AIOKafkaProducer | None = None,
              matcher: BrandMatcher | None = None) -> web.Application:
    limit_aiohttp_logs()
    app = web.Application(client_max_size=settings.max_body_bytes + 1024, middlewares=[count_requests, rate_limit])
    app[SETTINGS_KEY] = settings
    dedupe = DedupeWindow(settings.dedupe_window_seconds, settings.dedupe_max_entries)
    app[DEDUPE_KEY] = dedupe
    app[LIMITER_KEY] = access.RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst)
    ingestor = MentionIngestor(producer, settings, dedupe, matcher if matcher is not None else load_matcher(settings))
    app[INGESTOR_KEY] = ingestor

    async def lifecycle(app: web.Application) -> Any:
        await ingestor.connect()
        connectors = build_connectors(settings, ingestor)
        tasks = [asyncio.create_task(c.run(), name=f"connector-{c.name}") for c in connectors]
        log.info("ingest_started", kafka=settings.kafka_bootstrap, brands=len(ingestor.matcher.brands),
                 connectors=",".join(c.name for c in connectors) or "none")
        yield
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await ingestor.close()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_post("/v1/mentions", post_mentions)
    app.router.add_post("/v1/deletions", post_deletions)
    webhooks.add_routes(app)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_page)
    return app

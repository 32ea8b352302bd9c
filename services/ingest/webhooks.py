"""Signed push webhooks: X Account Activity, Meta Graph (Facebook/Instagram) and a generic signed webhook.

Routes:
    GET  /webhooks/x?crc_token=T          X CRC challenge -> {"response_token": "sha256=..."}
    POST /webhooks/x                      x-twitter-webhooks-signature
    GET  /webhooks/meta?hub.mode=subscribe&hub.verify_token=V&hub.challenge=C   -> C
    POST /webhooks/meta                   X-Hub-Signature-256
    POST /webhooks/generic                X-Triage-Timestamp + X-Triage-Signature (body as /v1/mentions)

Endpoints that answer with something derived from what the caller sent are the X CRC (an HMAC of
the token: only X's token alphabet is signed, since the same HMAC signs deliveries) and Meta's
`hub.challenge` echo (only after the verify token matched, and only a short token, never markup).

The signature is checked on the exact bytes received, before any parsing; an
unsigned or wrongly signed request gets 401, is counted, and nothing of it is
produced. A signed platform delivery is answered 200 once Kafka acknowledged
its mentions; items that fail validation go to mentions.dlq with the reason
(the platform cannot fix them, so asking it to retry would only loop), and
Kafka trouble gets 503 + Retry-After so the platform redelivers.
"""

from __future__ import annotations

import hmac
import json
import re
import time
from collections.abc import Callable, Iterable
from typing import Any

from aiohttp import web

from services.common.logging import get_logger
from services.ingest import deletions, jsonparse
from services.ingest import metrics as m
from services.ingest import signatures as sig
from services.ingest.adapters import Candidate, PayloadError, meta_webhook, x_account_activity
from services.ingest.http import (
    INGESTOR_KEY,
    JSON_TYPES,
    NDJSON_TYPES,
    SETTINGS_KEY,
    accepted_response,
    error_response,
    ingest_body,
    read_body,
    unavailable,
)
from services.ingest.ingestor import KafkaUnavailable

log = get_logger("ingest.webhooks")

REPLAY_GUARD_KEY = web.AppKey("replay_guard", sig.ReplayGuard)
META_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{1,128}")


def _reject(endpoint: str, reason: str) -> web.Response:
    m.AUTH_REJECTED.labels(endpoint, reason).inc()
    log.debug("webhook_rejected", endpoint=endpoint, reason=reason)  # counted; a flood must not flood logs
    return error_response(401, f"signature {reason}")


async def x_crc(request: web.Request) -> web.Response:
    secret = request.app[SETTINGS_KEY].x_consumer_secret.get_secret_value()
    token = request.query.get("crc_token", "")
    if not secret:
        return _reject("/webhooks/x", "not_configured")
    if not sig.is_x_crc_token(token):
        # Never sign what does not look like X's token: the answer would sign a forged delivery body.
        m.AUTH_REJECTED.labels("/webhooks/x", "bad_crc_token").inc()
        return error_response(400, f"crc_token must be 1-{sig.X_CRC_TOKEN_MAX_CHARS} characters of "
                                   "A-Z a-z 0-9 - _ + / =", [{"field": "crc_token", "reason": "invalid"}])
    return web.json_response({"response_token": sig.x_crc_response_token(secret, token)})


async def x_events(request: web.Request) -> web.Response:
    secret = request.app[SETTINGS_KEY].x_consumer_secret.get_secret_value()
    return await _platform_delivery(
        request, "/webhooks/x", "x",
        lambda body: sig.verify_x_signature(secret, body, request.headers.get("x-twitter-webhooks-signature")),
        "x-twitter-webhooks-signature" in request.headers, x_account_activity, deletions.x_deletions,
    )


async def meta_verify(request: web.Request) -> web.Response:
    expected = request.app[SETTINGS_KEY].meta_verify_token.get_secret_value()
    q = request.query
    if q.get("hub.mode") != "subscribe" or not q.get("hub.challenge"):
        return error_response(400, "expected hub.mode=subscribe with hub.challenge")
    if not META_CHALLENGE.fullmatch(q["hub.challenge"]):
        # Meta's challenge is a number; echoing anything else would reflect attacker text from our origin.
        return error_response(400, "hub.challenge must be 1-128 characters of A-Z a-z 0-9 - _")
    given = q.get("hub.verify_token", "")
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        return _reject("/webhooks/meta", "invalid_verify_token")
    return web.Response(text=q["hub.challenge"], content_type="text/plain")


async def meta_events(request: web.Request) -> web.Response:
    secret = request.app[SETTINGS_KEY].meta_app_secret.get_secret_value()
    return await _platform_delivery(
        request, "/webhooks/meta", "meta",
        lambda body: sig.verify_meta_signature(secret, body, request.headers.get("X-Hub-Signature-256")),
        "X-Hub-Signature-256" in request.headers, meta_webhook, deletions.meta_deletions,
    )


async def _platform_delivery(request: web.Request, endpoint: str, label: str, verify: Callable[[bytes], bool],
                             has_header: bool, adapt: Callable[[Any], Iterable[Candidate]],
                             deleted: Callable[[Any], list[Any]]) -> web.Response:
    settings = request.app[SETTINGS_KEY]
    ingestor = request.app[INGESTOR_KEY]
    body = await read_body(request, settings)
    if isinstance(body, web.Response):
        return body
    if not verify(body):
        return _reject(endpoint, "invalid" if has_header else "missing")
    try:
        payload = jsonparse.loads(body.decode("utf-8"), per_item=True)
        removals = deleted(payload)  # signed like the posts; produced before them (a delivery never mixes
        candidates = list(adapt(payload))  # a post with its own deletion, and a deletion first drops less)
    except (UnicodeDecodeError, json.JSONDecodeError):
        m.WEBHOOK_EVENTS.labels(label, "malformed").inc()
        return error_response(400, "body is not valid UTF-8 JSON", [{"field": "$", "reason": "malformed"}])
    except jsonparse.JSONLimitError as exc:
        m.WEBHOOK_EVENTS.labels(label, "malformed").inc()
        return error_response(400, f"{exc.field}: {exc.reason}", [{"field": exc.field, "reason": exc.reason}])
    except PayloadError as exc:
        m.WEBHOOK_EVENTS.labels(label, "unknown_shape").inc()
        return error_response(422, str(exc))
    if len(candidates) > settings.max_batch:
        return error_response(413, f"{len(candidates)} items exceed the batch limit of {settings.max_batch}")
    mentions, failures = ingestor.build(candidates)
    dead = [(c.raw, f"{label} webhook item invalid: {e.field}: {e.reason}") for c, e in failures]
    try:
        deleted_keys = await ingestor.produce_deletions(removals)
        accepted, duplicates = await ingestor.produce(mentions, dead)
    except KafkaUnavailable as exc:
        log.warning("produce_failed", endpoint=endpoint, detail=str(exc)[:200], outcome=exc.outcome)
        return unavailable(settings, exc)
    m.WEBHOOK_EVENTS.labels(label, "accepted").inc(len(accepted))
    m.WEBHOOK_EVENTS.labels(label, "duplicate").inc(len(duplicates))
    m.WEBHOOK_EVENTS.labels(label, "dead_lettered").inc(len(dead))
    m.WEBHOOK_EVENTS.labels(label, "deleted").inc(len(deleted_keys))
    extra = {"deleted": deleted_keys} if deleted_keys else {}
    return accepted_response(accepted, duplicates, status=200, dead_lettered=len(dead), **extra)


async def generic_events(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS_KEY]
    body = await read_body(request, settings)
    if isinstance(body, web.Response):
        return body
    now = time.time()
    guard = request.app[REPLAY_GUARD_KEY]
    problem = sig.check_generic_signature(
        settings.webhook_secret.get_secret_value(), body, request.headers.get("X-Triage-Timestamp"),
        request.headers.get("X-Triage-Signature"), settings.webhook_tolerance_seconds, guard, now=now,
    )
    if problem:
        return _reject("/webhooks/generic", problem)
    ctype = request.content_type if request.content_type in JSON_TYPES | NDJSON_TYPES else "application/json"
    response = await ingest_body(request, body, ctype, default_source="webhook")
    if response.status == 202:
        # Only a delivery that went through is remembered: a retry after a 503 must still pass.
        guard.remember(sig.generic_signature(settings.webhook_secret.get_secret_value(),
                                             request.headers["X-Triage-Timestamp"], body), now)
    return response


def add_routes(app: web.Application) -> None:
    app[REPLAY_GUARD_KEY] = sig.ReplayGuard(app[SETTINGS_KEY].webhook_tolerance_seconds)
    app.router.add_get("/webhooks/x", x_crc)
    app.router.add_post("/webhooks/x", x_events)
    app.router.add_get("/webhooks/meta", meta_verify)
    app.router.add_post("/webhooks/meta", meta_events)
    app.router.add_post("/webhooks/generic", generic_events)

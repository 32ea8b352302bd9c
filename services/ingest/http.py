"""HTTP helpers shared by the ingest API (`app.py`) and the webhooks (`webhooks.py`).

Content types, the app keys, JSON error answers, reading a body within the limits, and the
/v1/mentions contract (`ingest_body`) that the generic webhook shares.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from services.common.logging import get_logger
from services.common.metrics import MESSAGES_IN
from services.ingest import metrics as m
from services.ingest.adapters import Candidate
from services.ingest.config import IngestSettings
from services.ingest.dedupe import DedupeWindow
from services.ingest.ingestor import NOT_ACCEPTED, UNKNOWN, KafkaUnavailable, MentionIngestor
from services.ingest.normalize import MentionError, parse_body

log = get_logger("ingest")

JSON_TYPES = {"application/json"}
NDJSON_TYPES = {"application/x-ndjson", "application/jsonl", "application/ndjson", "application/json-seq"}

SETTINGS_KEY = web.AppKey("settings", IngestSettings)
DEDUPE_KEY = web.AppKey("dedupe", DedupeWindow)
INGESTOR_KEY = web.AppKey("ingestor", MentionIngestor)


def error_response(status: int, reason: str, errors: list[dict[str, Any]] | None = None,
                   headers: dict[str, str] | None = None, **extra: Any) -> web.Response:
    """A JSON error answer: {"error": reason, "errors": [...], **extra}."""
    body: dict[str, Any] = {"error": reason}
    if errors:
        body["errors"] = errors
    body.update(extra)
    return web.json_response(body, status=status, headers=headers)


def unavailable(settings: IngestSettings, exc: KafkaUnavailable | None = None) -> web.Response:
    """503 + Retry-After that says what is known: nothing accepted, or an outcome that is unknown (a late
    ack: some or all of the mentions may be stored). A retry of the same request is safe either way."""
    headers = {"Retry-After": str(settings.retry_after_seconds)}
    if exc is not None and exc.outcome == UNKNOWN:
        return error_response(
            503, "Kafka did not acknowledge in time: the outcome is unknown, some or all of these mentions may "
                 "have been stored. Retrying the same request is safe (it is deduplicated): mentions stored "
                 "meanwhile come back under \"duplicates\", which means already stored, not rejected",
            headers=headers, outcome=UNKNOWN, retry_safe=True)
    return error_response(503, "Kafka is unavailable; nothing was accepted. Retry the same request later",
                          headers=headers, outcome=NOT_ACCEPTED, retry_safe=True)


def accepted_response(accepted: list[str], duplicates: list[str], status: int = 202,
                      **extra: Any) -> web.Response:
    """`accepted`: written now; `duplicates`: already stored by an earlier request (a redelivery, or an
    attempt answered 503 whose records landed late), not rejected; `stored`: both, i.e. every mention
    of this request that is on mentions.raw."""
    return web.json_response({"accepted": accepted, "duplicates": duplicates,
                              "stored": len(accepted) + len(duplicates), **extra}, status=status)


async def read_body(request: web.Request, settings: IngestSettings) -> bytes | web.Response:
    """The request body within the size and time limits, or the 4xx answer to send."""
    if request.content_length is not None and request.content_length > settings.max_body_bytes:
        m.MENTIONS_REJECTED.labels("too_large").inc()
        return error_response(
            413, f"body of {request.content_length} bytes exceeds the limit of {settings.max_body_bytes}")
    async def read_all() -> bytes:
        # StreamReader.read(n) returns what has arrived so far, not n bytes: read until EOF.
        chunks, size = [], 0
        while size <= settings.max_body_bytes:
            chunk = await request.content.read(min(256 * 1024, settings.max_body_bytes + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)

    try:
        body = await asyncio.wait_for(read_all(), timeout=settings.request_timeout_seconds)
    except TimeoutError:
        m.MENTIONS_REJECTED.labels("timeout").inc()
        return error_response(408, f"request body not received within {settings.request_timeout_seconds:.0f}s")
    except (ConnectionError, web.HTTPException, ValueError, RequestPayloadError, HttpProcessingError) as exc:
        # A body that does not decode as its Content-Encoding says (gzip, deflate, br), a broken chunk...
        m.MENTIONS_REJECTED.labels("malformed").inc()
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        if lines and lines[0].endswith("message:"):
            lines = lines[1:]  # aiohttp's "400, message:" prefix; the cause is the next line (no body bytes)
        detail = (lines[0] if lines else type(exc).__name__)[:120]
        return error_response(400, "request body could not be read", [{"field": "$", "reason": detail}])
    if len(body) > settings.max_body_bytes:
        m.MENTIONS_REJECTED.labels("too_large").inc()
        return error_response(413, f"body exceeds the limit of {settings.max_body_bytes} bytes")
    return body


async def ingest_body(request: web.Request, body: bytes, ctype: str, default_source: str | None = None,
                      ) -> web.Response:
    """Parse, validate (all or nothing), produce: the /v1/mentions contract, shared by the generic webhook."""
    settings = request.app[SETTINGS_KEY]
    ingestor = request.app[INGESTOR_KEY]
    try:
        items = parse_body(body, ctype if ctype in JSON_TYPES or ctype == "application/json-seq"
                           else "application/x-ndjson")
    except MentionError as exc:
        m.MENTIONS_REJECTED.labels("malformed").inc()
        return error_response(400, str(exc), [exc.as_dict()])
    if not items:
        m.MENTIONS_REJECTED.labels("empty").inc()
        return error_response(400, "no mentions in the body")
    if len(items) > settings.max_batch:
        m.MENTIONS_REJECTED.labels("too_large").inc()
        return error_response(413, f"{len(items)} mentions exceed the batch limit of {settings.max_batch}")

    candidates = []
    for value, raw, _line in items:
        if default_source and isinstance(value, dict) and "source" not in value:
            value = {**value, "source": default_source}
        candidates.append(Candidate(value, raw))
    mentions, failures = ingestor.build(candidates)
    MESSAGES_IN.labels("ingest", "http").inc(len(items))
    if failures:
        # All or nothing: a batch with invalid items is rejected whole so the
        # client can fix and resend it without guessing what was kept.
        lines = {id(c): line for c, (_v, _r, line) in zip(candidates, items, strict=True)}
        errors = []
        for cand, err in failures:
            err.line = lines[id(cand)]
            errors.append(err.as_dict())
        m.MENTIONS_REJECTED.labels("invalid_field").inc(len(errors))
        first = errors[0]
        where = f"line {first['line']}: " if ctype in NDJSON_TYPES or len(items) > 1 else ""
        return error_response(
            422, f"{len(errors)} invalid mention(s); first: {where}{first['field']}: {first['reason']}", errors)
    for mn in mentions:
        if mn.text_truncated:
            m.MENTIONS_TRUNCATED.inc()
    try:
        accepted, duplicates = await ingestor.produce(mentions)
    except KafkaUnavailable as exc:
        log.warning("produce_failed", detail=str(exc)[:200], mentions=len(mentions), outcome=exc.outcome)
        return unavailable(settings, exc)
    return accepted_response(accepted, duplicates)

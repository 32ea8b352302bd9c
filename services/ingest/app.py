"""The ingest HTTP API: validate, normalise, de-duplicate and durably produce mentions.

A 202 is only ever sent after Kafka acknowledged every accepted mention
(idempotent producer, acks=all); if Kafka cannot take them, the answer is 503
with Retry-After and nothing is marked as seen, so the client's retry is safe.

Every source (this API, the signed webhooks in `webhooks.py`, the stream and
poll connectors) goes through `MentionIngestor`: one path into Kafka, one
dedupe window, one brand matcher. Start-up does not need Kafka: the producer
is (re)connected in the background and `/readyz` answers 503 until it is.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

from aiohttp import web
from aiokafka import AIOKafkaProducer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.common import codec, topics
from services.common.deadletter import dead_letter
from services.common.kafka import make_producer
from services.common.logging import get_logger
from services.common.metrics import MESSAGES_IN, MESSAGES_OUT
from services.ingest import access
from services.ingest import metrics as m
from services.ingest.adapters import Candidate
from services.ingest.brands import DEFAULT_BRANDS_FILE, BrandMatcher, load_brands
from services.ingest.config import IngestSettings
from services.ingest.dedupe import DedupeWindow
from services.ingest.normalize import Limits, MentionError, dedupe_key, normalize, parse_body

log = get_logger("ingest")

JSON_TYPES = {"application/json"}
NDJSON_TYPES = {"application/x-ndjson", "application/jsonl", "application/ndjson", "application/json-seq"}

SETTINGS_KEY = web.AppKey("settings", IngestSettings)
DEDUPE_KEY = web.AppKey("dedupe", DedupeWindow)
LIMITER_KEY = web.AppKey("limiter", access.RateLimiter)
_DIAGNOSTIC_PATHS = {"/healthz", "/readyz", "/metrics"}


class KafkaUnavailable(RuntimeError):
    """Kafka is down or did not acknowledge in time: nothing was accepted."""

    def __init__(self, reason: str, futures: list[asyncio.Future[Any]] | None = None):
        super().__init__(reason)
        self.futures = futures or []  # the send futures of the failed attempt (see send_records)


def _error(status: int, reason: str, errors: list[dict[str, Any]] | None = None,
           headers: dict[str, str] | None = None) -> web.Response:
    body: dict[str, Any] = {"error": reason}
    if errors:
        body["errors"] = errors
    return web.json_response(body, status=status, headers=headers)


class MentionIngestor:
    """The request-independent core: turns validated mentions into acknowledged Kafka records."""

    def __init__(self, producer: AIOKafkaProducer | None, settings: IngestSettings, dedupe: DedupeWindow,
                 matcher: BrandMatcher | None = None):
        # Created by `connect()` (aiokafka needs a running loop) unless a started one is injected.
        self.producer: AIOKafkaProducer = producer  # type: ignore[assignment]
        self._owns_producer = producer is None
        self.settings = settings
        self.dedupe = dedupe
        self.matcher = matcher or BrandMatcher([])
        self.limits = Limits(settings.max_text_chars, settings.max_raw_payload_bytes, settings.future_skew_seconds)
        self.kafka_up = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._unsettled: set[str] = set()  # dedupe keys whose failed attempt may still be delivered
        self._settling: set[asyncio.Task[None]] = set()
        self._started = producer is not None

    # -- Kafka link ---------------------------------------------------------------------------------

    async def connect(self) -> None:
        """Start the background task that (re)connects to Kafka; returns at once."""
        if self._started:
            self._mark(True)
        else:
            # One attempt now so a healthy start is ready at once; a failure is retried in the background.
            try:
                await asyncio.wait_for(self._start_producer(), timeout=self.settings.produce_timeout_seconds)
            except Exception as exc:
                self._mark(False)
                log.warning("kafka_unreachable_at_start", error=type(exc).__name__)
        self._supervisor = asyncio.create_task(self._supervise(), name="ingest-kafka-supervisor")

    async def close(self) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
            try:
                await self._supervisor
            except asyncio.CancelledError:
                pass
        if self._started and self._owns_producer:
            try:
                await asyncio.wait_for(self.producer.stop(), timeout=10)
                await asyncio.gather(*self._settling, return_exceptions=True)
            except Exception as exc:
                log.warning("producer_stop_failed", error=type(exc).__name__)

    def _mark(self, up: bool) -> None:
        if up and not self.kafka_up.is_set():
            log.info("kafka_up", kafka=self.settings.kafka_bootstrap)
        elif not up and self.kafka_up.is_set():
            log.warning("kafka_down", kafka=self.settings.kafka_bootstrap)
        (self.kafka_up.set if up else self.kafka_up.clear)()
        m.KAFKA_UP.set(1 if up else 0)

    async def _supervise(self) -> None:
        interval = self.settings.kafka_probe_interval_seconds
        backoff = interval
        while True:
            try:
                if not self._started:
                    await self._start_producer()
                elif not self.kafka_up.is_set():
                    await asyncio.wait_for(self.producer.client.fetch_all_metadata(), timeout=3)
                    self._mark(True)
                backoff = interval
                await asyncio.sleep(interval)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._mark(False)
                log.info("kafka_unreachable", error=type(exc).__name__, retry_in=round(backoff, 1))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 15.0)

    async def _start_producer(self) -> None:
        producer = make_producer(self.settings.kafka_bootstrap, f"{self.settings.kafka_client_id_prefix}-ingest")
        try:
            await producer.start()
        except BaseException:
            await asyncio.wait_for(producer.stop(), timeout=5)
            raise
        self.producer, self._started = producer, True
        log.info("ingest_kafka_connected", kafka=self.settings.kafka_bootstrap)
        self._mark(True)

    async def send_records(self, records: list[tuple[str, bytes, bytes | None]]) -> None:
        """Send and wait for every ack; raises KafkaUnavailable (fast when Kafka is known to be down).

        On failure the exception carries the send futures: records already handed to the producer
        may still be delivered after the timeout (aiokafka keeps retrying them), so the caller must
        not treat them as lost, nor as delivered, until those futures settle.
        """
        if not records:
            return
        if not self.kafka_up.is_set():
            raise KafkaUnavailable("Kafka is unreachable")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.produce_timeout_seconds
        futures: list[asyncio.Future[Any]] = []
        try:
            for topic, value, key in records:
                # A send that is cancelled here (waiting for metadata or buffer space) was never enqueued.
                futures.append(await asyncio.wait_for(self.producer.send(topic, value=value, key=key),
                                                      timeout=max(0.01, deadline - loop.time())))
            # asyncio.wait, not wait_for(gather): a timeout must not cancel the futures, whose outcome we need.
            _done, pending = await asyncio.wait(futures, timeout=max(0.0, deadline - loop.time()))
            if pending:
                raise TimeoutError(f"{len(pending)} of {len(records)} records not acknowledged in time")
            for fut in futures:
                if fut.exception() is not None:
                    raise fut.exception()  # type: ignore[misc]
        except Exception as exc:
            self._mark(False)
            raise KafkaUnavailable(f"{type(exc).__name__}: {str(exc)[:200]}", futures) from exc

    def _settle_later(self, keys: list[str], futures: list[asyncio.Future[Any]]) -> None:
        """After a failed attempt: a key is committed if its record was delivered after all, else released."""
        unsettled: dict[str, asyncio.Future[Any]] = {}
        for i, key in enumerate(keys):
            fut = futures[i] if i < len(futures) else None
            if fut is None or (fut.done() and (fut.cancelled() or fut.exception() is not None)):
                self.dedupe.release(key)  # never enqueued, or failed: a retry must produce it
            elif fut.done():
                self.dedupe.commit(key)  # it is on Kafka: a retry is a duplicate
            else:
                unsettled[key] = fut
        if not unsettled:
            return
        self._unsettled.update(unsettled)

        async def settle() -> None:
            try:
                await asyncio.wait(list(unsettled.values()))
            finally:
                for key, fut in unsettled.items():
                    ok = fut.done() and not fut.cancelled() and fut.exception() is None
                    (self.dedupe.commit if ok else self.dedupe.release)(key)
                    self._unsettled.discard(key)

        task = asyncio.create_task(settle(), name="ingest-settle")
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    # -- the path every source takes ----------------------------------------------------------------

    def build(self, candidates: Iterable[Candidate], now: float | None = None,
              ) -> tuple[list[Any], list[tuple[Candidate, MentionError]]]:
        """Normalise and brand-tag candidates: (mentions, [(candidate, error)])."""
        now = time.time() if now is None else now
        mentions, errors = [], []
        for cand in candidates:
            try:
                mentions.append(self.tag(normalize(cand.obj, cand.raw, self.limits, now=now)))
            except MentionError as exc:
                errors.append((cand, exc))
        return mentions, errors

    def tag(self, mention: Any) -> Any:
        """Adds the tracked brands found in the text to `mention.brands` (keeps the ones the sender gave)."""
        if self.matcher:
            found = self.matcher.match(mention.text).brands
            known = set(mention.brands)
            for brand in found:
                m.BRAND_MATCHES.labels(brand).inc()
                if brand not in known:
                    mention.brands.append(brand)
        return mention

    async def produce(self, mentions: list[Any],
                      dead_letters: list[tuple[bytes, str]] | None = None) -> tuple[list[str], list[str]]:
        """Produce new mentions (and DLQ records); returns (accepted ids, duplicate ids).

        Raises KafkaUnavailable when Kafka did not acknowledge; then nothing counts as seen.
        """
        fresh: list[Any] = []
        dups: list[str] = []
        keys: list[str] = []
        for mention in mentions:
            key = dedupe_key(mention)
            if key in self._unsettled:
                # An earlier attempt may still land: answering "duplicate" could lose it, producing again
                # could duplicate it. Ask for a retry until that attempt settles.
                for k in keys:
                    self.dedupe.release(k)
                raise KafkaUnavailable("an earlier attempt with this mention is still in flight")
            if self.dedupe.reserve(key):
                fresh.append(mention)
                keys.append(key)
            else:
                dups.append(mention.mention_id)
                m.MENTIONS_DUPLICATE.labels(codec.pb.Source.Name(mention.source)).inc()
        records: list[tuple[str, bytes, bytes | None]] = [
            (topics.MENTIONS_RAW, codec.encode(mn), mn.mention_id.encode()) for mn in fresh
        ]
        dlq = [dead_letter(raw, "ingest", reason, service="ingest") for raw, reason in dead_letters or []]
        records += [(topics.MENTIONS_DLQ, codec.encode(d), None) for d in dlq]
        try:
            started = time.perf_counter()
            await self.send_records(records)
            m.PRODUCE_SECONDS.observe(time.perf_counter() - started)
        except KafkaUnavailable as exc:
            self._settle_later(keys, exc.futures[: len(keys)])
            raise
        except BaseException:
            for key in keys:
                self.dedupe.release(key)
            raise
        for key in keys:
            self.dedupe.commit(key)
        m.DEDUPE_ENTRIES.set(len(self.dedupe))
        for mn in fresh:
            m.MENTIONS_ACCEPTED.labels(codec.pb.Source.Name(mn.source)).inc()
        if fresh:
            MESSAGES_OUT.labels("ingest", topics.MENTIONS_RAW).inc(len(fresh))
        if dlq:
            MESSAGES_OUT.labels("ingest", topics.MENTIONS_DLQ).inc(len(dlq))
        return [mn.mention_id for mn in fresh], dups


INGESTOR_KEY = web.AppKey("ingestor", MentionIngestor)


def unavailable(settings: IngestSettings) -> web.Response:
    return _error(503, "Kafka did not acknowledge the mentions; nothing was accepted, retry later",
                  headers={"Retry-After": str(settings.retry_after_seconds)})


async def read_body(request: web.Request, settings: IngestSettings) -> bytes | web.Response:
    """The request body within the size and time limits, or the 4xx answer to send."""
    if request.content_length is not None and request.content_length > settings.max_body_bytes:
        m.MENTIONS_REJECTED.labels("too_large").inc()
        return _error(413, f"body of {request.content_length} bytes exceeds the limit of {settings.max_body_bytes}")
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
        return _error(408, f"request body not received within {settings.request_timeout_seconds:.0f}s")
    except (ConnectionError, web.HTTPException, ValueError):
        return _error(400, "request body could not be read")
    if len(body) > settings.max_body_bytes:
        m.MENTIONS_REJECTED.labels("too_large").inc()
        return _error(413, f"body exceeds the limit of {settings.max_body_bytes} bytes")
    return body


async def ingest_body(request: web.Request, body: bytes, ctype: str, default_source: str | None = None,
                      ) -> web.Response:
    """Parse, validate (all or nothing), produce: the /v1/mentions contract, shared by the generic webhook."""
    settings = request.app[SETTINGS_KEY]
    ingestor = request.app[INGESTOR_KEY]
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
        return _error(422, f"{len(errors)} invalid mention(s); first: {where}{first['field']}: {first['reason']}",
                      errors)
    for mn in mentions:
        if mn.text_truncated:
            m.MENTIONS_TRUNCATED.inc()
    try:
        accepted, duplicates = await ingestor.produce(mentions)
    except KafkaUnavailable as exc:
        log.warning("produce_failed", detail=str(exc)[:200], mentions=len(mentions))
        return unavailable(settings)
    return web.json_response({"accepted": accepted, "duplicates": duplicates}, status=202)


async def post_mentions(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS_KEY]
    if settings.api_tokens:
        tokens = [t.get_secret_value() for t in settings.api_tokens]
        if not access.bearer_ok(request.headers.get("Authorization"), tokens):
            reason = "missing" if "Authorization" not in request.headers else "invalid"
            m.AUTH_REJECTED.labels("/v1/mentions", reason).inc()
            return _error(401, "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"})
    ctype = request.content_type
    if ctype not in JSON_TYPES | NDJSON_TYPES:
        m.MENTIONS_REJECTED.labels("content_type").inc()
        return _error(415, f"unsupported Content-Type {ctype!r}; send application/json or application/x-ndjson")
    body = await read_body(request, settings)
    if isinstance(body, web.Response):
        return body
    return await ingest_body(request, body, ctype)


async def healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    ingestor = request.app[INGESTOR_KEY]
    if not ingestor.kafka_up.is_set():
        return _error(503, "Kafka unreachable (ingest reconnects on its own)")
    try:
        await asyncio.wait_for(ingestor.producer.client.fetch_all_metadata(), timeout=3)
    except Exception as exc:
        ingestor._mark(False)
        return _error(503, f"Kafka unreachable: {type(exc).__name__}")
    return web.json_response({"status": "ready"})


async def metrics_page(_: web.Request) -> web.Response:
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
        # Whatever slipped through is still one log line and a counted 500, never a dropped connection.
        log.error("request_failed", endpoint=_endpoint(request), error=type(exc).__name__)
        m.HTTP_REQUESTS.labels(_endpoint(request), "500").inc()
        raise
    m.HTTP_REQUESTS.labels(_endpoint(request), str(response.status)).inc()
    return response


@web.middleware
async def rate_limit(request: web.Request, handler: Any) -> web.StreamResponse:
    limiter = request.app[LIMITER_KEY]
    if limiter.enabled and request.method == "POST" and request.path not in _DIAGNOSTIC_PATHS:
        key = access.client_key(request.headers.get("Authorization"), request.remote)
        wait = limiter.acquire(key)
        if wait > 0:
            m.RATE_LIMITED.labels(_endpoint(request)).inc()
            return _error(429, "too many requests from this client",
                          headers={"Retry-After": access.retry_after(wait)})
    return await handler(request)


def load_matcher(settings: IngestSettings) -> BrandMatcher:
    return BrandMatcher(load_brands(settings.brands_file or DEFAULT_BRANDS_FILE))


def build_app(settings: IngestSettings, producer: AIOKafkaProducer | None = None,
              matcher: BrandMatcher | None = None) -> web.Application:
    from services.ingest import webhooks  # the webhook handlers use this module's helpers

    app = web.Application(client_max_size=settings.max_body_bytes + 1024, middlewares=[count_requests, rate_limit])
    app[SETTINGS_KEY] = settings
    dedupe = DedupeWindow(settings.dedupe_window_seconds, settings.dedupe_max_entries)
    app[DEDUPE_KEY] = dedupe
    app[LIMITER_KEY] = access.RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst)
    ingestor = MentionIngestor(producer, settings, dedupe, matcher if matcher is not None else load_matcher(settings))
    app[INGESTOR_KEY] = ingestor

    async def lifecycle(app: web.Application) -> Any:
        from services.ingest.sources import build_connectors

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
    webhooks.add_routes(app)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_page)
    return app

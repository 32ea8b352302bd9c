"""The console's aiohttp app: HTML pages and a JSON API over the view model, and the actions.

One consumer (its own group) reads `incidents`, the queue topics, `pages`, `responses`,
`feedback`, `silences`, `claims` and `triage.decisions` from the beginning on every start and folds them into a
ConsoleView; there is no other store. Actions are published with the idempotent producer and
folded in at once, so the page that follows already shows them (the consumed copy later changes
nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from google.protobuf.message import Message
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.common import codec, topics
from services.common.alerting.silences import Silence
from services.common.exposure import client_address
from services.common.kafka import make_producer
from services.common.logging import get_logger
from services.common.metrics import MESSAGES_FAILED, MESSAGES_IN, MESSAGES_OUT
from services.console import actions, render, slack_actions
from services.console import metrics as cm
from services.console.access import ANONYMOUS, Access, Identity, LoginThrottle
from services.console.config import ConsoleSettings
from services.console.csrf import CsrfGuard, cookie_name
from services.console.presence import incident_target, item_target, valid_targets
from services.console.replies import ReplyBook
from services.console.views import (
    SILENCE_STATES,
    ConsoleView,
    IncidentGroup,
    QueueFilter,
    QueueItem,
    facet_counts,
    filter_items,
    group_by_incident,
    page_number,
    paginate,
    silences_overview,
)

log = get_logger("console")
STATIC_DIR = Path(__file__).resolve().parent / "static"
TOPIC_PATTERN = (r"^(" + "|".join(t.replace(".", r"\.") for t in (topics.INCIDENTS, topics.PAGES, topics.RESPONSES,
                                                                     topics.FEEDBACK, topics.SILENCES,
                                                                     topics.CLAIMS, topics.PRESENCE,
                                                                     topics.TRIAGE_DECISIONS))
                 + "|" + topics.QUEUE_PREFIX.replace(".", r"\.") + r".+)$")

class _ReadFromBeginning(ConsumerRebalanceListener):  # type: ignore[misc]
    """The views are rebuilt on every start: a partition is read from offset 0 the first time it is assigned,
    up to at least the end offset it had then (`targets`): until every partition got there the views are
    still loading, and the console is not ready."""

    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self.consumer = consumer
        self.seen: set[TopicPartition] = set()
        self.targets: dict[TopicPartition, int] = {}

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        return None

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        new = [tp for tp in assigned if tp not in self.seen]
        self.seen.update(new)
        if new:
            await self.consumer.seek_to_beginning(*new)
            self.targets.update(await self.consumer.end_offsets(new))

    async def caught_up(self) -> bool:
        """True once every partition assigned so far was read up to the end offset it had when assigned."""
        if not self.targets:
            return False
        for tp, end in self.targets.items():
            if tp in self.consumer.assignment() and await self.consumer.position(tp) < end:
                return False
        return True


class ConsoleService:
    def __init__(self, settings: ConsoleSettings, view: ConsoleView | None = None, consume: bool = True) -> None:
        self.settings = settings
        self.consume = consume  # False: serve a given view only (tests of the pages)
        self.view = view or ConsoleView(settings.console_claim_ttl_seconds)
        self.view.claims.ttl = settings.console_claim_ttl_seconds
        self.view.presence.expiry = settings.console_presence_expiry_seconds
        self.share_presence = consume  # publish heartbeats for the other replicas (False: one process alone)
        self._heartbeats: set[asyncio.Task[None]] = set()
        self.replies = ReplyBook.load(settings.console_replies_file)
        self.csrf = CsrfGuard(settings.console_csrf_secret.get_secret_value())
        self.access = Access(settings)
        self.login_throttle = LoginThrottle(settings.console_login_attempts_per_minute)
        self.cookie = cookie_name(settings.https())
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: Any = None
        self.loaded = False  # True once the views hold everything the topics held when the console started
        self._task: asyncio.Task[None] | None = None
        self._producer_lock = asyncio.Lock()
        self.action_lock = asyncio.Lock()

    async def start(self) -> None:
        if self.consume:
            self._task = asyncio.create_task(self._consume_forever())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        for task in list(self._heartbeats):
            task.cancel()
        if self.producer is not None:
            await self.producer.stop()

    async def _consume_forever(self) -> None:
        while True:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.settings.kafka_bootstrap, group_id=self.settings.console_group_id,
                client_id=f"{self.settings.kafka_client_id_prefix}-console", auto_offset_reset="earliest",
                enable_auto_commit=True, metadata_max_age_ms=5000, **self.settings.kafka_client_options())
            try:
                await consumer.start()
                rebuild = _ReadFromBeginning(consumer)
                consumer.subscribe(pattern=TOPIC_PATTERN, listener=rebuild)
                self.consumer = consumer
                log.info("console_consuming", group=self.settings.console_group_id)
                while True:
                    batch = await consumer.getmany(timeout_ms=500, max_records=2000)
                    for tp, records in batch.items():
                        for rec in records:
                            self._fold(tp.topic, rec.key, rec.value, rec.headers)
                    if not self.loaded and consumer.assignment() and await rebuild.caught_up():
                        self.loaded = True
                        log.info("console_views_loaded", partitions=len(rebuild.targets))
                    self._update_gauges()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("console_consumer_error", error=type(exc).__name__, detail=str(exc)[:200])
                await asyncio.sleep(2)
            finally:
                self.consumer = None
                with contextlib.suppress(Exception):
                    await consumer.stop()

    def _fold(self, topic: str, key: bytes | None, value: bytes | None, headers: Any = None) -> None:
        try:
            self.view.apply_record(topic, key, value, headers)
            MESSAGES_IN.labels("console", topic).inc()
        except Exception as exc:  # a bad record is counted and skipped; the view stays usable
            MESSAGES_FAILED.labels("console", "decode", type(exc).__name__).inc()

    def _update_gauges(self) -> None:
        for queue, n in self.view.open_counts().items():
            cm.OPEN_ITEMS.labels(queue).set(n)
        states: dict[str, int] = {"open": 0, "resolved": 0}
        for inc in self.view.incidents.values():
            states["open" if inc.is_open else "resolved"] += 1
        for state, n in states.items():
            cm.INCIDENTS.labels(state).set(n)
        for brand, (wrong, seen) in self.view.marked_wrong().items():
            if seen:
                cm.MARKED_WRONG_RATIO.labels(brand or "none").set(wrong / seen)
        cm.PRESENCE_TARGETS.set(len(self.view.presence))
        cm.TRIAGE_WAITING.set(len(self.view.triage_list(time.time())[0]))
        for brand, (wrong, seen) in self.view.pages_marked_wrong().items():
            if seen:
                cm.PAGES_MARKED_WRONG_RATIO.labels(brand or "none").set(wrong / seen)

    async def _producer(self) -> Any:
        async with self._producer_lock:
            if self.producer is None:
                producer = make_producer(self.settings.kafka_bootstrap,
                                         f"{self.settings.kafka_client_id_prefix}-console",
                                         **self.settings.kafka_client_options())
                await producer.start()
                self.producer = producer
        return self.producer

    async def publish(self, topic: str, key: str, msg: Message) -> None:
        producer = await self._producer()
        await asyncio.wait_for(producer.send_and_wait(topic, codec.encode(msg), key=key.encode()), 15)
        MESSAGES_OUT.labels("console", topic).inc()

    def heartbeat(self, who: Identity, targets: list[str]) -> None:
        """`who` is looking at `targets` now: folded here at once and published for the other replicas in the
        background (a page never waits for, or fails on, a heartbeat; the next one makes up for a lost one)."""
        if not who.name or not targets:
            return
        msg = self.view.presence.heartbeat(who.name, targets, time.time())
        self.view.presence.apply(msg)
        if not self.share_presence:
            return
        task = asyncio.create_task(self._send_heartbeat(msg))
        self._heartbeats.add(task)
        task.add_done_callback(self._heartbeats.discard)

    async def _send_heartbeat(self, msg: Any) -> None:
        try:
            await self.publish(topics.PRESENCE, msg.responder, msg)
        except Exception as exc:
            cm.PRESENCE_HEARTBEATS.labels("failed").inc()
            log.debug("console_presence_not_sent", error=type(exc).__name__)
        else:
            cm.PRESENCE_HEARTBEATS.labels("published").inc()

    async def publish_many(self, topic: str, records: list[tuple[str, Message]]) -> list[BaseException | None]:
        """Send every record, then wait for the acknowledgements together (not one round trip each): per
        record None when Kafka acknowledged it, else the error."""
        if not records:
            return []
        try:
            producer = await self._producer()
            futures = [await producer.send(topic, codec.encode(msg), key=key.encode()) for key, msg in records]
            results = await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), 30)
        except Exception as exc:
            return [exc] * len(records)
        out: list[BaseException | None] = [r if isinstance(r, BaseException) else None for r in results]
        MESSAGES_OUT.labels("console", topic).inc(sum(1 for r in out if r is None))
        return out


SERVICE = web.AppKey("console_service", ConsoleService)
NEW_SESSION = web.RequestKey("new_session", str)
IDENTITY = web.RequestKey("identity", Identity)
# Reachable without signing in: the sign-in page itself, probes, metrics and the script; and Slack's clicks,
# which Slack's request signature authenticates instead (slack_actions.py).
OPEN_PATHS = frozenset({"/login", "/healthz", "/readyz", "/metrics", "/static/console.js", slack_actions.PATH})


# ---- request plumbing ------------------------------------------------------------------------------------------
def _service(request: web.Request) -> ConsoleService:
    return request.app[SERVICE]


def _cookie_session(request: web.Request) -> str | None:
    """The session id of the request's cookie when this console signed it, else None."""
    svc = _service(request)
    return svc.csrf.unseal(request.cookies.get(svc.cookie))


def _client(request: web.Request) -> str:
    """The client's address (X-Forwarded-For believed only from TRIAGE_CONSOLE_TRUSTED_PROXIES)."""
    return client_address(request.remote, request.headers.get("X-Forwarded-For"),
                          _service(request).settings.console_trusted_proxies)


def _session(request: web.Request) -> str:
    existing = _cookie_session(request)
    if existing and 8 <= len(existing) <= 64:
        return existing
    session: str = request.get(NEW_SESSION) or CsrfGuard.new_session()
    request[NEW_SESSION] = session
    return session


def _ctx(request: web.Request) -> render.PageContext:
    svc = _service(request)
    queues = sorted(set(topics.DEFAULT_QUEUES) | set(svc.view.queues))
    who = request.get(IDENTITY, ANONYMOUS)
    return render.PageContext(csrf_token=svc.csrf.token(_session(request)),
                              poll_seconds=svc.settings.console_poll_seconds, now=time.time(), queues=queues,
                              user=who.name, can_act=who.can_act, presence=svc.view.presence)


def _viewer(request: web.Request) -> Identity:
    return request.get(IDENTITY, ANONYMOUS)


def _html(request: web.Request, body: str, status: int = 200) -> web.Response:
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")


async def _signed_in(request: web.Request) -> web.StreamResponse | None:
    """None when the request may go on; else the answer for someone who has not signed in."""
    svc = _service(request)
    who = svc.access.identify(_cookie_session(request), request.headers, request.remote)
    if who is not None:
        request[IDENTITY] = who
        return None
    if request.path in OPEN_PATHS:
        return None
    if request.path.startswith("/api/"):
        return web.json_response({"error": "sign in first (POST /login with a token)"}, status=401)
    if request.method == "GET":
        return _see_other(f"/login?next={quote(request.path_qs, safe='')}")
    raise actions.FormError(401, "sign in first")


@web.middleware
async def pages_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
    try:
        response = await _signed_in(request) or await handler(request)
    except actions.FormError as err:
        response = _html(request, render.error_page(err.status, err.message, _ctx(request)), err.status)
    except web.HTTPException as exc:
        if exc.status < 400 or request.path.startswith("/api/"):
            raise
        response = _html(request, render.error_page(exc.status, exc.text or exc.reason, _ctx(request)), exc.status)
    cm.HTTP_REQUESTS.labels(route, str(response.status)).inc()
    svc = _service(request)
    if request.method == "POST" and request.path.startswith("/actions/"):
        # The audit line of every action, done or refused: who, from where, what, and the answer.
        who = request.get(IDENTITY)
        log.info("console_action", path=request.path, user=who.name if who else None,
                 role=who.role if who else None, client=_client(request), status=response.status)
    if NEW_SESSION in request:
        # __Host- and Secure over HTTPS: the cookie is then this exact origin's, never a sibling's or HTTP's.
        response.set_cookie(svc.cookie, svc.csrf.seal(request[NEW_SESSION]), httponly=True, samesite="Strict",
                            path="/", secure=svc.settings.https())
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("Content-Security-Policy",
                                "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                                "frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
    return response


# ---- pages -----------------------------------------------------------------------------------------------------
async def incidents_html(request: web.Request) -> web.Response:
    svc = _service(request)
    ctx = _ctx(request)
    incs = svc.view.incident_list(ctx.now, svc.settings.console_recent_hours * 3600)
    return _html(request, render.incidents_page(svc.view, incs, ctx))


def _incident(request: web.Request) -> Any:
    svc = _service(request)
    incident_id = request.match_info["incident_id"]
    inc = svc.view.incidents.get(incident_id)
    if inc is None:
        raise actions.FormError(404, f"there is no incident {incident_id!r}")
    return inc


async def incident_html(request: web.Request) -> web.Response:
    svc = _service(request)
    inc = _incident(request)
    shown = [i for i in svc.view.incident_items(inc.id) if i.state == "open"][:render.INCIDENT_PAGE_ITEMS]
    svc.heartbeat(_viewer(request), [incident_target(inc.id), *(item_target(i.mention_id) for i in shown)])
    return _html(request, render.incident_page(svc.view, inc, _ctx(request), svc.replies))


def _queue_name(request: web.Request) -> str:
    svc = _service(request)
    name = request.match_info["name"]
    if name not in svc.view.queues and name not in topics.DEFAULT_QUEUES:
        raise actions.FormError(404, f"there is no queue {name!r}")
    return name


def _queue_filter(request: web.Request) -> QueueFilter:
    try:
        return QueueFilter.from_query(request.query)
    except ValueError as exc:
        raise actions.FormError(400, str(exc)) from None


def _page_args(request: web.Request, default_per_page: int) -> tuple[int, int]:
    svc = _service(request)
    try:
        number = page_number(request.query)
        per_page = page_number(request.query, "per_page", default_per_page)
    except ValueError as exc:
        raise actions.FormError(400, str(exc)) from None
    return number, min(per_page, svc.settings.console_max_items)


async def queue_html(request: web.Request) -> web.Response:
    """A queue, filtered (`brand`, `language`, `priority`, `intent`, `incident`, `breached`, `q`) and paged
    (`page`, `per_page`); the items of one incident are one group unless the filter is that incident."""
    svc = _service(request)
    name = _queue_name(request)
    ctx = _ctx(request)
    flt = _queue_filter(request)
    number, per_page = _page_args(request, svc.settings.console_page_size)
    open_items = svc.view.queue_items(name)
    found = filter_items(open_items, flt, ctx.now)
    entries: list[QueueItem | IncidentGroup] = (
        list(found) if flt.incident else group_by_incident(found, svc.settings.console_group_min_items))
    page = paginate(entries, number, per_page)
    svc.heartbeat(_viewer(request), [*([incident_target(flt.incident)] if flt.incident and found else []),
                                     *(incident_target(e.incident_id) if isinstance(e, IncidentGroup)
                                       else item_target(e.mention_id) for e in page.entries)])
    return _html(request, render.queue_page(name, found, ctx, svc.replies, flt=flt,
                                            counts=facet_counts(open_items, flt, ctx.now),
                                            page=page, total_open=len(open_items), claims=svc.view.claims))


async def triage_html(request: web.Request) -> web.Response:
    """Incident groups of `triage: true` routes waiting for a person (page now / dismiss), and recent ones."""
    svc = _service(request)
    ctx = _ctx(request)
    pending, recent = svc.view.triage_list(ctx.now, svc.settings.console_recent_hours * 3600)
    # Each held incident is a decision to make (page now / dismiss): two people on call see that the other is
    # looking at it, here and on its incident page.
    svc.heartbeat(_viewer(request), [incident_target(e.incident_id) for e in pending])
    return _html(request, render.triage_page(svc.view, pending, recent, ctx))


async def silences_html(request: web.Request) -> web.Response:
    """Every silence (`?state=active|pending|expired`), with what it mutes now; expire from the list."""
    svc = _service(request)
    ctx = _ctx(request)
    state = request.query.get("state", "")
    if state not in ("", *SILENCE_STATES):
        raise actions.FormError(400, f"state must be active, pending or expired, not {state!r}")
    every = silences_overview(svc.view, ctx.now)
    totals = {st: sum(1 for r in every if r.state == st) for st in SILENCE_STATES}
    rows = [r for r in every if not state or r.state == state]
    return _html(request, render.silences_page(rows, totals, state, ctx))


# ---- JSON API --------------------------------------------------------------------------------------------------
def silence_json(s: Silence, now: float) -> dict[str, Any]:
    return {"id": s.id, "matchers": [str(m) for m in s.matchers], "starts_at": s.starts_at, "ends_at": s.ends_at,
            "state": s.state(now), "created_by": s.created_by, "comment": s.comment, "incident_id": s.incident_id,
            "created_at": s.created_at, "expired_by": s.expired_by}


def _incident_json(svc: ConsoleService, inc: Any) -> dict[str, Any]:
    out = {k: v for k, v in vars(inc).items() if k != "history"}
    out["url"] = f"{svc.settings.base_url()}/incidents/{inc.id}"
    out["pages"] = [vars(p) for p in svc.view.pages.get(inc.id, [])]
    now = time.time()
    out["silences"] = [silence_json(s, now) for s in svc.view.silences_for(inc, now)]
    return out


async def incidents_api(request: web.Request) -> web.Response:
    svc = _service(request)
    incs = svc.view.incident_list(time.time(), svc.settings.console_recent_hours * 3600)
    return web.json_response({"loaded": svc.loaded, "incidents": [_incident_json(svc, i) for i in incs]})


async def incident_api(request: web.Request) -> web.Response:
    svc = _service(request)
    try:
        inc = _incident(request)
    except actions.FormError as err:
        return web.json_response({"error": err.message}, status=err.status)
    out = _incident_json(svc, inc)
    now = time.time()
    out["viewers"] = [v.to_json(now) for v in svc.view.presence.viewers(incident_target(inc.id), now,
                                                                        excluding=_viewer(request).name)]
    out["mentions_per_minute"] = [{"minute": m, **c} for m, c in svc.view.mentions_per_minute(inc.id)]
    return web.json_response(out)


async def silences_api(request: web.Request) -> web.Response:
    """Every silence the console holds (`?state=active|pending|expired` filters), soonest end first."""
    svc = _service(request)
    now = time.time()
    state = request.query.get("state", "")
    if state not in ("", "active", "pending", "expired"):
        return web.json_response({"error": f"state must be active, pending or expired, not {state!r}"}, status=400)
    found = sorted(svc.view.silences.silences.values(), key=lambda s: (s.ends_at, s.id))
    return web.json_response({"loaded": svc.loaded, "silences": [
        silence_json(s, now) for s in found if not state or s.state(now) == state]})


async def triage_api(request: web.Request) -> web.Response:
    """The Triage page as JSON: `pending` (waiting for a person, soonest to page by itself first) and
    `recent` (decided, paged or ended within TRIAGE_CONSOLE_RECENT_HOURS)."""
    svc = _service(request)
    now = time.time()
    pending, recent = svc.view.triage_list(now, svc.settings.console_recent_hours * 3600)
    return web.json_response({"loaded": svc.loaded, "pending": [e.to_json(now) for e in pending],
                              "recent": [e.to_json(now) for e in recent]})


async def queue_api(request: web.Request) -> web.Response:
    """The queue's items as JSON: the same filters as the page (`brand`, `language`, `priority`, `intent`,
    `incident`, `breached=1`, `q`), `all=1` for answered items too, paged by `page` and `per_page` (default
    and most: TRIAGE_CONSOLE_MAX_ITEMS); `counts` per filter value and `incidents`, the groups of the found items."""
    svc = _service(request)
    try:
        name = _queue_name(request)
        flt = _queue_filter(request)
        number, per_page = _page_args(request, svc.settings.console_max_items)
    except actions.FormError as err:
        return web.json_response({"error": err.message}, status=err.status)
    now = time.time()
    items = svc.view.queue_items(name, include_done=request.query.get("all") == "1")
    found = filter_items(items, flt, now)
    page = paginate(found, number, per_page)
    out = []
    ctx = _ctx(request)
    for item in page.entries:
        d = item.to_json(now)
        d["text"] = render.shown_text(item.text, ctx)
        d["suggested_reply"] = svc.replies.suggest(item.intent, item.language, item.author, item.brand)
        claim = svc.view.claims.holder(item.mention_id, now)
        d["claim"] = claim.to_json(now) if claim else None
        d["viewers"] = [v.to_json(now) for v in svc.view.presence.viewers(item_target(item.mention_id), now,
                                                                          excluding=ctx.user)]
        out.append(d)
    groups = [g.to_json() for g in group_by_incident(found, 1) if isinstance(g, IncidentGroup)]
    return web.json_response({"queue": name, "loaded": svc.loaded, "items": out, "total": page.total,
                              "page": page.number, "pages": page.pages, "per_page": page.per_page,
                              "counts": facet_counts(items, flt, now), "incidents": groups})


async def presence_api(request: web.Request) -> web.Response:
    """POST {"targets": ["incident:<id>", "item:<mention id>", ...]} with the page's CSRF token in the
    X-CSRF-Token header: the caller is looking at them now (a heartbeat, published for every replica), and the
    answer says who else is, per target: {"viewers": {target: [{"name", "seconds_ago"}]}, "expiry_seconds"}.
    console.js calls it while a page is open but not reloaded (a reply being edited); anonymous visitors (no
    sign-in configured) send no heartbeat and see nobody."""
    svc = _service(request)
    if request.content_type != "application/json":
        return web.json_response({"error": "send JSON (application/json)"}, status=415)
    if not svc.csrf.check(_cookie_session(request), request.headers.get("X-CSRF-Token")):
        return web.json_response({"error": "the CSRF token is missing or stale: reload the page"}, status=403)
    try:
        body = await request.json()
    except ValueError:
        return web.json_response({"error": "malformed JSON"}, status=400)
    raw = body.get("targets") if isinstance(body, dict) else None
    if not isinstance(raw, list):
        return web.json_response({"error": 'give {"targets": [...]}'}, status=400)
    targets = valid_targets(raw)
    who = _viewer(request)
    svc.heartbeat(who, targets)
    now = time.time()
    viewers = {t: [v.to_json(now) for v in svc.view.presence.viewers(t, now, excluding=who.name)]
               for t in targets} if who.name else {}
    return web.json_response({"viewers": viewers, "expiry_seconds": svc.view.presence.expiry})


# ---- actions ---------------------------------------------------------------------------------------------------
async def _checked_form(request: web.Request) -> dict[str, str]:
    if request.content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        raise actions.FormError(415, "actions take an HTML form (application/x-www-form-urlencoded)")
    try:
        raw = await request.post()
    except ValueError as exc:
        raise actions.FormError(400, f"malformed form: {exc}") from exc
    form = {k: v for k, v in raw.items() if isinstance(v, str)}
    svc = _service(request)
    if not svc.csrf.check(_cookie_session(request), form.get("csrf")):
        raise actions.FormError(403, "the form's CSRF token is missing or stale: reload the page and try again")
    return form


async def _action_form(request: web.Request) -> tuple[dict[str, str], str]:
    """The checked form of an action and the responder to record; read-only users get 403."""
    form = await _checked_form(request)
    who = request.get(IDENTITY, ANONYMOUS)
    if not who.can_act:
        raise actions.FormError(403, f"{who.name} is read-only: actions need a responder token")
    if who.name:
        form["responder"] = who.name  # a signed-in person cannot record someone else
    return form, _service(request).settings.console_responder


async def _publish_or_503(svc: ConsoleService, action: str, topic: str, key: str, msg: Message) -> None:
    try:
        await svc.publish(topic, key, msg)
    except Exception as exc:
        cm.ACTIONS.labels(action, "failed").inc()
        log.warning("console_publish_failed", action=action, error=type(exc).__name__)
        raise actions.FormError(503, "Kafka did not acknowledge the action in time, so it may or may not have been "
                                     "recorded: reload the page to see whether it was before trying again") from exc
    cm.ACTIONS.labels(action, "published").inc()


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


@dataclass(frozen=True)
class _Action:
    """One responder action: the form becomes a message (`build`, actions.py), published on `topic` under
    `key` (an action Kafka did not acknowledge answers 503 and records nothing), folded into the view at
    once (`apply`), logged, and answered with a redirect to the form's `next` or `back_to`.

    A `bulk` action (an incident's "mark all responded") builds a list of messages, published together and
    each folded in; `logged` and `back_to` then get the list (maybe empty: everything was already done)."""

    name: str  # the `action` label of triage_console_actions_total
    topic: str
    build: Callable[[ConsoleView, dict[str, str], str], Any]  # (view, form, responder) -> protobuf message(s)
    key: Callable[[Any], str]
    apply: Callable[[ConsoleView, Any], object]
    logged: Callable[[Any], tuple[str, dict[str, Any]]]  # message (bulk: the list) -> (log event, its fields)
    back_to: Callable[[Any], str]
    signed_in_author: bool = False  # silences: a signed-in person is the author, whatever the form says
    bulk: bool = False


def _action_handler(action: _Action) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        svc = _service(request)
        form, responder = await _action_form(request)
        if action.signed_in_author and form.get("responder"):
            form["created_by"] = form["responder"]
        # One action at a time per console: two clicks on "mark all responded" must not both see the items open.
        async with svc.action_lock:
            built = action.build(svc.view, form, responder)
            msgs: list[Any] = built if action.bulk else [built]
            if action.bulk:
                await _publish_many_or_503(svc, action, msgs)
            else:
                await _publish_or_503(svc, action.name, action.topic, action.key(built), built)
                action.apply(svc.view, built)
        event, fields = action.logged(built)
        log.info(event, **fields)
        return _see_other(actions.safe_next(form, action.back_to(built)))

    return handler


async def _publish_many_or_503(svc: ConsoleService, action: _Action, msgs: list[Any]) -> None:
    """Publish a bulk action's messages together; those Kafka acknowledged are folded in even when others
    were not (the page then shows what is still open), and any failure answers 503."""
    results = await svc.publish_many(action.topic, [(action.key(m), m) for m in msgs])
    failed = 0
    for msg, result in zip(msgs, results, strict=True):
        if isinstance(result, BaseException):
            failed += 1
        else:
            action.apply(svc.view, msg)
    if msgs:
        cm.ACTIONS.labels(action.name, "published" if not failed else "failed").inc()
    if failed:
        log.warning("console_publish_failed", action=action.name, failed=failed, of=len(msgs))
        raise actions.FormError(503, f"Kafka did not acknowledge {failed} of {len(msgs)} records in time: reload "
                                     "the page to see which items are still open before trying again")


def _incident_page(incident_id: str) -> str:
    return f"/incidents/{quote(incident_id, safe='')}"


post_response = _action_handler(_Action(
    "response", topics.RESPONSES, actions.response_event, key=lambda ev: ev.mention_id,
    apply=ConsoleView.apply_response,
    logged=lambda ev: ("console_response", {"queue": ev.queue, "kind": codec.pb.ResponseKind.Name(ev.kind)}),
    back_to=lambda ev: f"/queues/{ev.queue}"))
post_feedback = _action_handler(_Action(
    "feedback", topics.FEEDBACK, actions.label_feedback, key=lambda fb: fb.mention_id,
    apply=ConsoleView.apply_feedback,
    logged=lambda fb: ("console_feedback", {"queue": fb.queue, "brand": fb.brand}),
    back_to=lambda fb: f"/queues/{fb.queue}"))
post_incident_response = _action_handler(_Action(
    "incident_response", topics.RESPONSES, actions.bulk_response, key=lambda ev: ev.mention_id,
    apply=ConsoleView.apply_response,
    logged=lambda evs: ("console_incident_response", {"items": len(evs), "kind": evs[0].kind if evs else None}),
    back_to=lambda evs: "/", bulk=True))
post_incident_reply = _action_handler(_Action(
    "incident_reply", topics.RESPONSES, actions.bulk_reply, key=lambda ev: ev.mention_id,
    apply=ConsoleView.apply_response, logged=lambda evs: ("console_incident_reply", {"items": len(evs)}),
    back_to=lambda evs: "/", bulk=True))
post_exclude = _action_handler(_Action(
    "exclude", topics.FEEDBACK, actions.exclusion, key=lambda fb: fb.mention_id, apply=ConsoleView.apply_feedback,
    logged=lambda fb: ("console_excluded_from_incident", {"queue": fb.queue, "incident": fb.not_in_incident}),
    back_to=lambda fb: _incident_page(fb.not_in_incident)))
post_page_feedback = _action_handler(_Action(
    "page_feedback", topics.FEEDBACK, actions.page_feedback, key=lambda fb: fb.incident_id,
    apply=ConsoleView.apply_feedback,
    logged=lambda fb: ("console_page_feedback", {"incident": fb.incident_id, "brand": fb.brand}),
    back_to=lambda fb: _incident_page(fb.incident_id)))
post_silence = _action_handler(_Action(
    "silence", topics.SILENCES, lambda view, form, author: actions.new_silence(view, form, author, time.time()),
    key=lambda msg: msg.id, apply=ConsoleView.apply_silence,
    logged=lambda msg: ("console_silence", {
        "silence": msg.id, "incident": msg.incident_id, "matchers": len(msg.matchers),
        "minutes": round((msg.ends_at.seconds - msg.starts_at.seconds) / 60)}),
    back_to=lambda msg: _incident_page(msg.incident_id), signed_in_author=True))
post_silence_expire = _action_handler(_Action(
    "silence_expire", topics.SILENCES,
    lambda view, form, author: actions.expired_silence(view, form, author, time.time()),
    key=lambda msg: msg.id, apply=ConsoleView.apply_silence,
    logged=lambda msg: ("console_silence_expired", {"silence": msg.id, "incident": msg.incident_id}),
    back_to=lambda msg: _incident_page(msg.incident_id) if msg.incident_id else "/", signed_in_author=True))


async def publish_triage(svc: ConsoleService, msg: codec.pb.TriageDecision) -> None:
    """Record a triage decision (from the Triage page or Slack, slack_actions.py): a dismissal's "page was
    wrong" LabelFeedback first (keyed by the incident: sent again by a retry, it is still one mark), then the
    TriageDecision keyed by the group key; each folded in at once. Kafka not acknowledging either is a 503."""
    feedback = actions.dismissal_feedback(svc.view, msg)
    if feedback is not None:
        await _publish_or_503(svc, "triage_dismissal_feedback", topics.FEEDBACK, feedback.incident_id, feedback)
        svc.view.apply_feedback(feedback)
    await _publish_or_503(svc, "triage", topics.TRIAGE_DECISIONS, msg.group_key, msg)
    svc.view.apply_triage_decision(msg)
    log.info("console_triage_decision", incident=msg.incident_id, receiver=msg.receiver, decision=msg.decision)


async def post_triage(request: web.Request) -> web.Response:
    """"Page now" / "dismiss" on the Triage page (actions.triage_decision), recorded by `publish_triage`."""
    svc = _service(request)
    form, responder = await _action_form(request)
    async with svc.action_lock:
        await publish_triage(svc, actions.triage_decision(svc.view, form, responder))
    return _see_other(actions.safe_next(form, "/triage"))


def _claim_handler(action: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    """Claim, hand over or release a queue item: a Claim on `claims` keyed by the item, folded in at once (every
    other console replica folds the consumed copy). Only a responder acts, as themselves when signed in."""
    async def handler(request: web.Request) -> web.Response:
        svc = _service(request)
        form, default = await _action_form(request)
        responder = form.get("responder", "").strip() or default
        async with svc.action_lock:
            msg = actions.claim_record(svc.view, form, responder, time.time(), action, svc.access.is_responder)
            await _publish_or_503(svc, action, topics.CLAIMS, msg.item_id, msg)
            svc.view.apply_claim(msg)
        log.info("console_claim", action=action, queue=msg.queue, handed_over=bool(msg.handed_over_to))
        return _see_other(actions.safe_next(form, f"/queues/{quote(msg.queue, safe='')}"))

    return handler


post_claim = _claim_handler("claim")
post_hand_over = _claim_handler("hand_over")
post_release = _claim_handler("release")


# ---- signing in ------------------------------------------------------------------------------------------------
async def login_html(request: web.Request) -> web.Response:
    next_url = actions.safe_next(dict(request.query), "/")
    return _html(request, render.login_page(_ctx(request), next_url, failed=False))


async def post_login(request: web.Request) -> web.Response:
    svc = _service(request)
    client = _client(request)
    wait = svc.login_throttle.wait(client)
    if wait > 0:
        log.info("console_login_throttled", client=client)
        response = _html(request, render.error_page(429, "too many failed sign-ins from here: wait a minute",
                                                    _ctx(request)), 429)
        response.headers["Retry-After"] = str(max(1, int(wait + 0.999)))
        return response
    form = await _checked_form(request)
    next_url = actions.safe_next(form, "/")
    # A fresh session id on sign-in, so a session fixed before it is worth nothing after.
    session = CsrfGuard.new_session()
    who = svc.access.login(session, form.get("token", ""))
    if who is None:
        svc.login_throttle.failed(client)
        log.info("console_login_refused", client=client)
        return _html(request, render.login_page(_ctx(request), next_url, failed=True), 401)
    svc.login_throttle.succeeded(client)
    request[NEW_SESSION] = session
    log.info("console_login", user=who.name, role=who.role, client=client)
    return _see_other(next_url)


async def post_logout(request: web.Request) -> web.Response:
    svc = _service(request)
    await _checked_form(request)
    svc.access.logout(_cookie_session(request))
    request[NEW_SESSION] = CsrfGuard.new_session()
    return _see_other("/login" if svc.access.enabled else "/")


# ---- diagnostics -----------------------------------------------------------------------------------------------
async def healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """200 only once the views caught up with what Kafka held at start: a console serving half-rebuilt views
    would show responders an empty page and 404s during a rollout."""
    svc = _service(request)
    ready = svc.consumer is not None and svc.loaded
    status = "ready" if ready else ("waiting for Kafka" if svc.consumer is None else "rebuilding the views")
    return web.json_response({"status": status, "loaded": svc.loaded}, status=200 if ready else 503)


async def metrics_page(_: web.Request) -> web.Response:
    resp = web.Response(body=generate_latest())
    resp.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    return resp


async def script(_: web.Request) -> web.Response:
    return web.Response(body=(STATIC_DIR / "console.js").read_bytes(), content_type="application/javascript",
                        headers={"Cache-Control": "max-age=300"})


def build_app(settings: ConsoleSettings, service: ConsoleService | None = None) -> web.Application:
    svc = service or ConsoleService(settings)
    app = web.Application(middlewares=[pages_middleware], client_max_size=64 * 1024)
    app[SERVICE] = svc

    async def on_startup(_: web.Application) -> None:
        await svc.start()

    slack = slack_actions.SlackActions(settings.console_slack_signing_secret.get_secret_value(),
                                       settings.console_slack_response_url_prefix, _service, publish_triage)

    async def on_cleanup(_: web.Application) -> None:
        await slack.close()
        await svc.stop()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    app.router.add_get("/", incidents_html)
    app.router.add_get("/incidents/{incident_id}", incident_html)
    app.router.add_get("/queues/{name}", queue_html)
    app.router.add_get("/silences", silences_html)
    app.router.add_get("/triage", triage_html)
    app.router.add_get("/api/triage", triage_api)
    app.router.add_post("/actions/triage", post_triage)
    app.router.add_post(slack_actions.PATH, slack.handler)
    app.router.add_get("/api/incidents", incidents_api)
    app.router.add_get("/api/incidents/{incident_id}", incident_api)
    app.router.add_get("/api/queues/{name}", queue_api)
    app.router.add_post("/actions/response", post_response)
    app.router.add_post("/actions/feedback", post_feedback)
    app.router.add_post("/actions/page-feedback", post_page_feedback)
    app.router.add_post("/actions/incident/response", post_incident_response)
    app.router.add_post("/actions/incident/reply", post_incident_reply)
    app.router.add_post("/actions/exclude", post_exclude)
    app.router.add_post("/actions/silence", post_silence)
    app.router.add_post("/actions/silence/expire", post_silence_expire)
    app.router.add_post("/actions/claim", post_claim)
    app.router.add_post("/actions/claim/hand-over", post_hand_over)
    app.router.add_post("/actions/claim/release", post_release)
    app.router.add_get("/api/silences", silences_api)
    app.router.add_post("/api/presence", presence_api)
    app.router.add_get("/static/console.js", script)
    app.router.add_get("/login", login_html)
    app.router.add_post("/login", post_login)
    app.router.add_post("/logout", post_logout)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_page)
    return app

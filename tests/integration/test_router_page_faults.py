"""Paging under receiver faults and replays, on the real broker (issue 11): a failed first page is retried
until the receiver accepts it, one incident's failures never hold another's trigger, an incident that
resolves untriggered dead-letters its trigger, and a replayed batch reaches the queue topic once.

The worker runs in-process (no Faust) with its real tick on the wall clock; the PagerDuty Events v2-shaped
receiver is a local aiohttp server on 127.0.0.1 that can fail per dedup key.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

from aiohttp import web
from prometheus_client import REGISTRY

from services.common import codec, topics
from services.common.codec import pb
from services.common.kafka import ensure_topics, make_producer
from services.common.topics import all_topic_specs, queue_topic
from services.router.app import RouterWorker
from services.router.config import RouterSettings
from services.router.routing_file import loads
from tests.support import consume, running_app, wait_for

PD_KEY = "R0UTINGKEY0000000000000000000001"

ROUTES = """\
route:
  receiver: queue
  routes:
    - matchers: ['priority="P1"']
      receiver: pagerduty
      group_wait: 1s
      group_interval: 30s
      continue: true
    - matchers: ['priority="P1"']
      receiver: queue
receivers:
  - name: pagerduty
    pagerduty: {url: "%(base)s/v2/enqueue", routing_key_env: TEST_FAULTS_PD_KEY}
  - name: queue
    kafka_queue: {queue: "%(queue)s"}
"""


class PagerDuty:
    """Events API v2: 202 for a valid event; 500 while `down` (all keys) or for dedup keys in `broken`."""

    def __init__(self) -> None:
        self.accepted: list[tuple[float, dict]] = []
        self.refused: list[tuple[float, str]] = []
        self.down_until = 0.0
        self.down_for = 0.0    # fail everything for this long from the first event received (0 = never)
        self.first_event: float | None = None
        self.broken: set[str] = set()

    async def enqueue(self, request: web.Request) -> web.Response:
        ev = await request.json()
        if ev.get("routing_key") != PD_KEY or not ev.get("dedup_key"):
            return web.json_response({"status": "invalid event", "errors": ["routing_key or dedup_key"]},
                                     status=400)
        if self.first_event is None:
            self.first_event = time.monotonic()
            if self.down_for:
                self.down_until = self.first_event + self.down_for
        if time.monotonic() < self.down_until or ev["dedup_key"] in self.broken:
            self.refused.append((time.monotonic(), ev["dedup_key"]))
            return web.json_response({"status": "error", "message": "internal error"}, status=500)
        self.accepted.append((time.monotonic(), ev))
        return web.json_response({"status": "success", "message": "Event processed", "dedup_key": ev["dedup_key"]},
                                 status=202)

    def triggers(self, dedup_key: str) -> list[float]:
        return [t for t, ev in self.accepted if ev["dedup_key"] == dedup_key and ev["event_action"] == "trigger"]

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v2/enqueue", self.enqueue)
        return app


def mention(run: str, i: int, incident: str, brand: str, likes: int = 0) -> pb.ScoredMention:
    sm = pb.ScoredMention(priority=pb.P1, language="en", incident_id=incident, reasons=["outage report 0.93"],
                          intents={"outage_report": 0.93})
    m = sm.mention
    m.source, m.external_id, m.mention_id = pb.SOURCE_X, f"{run}{i}", f"x:{run}{i}"
    m.text, m.url = f"@{brand} down, cannot log in ({i})", f"https://x.com/u/status/{run}{i}"
    m.brands.append(brand)
    m.engagement.likes = likes
    return sm


def settings(bootstrap: str, app_id: str) -> RouterSettings:
    return RouterSettings(kafka_bootstrap=bootstrap, router_app_id=app_id, tick_seconds=0.2,
                          page_retry_backoff_seconds=0.5, page_retry_max_seconds=2.0, delivery_timeout_seconds=5)


@contextlib.asynccontextmanager
async def ticking(worker: RouterWorker, every: float = 0.2):  # type: ignore[no-untyped-def]
    async def loop() -> None:
        while True:
            await worker.tick()
            await asyncio.sleep(every)
    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await worker.stop()


async def records(bootstrap: str, topic: str) -> list[tuple[str, bytes, bytes]]:
    return await consume(bootstrap, [topic], idle=0.5, timeout=10)


async def test_failed_first_pages_are_retried_until_accepted_and_incidents_do_not_hold_each_other(
        kafka_bootstrap, monkeypatch):
    monkeypatch.setenv("TEST_FAULTS_PD_KEY", PD_KEY)
    await ensure_topics(kafka_bootstrap, all_topic_specs())
    run = uuid.uuid4().hex[:8]
    a, b, c = f"inc-{run}-a", f"inc-{run}-b", f"inc-{run}-c"
    pd = PagerDuty()
    # The whole receiver fails for 6 s from the router's first event (however long a loaded machine takes to
    # start the worker) ...
    pd.down_for = 6.0
    pd.broken.add(c)                         # ... and one incident's events keep failing
    async with running_app(pd.app()) as base:
        tree = loads(ROUTES % {"base": base, "queue": f"faults-{run}"})
        worker = RouterWorker(settings(kafka_bootstrap, f"test-faults-{run}"), tree)
        async with ticking(worker):
            await worker.process([codec.encode(mention(run, i, inc, brand)) for i, (inc, brand) in
                                  enumerate([(a, "acme"), (b, "globex"), (c, "initech")] * 3)])
            await wait_for(lambda: pd.triggers(a) and pd.triggers(b), 30, "both healthy incidents' triggers")
            assert pd.first_event is not None
            opened = pd.first_event
            first_a, first_b = pd.triggers(a)[0] - opened, pd.triggers(b)[0] - opened
            assert {a, b} <= {k for t, k in pd.refused if t - opened < 6.0}, "both were refused while it was down"
            # Recovered at 6 s; the retry backoff is capped at 2 s: both land within a few seconds of it,
            # although incident c's events fail all the time and the receiver failed for everyone before.
            assert 6.0 <= first_a < 6.0 + 2.0 + 2.0 and 6.0 <= first_b < 6.0 + 2.0 + 2.0, (first_a, first_b)
            await asyncio.sleep(2.0)
            assert len(pd.triggers(a)) == len(pd.triggers(b)) == 1   # no duplicate trigger after the retries
            assert pd.triggers(c) == [] and sum(1 for _, k in pd.refused if k == c) >= 4  # still retrying

            # c resolves without ever being delivered: its trigger goes to the DLQ with the reason.
            await worker.on_incident(codec.encode(pb.Incident(id=c, brand="initech", state=pb.RESOLVED)))
            await wait_for(lambda: not any(g.outbox for g in worker.grouper.groups.values()
                                           if g.incident_id == c), 10, "c's trigger given up")

            async def parked() -> bool:   # given up in memory first; its record and DLQ entry follow
                got = [codec.decode(v, pb.PageRecord) for _, _, v in await records(kafka_bootstrap, topics.PAGES)]
                return any(p.incident_id == c and p.state == "dead_lettered" for p in got)

            await wait_for(parked, 20, "c's trigger recorded as dead-lettered")

    pages = [codec.decode(v, pb.PageRecord) for _, _, v in await records(kafka_bootstrap, topics.PAGES)]
    mine = [p for p in pages if run in p.incident_id]
    states = {(p.incident_id, p.state) for p in mine}
    assert {(a, "retrying"), (a, "delivered"), (b, "delivered"), (c, "retrying"), (c, "dead_lettered")} <= states
    assert sum(1 for p in mine if p.incident_id == a and p.delivered and p.action == "trigger") == 1
    dlq = [codec.decode(v, pb.DeadLetter) for _, _, v in await records(kafka_bootstrap, topics.MENTIONS_DLQ)]
    parked = [d for d in dlq if d.receiver == "pagerduty" and run.encode() in d.original]
    assert len(parked) == 1 and c.encode() in parked[0].original
    assert "resolved before its trigger was delivered" in parked[0].reason


async def test_a_replayed_batch_reaches_the_queue_topic_once_and_an_engagement_update_again(
        kafka_bootstrap, monkeypatch):
    monkeypatch.setenv("TEST_FAULTS_PD_KEY", PD_KEY)
    await ensure_topics(kafka_bootstrap, all_topic_specs())
    run = uuid.uuid4().hex[:8]
    pd = PagerDuty()
    async with running_app(pd.app()) as base:
        tree = loads(ROUTES % {"base": base, "queue": f"replay-{run}"})
        batch = [codec.encode(mention(run, i, f"inc-{run}", "acme")) for i in range(40)]
        first = RouterWorker(settings(kafka_bootstrap, f"test-replay-{run}"), tree)
        try:
            await first.process(batch)
        finally:
            await first.stop()
        # A crash before the commit: a new process gets the same batch (and a batch twice within one run).
        second = RouterWorker(settings(kafka_bootstrap, f"test-replay-{run}"), tree)
        try:
            await second.process(batch[:25])
            await second.process(batch)
            await second.process([codec.encode(mention(run, 3, f"inc-{run}", "acme", likes=120))])
        finally:
            await second.stop()
    got = await records(kafka_bootstrap, queue_topic(f"replay-{run}"))
    ids = [codec.decode(v, pb.RoutedMention).scored.mention for _, _, v in got]
    assert len(ids) == 41
    assert sorted({m.mention_id for m in ids}) == sorted(f"x:{run}{i}" for i in range(40))
    assert [m.engagement.likes for m in ids if m.mention_id == f"x:{run}3"] == [0, 120]
    group = next(g for g in second.grouper.groups.values() if g.incident_id == f"inc-{run}")
    assert group.count == 41   # the replays were not counted into the incident either


async def test_a_silence_on_the_topic_mutes_the_workers_pages_until_it_is_expired(kafka_bootstrap, monkeypatch):
    """The console's silences (compacted `silences` topic) reach every router replica's page decisions."""
    monkeypatch.setenv("TEST_FAULTS_PD_KEY", PD_KEY)
    await ensure_topics(kafka_bootstrap, all_topic_specs())
    run = uuid.uuid4().hex[:8]
    brand = f"muted{run}"
    now = time.time()
    silence = pb.Silence(id=f"sil-{run}", matchers=[f'brand="{brand}"'], created_by="oncall@example.com",
                         comment="known outage, vendor ticket 4711")
    silence.starts_at.FromSeconds(int(now) - 5)
    silence.ends_at.FromSeconds(int(now) + 3600)
    producer = make_producer(kafka_bootstrap, "test-silences")
    await producer.start()
    try:
        await producer.send_and_wait(topics.SILENCES, codec.encode(silence), key=silence.id.encode())
        pd = PagerDuty()
        async with running_app(pd.app()) as base:
            tree = loads(ROUTES % {"base": base, "queue": f"muted-{run}"})
            worker = RouterWorker(settings(kafka_bootstrap, f"test-muted-{run}"), tree)
            async with ticking(worker):
                await worker.process([codec.encode(mention(run, i, f"inc-{run}", brand)) for i in range(5)])
                await asyncio.sleep(2.5)   # group_wait is 1 s: a page would be out by now
                assert pd.accepted == [] and not worker.grouper.groups
                # Expired from the console: republished with ends_at = now; the next mentions page again.
                silence.ends_at.FromSeconds(int(time.time()) - 1)
                silence.expired_by = "oncall@example.com"
                await producer.send_and_wait(topics.SILENCES, codec.encode(silence), key=silence.id.encode())
                await wait_for(lambda: not worker.silences.match({"brand": brand}, time.time()), 20,
                               "the expiry to reach the worker")
                await worker.process([codec.encode(mention(run, 10 + i, f"inc-{run}", brand)) for i in range(3)])
                await wait_for(lambda: pd.triggers(f"inc-{run}"), 20, "the trigger after the silence expired")
    finally:
        await producer.stop()
    got = await records(kafka_bootstrap, queue_topic(f"muted-{run}"))
    assert len(got) == 8   # a silence mutes pages, never the queue deliveries


async def test_a_page_refused_for_a_bad_key_is_dead_lettered_at_once_with_its_reason(kafka_bootstrap, monkeypatch):
    """A 401 is a person's problem (the key), not the receiver's: no retries, and the page history, the DLQ and
    the metrics say `auth_error`, so it is not mistaken for a receiver outage or a bad payload."""
    monkeypatch.setenv("TEST_FAULTS_PD_KEY", PD_KEY)
    await ensure_topics(kafka_bootstrap, all_topic_specs())
    run = uuid.uuid4().hex[:8]
    incident = f"inc-{run}"
    asked: list[str] = []

    async def unauthorized(request: web.Request) -> web.Response:
        asked.append((await request.json())["dedup_key"])
        return web.json_response({"status": "unauthorized", "message": "invalid routing key"}, status=401)

    def failed(reason: str) -> float:
        labels = {"receiver": "pagerduty", "action": "trigger", "outcome": "failed", "reason": reason}
        return REGISTRY.get_sample_value("triage_router_pages_total", labels) or 0.0

    before = failed("auth_error")
    app = web.Application()
    app.router.add_post("/v2/enqueue", unauthorized)
    async with running_app(app) as base:
        tree = loads(ROUTES % {"base": base, "queue": f"auth-{run}"})
        worker = RouterWorker(settings(kafka_bootstrap, f"test-auth-{run}"), tree)
        async with ticking(worker):
            await worker.process([codec.encode(mention(run, i, incident, "acme")) for i in range(3)])
            await wait_for(lambda: any(g.abandoned for g in worker.grouper.groups.values()
                                       if g.incident_id == incident), 20, "the trigger dead-lettered")
            await asyncio.sleep(1.0)   # a few more ticks: nothing is sent again
    assert asked == [incident]
    assert failed("auth_error") - before == 1
    pages = [codec.decode(v, pb.PageRecord) for _, _, v in await records(kafka_bootstrap, topics.PAGES)]
    (record,) = [p for p in pages if p.incident_id == incident]
    assert record.state == "dead_lettered" and record.attempt == 1 and not record.delivered
    assert record.detail.startswith("auth_error: rejected by the receiver: pagerduty pagerduty answered HTTP 401")
    dlq = [codec.decode(v, pb.DeadLetter) for _, _, v in await records(kafka_bootstrap, topics.MENTIONS_DLQ)]
    (parked,) = [d for d in dlq if d.receiver == "pagerduty" and incident.encode() in d.original]
    assert parked.reason.startswith("page failed: auth_error: ") and parked.attempts == 1

"""Router deliveries on the real broker: receiver outages, the DLQ and `triage dlq replay`, SLA escalation.

The worker runs in-process (no Faust) against the session broker with an injected clock; receivers are
local aiohttp servers on 127.0.0.1.
"""

from __future__ import annotations

import io
import time
import uuid

from aiohttp import web
from prometheus_client import REGISTRY

from services.common import codec, topics
from services.common.codec import pb
from services.common.kafka import ensure_topics
from services.common.timeutil import ts_from_epoch
from services.common.topics import all_topic_specs
from services.router.app import RouterWorker
from services.router.config import RouterSettings
from services.router.dlq_replay import replay
from services.router.routing_file import loads
from tests.support import consume, running_app


class Hook:
    """A webhook that answers 500 while `failing` says so, and records what it accepted."""

    def __init__(self, fail_for: float = 0.0, fail_forever: bool = False):
        self.fail_for, self.fail_forever = fail_for, fail_forever
        self.first: float | None = None
        self.accepted: list[dict] = []
        self.failures = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        now = time.monotonic()
        self.first = self.first or now
        if self.fail_forever or now - self.first < self.fail_for:
            self.failures += 1
            return web.json_response({"error": "upstream unavailable"}, status=500)
        self.accepted.append(body)
        return web.json_response({"ok": True})


def scored(mid: str, prio: int, brand: str = "acme") -> pb.ScoredMention:
    sm = pb.ScoredMention(priority=prio, language="en", reasons=["complaint 0.91"], intents={"complaint": 0.91})
    sm.mention.mention_id = mid
    sm.mention.source = pb.SOURCE_X
    sm.mention.external_id = mid.split(":")[-1]
    sm.mention.text = f"@{brand} still waiting for my refund ({mid})"
    sm.mention.url = f"https://x.com/u/status/{mid.split(':')[-1]}"
    sm.mention.brands.append(brand)
    return sm


def settings(bootstrap: str, **kw) -> RouterSettings:  # type: ignore[no-untyped-def]
    base = {"kafka_bootstrap": bootstrap, "router_app_id": f"test-router-{uuid.uuid4().hex[:8]}",
            "delivery_attempts": 8, "delivery_backoff_seconds": 0.1, "delivery_backoff_max_seconds": 0.5,
            "delivery_breaker_failures": 3, "delivery_breaker_reset_seconds": 0.3, "delivery_timeout_seconds": 5}
    return RouterSettings(**{**base, **kw})


def metric(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_outage_then_recovery_delivers_everything_and_a_dead_receiver_fills_the_dlq(kafka_bootstrap):
    await ensure_topics(kafka_bootstrap, all_topic_specs())
    flaky, dead = Hook(fail_for=1.5), Hook(fail_forever=True)
    app = web.Application()
    app.router.add_post("/flaky", flaky.handle)
    app.router.add_post("/dead", dead.handle)
    run = uuid.uuid4().hex[:8]
    async with running_app(app) as base:
        tree = loads(f"""
route:
  receiver: flaky
  routes:
    - matchers: ['priority="P3"']
      receiver: dead
receivers:
  - name: flaky
    webhook: {{url: "{base}/flaky"}}
  - name: dead
    webhook: {{url: "{base}/dead"}}
""")
        worker = RouterWorker(settings(kafka_bootstrap), tree)
        try:
            p2 = [scored(f"x:{run}-a{i}", pb.P2) for i in range(20)]
            p3 = [scored(f"x:{run}-b{i}", pb.P3) for i in range(10)]
            dead_before = metric("triage_router_dead_lettered_total", {"receiver": "dead"})
            await worker.process([codec.encode(m) for m in p2 + p3])
        finally:
            await worker.stop()
        assert flaky.failures > 0, "the receiver was never down: the test proves nothing"
        assert sorted(b["mention_id"] for b in flaky.accepted) == sorted(m.mention.mention_id for m in p2)
        dlq = [codec.decode(v, pb.DeadLetter) for _, _, v in await consume(kafka_bootstrap, [topics.MENTIONS_DLQ],
                                                                           idle=1.0, timeout=20)]
        mine = [d for d in dlq if d.receiver == "dead" and run in codec.decode(d.original, pb.RoutedMention)
                .scored.mention.mention_id]
        assert sorted(codec.decode(d.original, pb.RoutedMention).scored.mention.mention_id for d in mine) == \
            sorted(m.mention.mention_id for m in p3)
        assert all("HTTP 500" in d.reason and d.attempts >= 1 for d in mine)
        assert metric("triage_router_dead_lettered_total", {"receiver": "dead"}) - dead_before == 10

        # The dead receiver comes back; `triage dlq replay` delivers what the DLQ holds, once.
        dead.fail_forever = False
        group = f"replay-{run}"
        out = io.StringIO()
        stats = await replay(settings(kafka_bootstrap), tree, group, "dead", out=out)
        assert sorted(b["mention_id"] for b in dead.accepted if run in b["mention_id"]) == \
            sorted(m.mention.mention_id for m in p3)
        assert stats["replayed"] >= 10 and "replayed" in out.getvalue()
        again = await replay(settings(kafka_bootstrap), tree, group, "dead", out=io.StringIO())
        assert again["replayed"] == 0


async def test_sla_breach_escalates_an_unanswered_p2_and_not_an_answered_one(kafka_bootstrap):
    await ensure_topics(kafka_bootstrap, all_topic_specs())
    esc = Hook()
    app = web.Application()
    app.router.add_post("/escalate", esc.handle)
    run = uuid.uuid4().hex[:8]
    now = [1_900_000_000.0]
    async with running_app(app) as base:
        tree = loads(f"""
route:
  receiver: normal
  escalate_to: escalation
  routes:
    - matchers: ['priority="P2"']
      receiver: urgent
receivers:
  - name: urgent
    kafka_queue: {{queue: urgent}}
  - name: normal
    kafka_queue: {{queue: normal}}
  - name: escalation
    webhook: {{url: "{base}/escalate"}}
sla: {{P2: 1h}}
""")
        cfg = settings(kafka_bootstrap)
        worker = RouterWorker(cfg, tree, clock=lambda: now[0])
        answered, ignored = scored(f"x:{run}-answered", pb.P2), scored(f"x:{run}-ignored", pb.P2)
        breaches_before = metric("triage_router_sla_breaches_total", {"queue": "urgent", "priority": "P2"})
        try:
            await worker.process([codec.encode(answered), codec.encode(ignored)])
            now[0] += 600
            ev = pb.ResponseEvent(mention_id=answered.mention.mention_id, kind=pb.RESPONDED, responder="ana",
                                  queue="urgent")
            ev.at.CopyFrom(ts_from_epoch(now[0]))
            await worker.on_response(codec.encode(ev))
            await worker.tick(now[0] + 3000)   # 1h after routing minus a bit: nothing is late yet
            assert esc.accepted == []
            await worker.tick(now[0] + 3001)   # 1h + 1s after routing
        finally:
            await worker.stop()
        assert [b["mention_id"] for b in esc.accepted] == [ignored.mention.mention_id]
        assert esc.accepted[0]["route"].endswith("/sla-breach")
        assert metric("triage_router_sla_breaches_total", {"queue": "urgent", "priority": "P2"}) - \
            breaches_before == 1
        assert metric("triage_router_first_response_seconds_count", {"priority": "P2"}) >= 1

        # A restarted router remembers the clocks: no second escalation, the answered item stays closed.
        again = RouterWorker(cfg, tree, clock=lambda: now[0])
        try:
            await again.tick(now[0] + 7200)
            assert set(again.sla.items) == {ignored.mention.mention_id}
        finally:
            await again.stop()
        assert len(esc.accepted) == 1

"""Opsgenie and Alertmanager receivers, silences and inhibition, through the worker on the real broker.

Local aiohttp servers stand in for Opsgenie's Alert API and Alertmanager's v2 API; the worker runs
in-process with an injected clock, its ticks called directly.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from aiohttp import web

from services.common import codec
from services.common.codec import pb
from services.common.kafka import ensure_topics
from services.common.topics import all_topic_specs
from services.router.app import RouterWorker
from services.router.config import RouterSettings
from services.router.routing_file import loads
from tests.support import running_app

GENIE_KEY = "eb243592-faa2-4ba2-a551q-1afdf565c889"
T0 = 1_900_000_000.0


class FakeOpsgenieAndAlertmanager:
    def __init__(self) -> None:
        self.opsgenie: list[tuple[str, str, dict]] = []   # (path, identifierType, body)
        self.alertmanager: list[dict] = []

    async def opsgenie_call(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"GenieKey {GENIE_KEY}":
            return web.json_response({"message": "Could not authenticate", "took": 0.0, "requestId": "x"}, status=401)
        body = await request.json()
        if request.path == "/v2/alerts" and (not body.get("message") or len(body["message"]) > 130
                                             or body.get("priority") not in ("P1", "P2", "P3", "P4", "P5")):
            return web.json_response({"message": "Request body is not processable", "took": 0.0}, status=422)
        self.opsgenie.append((request.path, request.query.get("identifierType", ""), body))
        return web.json_response({"result": "Request will be processed", "took": 0.1, "requestId": uuid.uuid4().hex},
                                 status=202)

    async def alerts(self, request: web.Request) -> web.Response:
        body = await request.json()
        if not isinstance(body, list) or not all("labels" in a for a in body):
            return web.json_response({"code": 400, "message": "invalid alerts"}, status=400)
        self.alertmanager += body
        return web.Response(status=200)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v2/alerts", self.opsgenie_call)
        app.router.add_post("/v2/alerts/{alias}/notes", self.opsgenie_call)
        app.router.add_post("/v2/alerts/{alias}/close", self.opsgenie_call)
        app.router.add_post("/api/v2/alerts", self.alerts)
        return app


def p1(i: int, brand: str, intent: str, incident: str = "") -> bytes:
    sm = pb.ScoredMention(priority=pb.P1, language="en", incident_id=incident, reasons=[f"{intent} 0.9"],
                          intents={intent: 0.9})
    sm.mention.mention_id = f"x:{uuid.uuid4().hex[:6]}{i}"
    sm.mention.text = f"@{brand} {intent} {i}"
    sm.mention.brands.append(brand)
    return codec.encode(sm)


async def test_opsgenie_and_alertmanager_lifecycle_with_silence_and_inhibition(kafka_bootstrap, monkeypatch):
    await ensure_topics(kafka_bootstrap, all_topic_specs())
    monkeypatch.setenv("TEST_GENIE_KEY", GENIE_KEY)
    fake = FakeOpsgenieAndAlertmanager()
    now = [T0]
    async with running_app(fake.app()) as base:
        tree = loads(f"""
route:
  receiver: queue
  group_wait: 30s
  group_interval: 5m
  routes:
    - matchers: ['priority="P1"']
      receiver: opsgenie
      group_by: [brand]
      continue: true
    - matchers: ['priority="P1"']
      receiver: alertmanager
      group_by: [brand]
receivers:
  - name: queue
    kafka_queue: {{queue: normal}}
  - name: opsgenie
    opsgenie: {{url: "{base}", api_key_env: TEST_GENIE_KEY}}
  - name: alertmanager
    alertmanager: {{url: "{base}"}}
silences:
  - matchers: ['brand="globex"']
    starts_at: {T0 - 60}
    ends_at: {T0 + 3600}
    comment: planned launch
inhibit_rules:
  - source_matchers: ['kind="outage_cluster"']
    target_matchers: ['intent="complaint"']
    equal: [brand]
""")
        worker = RouterWorker(RouterSettings(kafka_bootstrap=kafka_bootstrap,
                                             router_app_id=f"test-router-{uuid.uuid4().hex[:8]}"),
                              tree, clock=lambda: now[0])
        try:
            outage = pb.Incident(id="inc-9", brand="initech", kind=pb.OUTAGE_CLUSTER, state=pb.OPEN)
            await worker.on_incident(codec.encode(outage))
            await worker.process([p1(i, "acme", "safety_or_legal_threat") for i in range(3)]
                                 + [p1(i, "globex", "safety_or_legal_threat") for i in range(3)]  # silenced
                                 + [p1(i, "initech", "complaint") for i in range(3)])             # inhibited
            await worker.tick(T0 + 29)
            assert fake.opsgenie == [] and fake.alertmanager == []
            await worker.tick(T0 + 30)
            now[0] = T0 + 60
            await worker.process([p1(9, "acme", "safety_or_legal_threat")])
            await worker.tick(T0 + 330)                      # group_interval later: one update
            await worker.tick(T0 + 60 + 900)                 # quiet period over: resolve
            await worker.tick(T0 + 60 + 1000)
        finally:
            await worker.stop()

    paths = [(p, t) for p, t, _ in fake.opsgenie]
    alias = fake.opsgenie[0][2]["alias"]
    assert paths == [("/v2/alerts", ""), (f"/v2/alerts/{alias}/notes", "alias"),
                     (f"/v2/alerts/{alias}/close", "alias")]
    created = fake.opsgenie[0][2]
    assert created["priority"] == "P1" and created["entity"] == "acme" and "3 mentions" in created["message"]
    assert "4 mentions" in fake.opsgenie[1][2]["note"]

    assert {a["labels"]["brand"] for a in fake.alertmanager} == {"acme"}  # globex silenced, initech inhibited
    # Firing posts set endsAt 3 heartbeats (3 x 60 s) ahead, so the alert outlives resolve_timeout only while
    # re-posted; the resolve sets it to the resolve's time.
    iso = [datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ") for t in (T0 + 210, T0 + 510, T0 + 960)]
    assert [a["endsAt"] for a in fake.alertmanager] == iso
    assert all("priority" not in a["labels"] and a["annotations"]["priority"] == "P1" for a in fake.alertmanager)
    assert all(a["labels"]["incident"] == fake.alertmanager[0]["labels"]["incident"] for a in fake.alertmanager)
    assert fake.alertmanager[0]["startsAt"].endswith("Z")

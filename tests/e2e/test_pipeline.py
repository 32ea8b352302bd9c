"""The whole slice on the real broker: ingest -> mentions.raw -> classify -> mentions.scored -> router.

200 requests' worth of mentions (valid, duplicated, malformed) go in; every valid unique
mention must come out exactly once (on a queue topic or at the on-call webhook) with its
priority and reasons, every malformed one must have had a 4xx naming the problem, and
count in = count out + rejected + dead-lettered.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from pathlib import Path
from urllib.parse import unquote

import httpx
from aiohttp import web
from support import ServiceProcess, consume, free_port, running_app, wait_for

from services.common import codec, topics
from services.common.codec import pb
from services.common.kafka import ensure_topics
from services.common.topics import all_topic_specs
from services.ingest.app import build_app
from services.ingest.config import IngestSettings
from services.router.transport import verify

SECRET = "e2e-webhook-secret"

ROUTES = """\
route:
  receiver: normal
  routes:
    - matchers: ['priority="P1"']
      receiver: oncall
    - matchers: ['priority="P2"']
      receiver: urgent
    - matchers: ['priority="P4"']
      receiver: low
receivers:
  - name: oncall
    webhook: {url: "%s", secret_env: TRIAGE_E2E_WEBHOOK_SECRET}
  - name: urgent
    kafka_queue: {queue: urgent}
  - name: normal
    kafka_queue: {queue: normal}
  - name: low
    kafka_queue: {queue: low}
"""

TEXTS = [
    "@AcmeBank app is down again, can't log in at all",
    "is @AcmeBank down?? getting error 503 on every login",
    "@AcmeBank la app no funciona, no puedo entrar a mi cuenta",
    "@AcmeBank приложение не работает, не могу войти",
    "@AcmeBank η εφαρμογή δεν λειτουργεί",
    "@AcmeBank اپلیکیشن از کار افتاده",
    "@AcmeBank ऐप काम नहीं कर रहा",
    "Thanks @AcmeBank, the new card arrived in two days. Great service!",
    "@AcmeBank how do I change my PIN?",
    "Win a free iPhone!!! Follow and RT #AcmeBank #giveaway bit.ly/xyz",
    "Your ATM at Main St sparked and burned my hand, @AcmeBank someone will get hurt. Calling my lawyer.",
    "@AcmeBank charged me twice and nobody answers my emails. Worst bank ever.",
    "Reading about @AcmeBank's quarterly results",
    "Danke @AcmeBank, super schneller Support!",
    "@AcmeBank pourquoi ma carte est bloquée ?",
]


def make_valid(n: int, rng: random.Random) -> list[dict]:
    out = []
    for i in range(n):
        out.append({
            # half the ids outside ASCII, as ingest allows ("e2e-1-ñandú"): they reach the webhook's Idempotency-Key
            "source": rng.choice(["x", "reddit", "mastodon", "bluesky"]),
            "external_id": f"e2e-{i}" + "-ñandú" * (i % 2),
            "text": f"{rng.choice(TEXTS)} #{i}", "author": {"handle": f"user{i}",
                                                          "followers": rng.choice([5, 300, 5000, 400_000])},
            "engagement": {"likes": rng.randint(0, 30), "reposts": rng.randint(0, 5)}, "brands": ["acmebank"],
        })
    return out


MALFORMED: list[tuple[bytes, str, int, str]] = [
    (b'{"source": "x", "external_id": "m1"}', "application/json", 422, "text"),
    (b'{"source": "myspace", "external_id": "m2", "text": "hi"}', "application/json", 422, "source"),
    (b'{"source": "x", "external_id": "", "text": "hi"}', "application/json", 422, "external_id"),
    (b'{"source": "x", "external_id": "m4", "text": "hi", "created_at": "yesterday"}', "application/json", 422,
     "created_at"),
    (b'{"source": "x", "external_id": "m5", "text": "   "}', "application/json", 422, "text"),
    (b'{"source": "x", "external_id": "m6", "text": "hi", "author": {"followers": -1}}', "application/json", 422,
     "author.followers"),
    (b"{oops", "application/json", 400, "malformed JSON"),
    (b"[1, 2", "application/json", 400, "malformed JSON"),
    (b'{"source": "x", "external_id": "m9", "text": "hi"}', "text/plain", 415, "Content-Type"),
    (b'"just a string"', "application/json", 422, "$"),
    (b'{"source": "x", "external_id": "m11", "text": "hi", "engagement": {"likes": "lots"}}', "application/json",
     422, "engagement.likes"),
    (b"\xff\xfe\xfd", "application/json", 400, "UTF-8"),
    (b'{"source": "x", "external_id": "m13", "text": "hi", "created_at": 12}', "application/json", 422,
     "created_at"),
    (b'{"source": "x", "external_id": "m14", "text": "hi", "brands": "acme"}', "application/json", 422, "brands"),
    (b'{"source": 7, "external_id": "m15", "text": "hi"}', "application/json", 422, "source"),
]


def mention_id_of(topic: str, value: bytes) -> str:
    """The mention a queue record or a classify/router dead letter is about ("" for anything else)."""
    if topic != topics.MENTIONS_DLQ:
        return codec.decode(value, pb.RoutedMention).scored.mention.mention_id
    dl = codec.decode(value, pb.DeadLetter)
    if dl.stage not in ("classify", "router"):
        return ""  # ingest's dead letters are the 4xx rejects, counted as `rejected`
    for cls in (pb.RoutedMention, pb.Mention):
        try:
            msg = codec.decode(dl.original, cls)
        except Exception:
            continue
        mid = msg.scored.mention.mention_id if cls is pb.RoutedMention else msg.mention_id
        if mid:
            return mid
    return ""


def ours(recs: list[tuple[str, bytes, bytes]]) -> list[tuple[str, bytes]]:
    """Only this test's records: the broker is shared with other tests of the session."""
    return [(t, v) for t, _, v in recs if mention_id_of(t, v).split(":", 1)[-1].startswith("e2e-")]


class WebhookSink:
    """A local on-call webhook that verifies the HMAC signature of every delivery."""

    def __init__(self) -> None:
        self.deliveries: list[dict] = []
        self.keys: list[str] = []
        self.bad_signatures = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        ok = verify(SECRET.encode(), request.headers.get("X-Triage-Timestamp", ""), body,
                    request.headers.get("X-Triage-Signature", ""))
        if not ok:
            self.bad_signatures += 1
            return web.json_response({"error": "bad signature"}, status=401)
        self.deliveries.append(json.loads(body))
        self.keys.append(request.headers.get("Idempotency-Key", ""))
        return web.json_response({"ok": True})


async def test_two_hundred_mentions_end_to_end(kafka_bootstrap, tmp_path: Path):
    await ensure_topics(kafka_bootstrap, all_topic_specs())
    rng = random.Random(42)
    valid = make_valid(170, rng)
    dups = [dict(valid[i]) for i in rng.sample(range(170), 15)]

    sink = WebhookSink()
    hook_app = web.Application()
    hook_app.router.add_post("/hook", sink.handle)
    routes = tmp_path / "routes.yaml"
    hook_port = free_port()
    routes.write_text(ROUTES % f"http://127.0.0.1:{hook_port}/hook")

    env = {"TRIAGE_KAFKA_BOOTSTRAP": kafka_bootstrap, "TRIAGE_ROUTES_FILE": str(routes),
           "TRIAGE_E2E_WEBHOOK_SECRET": SECRET, "TRIAGE_CLASSIFY_METRICS_PORT": str(free_port()),
           "TRIAGE_ROUTER_METRICS_PORT": str(free_port()), "TRIAGE_DATA_DIR": str(tmp_path / "faust"),
           "TRIAGE_CLASSIFY_APP_ID": "e2e-classify", "TRIAGE_ROUTER_APP_ID": "e2e-router"}
    classify = ServiceProcess("classify", env, tmp_path)
    router = ServiceProcess("router", env, tmp_path)
    try:
        settings = IngestSettings(kafka_bootstrap=kafka_bootstrap)
        async with running_app(hook_app, hook_port), running_app(build_app(settings)) as url:
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                accepted: list[str] = []
                duplicates: list[str] = []
                # valid mentions in NDJSON batches of 10, then redeliveries one by one
                for i in range(0, len(valid), 10):
                    body = "\n".join(json.dumps(m, ensure_ascii=False) for m in valid[i:i + 10])
                    r = await client.post("/v1/mentions", content=body.encode(),
                                          headers={"Content-Type": "application/x-ndjson"})
                    assert r.status_code == 202, r.text
                    accepted += r.json()["accepted"]
                for m in dups:
                    r = await client.post("/v1/mentions", json=m)
                    assert r.status_code == 202, r.text
                    duplicates += r.json()["duplicates"]
                    assert r.json()["accepted"] == []
                rejected = 0
                for body, ctype, status, needle in MALFORMED:
                    r = await client.post("/v1/mentions", content=body, headers={"Content-Type": ctype})
                    assert r.status_code == status, (body, r.text)
                    assert needle in r.text, (body, r.text)
                    rejected += 1
                assert len(valid) + len(dups) + len(MALFORMED) == 200
                assert len(accepted) == 170 and len(set(accepted)) == 170
                assert len(duplicates) == 15 and rejected == 15

                async def outputs() -> tuple[list, list]:
                    recs = await consume(kafka_bootstrap, pattern=r"^(triage\.queue\..*|mentions\.dlq)$",
                                         idle=0.5, timeout=5)
                    return recs, [d for d in sink.deliveries if d["mention_id"].split(":", 1)[-1].startswith("e2e-")]

                async def all_out() -> bool:
                    for svc in (classify, router):
                        assert svc.alive(), f"{svc.name} died:\n{svc.log_tail()}"
                    recs, hooks = await outputs()
                    return len(ours(recs)) + len(hooks) >= 170

                await wait_for(all_out, timeout=300, what="all 170 mentions routed", interval=2)
                await asyncio.sleep(3)  # anything extra (a duplicate) would show up now
                recs, hooks = await outputs()
    finally:
        classify.stop()
        router.stop()

    seen: Counter[str] = Counter()
    dlq = 0
    for topic, value in ours(recs):
        if topic == topics.MENTIONS_DLQ:
            dlq += 1
            continue
        routed = codec.decode(value, pb.RoutedMention)
        sm = routed.scored
        seen[sm.mention.mention_id] += 1
        assert sm.priority in (pb.P2, pb.P3, pb.P4)
        assert routed.queue == {pb.P2: "urgent", pb.P3: "normal", pb.P4: "low"}[sm.priority]
        assert sm.reasons and sm.model_version and sm.sentiment.label
        assert set(sm.intents) == {"complaint", "question", "outage_report", "safety_or_legal_threat", "praise",
                                   "spam"}
        if sm.priority != pb.P4:
            assert routed.respond_by.seconds > routed.routed_at.seconds
    for d in hooks:
        seen[d["mention_id"]] += 1
        assert d["priority"] == "P1" and d["reasons"]
    assert sink.bad_signatures == 0
    # the key is ASCII, one per mention and receiver: the id percent-encoded where it is not ASCII
    ours_keys = {unquote(k) for k, d in zip(sink.keys, sink.deliveries, strict=True) if d in hooks}
    assert ours_keys == {f"{d['mention_id']}:oncall" for d in hooks} and all(k.isascii() for k in sink.keys)
    assert any(not d["mention_id"].isascii() for d in hooks), "a webhook delivery of an id outside ASCII"
    assert sorted(seen) == sorted(accepted), "every accepted mention comes out"
    assert max(seen.values()) == 1, f"delivered more than once: {[k for k, v in seen.items() if v > 1]}"
    # count in = count out + rejected + DLQ (duplicates are the same mention sent again)
    assert 200 == sum(seen.values()) + rejected + dlq + len(duplicates)
    assert dlq == 0
    # the model really discriminates: the set is built to contain pages and no-response items alike
    prios = Counter(codec.decode(v, pb.RoutedMention).scored.priority for t, v in ours(recs)
                    if t != topics.MENTIONS_DLQ)
    assert len(hooks) > 0 and prios[pb.P4] > 0 and prios[pb.P2] + prios[pb.P3] > 0, (len(hooks), prios)

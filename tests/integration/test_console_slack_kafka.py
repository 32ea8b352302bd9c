"""Slack's "Page now" / "Dismiss" on a triage notice, through a running console and a private broker.

The router's "held" records are produced on `pages` as the router writes them; the console lists the holds.
Slack-shaped, signed `block_actions` requests then reach /slack/interactions with no sign-in and no CSRF
token: a dismissal lands on `triage.decisions` (keyed by the group, by `slack:<user>`) and, as "page was
wrong" feedback, on `feedback` (keyed by the incident); a page now lands with no feedback; the notice is
replaced through the payload's `response_url` (a local server here) with who decided. A bad signature, a
stale timestamp and a console without a signing secret are answered 401 and publish nothing.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any
from urllib.parse import urlencode

import httpx
from aiohttp import web

from services.common import codec, topics
from services.common.codec import pb
from services.common.kafka import ensure_topics, make_producer
from services.common.timeutil import ts_from_epoch
from services.common.topics import all_topic_specs
from services.console.app import SERVICE, build_app
from services.console.config import ConsoleSettings
from services.console.slack_actions import signature
from tests.support import consume, running_app, wait_for

SECRET = "it-slack-signing-secret-0123456789"


def held(incident_id: str, brand: str, at: float) -> tuple[str, pb.PageRecord]:
    key = f"pagerduty|incident:{incident_id}"
    rec = pb.PageRecord(incident_id=incident_id, receiver="pagerduty", action="triage", state="held", group_key=key,
                        detail="held for triage: 12 mentions", labels={"brand": brand})
    rec.at.CopyFrom(ts_from_epoch(at))
    rec.hold_until.CopyFrom(ts_from_epoch(at + 600))
    return key, rec


async def produce_holds(bootstrap: str, records: list[pb.PageRecord], now: float) -> None:
    producer = make_producer(bootstrap, "test-producer")
    await producer.start()
    try:
        futs = []
        for rec in records:
            inc = pb.Incident(id=rec.incident_id, brand=rec.labels["brand"], kind=pb.OUTAGE_CLUSTER, state=pb.OPEN,
                              mention_count=12, reasons=["small outage cluster"])
            inc.opened_at.CopyFrom(ts_from_epoch(now - 120))
            futs.append(await producer.send(topics.INCIDENTS, codec.encode(inc), key=rec.incident_id.encode()))
            futs.append(await producer.send(topics.PAGES, codec.encode(rec), key=rec.incident_id.encode()))
        await asyncio.gather(*futs)
    finally:
        await producer.stop()


def click(action_id: str, key: str, user: str, response_url: str) -> bytes:
    payload: dict[str, Any] = {
        "type": "block_actions", "user": {"id": f"U0{user.upper()}", "username": user, "team_id": "T0TEAM"},
        "team": {"id": "T0TEAM", "domain": "acme"}, "api_app_id": "A0APP", "trigger_id": "1.2.3",
        "container": {"type": "message", "message_ts": "1700000000.000100", "channel_id": "C0TRIAGE"},
        "channel": {"id": "C0TRIAGE", "name": "triage"}, "response_url": response_url,
        "message": {"type": "message", "ts": "1700000000.000100", "text": ":raising_hand: Held for triage",
                    "blocks": [{"type": "section", "block_id": "triage_hold",
                                "text": {"type": "mrkdwn", "text": "*Not paged yet.*"}},
                               {"type": "actions", "block_id": "triage_actions", "elements": []}]},
        "actions": [{"type": "button", "action_id": action_id, "block_id": "triage_actions", "value": key,
                     "action_ts": "1700000001.000200"}],
    }
    return urlencode({"payload": json.dumps(payload)}).encode()


def signed(body: bytes, secret: str = SECRET, at: float | None = None) -> dict[str, str]:
    ts = str(int(at if at is not None else time.time()))
    return {"Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": signature(secret, ts, body)}


async def test_slack_buttons_decide_a_held_incident_and_a_dismissal_is_page_was_wrong_feedback(
        kafka_bootstrap: str) -> None:
    bootstrap = kafka_bootstrap
    await ensure_topics(bootstrap, all_topic_specs())
    now = time.time()
    dismiss_key, dismiss_rec = held("inc-slack-dismiss", "slackco", now - 30)
    page_key, page_rec = held("inc-slack-page", "slackco", now - 20)
    await produce_holds(bootstrap, [dismiss_rec, page_rec], now)

    answers: list[dict[str, Any]] = []

    async def response_url(request: web.Request) -> web.Response:
        answers.append(await request.json())
        return web.Response(text="ok")

    hooks = web.Application()
    hooks.router.add_post("/actions/{rest:.*}", response_url)
    async with running_app(hooks) as slack_base:
        settings = ConsoleSettings(kafka_bootstrap=bootstrap, console_group_id="it-console-slack",
                                   console_slack_signing_secret=SECRET,  # type: ignore[arg-type]
                                   console_slack_response_url_prefix=f"{slack_base}/actions/")
        off = ConsoleSettings(kafka_bootstrap=bootstrap, console_group_id="it-console-slack-off")
        async with running_app(build_app(settings)) as console, running_app(build_app(off)) as console_off, \
                httpx.AsyncClient(base_url=console, timeout=20) as client:
            async def listed() -> bool:
                pending = (await client.get("/api/triage")).json()["pending"]
                return {e["group_key"] for e in pending} == {dismiss_key, page_key}
            await wait_for(listed, 60, "the console to list both held incidents", interval=0.5)

            hook = f"{slack_base}/actions/T0TEAM/1/abc"
            body = click("triage_dismiss", dismiss_key, "ana", hook)
            # Refused, and nothing published: a wrong signature, a replayed (stale) request, a console that
            # has no signing secret.
            r = await client.post("/slack/interactions", content=body, headers=signed(body, "not-the-secret"))
            assert r.status_code == 401 and "does not match" in r.json()["error"]
            r = await client.post("/slack/interactions", content=body, headers=signed(body, at=time.time() - 360))
            assert r.status_code == 401 and "stale" in r.json()["error"]
            async with httpx.AsyncClient(base_url=console_off, timeout=20) as client_off:
                r = await client_off.post("/slack/interactions", content=body, headers=signed(body))
            assert r.status_code == 401 and "TRIAGE_CONSOLE_SLACK_SIGNING_SECRET" in r.json()["error"]
            assert [e["group_key"] for e in (await client.get("/api/triage")).json()["pending"]] \
                == [dismiss_key, page_key]

            started = time.monotonic()
            r = await client.post("/slack/interactions", content=body, headers=signed(body))
            assert r.status_code == 200 and time.monotonic() - started < 3.0  # Slack's 3 seconds
            body = click("triage_page_now", page_key, "bo", hook)
            r = await client.post("/slack/interactions", content=body, headers=signed(body))
            assert r.status_code == 200
            r = await client.post("/slack/interactions", content=body, headers=signed(body))  # clicked twice
            assert r.status_code == 409 and r.json()["response_type"] == "ephemeral"
            assert (await client.get("/api/triage")).json()["pending"] == []

            await wait_for(lambda: len(answers) >= 3, 20, "the notices updated through response_url")
            replaced = [a for a in answers if a.get("replace_original")]
            assert sorted(a["text"].split(" (")[0] for a in replaced) == [
                "Dismissed: not paged, counted as a wrong page by slack:ana", "Paged now by slack:bo"]
            assert all("actions" not in json.dumps(a["blocks"]) for a in replaced)
            assert [a["response_type"] for a in answers if not a.get("replace_original")] == ["ephemeral"]

        mine = {dismiss_key.encode(), page_key.encode(), b"inc-slack-dismiss", b"inc-slack-page"}
        got = [(t, k, v) for t, k, v in await consume(bootstrap, [topics.TRIAGE_DECISIONS, topics.FEEDBACK],
                                                      idle=2, timeout=30) if k in mine]
        decisions = [(k.decode(), codec.decode(v, pb.TriageDecision)) for t, k, v in got
                     if t == topics.TRIAGE_DECISIONS]
        assert sorted((k, d.decision, d.responder, d.incident_id) for k, d in decisions) == sorted([
            (dismiss_key, "dismissed", "slack:ana", "inc-slack-dismiss"),
            (page_key, "page_now", "slack:bo", "inc-slack-page")])
        feedback = [(k.decode(), codec.decode(v, pb.LabelFeedback)) for t, k, v in got if t == topics.FEEDBACK]
        assert [(k, f.mention_id, f.incident_id, f.brand, f.responder) for k, f in feedback] == [
            ("inc-slack-dismiss", "", "inc-slack-dismiss", "slackco", "slack:ana")]  # the page now is no feedback

        # A console started afterwards rebuilds the same from the topics: the dismissal counts once as a wrong
        # page (its feedback and its decision are one incident).
        settings2 = ConsoleSettings(kafka_bootstrap=bootstrap, console_group_id="it-console-slack-2")
        app2 = build_app(settings2)
        async with running_app(app2) as console2, httpx.AsyncClient(base_url=console2, timeout=20) as client2:
            async def decided() -> list[dict]:
                recent = (await client2.get("/api/triage")).json()["recent"]
                return recent if {e["decided_by"] for e in recent} == {"slack:ana", "slack:bo"} else []
            await wait_for(decided, 60, "a new console to rebuild the Slack decisions")
            await wait_for(lambda: "inc-slack-dismiss" in app2[SERVICE].view.page_feedback, 30,
                           "the new console to read the dismissal's feedback")
            # One incident dismissed of one held-and-dismissed: 1 of 1, not 2 of 1. (The broker is shared with
            # other tests' incidents: only this test's brand is judged.)
            assert app2[SERVICE].view.pages_marked_wrong()["slackco"] == (1, 1)

"""Triage before paging through the real router worker (Faust, subprocess), the console and a private broker.

A route with `triage: true` holds its incident: the router records the hold on `pages`, the console's
Triage page lists it, a Slack-shaped notice goes to the route's `triage_notify` receiver, and PagerDuty
hears nothing, not even across a kill -9 of the router. "Page now" on the console (a TriageDecision on
`triage.decisions`, consumed by the group's owner) pages exactly once. An undecided hold pages by itself,
exactly once, after `triage_timeout`. PagerDuty and Slack are local servers shaped like the real APIs.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import httpx

from services.common import codec, topics
from services.common.codec import pb
from services.common.kafka import ensure_topics, make_producer
from services.common.timeutil import epoch, ts_from_epoch
from services.common.topics import all_topic_specs, queue_topic
from services.console.app import build_app
from services.console.config import ConsoleSettings
from tests.support import PD_KEY, SLACK_TOKEN, FakeApis, ServiceProcess, consume, free_port, running_app, wait_for

ROUTES = """\
route:
  receiver: normal
  routes:
    - matchers: ['priority="P1"', 'brand="acme"']
      receiver: pagerduty
      group_wait: 1s
      group_interval: 4s
      triage: true
      triage_timeout: %(timeout)s
      triage_notify: chat
      continue: true
    - matchers: ['priority="P1"']
      receiver: urgent
receivers:
  - name: pagerduty
    pagerduty: {url: "%(base)s/v2/enqueue", routing_key_env: TEST_PD_KEY}
  - name: chat
    slack: {url: "%(base)s/api/chat.postMessage", token_env: TEST_SLACK_TOKEN, channel: C0TRIAGE}
  - name: urgent
    kafka_queue: {queue: urgent}
  - name: normal
    kafka_queue: {queue: normal}
"""
CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')


def outage_mention(incident_id: str, i: int) -> pb.ScoredMention:
    sm = pb.ScoredMention(priority=pb.P1, language=["en", "pt"][i % 2], incident_id=incident_id,
                          reasons=["outage report 0.71", "small cluster: 5 reports"], intents={"outage_report": 0.71})
    m = sm.mention
    m.source, m.external_id, m.mention_id = pb.SOURCE_X, str(70_000 + i), f"x:{70_000 + i}"
    m.text, m.url = f"@acme is the app down? ({i})", f"https://x.com/u{i}/status/{70_000 + i}"
    m.brands.append("acme")
    return sm


async def produce(bootstrap: str, incident_id: str, mentions: list[pb.ScoredMention], with_incident: bool) -> None:
    producer = make_producer(bootstrap, "test-producer")
    await producer.start()
    try:
        futs = []
        if with_incident:
            inc = pb.Incident(id=incident_id, brand="acme", kind=pb.OUTAGE_CLUSTER, state=pb.OPEN,
                              mention_count=len(mentions), reasons=["small outage cluster"])
            inc.opened_at.CopyFrom(ts_from_epoch(time.time()))
            futs.append(await producer.send(topics.INCIDENTS, codec.encode(inc), key=incident_id.encode()))
        futs += [await producer.send(topics.MENTIONS_SCORED, codec.encode(m), key=m.mention.mention_id.encode())
                 for m in mentions]
        await asyncio.gather(*futs)
    finally:
        await producer.stop()


async def page_records(bootstrap: str, incident_id: str) -> list[pb.PageRecord]:
    got = await consume(bootstrap, [topics.PAGES], idle=0.5, timeout=5)
    return [r for r in (codec.decode(v, pb.PageRecord) for _, _, v in got) if r.incident_id == incident_id]


def router_env(bootstrap: str, routes: Path, tmp_path: Path, console: str) -> dict[str, str]:
    return {"TRIAGE_KAFKA_BOOTSTRAP": bootstrap, "TRIAGE_ROUTES_FILE": str(routes),
            "TRIAGE_ROUTER_APP_ID": "it-router-triage", "TRIAGE_ROUTER_METRICS_PORT": str(free_port()),
            "TRIAGE_TICK_SECONDS": "0.5", "TRIAGE_ROUTER_SESSION_TIMEOUT_SECONDS": "6",
            "TRIAGE_DATA_DIR": str(tmp_path / "router-data"), "TRIAGE_CONSOLE_URL": console,
            "TEST_PD_KEY": PD_KEY, "TEST_SLACK_TOKEN": SLACK_TOKEN}


async def test_a_held_incident_pages_only_on_page_now_exactly_once_across_a_router_restart(
        kafka_broker_factory, tmp_path: Path) -> None:
    bootstrap = kafka_broker_factory().bootstrap_servers
    await ensure_topics(bootstrap, all_topic_specs())
    incident_id = "inc-acme-triage-1"
    key = f"pagerduty|incident:{incident_id}"
    apis = FakeApis()
    mentions = [outage_mention(incident_id, i) for i in range(30)]
    settings = ConsoleSettings(kafka_bootstrap=bootstrap, console_group_id="it-console-triage")
    async with running_app(apis.app()) as base, running_app(build_app(settings)) as console, \
            httpx.AsyncClient(base_url=console, timeout=20) as client:
        routes = tmp_path / "routes.yaml"
        routes.write_text(ROUTES % {"base": base, "timeout": "10m"})
        env = router_env(bootstrap, routes, tmp_path, console)
        await produce(bootstrap, incident_id, mentions[:20], with_incident=True)
        router = ServiceProcess("router", env, tmp_path)
        try:
            async def listed() -> list[dict]:
                return [e for e in (await client.get("/api/triage")).json()["pending"] if e["group_key"] == key]

            held = (await wait_for(listed, 120, "the console's Triage page to list the held incident", interval=1))[0]
            assert held["incident_id"] == incident_id and held["labels"] == {"brand": "acme"}
            assert 500 < held["seconds_left"] <= 600, held
            notices = await wait_for(lambda: [m for m in apis.slack if m["text"].startswith(":raising_hand:")], 30,
                                     "the Slack triage notice")
            assert f"<{console}/triage|page now or dismiss>" in str(notices[0]["blocks"])
            buttons = [e for b in notices[0]["blocks"] if b["type"] == "actions" for e in b["elements"]]
            assert [(e["action_id"], e["value"]) for e in buttons] == [("triage_page_now", key),
                                                                       ("triage_dismiss", key)]
            await asyncio.sleep(3)  # group_wait (1 s) is long past: a route without triage would have paged
            assert apis.pagerduty == []

            router.kill()  # mid-hold, no clean-up
            await produce(bootstrap, incident_id, mentions[20:], with_incident=False)
            router = ServiceProcess("router", env, tmp_path)

            async def all_queued() -> bool:
                got = await consume(bootstrap, [queue_topic("urgent")], idle=0.5, timeout=10)
                return len({codec.decode(v, pb.RoutedMention).scored.mention.mention_id for _, _, v in got}) >= 30
            await wait_for(all_queued, 180, "the restarted router to route all 30 mentions", interval=2)
            await asyncio.sleep(3)
            assert apis.pagerduty == [], "the hold was lost in the restart"
            assert len([m for m in apis.slack if m["text"].startswith(":raising_hand:")]) == 1  # not noticed again
            assert [e["group_key"] for e in (await client.get("/api/triage")).json()["pending"]] == [key]

            page = (await client.get("/triage")).text
            assert f'data-group="{key}"' in page
            csrf = CSRF.search(page)
            assert csrf
            r = await client.post("/actions/triage", data={"csrf": csrf.group(1), "group_key": key,
                                                           "decision": "page_now", "comment": "real outage"})
            assert r.status_code == 303 and r.headers["Location"] == "/triage"
            assert "page now by" in (await client.get("/triage")).text  # off the list at once, waiting for the router
            await wait_for(lambda: apis.pd("trigger"), 60, "the PagerDuty trigger after page now")
            r = await client.post("/actions/triage", data={"csrf": csrf.group(1), "group_key": key,
                                                           "decision": "page_now"})
            assert r.status_code == 409  # a second click publishes nothing
            await asyncio.sleep(4)  # a second trigger would show up by now
        finally:
            router.stop()
            log = router.log_tail()

        triggers = apis.pd("trigger")
        assert len(triggers) == 1, log
        assert triggers[0]["dedup_key"] == incident_id
        assert triggers[0]["payload"]["custom_details"]["mentions"] >= 30  # the hold counted every mention
        recs = await page_records(bootstrap, incident_id)
        assert [r.state for r in recs if r.action == "triage"] == ["held", "paged_now"], log
        assert all(r.group_key == key for r in recs if r.action == "triage")
        assert [r.action for r in recs if r.delivered] == ["trigger"]
        assert (await client.get("/api/triage")).json()["pending"] == []


async def test_an_undecided_held_incident_pages_by_itself_once_after_the_triage_timeout(
        kafka_broker_factory, tmp_path: Path) -> None:
    bootstrap = kafka_broker_factory().bootstrap_servers
    await ensure_topics(bootstrap, all_topic_specs())
    incident_id = "inc-acme-triage-2"
    key = f"pagerduty|incident:{incident_id}"
    apis = FakeApis()
    settings = ConsoleSettings(kafka_bootstrap=bootstrap, console_group_id="it-console-triage-timeout")
    async with running_app(apis.app()) as base, running_app(build_app(settings)) as console, \
            httpx.AsyncClient(base_url=console, timeout=20) as client:
        routes = tmp_path / "routes.yaml"
        # Long enough for a loaded machine's console to see the hold before it ends (with 8 s the console could
        # first hear of it after the timeout, never listing it: failed in a CI dry run).
        routes.write_text(ROUTES % {"base": base, "timeout": "25s"})
        await produce(bootstrap, incident_id, [outage_mention(incident_id, i) for i in range(12)], with_incident=True)
        router = ServiceProcess("router", router_env(bootstrap, routes, tmp_path, console), tmp_path)
        try:
            async def listed() -> bool:
                return key in [e["group_key"] for e in (await client.get("/api/triage")).json()["pending"]]

            await wait_for(listed, 120, "the console to list the held incident", interval=0.5)
            assert apis.pagerduty == []
            await wait_for(lambda: apis.pd("trigger"), 90, "the trigger after triage_timeout")
            await asyncio.sleep(4)  # a second trigger would show up by now
        finally:
            router.stop()
            log = router.log_tail()

        assert len(apis.pd("trigger")) == 1, log
        recs = await page_records(bootstrap, incident_id)
        triage = [r for r in recs if r.action == "triage"]
        assert [r.state for r in triage] == ["held", "timed_out"], log
        trigger = next(r for r in recs if r.action == "trigger" and r.delivered)
        # Not before the timeout: 25 s after the group's first mention (the held record's time).
        assert epoch(trigger.at) - epoch(triage[0].at) >= 25.0 - 0.01
        recent = (await client.get("/api/triage")).json()

        async def shown_timed_out() -> bool:
            recent.update((await client.get("/api/triage")).json())
            return any(e["group_key"] == key and e["state"] == "timed_out" for e in recent["recent"])
        await wait_for(shown_timed_out, 20, "the console to show the hold as timed out")
        assert recent["pending"] == []

"""An outage burst through the real router worker (Faust, subprocess) on a private broker.

500 outage mentions of one brand in one classifier incident become 1 PagerDuty trigger, a few updates and
1 resolve, and one Slack thread; killing the router mid-incident neither pages twice nor loses a mention.
PagerDuty and Slack are local aiohttp servers that check requests the way the real APIs do.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from services.common import codec, topics
from services.common.codec import pb
from services.common.kafka import ensure_topics, make_producer
from services.common.timeutil import ts_from_epoch
from services.common.topics import all_topic_specs, queue_topic
from tests.support import PD_KEY, SLACK_TOKEN, FakeApis, ServiceProcess, consume, free_port, running_app, wait_for

INCIDENT = "inc-acme-outage-1"

ROUTES = """\
route:
  receiver: normal
  routes:
    - matchers: ['priority="P1"']
      receiver: pagerduty
      group_wait: 2s
      group_interval: 4s
      continue: true
    - matchers: ['priority="P1"']
      receiver: slack
      group_wait: 2s
      group_interval: 4s
      continue: true
    - matchers: ['priority="P1"']
      receiver: urgent
receivers:
  - name: pagerduty
    pagerduty: {url: "%(base)s/v2/enqueue", routing_key_env: TEST_PD_KEY}
  - name: slack
    slack: {url: "%(base)s/api/chat.postMessage", token_env: TEST_SLACK_TOKEN, channel: C0INCIDENTS}
  - name: urgent
    kafka_queue: {queue: urgent}
  - name: normal
    kafka_queue: {queue: normal}
"""


def outage_mention(i: int) -> pb.ScoredMention:
    sm = pb.ScoredMention(priority=pb.P1, language=["en", "es", "de"][i % 3], incident_id=INCIDENT,
                          reasons=["outage report 0.94", "40x normal volume in 5 min"],
                          intents={"outage_report": 0.94})
    m = sm.mention
    m.source, m.external_id, m.mention_id = pb.SOURCE_X, str(10_000 + i), f"x:{10_000 + i}"
    m.text, m.url = f"@acme app down again, cannot log in ({i})", f"https://x.com/u{i}/status/{10_000 + i}"
    m.brands.append("acme")
    return sm


def incident(state: int) -> pb.Incident:
    inc = pb.Incident(id=INCIDENT, brand="acme", kind=pb.OUTAGE_CLUSTER, state=state, mention_count=500,
                      reasons=["outage cluster"])
    inc.opened_at.CopyFrom(ts_from_epoch(time.time()))
    return inc


async def produce(bootstrap: str, topic: str, items: list[tuple[str, bytes]]) -> None:
    producer = make_producer(bootstrap, "test-producer")
    await producer.start()
    try:
        futs = [await producer.send(topic, value, key=key.encode()) for key, value in items]
        await asyncio.gather(*futs)
    finally:
        await producer.stop()


async def page_records(bootstrap: str) -> list[pb.PageRecord]:
    return [codec.decode(v, pb.PageRecord) for _, _, v in await consume(bootstrap, [topics.PAGES], idle=0.5,
                                                                        timeout=5)]


async def test_outage_burst_pages_once_survives_a_restart_and_resolves(kafka_broker_factory, tmp_path: Path):
    bootstrap = kafka_broker_factory().bootstrap_servers
    await ensure_topics(bootstrap, all_topic_specs())
    apis = FakeApis()
    async with running_app(apis.app()) as base:
        routes = tmp_path / "routes.yaml"
        routes.write_text(ROUTES % {"base": base})
        env = {"TRIAGE_KAFKA_BOOTSTRAP": bootstrap, "TRIAGE_ROUTES_FILE": str(routes),
               "TRIAGE_ROUTER_APP_ID": "it-router", "TRIAGE_ROUTER_METRICS_PORT": str(free_port()),
               "TRIAGE_TICK_SECONDS": "0.5", "TRIAGE_ROUTER_SESSION_TIMEOUT_SECONDS": "6",
               "TRIAGE_DATA_DIR": str(tmp_path / "router-data"), "TEST_PD_KEY": PD_KEY,
               "TEST_SLACK_TOKEN": SLACK_TOKEN}
        mentions = [outage_mention(i) for i in range(500)]
        await produce(bootstrap, topics.INCIDENTS, [(INCIDENT, codec.encode(incident(pb.OPEN)))])
        await produce(bootstrap, topics.MENTIONS_SCORED,
                      [(m.mention.mention_id, codec.encode(m)) for m in mentions[:250]])
        router = ServiceProcess("router", env, tmp_path)
        try:
            async def both_triggers_recorded() -> bool:
                recs = await page_records(bootstrap)
                return {(r.receiver, r.action) for r in recs if r.delivered} >= {("pagerduty", "trigger"),
                                                                                  ("slack", "trigger")}
            await wait_for(both_triggers_recorded, 120, "the first pages", interval=1)
            router.kill()  # mid-incident, without a chance to clean up

            await produce(bootstrap, topics.MENTIONS_SCORED,
                          [(m.mention.mention_id, codec.encode(m)) for m in mentions[250:]])
            router = ServiceProcess("router", env, tmp_path)

            async def all_queued() -> bool:
                got = await consume(bootstrap, [queue_topic("urgent")], idle=0.5, timeout=10)
                return len({codec.decode(v, pb.RoutedMention).scored.mention.mention_id for _, _, v in got}) >= 500
            await wait_for(all_queued, 180, "all 500 mentions on triage.queue.urgent", interval=2)
            await wait_for(lambda: any(e["payload"]["custom_details"]["mentions"] >= 500
                                       for e in apis.pd("update")), 60, "an update counting all 500 mentions")

            await produce(bootstrap, topics.INCIDENTS, [(INCIDENT, codec.encode(incident(pb.RESOLVED)))])
            await wait_for(lambda: any(e["event_action"] == "resolve" for e in apis.pagerduty)
                           and any(m["text"].startswith(":white_check_mark:") for m in apis.slack),
                           60, "the resolve at PagerDuty and Slack")
            await asyncio.sleep(2)  # a wrong second resolve or trigger would show up by now
        finally:
            router.stop()
            log = router.log_tail()

        queued = await consume(bootstrap, [queue_topic("urgent")], idle=1, timeout=20)
        ids = {codec.decode(v, pb.RoutedMention).scored.mention.mention_id for _, _, v in queued}
        assert ids == {m.mention.mention_id for m in mentions}, log

        assert {e["dedup_key"] for e in apis.pagerduty} == {INCIDENT}
        assert len(apis.pd("trigger")) == 1, log
        assert 1 <= len(apis.pd("update")) <= 15
        assert [e["event_action"] for e in apis.pagerduty].count("resolve") == 1
        assert apis.pagerduty[-1]["event_action"] == "resolve"
        details = apis.pd("trigger")[0]["payload"]["custom_details"]
        assert "outage report 0.94 (" in details["top_reasons"][0] and details["samples"]
        assert apis.pd("trigger")[0]["links"][0]["href"].startswith("https://x.com/")

        parents = [m for m in apis.slack if "thread_ts" not in m]
        assert len(parents) == 1, [m["text"] for m in apis.slack]
        assert all(m["thread_ts"] == parents[0]["ts"] for m in apis.slack if m is not parents[0])
        assert len(apis.slack) >= 3  # trigger, at least one update, the resolve

        recs = await page_records(bootstrap)
        assert [r.action for r in recs if r.receiver == "pagerduty"].count("trigger") == 1
        assert all(r.incident_id == INCIDENT for r in recs)


def ordinary_mention(i: int, brand: str) -> pb.ScoredMention:
    sm = pb.ScoredMention(priority=pb.P3, language="en", reasons=["question 0.81"], intents={"question": 0.81})
    m = sm.mention
    m.source, m.external_id, m.mention_id = pb.SOURCE_X, str(50_000 + i), f"x:{50_000 + i}"
    m.text, m.url = f"@{brand} when does the new plan start? ({i})", f"https://x.com/u{i}/status/{50_000 + i}"
    m.brands.append(brand)
    return sm


async def test_two_router_replicas_page_once_across_a_kill_and_a_new_replica(kafka_broker_factory, tmp_path: Path):
    """Scale-out (issue 12): two router replicas over 6-partition topics share one incident's 500 mentions
    (spread over every partition, keyed by mention id); its groups live on one replica (the page requests'
    partition), so there is one trigger and one Slack thread; kill -9 of a replica mid-burst and a third
    replica joining move partitions without a second page, a lost group or a duplicate on the queues."""
    bootstrap = kafka_broker_factory().bootstrap_servers
    await ensure_topics(bootstrap, all_topic_specs())
    apis = FakeApis()
    async with running_app(apis.app()) as base:
        routes = tmp_path / "routes.yaml"
        routes.write_text(ROUTES % {"base": base})

        def env(pod: str) -> dict[str, str]:
            return {"TRIAGE_KAFKA_BOOTSTRAP": bootstrap, "TRIAGE_ROUTES_FILE": str(routes),
                    "TRIAGE_ROUTER_APP_ID": "it-router-scale", "TRIAGE_ROUTER_METRICS_PORT": str(free_port()),
                    "TRIAGE_TICK_SECONDS": "0.5", "TRIAGE_ROUTER_SESSION_TIMEOUT_SECONDS": "6",
                    "TRIAGE_DATA_DIR": str(tmp_path / f"{pod}-data"), "TEST_PD_KEY": PD_KEY,
                    "TEST_SLACK_TOKEN": SLACK_TOKEN, "POD_NAME": pod}

        burst = [outage_mention(i) for i in range(500)]
        ordinary = [ordinary_mention(i, ["globex", "initech", "umbrella"][i % 3]) for i in range(150)]
        (tmp_path / "r0").mkdir()
        (tmp_path / "r1").mkdir()
        (tmp_path / "r2").mkdir()
        replicas = [ServiceProcess("router", env("router-0"), tmp_path / "r0"),
                    ServiceProcess("router", env("router-1"), tmp_path / "r1")]
        try:
            await produce(bootstrap, topics.INCIDENTS, [(INCIDENT, codec.encode(incident(pb.OPEN)))])
            first = burst[:250] + ordinary[:75]
            await produce(bootstrap, topics.MENTIONS_SCORED, [(m.mention.mention_id, codec.encode(m)) for m in first])

            async def both_triggers_recorded() -> bool:
                recs = await page_records(bootstrap)
                return {(r.receiver, r.action) for r in recs if r.delivered} >= {("pagerduty", "trigger"),
                                                                                  ("slack", "trigger")}
            await wait_for(both_triggers_recorded, 120, "the first pages", interval=1)
            replicas[1].kill()  # mid-burst, no clean-up: its partitions move after the session timeout
            rest = burst[250:] + ordinary[75:]
            await produce(bootstrap, topics.MENTIONS_SCORED, [(m.mention.mention_id, codec.encode(m)) for m in rest])
            replicas.append(ServiceProcess("router", env("router-2"), tmp_path / "r2"))  # scale up meanwhile

            async def all_queued() -> bool:
                got = await consume(bootstrap, [queue_topic("urgent"), queue_topic("normal")], idle=0.5, timeout=10)
                return len({codec.decode(v, pb.RoutedMention).scored.mention.mention_id for _, _, v in got}) >= 650
            await wait_for(all_queued, 180, "all 650 mentions on the queues", interval=2)
            await wait_for(lambda: any(e["payload"]["custom_details"]["mentions"] >= 500
                                       for e in apis.pd("update")), 90, "an update counting all 500 mentions")
            await produce(bootstrap, topics.INCIDENTS, [(INCIDENT, codec.encode(incident(pb.RESOLVED)))])
            await wait_for(lambda: any(e["event_action"] == "resolve" for e in apis.pagerduty), 60, "the resolve")
            await asyncio.sleep(3)  # a second trigger or resolve from another replica would show up by now
        finally:
            print("PD", [(e["event_action"], e.get("payload", {}).get("custom_details", {}).get("mentions"))
                         for e in apis.pagerduty])
            logs = ""
            for r in replicas:
                r.stop()
                logs += f"--- {r.log}\n" + r.log_tail(3000)

        queued = await consume(bootstrap, [queue_topic("urgent"), queue_topic("normal")], idle=1, timeout=20)
        ids = [codec.decode(v, pb.RoutedMention).scored.mention.mention_id for _, _, v in queued]
        assert sorted(ids) == sorted(m.mention.mention_id for m in burst + ordinary), logs  # each exactly once
        assert len(apis.pd("trigger")) == 1, logs
        assert [e["event_action"] for e in apis.pagerduty].count("resolve") == 1, logs
        assert {e["dedup_key"] for e in apis.pagerduty} == {INCIDENT}
        parents = [m for m in apis.slack if "thread_ts" not in m]
        assert len(parents) == 1, [m["text"] for m in apis.slack]
        assert all(m["thread_ts"] == parents[0]["ts"] for m in apis.slack if m is not parents[0])

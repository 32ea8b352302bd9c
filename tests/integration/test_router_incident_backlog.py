"""An incident whose mentions were all scored before it opened pages once (issue 24), on the real broker.

A backlog of outage reports reached classify at once (a worker catching up): every one was scored before
the detector's next evaluation, so the incident opened on the timer and none is tagged with it (P2, no
incident id). Two router replicas (Faust, subprocesses) over 6-partition topics: the incident record itself
pages PagerDuty once (dedup key = the incident id, its samples and count on the page), a kill -9 of a
replica and a new one joining page nobody twice, the classifier's updates update the page, and its resolve
resolves it. PagerDuty and Slack are local aiohttp servers that check requests as the real APIs do.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from services.common import codec, topics
from services.common.codec import pb
from services.common.kafka import ensure_topics
from services.common.timeutil import ts_from_epoch
from services.common.topics import all_topic_specs, queue_topic
from tests.integration.test_router_incidents import ROUTES, page_records, produce
from tests.support import PD_KEY, SLACK_TOKEN, FakeApis, ServiceProcess, consume, free_port, running_app, wait_for

INCIDENT = "inc-acme-outage-20261206T040000Z"


def untagged_report(i: int) -> pb.ScoredMention:
    """An outage report as classify scored it before its incident opened: P2, no incident id."""
    sm = pb.ScoredMention(priority=pb.P2, language=["en", "es"][i % 2], reasons=["outage report 0.91"],
                          intents={"outage_report": 0.91})
    m = sm.mention
    m.source, m.external_id, m.mention_id = pb.SOURCE_X, str(70_000 + i), f"x:{70_000 + i}"
    m.text, m.url = f"@acme is the app down? cannot pay ({i})", f"https://x.com/u{i}/status/{70_000 + i}"
    m.brands.append("acme")
    return sm


def incident(state: int, count: int) -> pb.Incident:
    """What classify publishes: the seeds (the backlog's reports) as its count and samples."""
    inc = pb.Incident(id=INCIDENT, brand="acme", kind=pb.OUTAGE_CLUSTER, state=state,  # type: ignore[arg-type]
                      mention_count=count, severity=0.85,
                      reasons=[f"{count} outage reports in 1 min (0.1 expected)", "about: shared topic: down"])
    inc.opened_at.CopyFrom(ts_from_epoch(time.time()))
    inc.updated_at.CopyFrom(ts_from_epoch(time.time()))
    for i in range(5):
        inc.evidence.sample_mention_ids.append(f"x:{70_000 + i}")
        inc.evidence.sample_urls.append(f"https://x.com/u{i}/status/{70_000 + i}")
    inc.evidence.languages["en"], inc.evidence.languages["es"] = count // 2 + count % 2, count // 2
    inc.evidence.sources["x"] = count
    return inc


async def test_an_incident_with_no_tagged_mention_pages_once_across_a_kill_and_a_new_replica(
        kafka_broker_factory, tmp_path: Path):
    bootstrap = kafka_broker_factory().bootstrap_servers
    await ensure_topics(bootstrap, all_topic_specs())
    apis = FakeApis()
    async with running_app(apis.app()) as base:
        routes = tmp_path / "routes.yaml"
        routes.write_text(ROUTES % {"base": base})

        def env(pod: str) -> dict[str, str]:
            return {"TRIAGE_KAFKA_BOOTSTRAP": bootstrap, "TRIAGE_ROUTES_FILE": str(routes),
                    "TRIAGE_ROUTER_APP_ID": "it-router-backlog", "TRIAGE_ROUTER_METRICS_PORT": str(free_port()),
                    "TRIAGE_TICK_SECONDS": "0.5", "TRIAGE_ROUTER_SESSION_TIMEOUT_SECONDS": "6",
                    "TRIAGE_DATA_DIR": str(tmp_path / f"{pod}-data"), "TEST_PD_KEY": PD_KEY,
                    "TEST_SLACK_TOKEN": SLACK_TOKEN, "POD_NAME": pod}

        backlog = [untagged_report(i) for i in range(120)]
        for pod in ("r0", "r1", "r2"):
            (tmp_path / pod).mkdir()
        replicas = [ServiceProcess("router", env("router-0"), tmp_path / "r0"),
                    ServiceProcess("router", env("router-1"), tmp_path / "r1")]
        try:
            await produce(bootstrap, topics.MENTIONS_SCORED, [(m.mention.mention_id, codec.encode(m)) for m in backlog])
            await produce(bootstrap, topics.INCIDENTS, [(INCIDENT, codec.encode(incident(pb.OPEN, 40)))])

            await wait_for(lambda: apis.pd("trigger"), 120, "the incident's PagerDuty trigger", interval=1)
            replicas[1].kill()  # no clean-up: its partitions move after the session timeout
            replicas.append(ServiceProcess("router", env("router-2"), tmp_path / "r2"))
            await produce(bootstrap, topics.INCIDENTS, [(INCIDENT, codec.encode(incident(pb.UPDATED, 120)))])
            await wait_for(lambda: any(e["payload"]["custom_details"]["mentions"] == 120 for e in apis.pd("update")),
                           120, "an update with the classifier's count")

            async def all_queued() -> bool:
                got = await consume(bootstrap, [queue_topic("normal")], idle=0.5, timeout=10)
                return len({codec.decode(v, pb.RoutedMention).scored.mention.mention_id for _, _, v in got}) >= 120
            await wait_for(all_queued, 120, "the backlog on triage.queue.normal", interval=2)
            await produce(bootstrap, topics.INCIDENTS, [(INCIDENT, codec.encode(incident(pb.RESOLVED, 120)))])
            await wait_for(lambda: any(e["event_action"] == "resolve" for e in apis.pagerduty), 60, "the resolve")
            await asyncio.sleep(3)  # a second trigger or resolve from another replica would show up by now
        finally:
            logs = ""
            for r in replicas:
                r.stop()
                logs += f"--- {r.log}\n" + r.log_tail(3000)

        triggers = apis.pd("trigger")
        assert len(triggers) == 1, logs
        assert [e["event_action"] for e in apis.pagerduty].count("resolve") == 1, logs
        assert {e["dedup_key"] for e in apis.pagerduty} == {INCIDENT}
        details = triggers[0]["payload"]["custom_details"]
        assert details["mentions"] == 40 and details["top_reasons"][0].startswith("40 outage reports in 1 min")
        assert [s["url"] for s in details["samples"]] == [f"https://x.com/u{i}/status/{70_000 + i}" for i in range(5)]
        assert triggers[0]["payload"]["severity"] == "critical" and "acme: 40 mentions" in triggers[0]["payload"][
            "summary"]
        parents = [m for m in apis.slack if "thread_ts" not in m]
        assert len(parents) == 1, [m["text"] for m in apis.slack]  # Slack: one thread, the same incident
        recs = await page_records(bootstrap)
        assert [r.action for r in recs if r.receiver == "pagerduty" and r.delivered].count("trigger") == 1
        assert {r.incident_id for r in recs} == {INCIDENT}

        queued = await consume(bootstrap, [queue_topic("normal"), queue_topic("urgent")], idle=1, timeout=20)
        ids = [codec.decode(v, pb.RoutedMention).scored.mention.mention_id for _, _, v in queued]
        assert sorted(ids) == sorted(m.mention.mention_id for m in backlog), logs  # each exactly once, unchanged

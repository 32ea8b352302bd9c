"""An open incident pages by itself (issue 24): the router routes the incident record like a mention tagged
with it, into the same group, so a backlog whose every mention was scored before its incident opened still
pages, once; routes, silences, inhibition and triage apply to it as to its mentions (pure, clock injected)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from services.classify.crisis_agent import CrisisMonitor
from services.common import codec
from services.common.alerting.silence_feed import SilenceFeed
from services.common.codec import pb
from services.common.timeutil import ts_from_epoch
from services.router import render
from services.router.grouping import IncidentGrouper, Page, PageAction, PageRequest
from services.router.grouping_stage import GroupingStage
from services.router.labels import incident_routing_labels, labels_of
from services.router.routing_file import loads

T0 = 1_793_577_600.0

TREE = """\
route:
  receiver: queue
  routes:
    - matchers: ['priority="P1"']
      receiver: pagerduty
      group_wait: 2s
      group_interval: 30s
      continue: true
    - matchers: ['priority="P1"', 'brand="triaged"']
      receiver: slack
      triage: true
      triage_timeout: 10m
    - matchers: ['priority="P1"']
      receiver: urgent
receivers:
  - name: queue
    kafka_queue: {queue: normal}
  - name: urgent
    kafka_queue: {queue: urgent}
  - name: pagerduty
    pagerduty: {routing_key_env: TEST_PD_KEY}
  - name: slack
    slack: {url: "http://127.0.0.1:9/api/chat.postMessage", token_env: TEST_SLACK_TOKEN, channel: C0INCIDENTS}
silences:
  - matchers: ['brand="silenced"']
    starts_at: 2026-01-01T00:00:00Z
    ends_at: 2030-01-01T00:00:00Z
    comment: planned maintenance
inhibit_rules:
  - source_matchers: ['kind="outage_cluster"']
    target_matchers: ['intent="complaint"']
    equal: [brand]
"""


def report(i: int, t: float, brand: str = "acme") -> pb.ScoredMention:
    """An outage report as classify scores it before any incident is open (P2, untagged)."""
    sm = pb.ScoredMention(language="en", priority=pb.P2, reasons=["outage report 0.90"])
    m = sm.mention
    m.mention_id, m.external_id, m.text = f"x:{i}", str(i), f"app down, cannot log in ({i})"
    m.url, m.source = f"https://x.com/u{i}/status/{i}", pb.SOURCE_X
    m.brands.append(brand)
    m.received_at.CopyFrom(ts_from_epoch(t))
    sm.intents["outage_report"] = 0.9
    sm.sentiment.negative = 0.8
    return sm


def incident(brand: str = "acme", kind: int = pb.OUTAGE_CLUSTER, state: int = pb.OPEN, count: int = 40,
             iid: str = "inc-acme-outage-1") -> pb.Incident:
    inc = pb.Incident(id=iid, brand=brand, kind=kind, state=state, mention_count=count,  # type: ignore[arg-type]
                      reasons=["40 outage reports in 1 min (0.2 expected)", "about: shared topic: down 100%"])
    inc.evidence.sample_mention_ids.extend(["x:1", "x:2", "x:3"])
    inc.evidence.sample_urls.extend(["https://x.com/u1/status/1", "https://x.com/u3/status/3"])
    inc.evidence.languages["en"] = count
    inc.evidence.sources["x"] = count
    return inc


class MemoryState:
    """The state log's `put` (state.py), kept in memory: what a resolved incident's groups write."""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, Any]] = {}

    async def put(self, key: str, value: dict[str, Any], _owner: str) -> asyncio.Future[None]:
        self.records[key] = value
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def stage(now: float = T0) -> GroupingStage:
    return GroupingStage(loads(TREE), IncidentGrouper(), SilenceFeed(), clock=lambda: now)


async def route_mentions(grouping: GroupingStage, mentions: list[pb.ScoredMention], now: float) -> None:
    """What the routing stage does with each mention's paging routes (one process: counted at once)."""
    for sm in mentions:
        labels = labels_of(sm)
        for route in grouping.tree.match(labels, now):
            if grouping.tree.is_paging(route) and grouping.tree.receivers[route.receiver].kind != "kafka_queue":
                await grouping.take(sm, labels, route, pb.Priority.Name(sm.priority), now, None)  # type: ignore


def pages(grouper: IncidentGrouper, start: float, seconds: float) -> list[Page]:
    """Every page due over `seconds` of one-second ticks, each delivered."""
    out = []
    for s in range(int(seconds)):
        for page in grouper.due(start + s):
            grouper.mark_sent(page, page.group.count)
            out.append(page)
    return out


def test_a_backlog_scored_before_its_incident_opened_pages_once_from_the_incident_record() -> None:
    # Classify: 120 outage reports arrive at once (a worker catching up): all scored before the detector's
    # next evaluation, so the incident opens on the timer and none of its mentions is tagged with it.
    monitor = CrisisMonitor(store={}, checkpoint_seconds=0, clock=lambda: T0 + 5)
    backlog = [report(i, T0 + i * 0.02) for i in range(120)]
    updates = monitor.annotate(backlog)
    updates += [u for s in range(0, 300, 5) for u in monitor.tick(T0 + 25 + s)]
    opened = [u for u in updates if u.state == pb.OPEN]
    assert len(opened) == 1 and not any(sm.incident_id for sm in backlog)
    assert {sm.priority for sm in backlog} == {pb.P2}

    # Router: the mentions alone page nobody (no P1); the incident record pages its P1 receiver, once.
    grouping = stage(T0 + 30)
    asyncio.run(route_mentions(grouping, backlog, T0 + 30))
    assert grouping.grouper.groups == {}
    for inc in updates * 2:  # every record, twice (two readers, or a restart re-reading the topic)
        asyncio.run(grouping.page_incident(codec.decode(codec.encode(inc), pb.Incident), None))  # type: ignore
    sent = pages(grouping.grouper, T0 + 30, 600)
    assert [(p.action, p.group.receiver) for p in sent][:1] == [(PageAction.TRIGGER, "pagerduty")]
    assert [p.action for p in sent].count(PageAction.TRIGGER) == 1 and len(grouping.grouper.groups) == 1
    trigger = sent[0]
    assert trigger.at == T0 + 32 and trigger.group.id == opened[0].id  # group_wait after the record
    details = render.details(trigger.group)
    assert details["mentions"] == max(u.mention_count for u in updates) >= 40
    assert details["top_reasons"][0].startswith(opened[0].reasons[0])
    assert details["samples"] and all(s["url"].startswith("https://x.com/") for s in details["samples"])
    assert {s["mention_id"] for s in details["samples"]} <= {f"x:{i}" for i in range(120)}
    assert f": {details['mentions']} mentions - {opened[0].reasons[0][:20]}" in render.summary(trigger.group)

    resolved = opened[0].__class__()
    resolved.CopyFrom(opened[0])
    resolved.state = pb.RESOLVED
    state = MemoryState()
    asyncio.run(grouping.incident_record(codec.encode(resolved), None, state))  # type: ignore[arg-type]
    assert state.records[f"group:{trigger.group.key}"]["closing"]
    asyncio.run(grouping.page_incident(opened[0], None))  # type: ignore[arg-type]  # a stale OPEN read late
    after = pages(grouping.grouper, T0 + 700, 60)
    assert [p.action for p in after] == [PageAction.RESOLVE]


def test_the_record_and_its_tagged_mentions_make_one_group_and_one_trigger_in_either_order() -> None:
    tagged = [report(i, T0) for i in range(10)]
    for sm in tagged:
        sm.incident_id, sm.priority = "inc-acme-outage-1", pb.P1
    for record_first in (True, False):
        grouping = stage()
        if record_first:
            asyncio.run(grouping.page_incident(incident(count=40), None))  # type: ignore[arg-type]
        asyncio.run(route_mentions(grouping, tagged, T0))
        if not record_first:
            asyncio.run(grouping.page_incident(incident(count=40), None))  # type: ignore[arg-type]
        assert list(grouping.grouper.groups) == ["pagerduty|incident:inc-acme-outage-1"]
        g = grouping.grouper.groups["pagerduty|incident:inc-acme-outage-1"]
        assert (g.count, g.mentions) == (10, 40)  # the routed mentions, the classifier's count shown
        # The mentions' samples (with text) come first; the record's fill the rest.
        assert [s["mention_id"] for s in g.samples][:5] == [f"x:{i}" for i in range(5)]
        assert g.languages == {"en": 10} and g.top_reasons(1)[0][0] == "outage report 0.90"
        sent = pages(grouping.grouper, T0, 120)
        assert [p.action for p in sent] == [PageAction.TRIGGER]
        asyncio.run(grouping.page_incident(incident(count=90), None))  # type: ignore[arg-type]  # it grew
        assert [p.action for p in pages(grouping.grouper, T0 + 120, 60)] == [PageAction.UPDATE]
        assert grouping.grouper.groups[g.key].sent_incident_mentions == 90


def test_mentions_routed_after_a_trigger_update_the_page_even_when_the_record_counted_them_first() -> None:
    """The record may reach the group before its tagged mentions (and already count them): the mentions
    routed since the trigger still make an update, as they did before the record paged."""
    tagged = [report(i, T0) for i in range(500)]
    for sm in tagged:
        sm.incident_id, sm.priority = "inc-acme-outage-1", pb.P1
    grouping = stage()
    asyncio.run(grouping.page_incident(incident(count=500), None))  # type: ignore[arg-type]
    asyncio.run(route_mentions(grouping, tagged[:250], T0))
    assert [p.action for p in pages(grouping.grouper, T0, 10)] == [PageAction.TRIGGER]
    asyncio.run(route_mentions(grouping, tagged[250:], T0 + 10))
    [update] = pages(grouping.grouper, T0 + 10, 60)
    assert update.action == PageAction.UPDATE and render.details(update.group)["mentions"] == 500
    assert pages(grouping.grouper, T0 + 70, 600) == []  # nothing new: no more updates


def test_the_records_request_is_the_mentions_group_on_the_same_owner() -> None:
    """Replicas: a request goes to the owner of its key's partition, so the record's and its mentions' requests
    must carry one key; and the request survives the page-requests topic."""
    grouping = stage()
    [request] = grouping.incident_requests(incident(), T0)
    sm = report(1, T0)
    sm.incident_id, sm.priority = "inc-acme-outage-1", pb.P1
    labels = labels_of(sm)
    route = next(r for r in grouping.tree.match(labels, T0) if r.receiver == "pagerduty")
    mention_request = GroupingStage.request(sm, labels, route, "P1", T0)
    assert request.key == mention_request.key == "pagerduty|incident:inc-acme-outage-1"
    assert PageRequest.decode(request.encode()) == request and request.incident is not None
    assert request.incident.mentions == 40 and [s.url for s in request.incident.samples] == [
        "https://x.com/u1/status/1", "", "https://x.com/u3/status/3"]
    assert "incident" not in json.loads(mention_request.encode())  # a mention's request reads as before


@pytest.mark.parametrize("inc, why", [
    (incident(kind=pb.COMPLAINT_SURGE), "a surge tags no mention: evidence, not a page"),
    (incident(state=pb.RESOLVED), "resolved"),
    (incident(count=0), "no mention counted"),
    (incident(brand="silenced"), "a silence on the brand"),
])
def test_what_a_tagged_mention_would_not_page_the_record_does_not_page(inc: pb.Incident, why: str) -> None:
    assert stage().incident_requests(inc, T0) == [], why


def test_inhibition_and_triage_apply_to_the_record() -> None:
    grouping = stage()
    outage = incident(brand="acme", iid="inc-acme-outage-1")
    asyncio.run(grouping.incident_record(codec.encode(outage), None, None))  # type: ignore[arg-type]
    viral = incident(kind=pb.VIRAL_COMPLAINT, iid="inc-acme-viral-1")
    assert grouping.incident_requests(viral, T0) == []  # the open outage explains the viral complaint
    assert [r.receiver for r in grouping.incident_requests(outage, T0)] == ["pagerduty"]  # never by itself
    assert incident_routing_labels(viral) == {
        "priority": "P1", "intents": "complaint", "intent": "complaint", "sentiment": "negative",
        "language": "en", "brand": "acme", "brands": "acme", "source": "x", "incident": "inc-acme-viral-1",
        "kind": "viral_complaint"}

    triaged = incident(brand="triaged", iid="inc-triaged-outage-1")
    asyncio.run(grouping.page_incident(triaged, None))  # type: ignore[arg-type]
    held = grouping.grouper.groups["slack|incident:inc-triaged-outage-1"]
    assert held.triage_state(T0 + 60) == "held"
    assert [p.group.receiver for p in pages(grouping.grouper, T0, 300)] == ["pagerduty"]  # slack waits

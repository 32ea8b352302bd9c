"""Incident grouping, SLA clocks, rate limit / circuit breaker and receiver payloads (pure, injected clock)."""

from __future__ import annotations

import itertools
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from services.router import render
from services.router.grouping import Group, IncidentGrouper, Page, Sample
from services.router.ratelimit import CircuitBreaker, TokenBucket
from services.router.sla import SlaItem, SlaTracker

T0 = 1_800_000_000.0


def add(g: IncidentGrouper, now: float, incident: str = "inc-1", brand: str = "acme", reason: str = "outage 0.9",
        lang: str = "en", i: int = 0) -> Group | None:
    return g.add(receiver="pd", route="root/0", incident_id=incident, group_by=["brand"], labels={"brand": brand},
                 priority="P1", reasons=[reason], sample=Sample(f"x:{i}", f"down {i}", f"https://x.com/{i}", lang),
                 now=now, group_wait=30, group_interval=300, repeat_interval=4 * 3600, quiet_period=900)


def run(grouper: IncidentGrouper, until: float, step: float = 1.0, start: float = T0) -> list[str]:
    actions = []
    t = start
    while t <= until:
        for p in grouper.due(t):
            grouper.mark_sent(p, p.group.count)
            actions.append(p.action)
        t += step
    return actions


def test_500_outage_mentions_make_one_trigger_few_updates_one_resolve():
    g = IncidentGrouper()
    actions = []
    # 500 posts over 20 minutes, ticks every second
    for i in range(500):
        now = T0 + i * 2.4
        add(g, now, i=i, lang="es" if i % 3 else "en")
        for p in g.due(now):
            g.mark_sent(p, p.group.count)
            actions.append(p.action)
    actions += run(g, T0 + 1500, start=T0 + 1200)
    assert actions.count("trigger") == 1
    assert 1 <= actions.count("update") <= 1200 // 300 + 1
    g.close_incident("inc-1", T0 + 1600)
    actions += run(g, T0 + 1700, start=T0 + 1600)
    assert actions.count("resolve") == 1 and actions[0] == "trigger" and actions[-1] == "resolve"
    grp = next(iter(g.groups.values()))
    assert grp.count == 500 and grp.languages == {"es": 333, "en": 167} and len(grp.samples) == 5


def test_trigger_waits_for_group_wait_and_stragglers_after_resolve_do_not_repage():
    g = IncidentGrouper()
    add(g, T0)
    assert g.due(T0 + 29) == []
    assert [p.action for p in g.due(T0 + 30)] == ["trigger"]
    g.mark_sent(g.due(T0 + 30)[0], 1)
    g.close_incident("inc-1", T0 + 40)
    p = g.due(T0 + 41)[0]
    g.mark_sent(p, 1)
    assert p.action == "resolve"
    assert add(g, T0 + 50) is None and g.due(T0 + 100) == []


def test_incident_resolved_before_group_wait_never_pages():
    g = IncidentGrouper()
    add(g, T0)
    g.close_incident("inc-1", T0 + 5)
    assert run(g, T0 + 100) == []


def test_label_group_resolves_after_quiet_period_and_a_new_burst_is_a_new_incident():
    g = IncidentGrouper()
    first = add(g, T0, incident="")
    assert first is not None
    acts = run(g, T0 + 1000)
    assert acts == ["trigger", "resolve"]
    second = add(g, T0 + 2000, incident="")
    assert second is not None and second.id != first.id


def test_group_state_round_trips_through_json():
    g = IncidentGrouper()
    grp = add(g, T0)
    assert grp is not None
    assert Group.from_json(json.loads(json.dumps(grp.to_json()))) == grp


def test_sla_breach_only_for_unanswered_items_and_only_once():
    sla = SlaTracker()
    for mid in ("a", "b"):
        sla.open(SlaItem(mid, "urgent", "P2", "root/1", T0, T0 + 3600))
    answered = sla.respond("a", T0 + 600)
    assert answered is not None and answered.first_response_seconds == 600 and answered.in_time
    assert sla.breaches(T0 + 3600) == []
    assert [i.mention_id for i in sla.breaches(T0 + 3601)] == ["b"]
    assert sla.breaches(T0 + 9999) == []
    assert sla.open_counts() == {("urgent", "P2"): 1}
    assert not sla.open(SlaItem("b", "urgent", "P2", "root/1", T0 + 10, T0 + 10))  # redelivery keeps the clock
    assert sla.expire(T0 + 3600 + 86400, 7 * 86400) == [] and sla.expire(T0 + 3601 + 7 * 86400, 7 * 86400) == ["b"]


def test_token_bucket_paces_pagerduty_to_120_per_minute():
    now = [0.0]
    bucket = TokenBucket.per_minute(120, lambda: now[0], burst=1)
    waits = [bucket.reserve() for _ in range(3)]
    assert waits[0] == 0 and abs(waits[1] - 0.5) < 1e-9 and abs(waits[2] - 1.0) < 1e-9


def test_circuit_breaker_opens_then_lets_one_probe_through():
    now = [0.0]
    b = CircuitBreaker(lambda: now[0], failure_threshold=3, reset_after=10)
    for _ in range(3):
        assert b.allow()
        b.record_failure()
    assert b.state == "open" and not b.allow()
    now[0] = 10
    assert b.allow() and not b.allow()  # one probe
    b.record_failure()
    assert b.state == "open"
    now[0] = 20
    assert b.allow()
    b.record_success()
    assert b.state == "closed" and b.allow()


def _page(action: str) -> Page:
    g = IncidentGrouper()
    grp = add(g, T0, reason="outage report 0.94")
    assert grp is not None
    grp.thread_ref = "1700000000.000100"
    return Page(action, grp, T0 + 60)


def test_pagerduty_events_v2_shapes():
    trig = render.pagerduty_event(_page("trigger"), "R0UTINGKEY")
    assert trig["event_action"] == "trigger" and trig["dedup_key"] == "inc-1"
    assert trig["payload"]["severity"] == "critical" and trig["payload"]["source"]
    assert trig["payload"]["custom_details"]["top_reasons"] == ["outage report 0.94 (1)"]
    assert trig["links"][0]["href"] == "https://x.com/0"
    assert render.pagerduty_event(_page("resolve"), "K") == {"routing_key": "K", "event_action": "resolve",
                                                            "dedup_key": "inc-1"}
    assert render.pagerduty_event(_page("acknowledge"), "K")["event_action"] == "acknowledge"


def test_opsgenie_slack_alertmanager_shapes():
    og = render.opsgenie_alert(_page("trigger"))
    assert og["alias"] == "inc-1" and og["priority"] == "P1" and len(og["message"]) <= 130
    assert all(isinstance(v, str) for v in og["details"].values())
    assert "thread_ts" not in render.slack_message(_page("trigger"), "C1")
    upd = render.slack_message(_page("update"), "C1", "1700000000.000100")
    assert upd["thread_ts"] == "1700000000.000100" and upd["blocks"][0]["type"] == "section"
    firing = render.alertmanager_alerts(_page("trigger"))[0]
    # A firing alert lapses on its own unless re-posted (heartbeat.py): endsAt is ahead of the post, never absent.
    assert firing["labels"]["incident"] == "inc-1" and firing["endsAt"] == "2027-01-15T08:04:00Z"  # post + 3 min
    assert render.alertmanager_alerts(_page("resolve"))[0]["endsAt"].endswith("Z")


@settings(max_examples=60, deadline=None)
@given(arrivals=st.lists(st.floats(min_value=0, max_value=3000, allow_nan=False), min_size=1, max_size=80),
       ticks=st.lists(st.floats(min_value=0, max_value=4000, allow_nan=False), min_size=1, max_size=80),
       close_at=st.one_of(st.none(), st.floats(min_value=0, max_value=4000, allow_nan=False)))
def test_never_more_than_one_trigger_and_one_resolve_and_updates_are_paced(arrivals, ticks, close_at):
    g = IncidentGrouper()
    events = sorted([(t, "add") for t in arrivals] + [(t, "tick") for t in ticks]
                    + ([(close_at, "close")] if close_at is not None else []))
    sent: list[tuple[str, float]] = []
    for t, kind in events:
        if kind == "add":
            add(g, T0 + t)
        elif kind == "close":
            g.close_incident("inc-1", T0 + t)
        else:
            for p in g.due(T0 + t):
                g.mark_sent(p, p.group.count)
                sent.append((p.action, t))
    actions = [a for a, _ in sent]
    assert actions.count("trigger") <= 1 and actions.count("resolve") <= 1
    if actions:
        assert actions[0] == "trigger" and ("resolve" not in actions or actions[-1] == "resolve")
        assert sent[0][1] >= min(arrivals) + 30  # never before group_wait
    times = [t for a, t in sent if a != "resolve"]
    assert all(b - a >= 300 for a, b in itertools.pairwise(times))  # group_interval between pages

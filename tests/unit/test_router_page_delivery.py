"""Page delivery as a persisted state machine (grouping.py) and the router's replay ledger (ledger.py): pure,
clock injected."""

from __future__ import annotations

import json

from services.common.codec import pb
from services.router.grouping import Group, IncidentGrouper, Sample
from services.router.ledger import RoutedLedger, mention_version
from services.router.ratelimit import TokenBucket

T0 = 1_800_000_000.0


def add(g: IncidentGrouper, now: float, incident: str = "inc-1", brand: str = "acme", i: int = 0) -> Group | None:
    return g.add(receiver="pd", route="root/0", incident_id=incident, group_by=["brand"], labels={"brand": brand},
                 priority="P1", reasons=["outage 0.9"], sample=Sample(f"x:{i}", f"down {i}", "", "en"), now=now,
                 group_wait=30, group_interval=300, repeat_interval=4 * 3600, quiet_period=900)


def test_a_failed_trigger_stays_due_backs_off_and_is_sent_with_the_current_count():
    g = IncidentGrouper()
    add(g, T0)
    (p,) = g.due(T0 + 30)
    assert p.action == "trigger"
    g.mark_failed(p, T0 + 30, "HTTP 500", retry_in=4.0)
    grp = p.group
    assert grp.delivery_state == "retrying" and not grp.triggered_at
    assert g.due(T0 + 33) == []                      # backing off
    for i in range(1, 6):                            # mentions keep arriving meanwhile
        add(g, T0 + 31 + i, i=i)
    (again,) = g.due(T0 + 34)
    assert again.action == "trigger" and again.group.count == 6   # coalesced: one trigger with what is known now
    g.mark_failed(again, T0 + 34, "HTTP 503", retry_in=5.0)
    assert grp.outbox["attempts"] == 2 and grp.outbox["since"] == T0 + 30
    (third,) = g.due(T0 + 39)
    g.mark_sent(third, third.group.count)
    assert grp.triggered_at == T0 + 39 and grp.outbox == {} and grp.delivery_state == "delivered"
    assert g.due(T0 + 40) == []                      # no duplicate trigger


def test_an_incident_resolved_before_its_trigger_was_delivered_dead_letters_the_trigger():
    g = IncidentGrouper()
    add(g, T0)
    (p,) = g.due(T0 + 30)
    g.mark_failed(p, T0 + 30, "HTTP 500", retry_in=2.0)
    g.close_incident("inc-1", T0 + 31)
    assert g.due(T0 + 40) == []                      # nothing to resolve at the receiver
    (dead,) = g.give_up(T0 + 40, budget=3600)
    page, reason, attempts = dead
    assert page.action == "trigger" and attempts == 1 and "resolved before its trigger" in reason
    assert p.group.resolved_at and p.group.abandoned and p.group.delivery_state == "dead_lettered"
    assert g.give_up(T0 + 41, budget=3600) == []


def test_a_trigger_is_retried_for_the_whole_budget_then_dead_lettered():
    g = IncidentGrouper()
    add(g, T0)
    t = T0 + 30
    attempts = 0
    while t < T0 + 30 + 100:
        assert g.give_up(t, budget=100) == []
        for p in g.due(t):
            g.mark_failed(p, t, "timeout", retry_in=5.0)
            attempts += 1
        t += 1
    assert attempts == 20                            # every 5 s for 100 s, never parked early
    (dead,) = g.give_up(t, budget=100)
    assert dead[0].action == "trigger" and "budget" in dead[1] and dead[2] == 20
    assert add(g, t + 1, i=99) is None               # the incident's group is over; it is in the DLQ


def test_a_pending_update_is_replaced_by_the_resolve_and_triggers_go_first():
    g = IncidentGrouper()
    add(g, T0, incident="a")
    (p,) = g.due(T0 + 30)
    g.mark_sent(p, 1)
    add(g, T0 + 100, incident="a", i=1)
    (upd,) = g.due(T0 + 330)
    assert upd.action == "update"
    g.mark_failed(upd, T0 + 330, "HTTP 502", retry_in=10.0)
    g.close_incident("a", T0 + 331)
    add(g, T0 + 320, incident="b", brand="other")    # a second incident, due at T0 + 350
    pages = g.due(T0 + 350)
    assert [(x.action, x.group.incident_id) for x in pages] == [("trigger", "b"), ("resolve", "a")]


def test_a_lost_update_is_coalesced_into_the_next_one():
    g = IncidentGrouper()
    add(g, T0)
    (p,) = g.due(T0 + 30)
    g.mark_sent(p, 1)
    add(g, T0 + 100, i=1)
    (upd,) = g.due(T0 + 330)
    g.mark_failed(upd, T0 + 330, "HTTP 500", retry_in=1.0)
    (dead,) = g.give_up(T0 + 330 + 60, budget=60)
    assert dead[0].action == "update"
    grp = upd.group
    assert not grp.resolved_at and grp.outbox == {} and grp.sent_count == grp.count  # the group goes on
    add(g, T0 + 400, i=2)
    assert [x.action for x in g.due(T0 + 390 + 300)] == ["update"]


def test_delivery_state_survives_json_and_old_state_without_it_loads():
    g = IncidentGrouper()
    add(g, T0)
    (p,) = g.due(T0 + 30)
    g.mark_failed(p, T0 + 30, "HTTP 500", retry_in=3.0)
    restored = Group.from_json(json.loads(json.dumps(p.group.to_json())))
    assert restored.outbox == p.group.outbox and restored.delivery_state == "retrying"
    fresh = IncidentGrouper()
    fresh.groups[restored.key] = restored
    assert fresh.due(T0 + 32) == [] and [x.action for x in fresh.due(T0 + 33)] == ["trigger"]  # resumes
    old = p.group.to_json()
    for k in ("outbox", "abandoned"):
        old.pop(k)
    old["a_field_from_the_future"] = 1
    assert Group.from_json(old).outbox == {}


def test_token_bucket_take_keeps_tokens_back_for_urgent_callers():
    now = [0.0]
    b = TokenBucket(rate=1.0, burst=4.0, clock=lambda: now[0])
    assert b.take(keep=1.0) and b.take(keep=1.0) and b.take(keep=1.0)
    assert not b.take(keep=1.0)                      # updates stop with one token left ...
    assert b.take()                                  # ... which a trigger can still use
    assert not b.take()
    now[0] = 1.0
    assert b.take()


def test_ledger_skips_a_replayed_version_and_routes_an_engagement_update():
    m = pb.Mention(mention_id="x:1")
    led = RoutedLedger(window=60)
    v1 = mention_version(m)
    assert led.claim("q", v1, T0) and not led.claim("q", v1, T0 + 1) and led.seen("q", v1)
    assert led.claim("other-queue", v1, T0)          # per topic
    m.engagement.likes = 5
    assert led.claim("q", mention_version(m), T0 + 2)
    led.release("q", v1)                             # dead-lettered: a DLQ replay must get through
    assert led.claim("q", v1, T0 + 3)
    led.remember("q", b"x:2|0|0|0|0", T0 - 100)
    assert led.seen("q", "x:2|0|0|0|0") and led.expire(T0) == 1 and not led.seen("q", "x:2|0|0|0|0")

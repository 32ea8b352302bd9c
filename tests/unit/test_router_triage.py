"""Triage before paging (pure, clock injected): a `triage: true` route's new incident is held until a person
says "page now" or "dismiss", and pages on its own after `triage_timeout` so nothing is lost."""

from __future__ import annotations

import json

import pytest
from test_router_grouping import T0, run

from services.common.alerting.silence_feed import SilenceFeed
from services.common.codec import pb
from services.router.check import main as check_main
from services.router.grouping import (
    TRIAGE_DISMISS,
    TRIAGE_PAGE_NOW,
    Group,
    IncidentGrouper,
    Page,
    PageRequest,
    Sample,
    triage_notice_due,
    triage_transition,
)
from services.router.grouping_stage import GroupingStage
from services.router.render import slack_message
from services.router.routing_file import RoutingConfigError, loads

KEY = "pd|incident:inc-1"


def add(g: IncidentGrouper, now: float, triage_timeout: float = 600.0, i: int = 0) -> Group | None:
    return g.add(receiver="pd", route="root/0", incident_id="inc-1", group_by=["brand"], labels={"brand": "acme"},
                 priority="P1", reasons=["outage 0.9"], sample=Sample(f"x:{i}", f"down {i}", "", "en"), now=now,
                 group_wait=30, group_interval=300, repeat_interval=4 * 3600, quiet_period=900,
                 triage_timeout=triage_timeout)


def test_a_held_incident_pages_only_when_a_person_says_page_now() -> None:
    grouper = IncidentGrouper()
    for k in range(20):
        add(grouper, T0 + k, i=k)
    assert run(grouper, T0 + 300) == []  # group_wait passed long ago: still held
    assert [g.key for g in grouper.held(T0 + 300)] == [KEY]
    g, outcome = grouper.decide(KEY, TRIAGE_PAGE_NOW, "ana", T0 + 301)
    assert outcome == "decided" and g is not None and g.triage_by == "ana"
    assert run(grouper, T0 + 302, start=T0 + 302) == ["trigger"]  # at once, one trigger
    assert grouper.held(T0 + 303) == [] and g.triage_state(T0 + 303) == "paged_now"
    assert grouper.decide(KEY, TRIAGE_DISMISS, "bo", T0 + 304)[1] == "already decided: page_now"
    assert run(grouper, T0 + 900, start=T0 + 303) == []  # no second trigger (no new mentions, no update due)


def test_an_undecided_incident_pages_by_itself_after_the_triage_timeout() -> None:
    grouper = IncidentGrouper()
    add(grouper, T0, triage_timeout=120)
    assert run(grouper, T0 + 119) == []
    assert run(grouper, T0 + 121, start=T0 + 120) == ["trigger"]
    g = grouper.groups[KEY]
    assert g.triage_state(T0 + 121) == "timed_out"
    assert grouper.decide(KEY, TRIAGE_DISMISS, "ana", T0 + 122)[1] == "already paged"
    assert g.triggered_at == T0 + 120


def test_a_dismissed_incident_never_pages_and_its_stragglers_do_not_hold_it_again() -> None:
    grouper = IncidentGrouper()
    add(grouper, T0)
    g, outcome = grouper.decide(KEY, TRIAGE_DISMISS, "ana", T0 + 60)
    assert outcome == "decided" and g is not None and g.triage_state(T0 + 60) == "dismissed"
    assert run(grouper, T0 + 3600) == []  # not even after the timeout
    assert add(grouper, T0 + 70, i=1) is None and grouper.held(T0 + 70) == []


def test_a_decision_on_what_is_not_held_says_why() -> None:
    grouper = IncidentGrouper()
    assert grouper.decide(KEY, TRIAGE_PAGE_NOW, "ana", T0) == (None, "unknown group")
    add(grouper, T0, triage_timeout=0)  # a route without triage
    assert grouper.decide(KEY, TRIAGE_PAGE_NOW, "ana", T0)[1] == "not held for triage"
    with pytest.raises(ValueError):
        grouper.decide(KEY, "maybe", "ana", T0)


def test_an_incident_resolved_while_held_pages_nobody() -> None:
    grouper = IncidentGrouper()
    add(grouper, T0)
    grouper.close_incident("inc-1", T0 + 60)
    assert run(grouper, T0 + 3600) == []
    assert grouper.decide(KEY, TRIAGE_PAGE_NOW, "ana", T0 + 61)[1] == "already resolved"


def test_the_hold_survives_a_restart_and_the_page_request_carries_it() -> None:
    grouper = IncidentGrouper()
    g = add(grouper, T0)
    assert g is not None
    restored = IncidentGrouper()
    restored.restore(Group.from_json(g.to_json()))
    assert run(restored, T0 + 599) == [] and run(restored, T0 + 600, start=T0 + 600) == ["trigger"]
    tree = loads(ROUTES)
    triage_route, plain_route = tree.root.routes
    request = GroupingStage.request(_scored(), {"brand": "acme", "language": "en"}, triage_route, "P1", T0)
    assert PageRequest.decode(request.encode()).triage_timeout == 300.0
    plain = GroupingStage.request(_scored(), {"brand": "acme", "language": "en"}, plain_route, "P1", T0)
    assert plain.triage_timeout == 0.0 and b"triage_timeout" not in plain.encode()


ROUTES = """
route:
  receiver: queue
  routes:
    - matchers: ['brand="acme"']
      receiver: pd
      triage: true
      triage_timeout: 5m
    - matchers: ['brand="other"']
      receiver: pd
receivers:
  - name: queue
    kafka_queue: {queue: urgent}
  - name: pd
    pagerduty: {routing_key_env: TRIAGE_PD_KEY}
"""


def test_the_routing_file_reads_triage_and_its_timeout() -> None:
    tree = loads(ROUTES)
    held, plain = tree.root.routes
    assert (held.triage, held.triage_timeout) == (True, 300.0)
    assert (plain.triage, plain.triage_timeout) == (False, 600.0)  # the default timeout: 10 min
    with pytest.raises(RoutingConfigError, match="triage"):
        loads(ROUTES.replace("triage: true", "triage: yes please"))
    with pytest.raises(RoutingConfigError, match="triage_timeout"):
        loads(ROUTES.replace("triage_timeout: 5m", "triage_timeout: 0s"))


def _scored() -> pb.ScoredMention:
    s = pb.ScoredMention(language="en", reasons=["outage 0.9"], incident_id="inc-1")
    s.mention.mention_id, s.mention.text = "x:1", "down"
    return s


# ---- what the router records about a hold (triage_stage.py sends these on `pages`) ----------------------------
def _recorded(g: Group, now: float) -> list[tuple[str, float]]:
    """The records a tick would send now (what TriageStage._record loops over), marking each as recorded."""
    out = []
    while (step := triage_transition(g, now)) is not None:
        out.append(step)
        g.triage_recorded = step[0]
    return out


def test_a_hold_is_recorded_held_once_then_paged_now_once_and_the_trigger_goes_once() -> None:
    grouper = IncidentGrouper()
    g = add(grouper, T0)
    assert g is not None
    assert _recorded(g, T0 + 1) == [("held", T0)]
    assert _recorded(g, T0 + 2) == []  # nothing new: no second "held"
    grouper.decide(KEY, TRIAGE_PAGE_NOW, "ana", T0 + 30)
    assert grouper.decide(KEY, TRIAGE_PAGE_NOW, "ana", T0 + 31)[1] == "already decided: page_now"  # idempotent
    assert _recorded(g, T0 + 31) == [("paged_now", T0 + 30)]
    assert run(grouper, T0 + 40, start=T0 + 31) == ["trigger"]
    assert _recorded(g, T0 + 41) == [] and g.triggered_at == T0 + 31


def test_an_undecided_hold_is_recorded_timed_out_once_when_it_paged_by_itself() -> None:
    grouper = IncidentGrouper()
    g = add(grouper, T0, triage_timeout=120)
    assert g is not None and _recorded(g, T0) == [("held", T0)]
    assert run(grouper, T0 + 200, start=T0 + 1) == ["trigger"]  # one trigger, at the timeout
    assert _recorded(g, T0 + 200) == [("timed_out", T0 + 120)]
    assert _recorded(g, T0 + 300) == [] and run(grouper, T0 + 400, start=T0 + 201) == []


def test_a_dismissal_and_a_resolve_while_held_are_recorded_and_page_nobody() -> None:
    grouper = IncidentGrouper()
    g = add(grouper, T0)
    assert g is not None and _recorded(g, T0) == [("held", T0)]
    grouper.decide(KEY, TRIAGE_DISMISS, "bo", T0 + 10)
    assert _recorded(g, T0 + 11) == [("dismissed", T0 + 10)] and g.triage_by == "bo"
    assert run(grouper, T0 + 3600, start=T0 + 11) == [] and _recorded(g, T0 + 3600) == []

    other = IncidentGrouper()
    h = add(other, T0)
    assert h is not None
    other.close_incident("inc-1", T0 + 5)
    assert run(other, T0 + 6, start=T0 + 6) == []
    assert _recorded(h, T0 + 6) == [("resolved", T0 + 6)]  # never reported held: straight to resolved
    assert triage_transition(Group.from_json({**h.to_json(), "triage_until": 0.0}), T0) is None  # no triage route


def test_a_restart_neither_records_nor_pages_a_hold_twice() -> None:
    grouper = IncidentGrouper()
    g = add(grouper, T0, triage_timeout=120)
    assert g is not None and _recorded(g, T0) == [("held", T0)]
    # The state topic's copy, restored by another replica (or this one after a crash): still held.
    restored = IncidentGrouper()
    restored.restore(Group.from_json(g.to_json()))
    r = restored.groups[KEY]
    assert [x.key for x in restored.held(T0 + 60)] == [KEY] and _recorded(r, T0 + 60) == []
    assert run(restored, T0 + 150, start=T0 + 60) == ["trigger"]
    assert _recorded(r, T0 + 150) == [("timed_out", T0 + 120)]
    again = IncidentGrouper()  # a second restart after the timeout page: nothing left to send
    again.restore(Group.from_json(r.to_json()))
    assert run(again, T0 + 400, start=T0 + 151) == [] and _recorded(again.groups[KEY], T0 + 400) == []
    # A decision persisted before a crash is still there after it, and a replayed copy changes nothing.
    held = IncidentGrouper()
    h = add(held, T0)
    assert h is not None
    held.decide(KEY, TRIAGE_DISMISS, "ana", T0 + 5)
    back = IncidentGrouper()
    back.restore(Group.from_json(h.to_json()))
    assert back.decide(KEY, TRIAGE_DISMISS, "ana", T0 + 5)[1] == "already decided: dismissed"
    assert run(back, T0 + 3600) == []


def test_the_chat_notice_is_due_while_held_until_delivered_or_given_up() -> None:
    grouper = IncidentGrouper()
    g = grouper.add(receiver="pd", route="root/0", incident_id="inc-1", group_by=[], labels={"brand": "acme"},
                    priority="P1", reasons=["outage 0.9"], sample=Sample("x:1", "down", "", "en"), now=T0,
                    group_wait=30, group_interval=300, repeat_interval=3600, quiet_period=900, triage_timeout=600,
                    triage_notify="slack-oncall")
    assert g is not None and triage_notice_due(g, T0 + 1)
    g.triage_notice_attempts = 5
    assert not triage_notice_due(g, T0 + 2)  # given up after 5 failed attempts
    g.triage_notice_attempts, g.triage_noticed_at = 1, T0 + 3
    assert not triage_notice_due(g, T0 + 4)  # delivered once
    g.triage_noticed_at = 0.0
    assert not triage_notice_due(g, T0 + 601)  # no longer held: it paged by itself
    plain = add(IncidentGrouper(), T0)
    assert plain is not None and not triage_notice_due(plain, T0 + 1)  # no notice receiver on the route


NOTIFY_ROUTES = ROUTES.replace("      triage_timeout: 5m\n", "      triage_timeout: 5m\n      triage_notify: chat\n") \
    + """  - name: chat
    slack: {url: "https://slack.com/api/chat.postMessage", token_env: TRIAGE_SLACK_TOKEN, channel: C0TRIAGE}
"""


def test_the_routing_file_reads_triage_notify_which_must_name_a_slack_receiver() -> None:
    tree = loads(NOTIFY_ROUTES)
    held, plain = tree.root.routes
    assert held.triage_notify == "chat" and plain.triage_notify == ""
    request = GroupingStage.request(_scored(), {"brand": "acme", "language": "en"}, held, "P1", T0)
    assert PageRequest.decode(request.encode()).triage_notify == "chat"
    plain_request = GroupingStage.request(_scored(), {"brand": "acme", "language": "en"}, plain, "P1", T0)
    assert b"triage_notify" not in plain_request.encode()
    with pytest.raises(RoutingConfigError, match=r"triage_notify.*slack receivers: chat"):
        loads(NOTIFY_ROUTES.replace("triage_notify: chat", "triage_notify: pd"))


def test_the_slack_notice_says_it_is_held_and_links_to_the_triage_page() -> None:
    grouper = IncidentGrouper()
    g = add(grouper, T0)
    assert g is not None
    msg = slack_message(Page("triage", g, T0), "C0TRIAGE", console_url="https://console.example")
    body = json.dumps(msg)
    assert msg["text"].startswith(":raising_hand: Held for triage") and "thread_ts" not in msg
    assert "<https://console.example/triage|page now or dismiss>" in body and "Not paged yet" in body
    # The buttons the console's /slack/interactions answers: Block Kit buttons carrying the group key.
    actions = [b for b in msg["blocks"] if b["type"] == "actions"]
    assert len(actions) == 1
    buttons = actions[0]["elements"]
    assert [(b["type"], b["action_id"], b["value"], b["text"]["text"]) for b in buttons] == [
        ("button", "triage_page_now", KEY, "Page now"), ("button", "triage_dismiss", KEY, "Dismiss")]
    assert buttons[1]["confirm"]["confirm"] == {"type": "plain_text", "text": "Dismiss"}
    assert msg["blocks"][-1]["type"] == "context"  # the console link stays last
    for action in ("trigger", "update", "resolve"):  # only the triage notice has buttons
        assert not [b for b in slack_message(Page(action, g, T0), "C0")["blocks"] if b["type"] == "actions"]


FLOOR_ROUTES = NOTIFY_ROUTES.replace("      triage: true\n", "      triage_below_confidence: 0.5\n")


def test_a_confidence_floor_holds_only_the_incidents_below_it() -> None:
    tree = loads(FLOOR_ROUTES)
    route = tree.root.routes[0]
    assert (route.triage, route.triage_below_confidence, route.triage_notify) == (False, 0.5, "chat")
    stage = GroupingStage(tree, IncidentGrouper(), SilenceFeed(), clock=lambda: T0)
    labels = {"brand": "acme", "language": "en"}
    small = _scored()  # inc-1, not (yet) known as a classifier incident: the mention's top intent decides
    small.intents["outage_report"] = 0.42
    assert stage.confidence(small) == pytest.approx(0.42)
    held = GroupingStage.request(small, labels, route, "P1", T0, stage.confidence(small))
    assert (held.triage_timeout, held.triage_notify) == (300.0, "chat")
    stage.severities["inc-1"] = 0.8  # the classifier's incident: 100x its usual volume is 1.0
    sure = GroupingStage.request(small, labels, route, "P1", T0, stage.confidence(small))
    assert (sure.triage_timeout, sure.triage_notify) == (0.0, "")  # pages as usual
    for bad in ("0", "1.5", "yes", "true"):
        with pytest.raises(RoutingConfigError, match="triage_below_confidence"):
            loads(FLOOR_ROUTES.replace("triage_below_confidence: 0.5", f"triage_below_confidence: {bad}"))


def test_route_check_says_which_incidents_are_held_and_for_how_long(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "routes.yaml"
    for text, expected in [
        (NOTIFY_ROUTES, 'held for triage: pages on a person\'s "page now" (console: Triage), not after a "dismiss", '
                        "by itself after 5m; notice to chat"),
        (FLOOR_ROUTES, "held for triage (incidents of confidence under 0.5): pages on a person's"),
    ]:
        path.write_text(text)
        assert check_main([str(path), "brand=acme", "priority=P1"]) == 0
        assert expected in capsys.readouterr().out
    path.write_text(ROUTES)
    assert check_main([str(path), "brand=other", "priority=P1"]) == 0
    assert "held for triage" not in capsys.readouterr().out

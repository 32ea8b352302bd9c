"""Triage before paging (pure, clock injected): a `triage: true` route's new incident is held until a person
says "page now" or "dismiss", and pages on its own after `triage_timeout` so nothing is lost."""

from __future__ import annotations

import pytest
from test_router_grouping import T0, run

from services.common.codec import pb
from services.router.grouping import (
    TRIAGE_DISMISS,
    TRIAGE_PAGE_NOW,
    Group,
    IncidentGrouper,
    PageRequest,
    Sample,
)
from services.router.grouping_stage import GroupingStage
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

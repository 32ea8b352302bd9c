"""Time intervals, silences and inhibition change routing and paging as documented (injected clock)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.common.alerting.timeintervals import IntervalEntry, TimeInterval, add_business_time
from services.common.codec import pb
from services.router.inhibition import incident_labels, inhibiting_rule
from services.router.routing_file import RoutingConfigError, loads

TREE = """\
time_intervals:
  - name: business_hours
    time_intervals:
      - weekdays: ['monday:friday']
        times: [{start_time: '09:00', end_time: '17:00'}]
        location: Europe/Berlin
  - name: holidays
    time_intervals:
      - months: ['december']
        days_of_month: ['24:26']
      - dates: ['2027-01-01']
route:
  receiver: queue
  routes:
    - matchers: ['priority="P2"']
      receiver: day-desk
      active_time_intervals: [business_hours]
      mute_time_intervals: [holidays]
    - matchers: ['priority="P2"']
      receiver: oncall
    - matchers: ['priority="P1"']
      receiver: pager
receivers:
  - name: queue
    kafka_queue: {queue: normal}
  - name: day-desk
    kafka_queue: {queue: urgent}
  - name: oncall
    webhook: {url: "http://127.0.0.1:9/oncall"}
  - name: pager
    pagerduty: {routing_key_env: PD_KEY}
silences:
  - matchers: ['brand="acme"']
    starts_at: 2026-11-24T08:00:00Z
    ends_at: 2026-11-24T12:00:00Z
    comment: planned launch
inhibit_rules:
  - source_matchers: ['kind="outage_cluster"']
    target_matchers: ['intent="complaint"']
    equal: ['brand']
"""


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() if "+" not in text else \
        datetime.fromisoformat(text).timestamp()


def receivers(labels: dict[str, str], when: str) -> list[str]:
    return [r.receiver for r in loads(TREE).match(labels, at(when))]


def test_business_hours_route_only_in_business_hours_in_its_time_zone():
    p2 = {"priority": "P2"}
    assert receivers(p2, "2026-11-23T09:30:00") == ["day-desk"]   # Monday 10:30 in Berlin
    assert receivers(p2, "2026-11-23T07:30:00") == ["oncall"]     # 08:30 Berlin: before opening
    assert receivers(p2, "2026-11-23T16:00:00") == ["oncall"]     # 17:00 Berlin: end is exclusive
    assert receivers(p2, "2026-11-28T10:00:00") == ["oncall"]     # Saturday


def test_holidays_mute_the_route_and_it_falls_through():
    assert receivers({"priority": "P2"}, "2026-12-24T10:00:00") == ["oncall"]  # Thursday, Christmas Eve
    assert receivers({"priority": "P2"}, "2027-01-01T10:00:00") == ["oncall"]  # Friday, New Year
    assert receivers({"priority": "P2"}, "2026-12-23T10:00:00") == ["day-desk"]


def test_silence_is_time_bounded_and_matches_labels():
    tree = loads(TREE)
    acme = {"brand": "acme", "priority": "P1"}
    assert tree.silenced_by(acme, at("2026-11-24T09:00:00")) is not None
    assert tree.silenced_by(acme, at("2026-11-24T12:00:00")) is None  # ends_at is exclusive
    assert tree.silenced_by(acme, at("2026-11-24T07:59:59")) is None
    assert tree.silenced_by({"brand": "globex"}, at("2026-11-24T09:00:00")) is None


def test_open_outage_inhibits_complaint_pages_of_the_same_brand_only():
    tree = loads(TREE)
    outage = pb.Incident(id="inc-1", brand="acme", kind=pb.OUTAGE_CLUSTER, state=pb.OPEN)
    sources = [incident_labels(outage)]
    complaint = {"brand": "acme", "intent": "complaint", "incident": ""}
    assert inhibiting_rule(tree.inhibit_rules, complaint, sources) is not None
    assert inhibiting_rule(tree.inhibit_rules, {**complaint, "brand": "globex"}, sources) is None
    assert inhibiting_rule(tree.inhibit_rules, {**complaint, "intent": "outage_report"}, sources) is None
    # a mention that is part of the outage incident itself is never inhibited by it
    assert inhibiting_rule(tree.inhibit_rules, {**complaint, "incident": "inc-1"}, sources) is None
    viral = pb.Incident(id="inc-2", brand="acme", kind=pb.VIRAL_COMPLAINT, state=pb.OPEN)
    assert inhibiting_rule(tree.inhibit_rules, complaint, [incident_labels(viral)]) is None


def test_paging_kinds_are_grouped_and_queues_are_not():
    tree = loads(TREE)
    assert tree.is_paging(tree.root.routes[2]) and not tree.is_paging(tree.root.routes[1])


def test_business_time_sla_skips_nights_and_weekends():
    bh = loads(TREE).time_intervals["business_hours"]
    friday_1630_berlin = at("2026-11-27T15:30:00")
    due = add_business_time(friday_1630_berlin, 3600, bh)
    assert datetime.fromtimestamp(due, UTC) == datetime(2026, 11, 30, 8, 30, tzinfo=UTC)  # Monday 09:30 Berlin
    assert add_business_time(friday_1630_berlin, 3600, None) == friday_1630_berlin + 3600


@pytest.mark.parametrize(("patch", "line", "key"), [
    (("active_time_intervals: [business_hours]", "active_time_intervals: [office]"), 17,
     "route.routes[0].active_time_intervals"),
    (("location: Europe/Berlin", "location: Mars/Olympus"), 6, "time_intervals[0].time_intervals[0].location"),
    (("weekdays: ['monday:friday']", "weekdays: ['moonday']"), 4, "time_intervals[0].time_intervals[0].weekdays"),
    (("ends_at: 2026-11-24T12:00:00Z", "ends_at: 2026-11-24T07:00:00Z"), 35, "silences[0].ends_at"),
    (("target_matchers: ['intent=\"complaint\"']", "target_matchers: ['intent~complaint']"), 39,
     "inhibit_rules[0].target_matchers[0]"),
    (("  receiver: queue\n  routes:", "  receiver: queue\n  mute_time_intervals: [holidays]\n  routes:"), 14,
     "route.mute_time_intervals"),
])
def test_new_keys_are_validated_with_line_and_key(patch, line, key):
    text = TREE.replace(*patch)
    assert text != TREE
    with pytest.raises(RoutingConfigError) as err:
        loads(text, "r.yaml")
    assert (err.value.line, err.value.key) == (line, key)


@given(st.integers(min_value=0, max_value=4_000_000_000))
def test_weekday_interval_agrees_with_the_calendar(t):
    weekend = TimeInterval("weekend", (IntervalEntry.parse({"weekdays": ["saturday", "sunday"]}),))
    assert weekend.contains(t) == (datetime.fromtimestamp(t, UTC).weekday() >= 5)

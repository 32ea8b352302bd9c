"""Routing tree parsing, validation (with line numbers) and Alertmanager-style matching."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.common.alerting.durations import parse_duration
from services.common.alerting.matchers import Matcher
from services.router.routing_file import RoutingConfigError, loads

TREE = """\
route:
  receiver: normal
  group_wait: 10s
  routes:
    - matchers: ['priority="P1"']
      receiver: oncall
      continue: true
    - matchers: ['priority=~"P1|P2"']
      receiver: urgent
      routes:
        - matchers: ['language="es"']
          receiver: urgent-es
    - matchers: ['intents=~".*praise.*"']
      receiver: thank
receivers:
  - name: oncall
    webhook: {url: "http://127.0.0.1:9/hook"}
  - name: urgent
    kafka_queue: {queue: urgent}
  - name: urgent-es
    kafka_queue: {queue: urgent-es}
  - name: thank
    kafka_queue: {queue: thank}
  - name: normal
    kafka_queue: {queue: normal}
sla: {P2: 30m}
"""


def receivers(labels):
    return [r.receiver for r in loads(TREE).match(labels)]


def test_first_match_wins_unless_continue():
    assert receivers({"priority": "P1"}) == ["oncall", "urgent"]
    assert receivers({"priority": "P2"}) == ["urgent"]


def test_deepest_matching_child_is_used():
    assert receivers({"priority": "P2", "language": "es"}) == ["urgent-es"]


def test_nothing_matches_falls_back_to_root():
    assert receivers({"priority": "P3"}) == ["normal"]
    assert receivers({"priority": "P3", "intents": "complaint,praise"}) == ["thank"]


def test_settings_are_inherited_and_overridden():
    tree = loads(TREE)
    urgent = tree.root.routes[1]
    assert urgent.group_wait == 10
    assert urgent.sla["P2"] == 1800 and urgent.sla["P1"] == 900


@pytest.mark.parametrize(
    ("text", "line", "key"),
    [
        (TREE.replace("receiver: urgent\n      routes", "receiver: nobody\n      routes"), 9,
         "route.routes[1].receiver"),
        (TREE.replace("group_wait: 10s", "group_wait: soon"), 3, "route.group_wait"),
        (TREE.replace("continue: true", "continue: maybe"), 7, "route.routes[0].continue"),
        (TREE.replace("kafka_queue: {queue: thank}", "kafka_queue: {queue: 'Bad Name'}"), 23,
         "receivers[3].kafka_queue.queue"),
        (TREE.replace("'priority=\"P1\"'", "'priority~\"P1\"'"), 5, "route.routes[0].matchers[0]"),
        (TREE.replace("    webhook: {url: \"http://127.0.0.1:9/hook\"}", "    pager: {}"), 17, "receivers[0].pager"),
        (TREE + "extra: 1\n", 27, "extra"),
    ],
)
def test_errors_name_line_and_key(text, line, key):
    with pytest.raises(RoutingConfigError) as err:
        loads(text, "routes.yaml")
    assert err.value.key == key
    assert err.value.line == line
    assert f"routes.yaml:{line}" in str(err.value)


def test_yaml_syntax_error_has_a_line():
    with pytest.raises(RoutingConfigError) as err:
        loads("route:\n  receiver: [unclosed\nreceivers: []\n")
    assert err.value.line is not None


def test_durations():
    assert parse_duration("1h30m") == 5400
    assert parse_duration("250ms") == 0.25
    with pytest.raises(ValueError):
        parse_duration("1 hour")


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30))
def test_matchers_are_anchored_and_negation_is_the_complement(value):
    labels = {"brand": value}
    eq = Matcher.parse('brand="acme"')
    re_ = Matcher.parse('brand=~"acme.*"')
    assert eq.matches(labels) == (value == "acme")
    assert Matcher.parse('brand!="acme"').matches(labels) != eq.matches(labels)
    assert Matcher.parse('brand!~"acme.*"').matches(labels) != re_.matches(labels)
    assert re_.matches(labels) == (value.startswith("acme") and "\n" not in value)

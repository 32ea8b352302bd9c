"""Alertmanager configuration files load verbatim and route as Alertmanager routes them.

Ported from prometheus/alertmanager (Apache License 2.0, Copyright The Prometheus Authors):
- dispatch/route_test.go: `TestRouteMatch`, `TestRouteMatchers`, `TestRouteMatchersAndMatch` (the routing
  tree and its cases: receivers, order, `continue`, inherited timings and group_by), `TestRouteWalk`,
  `TestInheritParentGroupByAll`;
- config/config_test.go and config/testdata/*.bad.yml: the errors for duplicate / invalid `group_by`
  labels, `...` with other labels, `continue` on the root, zero `group_interval` / `repeat_interval`,
  matchers on the root, duplicate time interval names, undefined receivers, invalid `match` label names;
- timeinterval/timeinterval_test.go: the reversed ranges it refuses.
The trees are Alertmanager's, wrapped in `route:` plus the receivers they name (receivers without
integrations, Alertmanager's null receiver).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.router.check import main as route_check
from services.router.routing_file import RoutingConfigError, load, loads

RECEIVERS = """
receivers:
  - name: notify-def
  - name: notify-A
  - name: notify-testing
  - name: notify-productionA
  - name: notify-productionB
  - name: notify-BC
"""

ROUTE_MATCH = """\
route:
  receiver: 'notify-def'
  routes:
  - match:
      owner: 'team-A'
    receiver: 'notify-A'
    routes:
    - match:
        env: 'testing'
      receiver: 'notify-testing'
      group_by: [...]
    - match:
        env: "production"
      receiver: 'notify-productionA'
      group_wait: 1m
      continue: true
    - match_re:
        env: "produ.*"
        job: ".*"
      receiver: 'notify-productionB'
      group_wait: 30s
      group_interval: 5m
      repeat_interval: 1h
      group_by: ['job']
  - match_re:
      owner: 'team-(B|C)'
    group_by: ['foo', 'bar']
    group_wait: 2m
    receiver: 'notify-BC'
  - match:
      group_by: 'role'
    group_by: ['role']
    routes:
    - match:
        env: 'testing'
      receiver: 'notify-testing'
      routes:
      - match:
          wait: 'long'
        group_wait: 2m
""" + RECEIVERS

ROUTE_MATCHERS = """\
route:
  receiver: 'notify-def'
  routes:
  - matchers: ['{owner="team-A"}', '{level!="critical"}']
    receiver: 'notify-A'
    routes:
    - matchers: ['{env="testing"}', '{baz!~".*quux"}']
      receiver: 'notify-testing'
      group_by: [...]
    - matchers: ['{env="production"}']
      receiver: 'notify-productionA'
      group_wait: 1m
      continue: true
    - matchers: [ env=~"produ.*", job=~".*"]
      receiver: 'notify-productionB'
      group_wait: 30s
      group_interval: 5m
      repeat_interval: 1h
      group_by: ['job']
  - matchers: [owner=~"team-(B|C)"]
    group_by: ['foo', 'bar']
    group_wait: 2m
    receiver: 'notify-BC'
  - matchers: [group_by="role"]
    group_by: ['role']
    routes:
    - matchers: ['{env="testing"}']
      receiver: 'notify-testing'
      routes:
      - matchers: [wait="long"]
        group_wait: 2m
""" + RECEIVERS

ROUTE_MATCHERS_AND_MATCH = ROUTE_MATCHERS.replace("""    - matchers: ['{env="production"}']""", """    - match:
        env: "production\"""").replace("""  - matchers: [owner=~"team-(B|C)"]""", """  - match_re:
      owner: 'team-(B|C)'""")

D = (30.0, 300.0, 4 * 3600.0)  # Alertmanager's DefaultRouteOpts: group_wait, group_interval, repeat_interval
# (labels, [(receiver, group_by, group_wait, group_interval, repeat_interval)]); group_by ['...'] = all labels
CASES = [
    ({"owner": "team-A"}, [("notify-A", [], *D)]),
    ({"owner": "team-A", "env": "unset"}, [("notify-A", [], *D)]),
    ({"owner": "team-C"}, [("notify-BC", ["foo", "bar"], 120.0, D[1], D[2])]),
    ({"owner": "team-A", "env": "testing"}, [("notify-testing", ["..."], *D)]),
    ({"owner": "team-A", "env": "production"}, [("notify-productionA", [], 60.0, D[1], D[2]),
                                                ("notify-productionB", ["job"], 30.0, 300.0, 3600.0)]),
    ({"group_by": "role"}, [("notify-def", ["role"], *D)]),
    ({"env": "testing", "group_by": "role"}, [("notify-testing", ["role"], *D)]),
    ({"env": "testing", "group_by": "role", "wait": "long"}, [("notify-testing", ["role"], 120.0, D[1], D[2])]),
]


@pytest.mark.parametrize("tree", [ROUTE_MATCH, ROUTE_MATCHERS, ROUTE_MATCHERS_AND_MATCH],
                         ids=["TestRouteMatch", "TestRouteMatchers", "TestRouteMatchersAndMatch"])
@pytest.mark.parametrize(("labels", "want"), CASES)
def test_dispatch_route_tables(tree: str, labels: dict[str, str], want: list[tuple]):  # type: ignore[type-arg]
    routes = loads(tree).routes_for(labels, 0.0)  # Route.Match: the routes, whatever their receivers do
    assert [(r.receiver, r.group_by, r.group_wait, r.group_interval, r.repeat_interval) for r in routes] == want


def _walk(route) -> list[str]:  # type: ignore[no-untyped-def]
    out = [route.receiver]
    for child in route.routes:
        out += _walk(child)
    return out


def test_route_walk_order_and_inherited_receivers():
    assert _walk(loads(ROUTE_MATCH).root) == ["notify-def", "notify-A", "notify-testing", "notify-productionA",
                                              "notify-productionB", "notify-BC", "notify-def", "notify-testing",
                                              "notify-testing"]


def test_group_by_all_is_inherited_until_a_child_sets_its_own():
    tree = loads("""\
route:
  receiver: r
  routes:
  - match: {env: 'parent'}
    group_by: ['...']
    routes:
    - match: {env: 'child1'}
    - match: {env: 'child2'}
      group_by: ['foo']
receivers: [{name: r}]
""")
    parent = tree.root.routes[0]
    assert parent.group_by_all and parent.routes[0].group_by_all and not parent.routes[1].group_by_all


# config/config_test.go + config/testdata/*.bad.yml: (change to a valid file, Alertmanager's error, line)
VALID = """\
route:
  receiver: team-X
  group_by: ['alertname']
  routes:
    - matchers: ['service="foo"']
      receiver: team-X
receivers:
  - name: team-X
"""
BAD = [
    (("group_by: ['alertname']", "group_by: ['alertname', 'alertname']"),
     "duplicated label 'alertname' in group_by", 3),
    (("group_by: ['alertname']", "group_by: ['']"), "invalid label name '' in group_by list", 3),
    (("group_by: ['alertname']", "group_by: ['...', 'alertname']"),
     "cannot have wildcard group_by (`...`) and other labels at the same time", 3),
    (("  group_by: ['alertname']\n", "  group_by: ['alertname']\n  continue: true\n"),
     "cannot have continue in root route", 4),
    (("  group_by: ['alertname']\n", "  group_by: ['alertname']\n  group_interval: 0s\n"),
     "group_interval cannot be zero", 4),
    (("  group_by: ['alertname']\n", "  group_by: ['alertname']\n  repeat_interval: 0s\n"),
     "repeat_interval cannot be zero", 4),
    (("  group_by: ['alertname']\n", "  group_by: ['alertname']\n  matchers: ['a=b']\n"),
     "root route must not have any matchers", 4),
    (("  group_by: ['alertname']\n", "  group_by: ['alertname']\n  match: {a: b}\n"),
     "root route must not have any matchers", 4),
    (("      receiver: team-X", "      receiver: team-Y"), "unknown receiver 'team-Y'", 6),
    (("    - matchers: ['service=\"foo\"']", "    - match: {'service-name': foo}"),
     "invalid label name 'service-name'", 5),
    (("    - matchers: ['service=\"foo\"']", "    - match_re: {service: 'foo('}"), "error parsing regexp", 5),
    (("    - matchers: ['service=\"foo\"']", "    - matchers: ['job=\"value']"), "unescaped double quote", 5),
    (("receivers:\n  - name: team-X\n", "receivers:\n  - name: team-X\n  - name: team-X\n"),
     "notification config name 'team-X' is not unique", 9),
]


@pytest.mark.parametrize(("change", "error", "line"), BAD)
def test_config_errors_are_alertmanagers_with_the_line(change: tuple[str, str], error: str, line: int):
    assert change[0] in VALID
    with pytest.raises(RoutingConfigError) as exc:
        loads(VALID.replace(*change), "alertmanager.yml")
    assert error in exc.value.reason and exc.value.line == line


INTERVALS = """\
route:
  receiver: r
  routes:
    - matchers: ['a="b"']
      mute_time_intervals: [weekend]
receivers: [{name: r}]
mute_time_intervals:
  - name: weekend
    time_intervals:
      - weekdays: ['saturday', 'sunday']
"""


def test_time_interval_names_are_one_namespace():
    loads(INTERVALS)  # the deprecated top-level mute_time_intervals works
    with pytest.raises(RoutingConfigError, match="time interval 'weekend' is not unique"):
        loads(INTERVALS + "time_intervals:\n  - name: weekend\n    time_intervals: [{months: ['may']}]\n")


# timeinterval/timeinterval_test.go: reversed ranges are refused (not loaded as never active)
@pytest.mark.parametrize(("field", "value", "error"), [
    ("weekdays", "friday:monday", "start day cannot be before end day"),
    ("weekdays", "monday:sunday", "start day cannot be before end day"),  # sunday is day 0 in Alertmanager
    ("months", "december:january", "end month january is before start month december"),
    ("years", "2022:2020", "end year 2020 is before start year 2022"),
    ("days_of_month", "10:5", "end day 5 is always before start day 10"),
    ("days_of_month", "-1:5", "end day must be negative if start day is negative"),
    ("days_of_month", "-1:-3", "end day -3 is always before start day -1"),
])
def test_reversed_time_interval_ranges_are_refused(field: str, value: str, error: str):
    with pytest.raises(RoutingConfigError) as exc:
        loads(INTERVALS.replace("weekdays: ['saturday', 'sunday']", f"{field}: ['{value}']"))
    assert error in exc.value.reason and exc.value.line == 10


@pytest.mark.parametrize(("field", "value"), [("weekdays", "monday:friday"), ("days_of_month", "-7:-1"),
                                              ("days_of_month", "1:-1"), ("months", "1:3"), ("years", "2020:2022")])
def test_valid_ranges_load(field: str, value: str):
    loads(INTERVALS.replace("weekdays: ['saturday', 'sunday']", f"{field}: ['{value}']"))


def _at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_a_verbatim_file_keeps_a_mention_on_its_muted_route_and_sends_nothing():
    s_hook = "{name: s, webhook_configs: [{url: 'https://hooks.example.org/s'}]}"
    tree = loads(INTERVALS.replace("receivers: [{name: r}]", f"receivers: [{{name: r}}, {s_hook}]")
                 .replace("      mute_time_intervals: [weekend]",
                          "      receiver: s\n      mute_time_intervals: [weekend]"))
    saturday, monday = _at("2026-11-28T10:00:00"), _at("2026-11-23T10:00:00")
    assert [r.receiver for r in tree.match({"a": "b"}, monday)] == ["s"]
    assert tree.match({"a": "b"}, saturday) == []                        # Alertmanager: muted, nothing sent
    assert [r.receiver for r in tree.routes_for({"a": "b"}, saturday)] == ["s"]


def test_when_muted_fall_through_is_the_projects_behaviour_on_request():
    text = (INTERVALS.replace("receivers: [{name: r}]", "receivers: [{name: r}, {name: s}]")
            .replace("      mute_time_intervals: [weekend]",
                     "      receiver: s\n      mute_time_intervals: [weekend]\n      when_muted: fall_through"))
    assert [r.receiver for r in loads(text).routes_for({"a": "b"}, _at("2026-11-28T10:00:00"))] == ["r"]
    with pytest.raises(RoutingConfigError, match="when_muted"):
        loads(text.replace("when_muted: fall_through", "when_muted: sometimes"))


EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "alertmanager.yml"


def test_the_documented_alertmanager_file_loads_verbatim_and_routes(monkeypatch):
    tree = load(EXAMPLE)
    monday_noon = _at("2026-11-23T12:00:00")
    assert [r.receiver for r in tree.match({"service": "foo1", "severity": "critical"}, monday_noon)] == \
        ["team-X-pager"]
    assert [r.receiver for r in tree.match({"service": "files", "severity": "warning"}, monday_noon)] == \
        ["team-Y-mails"]
    assert [r.receiver for r in tree.match({"service": "database", "owner": "team-X"}, monday_noon)] == \
        ["team-X-pager", "team-X-chat"]
    assert [r.receiver for r in tree.match({"service": "database"}, monday_noon)] == ["team-DB-pager"]
    saturday = _at("2026-11-28T12:00:00")  # team-X-pager muted on weekends, team-X-chat outside business hours
    assert tree.match({"service": "database", "owner": "team-X"}, saturday) == []
    assert [r.receiver for r in tree.routes_for({"service": "database", "owner": "team-X"}, saturday)] == \
        ["team-X-pager", "team-X-chat"]
    assert tree.receivers["team-X-pager"].kind == "pagerduty"
    assert tree.receivers["team-X-chat"].kind == "slack" and tree.receivers["team-Y-mails"].kind == "webhook"
    assert tree.receivers["team-DB-pager"].kind == "opsgenie"
    assert any("uses the project's rendering" in n for n in tree.notices)     # Go templates are reported
    assert any("email_configs is not supported" in n for n in tree.notices)
    [rule] = tree.inhibit_rules
    assert rule.inhibits({"severity": "warning", "alertname": "A", "cluster": "c", "service": "s"},
                         {"severity": "critical", "alertname": "A", "cluster": "c", "service": "s"})
    assert not rule.inhibits({"severity": "warning", "alertname": "A", "cluster": "c", "service": "s"},
                             {"severity": "critical", "alertname": "A", "cluster": "d", "service": "s"})


def test_route_check_speaks_amtool(capsys):
    assert route_check([str(EXAMPLE), "--tree"]) == 0
    out = capsys.readouterr().out
    assert "Routing tree:\n└── default-route  receiver: team-X-mails\n" in out
    assert '    ├── {service=~"foo1|foo2|baz"}  receiver: team-X-mails' in out
    assert "note: " in out and "uses the project's rendering" in out
    args = [str(EXAMPLE), "service=database", "owner=team-X", "--at", "2026-11-23T12:00:00Z"]
    assert route_check([*args, "--verify.receivers=team-X-pager,team-X-chat"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("\nteam-X-pager,team-X-chat")
    assert route_check([*args, "--verify.receivers=team-DB-pager"]) == 1
    assert "WARNING: Expected receivers did not match resolved receivers." in capsys.readouterr().out


def test_alertmanager_receivers_build_the_projects_receivers_with_their_secrets(tmp_path):
    import httpx

    from services.router.registry import build_receivers

    key = tmp_path / "pd-key"
    key.write_text("pd-key-from-file\n")
    tree = loads(f"""
route: {{receiver: pd}}
receivers:
  - name: pd
    pagerduty_configs: [{{routing_key_file: {key}}}]
  - name: og
    opsgenie_configs: [{{api_key: og-inline-key}}]
  - name: hook
    webhook_configs: [{{url: 'https://hooks.example.org/x', http_config: {{bearer_token: tok-1234}}}}]
""")
    built = build_receivers(tree.receivers, None, httpx.AsyncClient())  # type: ignore[arg-type]
    assert built.pagers["pd"].routing_key == "pd-key-from-file"  # type: ignore[attr-defined]
    assert built.pagers["og"].headers["Authorization"] == "GenieKey og-inline-key"  # type: ignore[attr-defined]
    assert built.receivers["hook"].headers == {"Authorization": "Bearer tok-1234"}  # type: ignore[attr-defined]


def test_slack_incoming_webhooks_are_refused_with_the_reason():
    with pytest.raises(RoutingConfigError, match=r"chat\.postMessage and a bot token"):
        loads("route: {receiver: s}\nreceivers:\n  - name: s\n    slack_configs: "
              "[{api_url: 'https://hooks.slack.com/services/T/B/X'}]\n")

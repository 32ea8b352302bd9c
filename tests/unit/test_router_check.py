"""`triage route-check`: rejects a broken file with its line and key, explains where a sample goes."""

from __future__ import annotations

from pathlib import Path

from services.router.check import main

ROUTES = """\
time_intervals:
  - name: office
    time_intervals:
      - weekdays: ['monday:friday']
        times: [{start_time: '09:00', end_time: '18:00'}]
route:
  receiver: normal
  escalate_to: pager
  routes:
    - matchers: ['priority="P1"']
      receiver: pager
      continue: true
    - matchers: ['priority=~"P1|P2"']
      receiver: desk
      active_time_intervals: [office]
    - matchers: ['priority=~"P1|P2"']
      receiver: urgent
receivers:
  - name: pager
    pagerduty: {routing_key_env: PD_KEY}
  - name: desk
    kafka_queue: {queue: desk}
  - name: urgent
    kafka_queue: {queue: urgent}
  - name: normal
    kafka_queue: {queue: normal}
"""


def run(tmp_path: Path, capsys, text: str, *args: str) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    f = tmp_path / "routes.yaml"
    f.write_text(text)
    rc = main([str(f), *args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_broken_file_is_rejected_with_line_and_key(tmp_path, capsys):
    rc, _, err = run(tmp_path, capsys, ROUTES.replace("receiver: desk", "receiver: dsek"))
    assert rc == 1
    assert "routes.yaml:14: route.routes[1].receiver: unknown receiver 'dsek'" in err


def test_sample_route_is_explained_at_a_given_time(tmp_path, capsys):
    rc, out, _ = run(tmp_path, capsys, ROUTES, "priority=P1", "brand=acme", "--at", "2026-11-23T10:00:00Z")
    assert rc == 0
    assert "root/0 (line 10) -> pager (pagerduty)" in out and "paged as an incident" in out
    assert "root/1 (line 13) -> desk (kafka_queue)" in out and "first response due in 15m, escalates to pager" in out

    rc, out, _ = run(tmp_path, capsys, ROUTES, "priority=P2", "--at", "2026-11-28T10:00:00Z")  # Saturday
    assert "root/2 (line 16) -> urgent" in out and "skipped root/1 (line 13) -> desk" in out


def test_the_documented_example_and_the_default_file_are_valid(tmp_path, capsys):
    import re

    root = Path(__file__).resolve().parents[2] / "services" / "router"
    example = re.search(r"```yaml\n(.*?)```", (root / "ROUTING.md").read_text(), re.S)
    assert example is not None
    rc, out, _ = run(tmp_path, capsys, example.group(1), "priority=P2", "--at", "2026-11-23T10:00:00Z")
    assert rc == 0 and "-> day-desk (kafka_queue)" in out and "of business_hours" in out
    assert main([str(root / "routes.default.yaml")]) == 0


PAGING = """\
route:
  receiver: chat
receivers:
  - name: chat
    slack: {url: "https://slack.com/api/chat.postMessage", token_env: SLACK_BOT_TOKEN, channel: C0INCIDENTS}
  - name: ops
    opsgenie: {api_key_env: OPSGENIE_KEY}
  - name: am
    alertmanager: {url: "http://alertmanager:9093", heartbeat: 30s}
"""


def test_paging_receivers_missing_a_required_option_are_rejected_with_the_line(tmp_path, capsys):
    assert run(tmp_path, capsys, PAGING)[0] == 0
    cases = {
        # chat.postMessage needs a channel; before, the receiver was accepted and sent `channel: ""`
        ", channel: C0INCIDENTS}": "routes.yaml:5: receivers[0].slack.channel: required",
        "{api_key_env: OPSGENIE_KEY}": "routes.yaml:7: receivers[1].opsgenie.api_key_env: required",
        "token_env: SLACK_BOT_TOKEN, ": "routes.yaml:5: receivers[0].slack.token_env: required",
        "heartbeat: 30s": "routes.yaml:9: receivers[2].alertmanager.heartbeat: bad duration 'soon'",
        "channel: C0INCIDENTS}": "routes.yaml:5: receivers[0].slack.chanel: unknown option; expected url, token_env",
    }
    replacement = {"{api_key_env: OPSGENIE_KEY}": "{url: 'https://api.eu.opsgenie.com'}",
                   "heartbeat: 30s": "heartbeat: soon", "channel: C0INCIDENTS}": "chanel: C0INCIDENTS}"}
    for old, expected in cases.items():
        rc, _, err = run(tmp_path, capsys, PAGING.replace(old, replacement.get(old, "}" if old.endswith("}") else "")))
        assert rc == 1 and expected in err, (old, err)


def test_an_alertmanager_slack_config_without_a_channel_is_rejected_with_the_line(tmp_path, capsys):
    am_file = """\
route: {receiver: chat}
receivers:
  - name: chat
    slack_configs:
      - api_url: https://slack.com/api/chat.postMessage
        http_config: {authorization: {credentials: xoxb-1111-2222-token}}
"""
    rc, _, err = run(tmp_path, capsys, am_file)
    assert rc == 1 and "routes.yaml:5: receivers[0].slack_configs[0].channel: required" in err, err
    rc, _, _ = run(tmp_path, capsys, am_file + "        channel: '#incidents'\n")
    assert rc == 0

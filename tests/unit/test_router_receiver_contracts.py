"""Contract tests of the paging receivers, from the receivers' own specs (tests/fixtures/receiver_specs).

Every receiver's trigger, update and resolve is sent through the real receiver classes over an in-process
HTTP transport (httpx.MockTransport: the bytes and paths a receiver would put on the wire), then checked
against the vendored schema and the documented limits the schemas cannot express, with hypothesis making
up hostile incidents: Slack control sequences (`<!channel>`, `<!here>`, `<@U123>`, `<url|label>`),
10,000-character posts, emoji and right-to-left text, long brands and incident ids.
"""

from __future__ import annotations

import asyncio
import html
import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
import jsonschema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.common.codec import pb
from services.router import contracts
from services.router.grouping import Group, Page
from services.router.paging import AlertmanagerReceiver, OpsgenieReceiver, PagerDutyReceiver, SlackReceiver
from services.router.receivers import WebhookReceiver
from services.router.transport import verify

SPECS = Path(__file__).resolve().parents[1] / "fixtures" / "receiver_specs"
T0 = 1_800_000_000.0
CONSOLE = "https://console.example.org/triage"


def _schema(name: str, ref: str = "") -> jsonschema.Draft202012Validator:
    doc = json.loads((SPECS / name).read_text())
    if ref:
        doc = {**doc, "$ref": f"#/$defs/{ref}"}
    return jsonschema.Draft202012Validator(doc, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


ALERTMANAGER = _schema("alertmanager-postable-alerts.schema.json")
PAGERDUTY = _schema("pagerduty-events-v2.schema.json")
OPSGENIE_CREATE = _schema("opsgenie-alert-api.schema.json", "createAlert")
OPSGENIE_NOTE = _schema("opsgenie-alert-api.schema.json", "noteOrClose")
SLACK = _schema("slack-chat-postmessage.schema.json")

HOSTILE = ["<!channel>", "<!here>", "<!everyone>", "<@U123>", "<#C123|general>", "<!subteam^S1>",
           "<https://evil.example|click to get a refund>", "<https://evil.example>", "&lt;!channel&gt;", "&amp;",
           "<3 attempts>", "a & b", "*bold* _it_ ~strike~ `code` ```block```", "> quoted\n> again",
           "@channel @here", "🔥🚨👩‍👩‍👧‍👦", "مرحبا بالعالم שלום", "\u202eevil\u202c", "\n\n", "|", "&", "<", ">"]
texts = st.one_of(st.sampled_from(HOSTILE), st.text(max_size=60),
                  st.lists(st.sampled_from(HOSTILE), min_size=1, max_size=40).map(" ".join),
                  st.builds(lambda s, n: (s * n)[:10_000], st.sampled_from([*HOSTILE, "x", "é"]),
                            st.integers(1, 10_000)))
ids = st.one_of(st.just("inc-acme-1"), st.text(min_size=1, max_size=40),
                st.builds(lambda s, n: "inc-" + s * n, st.sampled_from(["brand-slug-", "ü", "<!here>"]),
                          st.integers(1, 200)))


@st.composite
def groups(draw: st.DrawFn) -> Group:
    samples = [{"mention_id": f"x:{i}", "text": draw(texts),
                "url": draw(st.sampled_from(["", "https://x.com/u/status/1", "https://x.com/a?b=1&c=<2>|x",
                                             "javascript:alert(1)", "not a url"])),
                "language": "en"} for i in range(draw(st.integers(0, 5)))]
    return Group(key="k", id=draw(ids), receiver="r", route=draw(st.sampled_from(["root/0", "root/<!here>"])),
                 incident_id=draw(st.sampled_from(["", "inc"])),
                 labels={draw(st.sampled_from(["brand", "brand-name", "9lives"])): draw(texts)},
                 priority=draw(st.sampled_from(["P1", "P2", "P3", "P4"])), group_wait=30, group_interval=300,
                 repeat_interval=3600, quiet_period=900, first_at=T0, last_at=T0 + 50,
                 count=draw(st.integers(1, 10**6)),
                 reasons={draw(texts): draw(st.integers(1, 500)) for _ in range(draw(st.integers(0, 6)))},
                 languages={draw(st.sampled_from(["en", "ar", "he", "<!here>"])): 1},
                 samples=samples, triggered_at=T0 + 30, thread_ref="1700000000.000100")


def send_all(g: Group) -> dict[str, list[tuple[str, Any]]]:
    """(path, body) of every request each receiver makes for the group's trigger, update and resolve."""
    sent: dict[str, list[tuple[str, Any]]] = {"pagerduty": [], "opsgenie": [], "slack": [], "alertmanager": []}

    def handler(request: httpx.Request) -> httpx.Response:
        host = request.url.host.split(".")[0]
        sent[host].append((request.url.raw_path.decode(), json.loads(request.content)))
        if host == "slack":
            return httpx.Response(200, json={"ok": True, "ts": "1700000000.000100"})
        return httpx.Response(202, json={})

    async def run() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            receivers = [PagerDutyReceiver("pd", client, "R0UTINGKEY", "https://pagerduty.test/v2/enqueue", CONSOLE),
                         OpsgenieReceiver("og", client, "key", "https://opsgenie.test", CONSOLE),
                         SlackReceiver("sl", client, "xoxb-t", "C0INCIDENTS", "https://slack.test/api/chat.postMessage",
                                       CONSOLE),
                         AlertmanagerReceiver("am", client, "https://alertmanager.test", CONSOLE, 60.0)]
            for at, action in ((T0 + 30, "trigger"), (T0 + 400, "update"), (T0 + 900, "resolve")):
                for r in receivers:
                    await r.notify(Page(action, g, at))

    asyncio.run(run())
    return sent


def _iso_epoch(s: str) -> float:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", s), s  # RFC 3339 (format: date-time)
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


_LINK = re.compile(r"<(https?://[^|<>\s]+)\|([^<>]*)>")
_ENTITY = re.compile(r"&(amp|lt|gt);")


def check_slack_mrkdwn(text: str) -> None:
    """Only links the renderer built (<http(s)://...|label>) and its own quote markers (`> ` starting a line);
    every other &, <, > escaped."""
    rest = re.sub(r"(?m)^> ", "", _LINK.sub("", text))
    assert "<" not in rest and ">" not in rest, text[:300]
    assert "&" not in _ENTITY.sub("", rest), text[:300]
    for url, label in _LINK.findall(text):
        assert "&" not in _ENTITY.sub("", url) and "&" not in _ENTITY.sub("", label)


def slack_texts(msg: dict[str, Any]) -> list[str]:
    out = [msg["text"]]
    for b in msg["blocks"]:
        out += [b["text"]["text"]] if "text" in b else []
        out += [f["text"] for f in b.get("fields", [])] + [e["text"] for e in b.get("elements", [])]
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(g=groups())
def test_every_receivers_trigger_update_and_resolve_keep_their_contract(g: Group) -> None:
    sent = send_all(g)

    # PagerDuty Events API v2: https://developer.pagerduty.com/docs/events-api-v2/trigger-events/
    keys = {ev["dedup_key"] for _, ev in sent["pagerduty"]}
    assert len(keys) == 1 and len(next(iter(keys)).encode()) <= 255  # one alert: trigger, update, resolve
    for _, ev in sent["pagerduty"]:
        PAGERDUTY.validate(ev)
        assert len(json.dumps(ev, ensure_ascii=False).encode()) <= 512 * 1024
        if ev["event_action"] == "trigger":
            assert len(ev["payload"]["summary"]) <= 1024
            _iso_epoch(ev["payload"]["timestamp"])
            assert all(link["href"].startswith(("https://", "http://")) for link in ev["links"])

    # Opsgenie Alert API: https://docs.opsgenie.com/docs/alert-api
    (create_path, create), (note_path, note), (close_path, close) = sent["opsgenie"]
    OPSGENIE_CREATE.validate(create)
    OPSGENIE_NOTE.validate(note)
    OPSGENIE_NOTE.validate(close)
    assert sum(len(k) + len(v) for k, v in create["details"].items()) <= 8000
    alias = create["alias"]
    assert create_path == "/v2/alerts" and len(alias) <= 512
    for path, verb in ((note_path, "notes"), (close_path, "close")):  # the same alias finds the same alert
        parts = urlsplit(path)
        assert parts.path.startswith("/v2/alerts/") and parts.path.endswith(f"/{verb}")
        assert unquote(parts.path.removeprefix("/v2/alerts/").removesuffix(f"/{verb}")) == alias
        assert parts.query == "identifierType=alias"

    # Slack chat.postMessage + Block Kit: https://api.slack.com/reference/surfaces/formatting#escaping
    for _, msg in sent["slack"]:
        SLACK.validate(msg)
        for text in slack_texts(msg):
            check_slack_mrkdwn(text)
            assert "<!" not in text and "<@" not in text and "<#" not in text
    assert [m.get("thread_ts") for _, m in sent["slack"]] == [None, "1700000000.000100", "1700000000.000100"]

    # Alertmanager API v2 (api/v2/openapi.yaml; label names: prometheus/common model.LabelName)
    label_sets = []
    for (_, alerts), at, action in zip(sent["alertmanager"], (T0 + 30, T0 + 400, T0 + 900),
                                       ("trigger", "update", "resolve"), strict=True):
        ALERTMANAGER.validate(alerts)
        (alert,) = alerts
        assert all(re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", k) for k in alert["labels"] | alert["annotations"])
        assert all(isinstance(v, str) and v for v in alert["labels"].values())
        assert not alert.get("generatorURL") or alert["generatorURL"].startswith(("https://", "http://"))
        ends = _iso_epoch(alert["endsAt"])
        assert ends == at if action == "resolve" else ends == at + 180  # 3 heartbeats of 60 s ahead
        label_sets.append(alert["labels"])
    assert label_sets[0] == label_sets[1] == label_sets[2]  # one alert for the incident's whole life


def _group(**kw: Any) -> Group:
    base: dict[str, Any] = {
        "key": "k", "id": "inc-1", "receiver": "r", "route": "root/0", "incident_id": "inc-1",
        "labels": {"brand": "acme"}, "priority": "P1", "group_wait": 30, "group_interval": 300,
        "repeat_interval": 3600, "quiet_period": 900, "first_at": T0, "last_at": T0, "count": 1,
        "reasons": {"outage report 0.94": 1}, "languages": {"en": 1},
        "samples": [{"mention_id": "x:1", "text": "down", "url": "https://x.com/1", "language": "en"}],
        "triggered_at": T0 + 30}
    return Group(**{**base, **kw})


def test_a_post_with_slack_control_sequences_arrives_as_literal_text() -> None:
    post = "<!channel> refund here: <https://evil.example|click to get refund> <@U123> <3 attempts & counting>"
    g = _group(samples=[{"mention_id": "x:1", "text": post, "url": "https://x.com/1", "language": "en"}],
               reasons={"<!here> outage": 1}, labels={"brand": "<!everyone>"})
    (_, trigger), *_ = send_all(g)["slack"]
    samples = trigger["blocks"][2]["text"]["text"]
    assert samples.startswith("> &lt;!channel&gt; refund here: &lt;https://evil.example|click to get refund&gt; "
                              "&lt;@U123&gt; &lt;3 attempts &amp; counting&gt; <https://x.com/1|link>")
    assert html.unescape(samples.split(" <https://x.com/1|")[0].removeprefix("> ")) == post  # what people see
    assert "&lt;!here&gt; outage" in trigger["blocks"][1]["fields"][0]["text"]
    assert "&lt;!everyone&gt;" in trigger["text"] and "<!" not in json.dumps(trigger)


def test_long_slack_texts_are_cut_within_limits_and_never_inside_an_escape_or_a_link() -> None:
    g = _group(reasons={("<&>" * 600) + f" {i}": i for i in range(1, 6)},
               samples=[{"mention_id": f"x:{i}", "text": "&" * 10_000, "url": "https://x.com/a?b=1&c=2",
                         "language": "en"} for i in range(5)])
    (_, trigger), *_ = send_all(g)["slack"]
    reasons = trigger["blocks"][1]["fields"][0]["text"]
    samples = trigger["blocks"][2]["text"]["text"]
    assert len(reasons) <= 2000 and len(samples) <= 3000 and reasons.endswith("…")
    for text in (reasons, samples):
        check_slack_mrkdwn(text)
    assert samples.count("<https://x.com/a?b=1&amp;c=2|link>") == 5  # 200 escaped & per post = 1,000 chars


@given(st.text(alphabet="&<>ab|", max_size=300), st.integers(1, 300))
def test_slack_cut_is_bounded_and_keeps_escapes_and_links_whole(raw: str, limit: int) -> None:
    mrkdwn = contracts.slack_escape(raw) + " " + contracts.slack_link("https://x.com/?a=1&b=2", raw)
    out = contracts.slack_cut(mrkdwn, limit)
    assert len(out) <= limit
    check_slack_mrkdwn(out.removesuffix("…"))
    assert mrkdwn.startswith(out.removesuffix("…"))


def test_a_long_incident_id_gets_a_stable_bounded_key_and_alias() -> None:
    long_a, long_b = "inc-" + "acme-corporation-" * 20 + "a", "inc-" + "acme-corporation-" * 20 + "b"
    key = contracts.pagerduty_dedup_key(long_a)
    assert len(key) <= 255 and key == contracts.pagerduty_dedup_key(long_a) != contracts.pagerduty_dedup_key(long_b)
    assert contracts.pagerduty_dedup_key("inc-1") == "inc-1" and contracts.opsgenie_alias("inc-1") == "inc-1"
    assert len(contracts.opsgenie_alias("ü" * 600).encode()) <= 512


def test_opsgenie_tags_and_details_are_bounded_in_order() -> None:
    assert contracts.opsgenie_tags(["social-triage", "b" * 300, "", "social-triage"]) == ["social-triage",
                                                                                         "b" * 49 + "…"]
    d = contracts.opsgenie_details({"incident_id": "inc-1", "samples": "s" * 12_000, "languages": "{}"})
    assert d["incident_id"] == "inc-1" and sum(len(k) + len(v) for k, v in d.items()) <= 8000
    assert d["samples"].endswith("…") and "languages" not in d  # what did not fit at the end is left out


def test_alertmanager_label_names_are_made_valid_and_empty_values_dropped() -> None:
    assert contracts.alertmanager_labels({"brand-name": "a", "9lives": "b", "ok_1": 3, "gone": ""}) == {
        "brand_name": "a", "_9lives": "b", "ok_1": "3"}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mention_id=st.one_of(st.text(min_size=1, max_size=300),
                            st.sampled_from(["x:ñandú", "x:%41", "x:a b", "x:日本"])), text=texts, g=groups())
def test_a_webhook_delivers_any_mention_and_incident_with_an_ascii_key_and_a_verifiable_signature(
        mention_id: str, text: str, g: Group) -> None:
    """The webhook receiver, per mention and per incident, for any id and text ingest could have accepted: the
    request is made (no exception out of the receiver: one would have stalled the router's batch), its
    Idempotency-Key is ASCII and percent-decodes to `<id>:<receiver>` (or the page's key), and the body is the
    signed JSON a consumer verifies, with the id as it is."""
    secret = b"w" * 32
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200)

    routed = pb.RoutedMention(route="root/0", receiver="hook")
    routed.scored.mention.mention_id, routed.scored.mention.text = mention_id, text

    async def run() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            hook = WebhookReceiver("hook", "https://hook.test/in", client, secret=secret, console_url=CONSOLE)
            await hook.deliver(routed)
            await hook.notify(Page("trigger", g, T0 + 30))

    asyncio.run(run())
    assert len(sent) == 2
    for request in sent:
        key = request.headers["Idempotency-Key"]
        assert key.isascii() and key.isprintable()
        assert verify(secret, request.headers["X-Triage-Timestamp"], request.content,
                      request.headers["X-Triage-Signature"])
    assert unquote(sent[0].headers["Idempotency-Key"]) == f"{mention_id}:hook"
    assert json.loads(sent[0].content)["mention_id"] == mention_id
    assert unquote(sent[1].headers["Idempotency-Key"]) == f"{g.id}:trigger:{int(T0 + 30)}"
    assert json.loads(sent[1].content)["incident_id"] == g.id

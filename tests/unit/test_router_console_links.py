"""Pages link back to the responder console when the router's console_url (TRIAGE_CONSOLE_URL) is set."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from services.router import render
from services.router.config import RouterSettings
from services.router.grouping import IncidentGrouper, Page, Sample
from services.router.registry import ReceiverConfig, build_receivers

T0 = 1_800_000_000.0
CONSOLE = "https://console.example.org/triage/"
LINK = "https://console.example.org/triage/incidents/inc%2F7%20a"


def _page(action: str = "trigger", incident: str = "inc/7 a") -> Page:
    g = IncidentGrouper().add(receiver="pd", route="root/0", incident_id=incident, group_by=["brand"],
                              labels={"brand": "acme"}, priority="P1", reasons=["outage report 0.94"],
                              sample=Sample("x:1", "down again", "https://x.com/1", "en"), now=T0, group_wait=30,
                              group_interval=300, repeat_interval=4 * 3600, quiet_period=900)
    assert g is not None
    g.thread_ref = "1700000000.000100"
    return Page(action, g, T0 + 60)


def test_console_link_quotes_the_incident_id_and_falls_back_to_the_list():
    assert render.console_link(_page().group, CONSOLE) == LINK
    assert render.console_link(_page(incident="").group, CONSOLE) == "https://console.example.org/triage/"
    assert render.console_link(_page().group, "") == ""
    assert render.console_link(_page().group, "   ") == ""


def test_pagerduty_links_first_and_client_url():
    ev = render.pagerduty_event(_page(), "KEY", console_url=CONSOLE)
    assert ev["links"][0] == {"href": LINK, "text": "incident inc/7 a in the triage console"}
    assert ev["links"][1]["href"] == "https://x.com/1"  # the samples stay
    assert ev["client_url"] == LINK and ev["client"] == "social-triage"
    plain = render.pagerduty_event(_page(), "KEY")
    assert "client_url" not in plain and [x["href"] for x in plain["links"]] == ["https://x.com/1"]


def test_opsgenie_details_and_description_carry_the_link():
    og = render.opsgenie_alert(_page(), CONSOLE)
    assert og["details"]["console_url"] == LINK
    assert og["description"].splitlines()[0] == f"Console: {LINK}"
    assert all(isinstance(v, str) for v in og["details"].values())
    plain = render.opsgenie_alert(_page())
    assert "console_url" not in plain["details"] and "Console:" not in plain["description"]


def test_slack_context_block_links_on_trigger_update_and_resolve():
    for action in ("trigger", "update", "resolve"):
        msg = render.slack_message(_page(action), "C1", "", CONSOLE)
        context = msg["blocks"][-1]
        assert context["type"] == "context"
        assert f"<{LINK}|open in the console>" in context["elements"][0]["text"]
    assert "console" not in json.dumps(render.slack_message(_page(), "C1"))


def test_slack_link_escapes_mrkdwn_control_characters():
    msg = render.slack_message(_page(), "C1", "", "https://c.example/a?x=1&y=<2>")
    text = msg["blocks"][-1]["elements"][0]["text"]
    assert "<https://c.example/a?x=1&amp;y=&lt;2&gt;/incidents/" in text


def test_alertmanager_generator_url_and_webhook_field():
    alert = render.alertmanager_alerts(_page(), console_url=CONSOLE)[0]
    assert alert["generatorURL"] == LINK
    assert render.alertmanager_alerts(_page(), "https://explicit", CONSOLE)[0]["generatorURL"] == "https://explicit"
    assert render.alertmanager_alerts(_page())[0]["generatorURL"] == "https://x.com/1"
    doc = render.webhook_page(_page("resolve"), CONSOLE)
    assert doc["console_url"] == LINK and doc["action"] == "resolve"
    assert "console_url" not in render.webhook_page(_page())


def test_router_setting_reads_triage_console_url(monkeypatch):
    monkeypatch.setenv("TRIAGE_CONSOLE_URL", CONSOLE)
    assert RouterSettings().console_url == CONSOLE
    monkeypatch.delenv("TRIAGE_CONSOLE_URL")
    assert RouterSettings().console_url == ""


def test_built_receivers_send_the_link(monkeypatch):
    """build_receivers(console_url=...) reaches every paging receiver's HTTP body."""
    monkeypatch.setenv("PD_KEY", "k" * 32)
    monkeypatch.setenv("OG_KEY", "o" * 32)
    monkeypatch.setenv("SLACK_TOKEN", "xoxb-test")
    bodies: dict[str, Any] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        bodies[request.url.host] = json.loads(request.content)
        if request.url.host == "slack.test":
            return httpx.Response(200, json={"ok": True, "ts": "1.2"})
        return httpx.Response(202, json={})

    specs = {
        "pd": ReceiverConfig("pd", "pagerduty", {"routing_key_env": "PD_KEY", "url": "https://pd.test/v2/enqueue"}),
        "og": ReceiverConfig("og", "opsgenie", {"api_key_env": "OG_KEY", "url": "https://og.test"}),
        "sl": ReceiverConfig("sl", "slack", {"token_env": "SLACK_TOKEN", "channel": "C1",
                                    "url": "https://slack.test/api/chat.postMessage"}),
        "am": ReceiverConfig("am", "alertmanager", {"url": "https://am.test"}),
        "wh": ReceiverConfig("wh", "webhook", {"url": "https://wh.test/hook"}),
    }

    async def go() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            receivers = build_receivers(specs, producer=None, client=client, console_url=CONSOLE)  # type: ignore[arg-type]
            for r in receivers.pagers.values():
                await r.notify(_page())

    asyncio.run(go())
    assert bodies["pd.test"]["links"][0]["href"] == LINK
    assert bodies["og.test"]["details"]["console_url"] == LINK
    assert LINK in bodies["slack.test"]["blocks"][-1]["elements"][0]["text"]
    assert bodies["am.test"][0]["generatorURL"] == LINK
    assert bodies["wh.test"]["console_url"] == LINK

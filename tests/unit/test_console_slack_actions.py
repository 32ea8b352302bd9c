"""The console's Slack interactivity endpoint (/slack/interactions): Slack's request signature (checked against
Slack's own documented example), the block_actions payload of the triage notice's buttons, and the endpoint
in a running console app (no Kafka: a recording publisher; a local server stands in for the response_url)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any
from urllib.parse import urlencode

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from test_console_app import RecordingService, _view
from test_console_triage import KEY, triage_record

from services.common import topics
from services.common.codec import pb
from services.console.app import build_app
from services.console.slack_actions import (
    SlackRefused,
    TriageClick,
    decided_message,
    parse_click,
    signature,
    verify,
)

# "Verifying requests from Slack" (api.slack.com/authentication/verifying-requests-from-slack): Slack's worked
# example, a slash command's body signed with an example signing secret.
SLACK_DOC_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
SLACK_DOC_TIMESTAMP = "1531420618"
SLACK_DOC_BODY = (b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
                  b"&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
                  b"&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F"
                  b"96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c")
SLACK_DOC_SIGNATURE = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
SECRET = "test-signing-secret-0123456789"


def test_slacks_documented_example_signature() -> None:
    assert signature(SLACK_DOC_SECRET, SLACK_DOC_TIMESTAMP, SLACK_DOC_BODY) == SLACK_DOC_SIGNATURE
    verify(SLACK_DOC_SECRET, SLACK_DOC_TIMESTAMP, SLACK_DOC_SIGNATURE, SLACK_DOC_BODY, float(SLACK_DOC_TIMESTAMP) + 10)


@pytest.mark.parametrize(("secret", "ts", "sig", "body", "late", "reason"), [
    ("", SLACK_DOC_TIMESTAMP, SLACK_DOC_SIGNATURE, SLACK_DOC_BODY, 0, "no signing secret"),
    (SLACK_DOC_SECRET, None, SLACK_DOC_SIGNATURE, SLACK_DOC_BODY, 0, "missing"),
    (SLACK_DOC_SECRET, SLACK_DOC_TIMESTAMP, None, SLACK_DOC_BODY, 0, "missing"),
    (SLACK_DOC_SECRET, "noon", SLACK_DOC_SIGNATURE, SLACK_DOC_BODY, 0, "not a number"),
    (SLACK_DOC_SECRET, SLACK_DOC_TIMESTAMP, SLACK_DOC_SIGNATURE, SLACK_DOC_BODY, 301, "stale"),  # a replay
    (SLACK_DOC_SECRET, SLACK_DOC_TIMESTAMP, SLACK_DOC_SIGNATURE, SLACK_DOC_BODY, -301, "stale"),
    (SLACK_DOC_SECRET, SLACK_DOC_TIMESTAMP, SLACK_DOC_SIGNATURE, SLACK_DOC_BODY + b"&x=1", 0, "does not match"),
    ("another-secret", SLACK_DOC_TIMESTAMP, SLACK_DOC_SIGNATURE, SLACK_DOC_BODY, 0, "does not match"),
    (SLACK_DOC_SECRET, SLACK_DOC_TIMESTAMP, SLACK_DOC_SIGNATURE[:-1] + "4", SLACK_DOC_BODY, 0, "does not match"),
    (SLACK_DOC_SECRET, SLACK_DOC_TIMESTAMP, SLACK_DOC_SIGNATURE.removeprefix("v0="), SLACK_DOC_BODY, 0,
     "does not match"),
])
def test_a_request_slack_did_not_sign_just_now_is_refused(secret: str, ts: str | None, sig: str | None, body: bytes,
                                                          late: float, reason: str) -> None:
    with pytest.raises(SlackRefused, match=reason) as refused:
        verify(secret, ts, sig, body, float(SLACK_DOC_TIMESTAMP) + late)
    assert refused.value.status == 401


def block_actions(action_id: str = "triage_dismiss", value: str = KEY, user: dict[str, str] | None = None,
                  response_url: str = "https://hooks.slack.com/actions/T0/1/abc") -> dict[str, Any]:
    """A block_actions payload as Slack sends it for a click on the triage notice's button (its documented
    fields; the message is the notice the router posted, abridged)."""
    return {
        "type": "block_actions",
        "user": user if user is not None else {"id": "U0ANA", "username": "ana", "name": "ana",
                                                "team_id": "T0TEAM"},
        "api_app_id": "A0APP", "token": "legacy-verification-token", "trigger_id": "123.456.abc",
        "team": {"id": "T0TEAM", "domain": "acme"},
        "container": {"type": "message", "message_ts": "1700000000.000100", "channel_id": "C0TRIAGE",
                      "is_ephemeral": False},
        "channel": {"id": "C0TRIAGE", "name": "triage"},
        "message": {"type": "message", "ts": "1700000000.000100", "text": ":raising_hand: Held for triage: acme",
                    "blocks": [
                        {"type": "section", "block_id": "s1", "text": {"type": "mrkdwn", "text": "*Held*"}},
                        {"type": "section", "block_id": "triage_hold",
                         "text": {"type": "mrkdwn", "text": "*Not paged yet.* Pages by itself at 10:00 UTC"}},
                        {"type": "actions", "block_id": "triage_actions", "elements": []},
                        {"type": "context", "block_id": "c1", "elements": []}]},
        "response_url": response_url,
        "actions": [{"type": "button", "action_id": action_id, "block_id": "triage_actions", "value": value,
                     "text": {"type": "plain_text", "text": "Dismiss"}, "action_ts": "1700000001.000200"}],
    }


def form(payload: dict[str, Any]) -> bytes:
    return urlencode({"payload": json.dumps(payload)}).encode()


def test_a_click_on_a_triage_button_is_read_from_the_block_actions_payload() -> None:
    click = parse_click(form(block_actions()))
    assert (click.decision, click.group_key, click.responder) == ("dismiss", KEY, "slack:ana")
    assert click.response_url == "https://hooks.slack.com/actions/T0/1/abc"
    assert parse_click(form(block_actions("triage_page_now"))).decision == "page_now"
    # No user name: the id; odd characters in a name are dropped.
    assert parse_click(form(block_actions(user={"id": "U0BO"}))).responder == "slack:U0BO"
    assert parse_click(form(block_actions(user={"id": "U1", "username": "bo <!channel>"}))).responder \
        == "slack:bochannel"


@pytest.mark.parametrize(("body", "reason"), [
    (b"token=x&command=%2Ftriage", "JSON `payload`"),
    (urlencode({"payload": "{not json"}).encode(), "JSON `payload`"),
    (form({**block_actions(), "type": "view_submission"}), "only block_actions"),
    (form({**block_actions(), "actions": []}), "no action"),
    (form(block_actions("approve_expense")), "unknown action"),
    (form(block_actions(value="")), "no group key"),
    (form(block_actions(user={})), "no user"),
])
def test_anything_but_a_triage_click_is_a_400(body: bytes, reason: str) -> None:
    with pytest.raises(SlackRefused, match=reason) as refused:
        parse_click(body)
    assert refused.value.status == 400


def test_the_decided_notice_says_who_decided_instead_of_the_buttons() -> None:
    click = TriageClick("dismiss", KEY, "slack:ana", "", block_actions()["message"])
    msg = pb.TriageDecision(group_key=KEY, incident_id="inc-1", decision="dismissed", responder="slack:ana")
    doc = decided_message(click, msg)
    assert doc["replace_original"] is True and "by slack:ana" in doc["text"]
    assert [b.get("block_id") or b["type"] for b in doc["blocks"]] == ["s1", "section", "c1"]
    assert "Dismissed" in doc["blocks"][1]["text"]["text"] and "actions" not in json.dumps(doc)


def signed(body: bytes, secret: str = SECRET, at: float | None = None) -> dict[str, str]:
    ts = str(int(at if at is not None else time.time()))
    return {"Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": signature(secret, ts, body)}


async def test_a_signed_click_publishes_the_triage_pages_decision_and_updates_the_notice() -> None:
    now = time.time()
    answers: list[dict[str, Any]] = []

    async def response_url(request: web.Request) -> web.Response:
        answers.append(await request.json())
        return web.Response(text="ok")

    hooks = web.Application()
    hooks.router.add_post("/actions/{rest:.*}", response_url)
    async with TestServer(hooks) as slack:
        base = str(slack.make_url("/"))
        view = _view()
        view.apply_record(topics.PAGES, b"inc-1", triage_record("held", now - 60))
        svc = RecordingService(view, console_slack_signing_secret=SECRET, console_slack_response_url_prefix=base)
        async with TestClient(TestServer(build_app(svc.settings, svc))) as client:
            body = form(block_actions(response_url=f"{base}actions/T0/1/abc"))
            r = await client.post("/slack/interactions", data=body, headers=signed(body, "wrong-secret"))
            assert r.status == 401 and "does not match" in (await r.json())["error"] and svc.published == []
            r = await client.post("/slack/interactions", data=body, headers=signed(body, at=now - 400))
            assert r.status == 401 and "stale" in (await r.json())["error"] and svc.published == []

            r = await client.post("/slack/interactions", data=body, headers=signed(body))  # no cookie, no CSRF
            assert r.status == 200
            assert [(t, k) for t, k, _ in svc.published] == [(topics.FEEDBACK, "inc-1"), (topics.TRIAGE_DECISIONS, KEY)]
            decision = svc.published[1][2]
            assert isinstance(decision, pb.TriageDecision)
            assert (decision.decision, decision.responder, decision.incident_id) == ("dismissed", "slack:ana", "inc-1")
            assert svc.view.triage[KEY].decided_by == "slack:ana" and not svc.view.triage[KEY].pending
            api = await (await client.get("/api/triage")).json()
            assert api["pending"] == [] and api["recent"][0]["decided_by"] == "slack:ana"

            for _ in range(100):
                if answers:
                    break
                await asyncio.sleep(0.05)
            assert answers and answers[0]["replace_original"] is True and "slack:ana" in answers[0]["text"]

            # Clicked again (or on "Page now" after the dismissal): refused, nothing published, told why.
            again = form(block_actions("triage_page_now", response_url=f"{base}actions/T0/1/abc"))
            r = await client.post("/slack/interactions", data=again, headers=signed(again))
            assert r.status == 409 and (await r.json())["response_type"] == "ephemeral" and len(svc.published) == 2
            unknown = form(block_actions(value="pd|incident:nope"))
            r = await client.post("/slack/interactions", data=unknown, headers=signed(unknown))
            assert r.status == 404 and "no incident held" in (await r.json())["text"]
            for _ in range(100):
                if len(answers) >= 2:
                    break
                await asyncio.sleep(0.05)
            assert answers[1] == {"response_type": "ephemeral", "replace_original": False,
                                  "text": answers[1]["text"]} and "no longer waiting" in answers[1]["text"]


async def test_without_a_signing_secret_slack_actions_are_off() -> None:
    view = _view()
    view.apply_record(topics.PAGES, b"inc-1", triage_record("held", time.time()))
    svc = RecordingService(view)
    async with TestClient(TestServer(build_app(svc.settings, svc))) as client:
        body = form(block_actions())
        r = await client.post("/slack/interactions", data=body, headers=signed(body, ""))
        assert r.status == 401 and "TRIAGE_CONSOLE_SLACK_SIGNING_SECRET" in (await r.json())["error"]
        assert svc.published == [] and svc.view.triage[KEY].pending

"""Slack's interactivity endpoint (`POST /slack/interactions`): the triage notice's "Page now" and "Dismiss".

The router posts a held incident's notice with two Block Kit buttons (router/render.py, ids in
common/triage_slack.py: `action_id` names the decision, `value` is the group key). A click makes Slack POST a
`block_actions` interaction payload here, as Slack documents it: `application/x-www-form-urlencoded` with one
field, `payload`, a JSON object with `type`, `user` {id, username, name, team_id}, `actions`
[{action_id, block_id, value, type, action_ts}], `response_url`, `message` (the notice), and more.

Authentication is Slack's request signature and nothing else (Slack cannot sign in to the console, so the
path is exempt from sign-in and CSRF, app.OPEN_PATHS): `X-Slack-Signature` must be
`v0=` + hex HMAC-SHA256(signing secret, `v0:{X-Slack-Request-Timestamp}:{raw body}`), compared in constant
time, with the timestamp within 5 minutes of now (an old request replayed is refused). Fail closed: with no
signing secret (`TRIAGE_CONSOLE_SLACK_SIGNING_SECRET`) every request is answered 401, and the console says
at start-up that Slack actions are off.

A verified click is a triage decision by `slack:<Slack user name>`, built by the Triage page's own code
(actions.triage_decision) and recorded by its own publisher (app.publish_triage: a dismissal is also a "page
was wrong" LabelFeedback). Slack wants an answer within 3 seconds: the endpoint waits for Kafka at most
`ACK_SECONDS`, answers 200, and then replaces the notice through the payload's `response_url` with one that
says who decided (its buttons gone). A refused click (the incident no longer waits, or is unknown) is
answered 404 / 409 with an ephemeral message, also posted to the `response_url` so the person sees why.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import aiohttp
from aiohttp import web

from services.common import triage_slack
from services.common.codec import pb
from services.common.errors import TriageError
from services.common.logging import get_logger
from services.console import actions

log = get_logger("console")

PATH = "/slack/interactions"
MAX_SKEW_SECONDS = 5 * 60  # Slack: refuse a request whose timestamp is more than five minutes from now
ACK_SECONDS = 2.5  # Slack waits 3 s for the answer
SLACK_MAX_BLOCKS = 50
_NAME_CHARS = re.compile(r"[^A-Za-z0-9_.@-]")


class SlackRefused(TriageError):
    """A request answered with `status` and `reason` (401: not from Slack; 400: not a triage button)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """Slack's v0 request signature of `body` sent at `timestamp`."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def verify(secret: str, timestamp: str | None, sig: str | None, body: bytes, now: float) -> None:
    """Raise SlackRefused(401, why) unless `sig` is Slack's signature of `body` at a `timestamp` near `now`."""
    if not secret:
        raise SlackRefused(401, "Slack actions are off: the console has no signing secret "
                                "(TRIAGE_CONSOLE_SLACK_SIGNING_SECRET)")
    if not timestamp or not sig:
        raise SlackRefused(401, "missing X-Slack-Request-Timestamp or X-Slack-Signature")
    try:
        sent = int(timestamp)
    except ValueError:
        raise SlackRefused(401, "X-Slack-Request-Timestamp is not a number") from None
    if abs(now - sent) > MAX_SKEW_SECONDS:
        raise SlackRefused(401, "stale request: its timestamp is more than 5 minutes from now")
    if not hmac.compare_digest(signature(secret, timestamp, body).encode(), sig.encode(errors="replace")):
        raise SlackRefused(401, "the X-Slack-Signature does not match the request")


@dataclass(frozen=True)
class TriageClick:
    """A click on a triage notice's button: the decision (the Triage page's `decision` field), the group key,
    who clicked (`slack:<name>`), where to answer, and the message clicked on."""

    decision: str
    group_key: str
    responder: str
    response_url: str
    message: dict[str, Any]


def slack_responder(user: Any) -> str:
    """`slack:` and the clicking user's name (else their id), cut to the characters a responder name has."""
    if not isinstance(user, dict):
        raise SlackRefused(400, "the payload names no user")
    for field in ("username", "name", "id"):
        name = _NAME_CHARS.sub("", str(user.get(field) or ""))[:64]
        if name:
            return f"slack:{name}"
    raise SlackRefused(400, "the payload names no user")


def parse_click(body: bytes) -> TriageClick:
    """The triage click of a `block_actions` payload (form field `payload`); SlackRefused(400) otherwise."""
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True)
        payload = json.loads(fields["payload"][0])
    except (UnicodeDecodeError, KeyError, IndexError, ValueError):
        raise SlackRefused(400, "expected a form with a JSON `payload` field, as Slack sends interactions") from None
    if not isinstance(payload, dict) or payload.get("type") != "block_actions":
        kind = payload.get("type") if isinstance(payload, dict) else None
        raise SlackRefused(400, f"only block_actions payloads are handled here, not {str(kind)[:40]!r}")
    clicked = payload.get("actions")
    if not isinstance(clicked, list) or not clicked or not isinstance(clicked[0], dict):
        raise SlackRefused(400, "the payload has no action")
    action = clicked[0]
    action_id = str(action.get("action_id", ""))
    if action_id not in triage_slack.DECISIONS:
        raise SlackRefused(400, f"unknown action {action_id[:60]!r}: this endpoint answers only "
                                f"{sorted(triage_slack.DECISIONS)}")
    group_key = action.get("value")
    if not isinstance(group_key, str) or not group_key:
        raise SlackRefused(400, "the button carries no group key")
    message = payload.get("message")
    return TriageClick(triage_slack.DECISIONS[action_id], group_key, slack_responder(payload.get("user")),
                       str(payload.get("response_url") or ""), message if isinstance(message, dict) else {})


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def ephemeral(text: str) -> dict[str, Any]:
    """A message only the person who clicked sees, leaving the notice as it is."""
    return {"response_type": "ephemeral", "replace_original": False, "text": text}


def decided_message(click: TriageClick, msg: pb.TriageDecision) -> dict[str, Any]:
    """The notice as it reads once decided: its "Not paged yet" section and buttons give way to who decided;
    posted to the `response_url` with `replace_original`."""
    what = ("Paged now" if msg.decision == "page_now"
            else "Dismissed: not paged, counted as a wrong page")
    line = f"{what} by {msg.responder} (incident {msg.incident_id})"
    note = {"type": "section", "text": {"type": "mrkdwn", "text": f"*{_escape(line)}*", "verbatim": True}}
    blocks: list[Any] = []
    for block in click.message.get("blocks") or []:
        if not isinstance(block, dict):
            continue
        if block.get("block_id") in (triage_slack.HOLD_BLOCK, triage_slack.ACTIONS_BLOCK) \
                or block.get("type") == "actions":
            if note not in blocks:
                blocks.append(note)
            continue
        blocks.append(block)
    if note not in blocks:
        blocks.append(note)
    return {"replace_original": True, "text": line, "blocks": blocks[:SLACK_MAX_BLOCKS]}


Decide = Callable[[Any, pb.TriageDecision], Awaitable[None]]


class SlackActions:
    """The endpoint: `handler` for aiohttp. `service_of(request)` is the ConsoleService; `decide(service,
    decision)` records a decision (app.publish_triage)."""

    def __init__(self, secret: str, response_url_prefix: str, service_of: Callable[[web.Request], Any],
                 decide: Decide, clock: Callable[[], float] = time.time) -> None:
        self.secret = secret
        self.response_url_prefix = response_url_prefix
        self.service_of = service_of
        self.decide = decide
        self.clock = clock
        self._tasks: set[asyncio.Task[Any]] = set()
        if not secret:
            log.warning("console_slack_actions_off", path=PATH,
                        reason="no TRIAGE_CONSOLE_SLACK_SIGNING_SECRET: Slack's buttons are answered 401")

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

    async def handler(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            verify(self.secret, request.headers.get("X-Slack-Request-Timestamp"),
                   request.headers.get("X-Slack-Signature"), body, self.clock())
            click = parse_click(body)
        except SlackRefused as refused:
            log.info("console_slack_refused", status=refused.status, reason=refused.reason, client=request.remote)
            return web.json_response({"error": refused.reason}, status=refused.status)
        svc = self.service_of(request)
        form = {"group_key": click.group_key, "decision": click.decision, "responder": click.responder}
        task = self._spawn(self._decided(svc, form))
        status, answer = 200, None
        try:
            await asyncio.wait_for(asyncio.shield(task), ACK_SECONDS)
        except TimeoutError:
            pass  # Kafka is slow: answered now, the notice changes once it acknowledged (`_reply`)
        except actions.FormError as err:
            status, answer = err.status, ephemeral(f"Not recorded: {err.message}")
        self._spawn(self._reply(task, click))
        log.info("console_slack_action", user=click.responder, decision=click.decision, status=status,
                 client=request.remote)
        if answer is None:
            return web.Response(status=200)
        return web.json_response(answer, status=status)

    async def _decided(self, svc: Any, form: dict[str, str]) -> pb.TriageDecision:
        async with svc.action_lock:  # one action at a time, as on the Triage page
            msg = actions.triage_decision(svc.view, form, form["responder"])
            await self.decide(svc, msg)
        return msg

    async def _reply(self, task: asyncio.Task[pb.TriageDecision], click: TriageClick) -> None:
        """Tell the Slack channel: the notice replaced by who decided, or, refused, why (to the clicker only)."""
        try:
            msg = await task
        except actions.FormError as err:
            await self.respond(click.response_url, ephemeral(f"Not recorded: {err.message}"))
            return
        except Exception as exc:  # answered 500 already; logged here, never left unretrieved
            log.warning("console_slack_action_failed", error=type(exc).__name__, detail=str(exc)[:200])
            return
        await self.respond(click.response_url, decided_message(click, msg))

    async def respond(self, url: str, doc: dict[str, Any]) -> None:
        """POST `doc` to an interaction's `response_url`, only under TRIAGE_CONSOLE_SLACK_RESPONSE_URL_PREFIX
        (Slack's hooks.slack.com): the signed payload names it, and the console posts nowhere else."""
        if not url.startswith(self.response_url_prefix):
            log.warning("console_slack_response_url_refused", url=url[:80])
            return
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session, \
                    session.post(url, json=doc) as resp:
                if resp.status >= 300:
                    log.warning("console_slack_response_failed", status=resp.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("console_slack_response_failed", error=type(exc).__name__)

"""Rendering of pages (grouping.Page) into the documents each paging API expects: pure functions.

- PagerDuty Events API v2: {routing_key, event_action, dedup_key (= incident id, <= 255), payload{summary, source,
  severity, timestamp, component, group, class, custom_details}, links, client}. Updates are `trigger`
  events with the same dedup_key (PagerDuty adds them to the open alert).
- Opsgenie Alert API: {message, alias (= incident id, <= 512), description, priority P1-P5, details, tags, entity,
  source}; updates and the resolve are notes on the same alias (`opsgenie_note`).
- Slack chat.postMessage: a Block Kit message; updates and the resolve are replies with `thread_ts`.
- Alertmanager /api/v2/alerts: a list of {labels, annotations, startsAt, endsAt, generatorURL}; every firing
  post sets `endsAt` ahead (re-posted by heartbeat.py before it lapses), an `endsAt` of now resolves it.
- Generic webhooks on a grouping route: a signed incident document (`webhook_page`).

Escaping and the receivers' documented limits (Slack mrkdwn, field and block limits; PagerDuty and
Opsgenie sizes; Alertmanager label names) are applied through contracts.py, one section per receiver.

With the router's `console_url` (`TRIAGE_CONSOLE_URL`) set, every page links back to the incident in the
responder console (`console_link`): PagerDuty's first `links[]` entry and its `client_url`, Opsgenie's
`details.console_url` and a line of the description, a link in the Slack message's context block,
Alertmanager's `generatorURL` and the webhook document's `console_url`. Unset, pages carry no such link.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from services.common import triage_slack
from services.router.contracts import (
    OPSGENIE_DESCRIPTION,
    OPSGENIE_ENTITY,
    OPSGENIE_MESSAGE,
    OPSGENIE_NOTE,
    PAGERDUTY_SUMMARY,
    SLACK_CONTEXT_TEXT,
    SLACK_FIELD_TEXT,
    SLACK_MAX_BLOCKS,
    SLACK_MESSAGE_TEXT,
    SLACK_SECTION_TEXT,
    alertmanager_labels,
    cut,
    http_url,
    opsgenie_alias,
    opsgenie_details,
    opsgenie_tags,
    pagerduty_bounded,
    pagerduty_dedup_key,
    slack_code,
    slack_cut,
    slack_link,
    slack_mrkdwn,
    slack_plain,
)
from services.router.grouping import Group, Page

SEVERITY = {"P1": "critical", "P2": "error", "P3": "warning", "P4": "info"}
OPSGENIE_PRIORITY = {"P1": "P1", "P2": "P2", "P3": "P3", "P4": "P5"}


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, tz=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def summary(g: Group, action: str = "trigger") -> str:
    brand = g.labels.get("brand") or "unknown brand"
    top = g.top_reasons(1)
    what = f" - {top[0][0]}" if top else ""
    verb = "resolved: " if action == "resolve" else ""
    return cut(f"{verb}[{g.priority}] {brand}: {g.mentions} mention{'s' if g.mentions != 1 else ''}{what}",
               PAGERDUTY_SUMMARY)


def details(g: Group) -> dict[str, Any]:
    return {
        "incident_id": g.incident_id or g.id,
        "route": g.route,
        "mentions": g.mentions,
        "top_reasons": [f"{r} ({n})" for r, n in g.top_reasons()],
        "languages": dict(sorted(g.languages.items(), key=lambda kv: -kv[1])),
        "samples": [{"mention_id": s["mention_id"], "text": s["text"][:280], "url": s["url"]} for s in g.samples],
        "first_seen": _iso(g.first_at),
        "last_seen": _iso(g.last_at),
        **{f"label_{k}": v for k, v in g.labels.items()},
    }


def console_link(g: Group, console_url: str) -> str:
    """The group's page in the console: its classifier incident, or the incident list for a group that has
    none (a `group_by` group, an SLA escalation); "" when no console URL is configured."""
    base = console_url.strip().rstrip("/")
    if not base:
        return ""
    return f"{base}/incidents/{quote(g.incident_id, safe='')}" if g.incident_id else f"{base}/"


def triage_link(console_url: str) -> str:
    """The console's Triage page ("" when no console URL is configured)."""
    base = console_url.strip().rstrip("/")
    return f"{base}/triage" if base else ""


def _console_text(g: Group) -> str:
    return f"incident {g.incident_id} in the triage console" if g.incident_id else "triage console"


def links(g: Group, console_url: str = "") -> list[dict[str, str]]:
    console = console_link(g, console_url)
    first = [{"href": console, "text": _console_text(g)}] if console else []
    return first + [{"href": url, "text": f"sample {s['mention_id']}"} for s in g.samples
                    if (url := http_url(s.get("url", "")))]


def pagerduty_event(page: Page, routing_key: str, source: str = "social-triage",
                    console_url: str = "") -> dict[str, Any]:
    g = page.group
    dedup_key = pagerduty_dedup_key(g.id)  # the same (bounded) key for trigger, acknowledge and resolve
    if page.action in ("resolve", "acknowledge"):
        return {"routing_key": routing_key, "event_action": page.action, "dedup_key": dedup_key}
    event: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key,
        "payload": {
            "summary": summary(g),
            "source": source,
            "severity": SEVERITY.get(g.priority, "critical"),
            "timestamp": _iso(page.at),
            "component": g.labels.get("brand", ""),
            "group": g.route,
            "class": g.top_reasons(1)[0][0] if g.reasons else "social mentions",
            # PagerDuty has no "update" action: an update is a trigger with the same dedup_key, appended to
            # the open alert. `notification` tells the responder (and the audit) which one it is.
            "custom_details": {"notification": page.action, **details(g)},
        },
        "links": links(g, console_url),
        "client": "social-triage",
    }
    if console := console_link(g, console_url):
        event["client_url"] = console  # shown by PagerDuty as "View in social-triage"
    return pagerduty_bounded(event)


_OPSGENIE_DETAILS_FIRST = ("incident_id", "console_url", "route", "mentions", "first_seen", "last_seen")


def opsgenie_alert(page: Page, console_url: str = "") -> dict[str, Any]:
    g = page.group
    d = details(g)
    console = console_link(g, console_url)
    if console:
        d["console_url"] = console
    # Details are cut to Opsgenie's 8,000 characters in this order: identifiers first, then labels, then the
    # long lists (reasons, languages, samples).
    order = [k for k in _OPSGENIE_DETAILS_FIRST if k in d] + sorted(k for k in d if k.startswith("label_")) \
        + [k for k in d if k not in _OPSGENIE_DETAILS_FIRST and not k.startswith("label_")]
    brand = g.labels.get("brand", "")
    # The link goes first in the description so the 15,000-character cut never drops it.
    return {
        "message": cut(summary(g), OPSGENIE_MESSAGE),
        "alias": opsgenie_alias(g.id),
        "description": cut("\n".join(([f"Console: {console}"] if console else [])
                                     + ["Top reasons:"] + [f"- {r}" for r in d["top_reasons"]]
                                     + ["Samples:"] + [f"- {s['text']} {s['url']}" for s in d["samples"]]),
                           OPSGENIE_DESCRIPTION),
        "priority": OPSGENIE_PRIORITY.get(g.priority, "P1"),
        "details": opsgenie_details({k: (d[k] if isinstance(d[k], str) else json.dumps(d[k], ensure_ascii=False))
                                     for k in order}),
        "tags": opsgenie_tags(["social-triage", brand]),
        "entity": cut(brand, OPSGENIE_ENTITY),
        "source": "social-triage",
    }


def opsgenie_note(page: Page) -> dict[str, str]:
    """The body of an update (a note on the alert) or of the resolve (the close request's note)."""
    g = page.group
    if page.action == "resolve":
        note = summary(g, "resolve")
    else:
        note = f"{g.mentions} mentions; top: " + "; ".join(f"{r} ({n})" for r, n in g.top_reasons(3))
    return {"note": cut(note, OPSGENIE_NOTE), "source": "social-triage"}


def triage_buttons(group_key: str) -> dict[str, Any] | None:
    """The triage notice's `actions` block (ids in common/triage_slack.py): "Page now" (primary) and
    "Dismiss" (danger, behind a confirmation dialog), each carrying the group key as its `value`; None for a
    group key longer than a button's value may be (the console link still works)."""
    if not group_key or len(group_key) > triage_slack.BUTTON_VALUE_MAX:
        return None
    return {"type": "actions", "block_id": triage_slack.ACTIONS_BLOCK, "elements": [
        {"type": "button", "action_id": triage_slack.PAGE_NOW, "value": group_key, "style": "primary",
         "text": {"type": "plain_text", "text": "Page now"}},
        {"type": "button", "action_id": triage_slack.DISMISS, "value": group_key, "style": "danger",
         "text": {"type": "plain_text", "text": "Dismiss"},
         "confirm": {"title": {"type": "plain_text", "text": "Dismiss this incident?"},
                     "text": {"type": "plain_text", "text": "It will not page, and counts as a wrong page."},
                     "confirm": {"type": "plain_text", "text": "Dismiss"},
                     "deny": {"type": "plain_text", "text": "Cancel"}, "style": "danger"}}]}


def slack_message(page: Page, channel: str, thread_ts: str = "", console_url: str = "") -> dict[str, Any]:
    """The Block Kit message: every piece of user or model text is escaped (contracts.slack_escape), every
    text object within Slack's limits; links are built only by `slack_link`."""
    g = page.group
    title = {"trigger": ":rotating_light: Incident", "update": ":arrows_counterclockwise: Update",
             "resolve": ":white_check_mark: Resolved", "triage": ":raising_hand: Held for triage"}[page.action]
    text = f"{title}: {slack_plain(summary(g, page.action))}"
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": slack_mrkdwn("*" + slack_cut(text, SLACK_SECTION_TEXT - 2) + "*",
                                                 SLACK_SECTION_TEXT)}]
    if page.action != "resolve":
        reasons = "\n".join(f"• {slack_plain(cut(r, 300))} ({n})" for r, n in g.top_reasons()) or "•"
        langs = ", ".join(f"{slack_plain(cut(k, 20))} {v}"
                          for k, v in sorted(g.languages.items(), key=lambda kv: -kv[1]))
        blocks.append({"type": "section", "fields": [
            slack_mrkdwn(f"*Top reasons*\n{reasons}", SLACK_FIELD_TEXT),
            slack_mrkdwn(f"*Mentions* {g.mentions}\n*Languages* {langs}", SLACK_FIELD_TEXT)]})
        # Each sample gets an equal share of the section, so a post full of `&` (5 characters each once
        # escaped) never pushes the later samples and their links out.
        share = SLACK_SECTION_TEXT // max(1, len(g.samples)) - 1
        lines = []
        for s in g.samples:
            link = slack_link(s.get("url", ""), "link")
            link = f" {link}" if link and len(link) < share // 2 else ""
            lines.append("> " + slack_cut(slack_plain(cut(s["text"], 200)), share - 2 - len(link)) + link)
        if lines:
            blocks.append({"type": "section", "text": slack_mrkdwn("\n".join(lines), SLACK_SECTION_TEXT)})
    # A mrkdwn link rather than a URL button: a URL button still sends Slack an interaction the app must
    # acknowledge. The link goes last and is never cut.
    link = slack_link(console_link(g, console_url), "open in the console")
    if page.action == "triage":
        # The triage notice: "Page now" and "Dismiss" buttons (an `actions` block; the console's Slack
        # interactivity endpoint, services/console/slack_actions.py, verifies Slack's signature and publishes
        # the same TriageDecision as the Triage page's forms), and the link to that page.
        until = datetime.fromtimestamp(g.triage_until, UTC).strftime("%H:%M UTC")
        act = slack_link(triage_link(console_url), "page now or dismiss")
        blocks.append({"type": "section", "block_id": triage_slack.HOLD_BLOCK, "text": slack_mrkdwn(
            f"*Not paged yet.* {act + ' in the console. ' if act else ''}Pages by itself at {until} "
            "unless someone decides first.", SLACK_SECTION_TEXT)})
        buttons = triage_buttons(g.key)
        if buttons:
            blocks.append(buttons)
    tail = f" · {link}" if link else ""
    context = slack_cut(f"incident {slack_code(g.id)} · route {slack_plain(g.route)}",
                        SLACK_CONTEXT_TEXT - len(tail)) + tail
    blocks.append({"type": "context", "elements": [slack_mrkdwn(context, SLACK_CONTEXT_TEXT)]})
    msg: dict[str, Any] = {"channel": channel, "text": slack_cut(text, SLACK_MESSAGE_TEXT),
                           "blocks": blocks[:SLACK_MAX_BLOCKS], "unfurl_links": False}
    if thread_ts:
        msg["thread_ts"] = thread_ts
    return msg


ALERT_TTL_SECONDS = 180.0  # endsAt ahead of each post when the receiver sets none (heartbeat.py: 3 heartbeats)


def alertmanager_alerts(page: Page, generator_url: str = "", console_url: str = "",
                        ttl: float = ALERT_TTL_SECONDS) -> list[dict[str, Any]]:
    """One alert per incident. Its labels identify the incident for its whole life (priority and severity,
    which change, are annotations: a changed label set would be another alert, and the old one would stay
    firing). Every firing post sets `endsAt` `ttl` ahead, so the alert lives while the router re-posts it
    (heartbeat.py) and lapses on its own if the router is gone; the resolve sets `endsAt` to now."""
    g = page.group
    labels = alertmanager_labels({"alertname": "SocialMentionIncident", "incident": g.id, **g.labels})
    annotations = alertmanager_labels({
        "summary": summary(g, page.action),
        "description": "; ".join(f"{r} ({n})" for r, n in g.top_reasons()),
        "mentions": str(g.mentions),
        "priority": g.priority,
        "severity": SEVERITY.get(g.priority, "critical"),
    })
    alert: dict[str, Any] = {
        "labels": labels,
        "annotations": annotations,
        "startsAt": _iso(g.first_at),
        "endsAt": _iso(page.at if page.action == "resolve" else page.at + ttl),
    }
    url = http_url(generator_url or console_link(g, console_url)
                   or (g.samples[0]["url"] if g.samples and g.samples[0]["url"] else ""))
    if url:
        alert["generatorURL"] = url
    return [alert]


def webhook_page(page: Page, console_url: str = "") -> dict[str, Any]:
    doc = {"version": "1", "kind": "incident", "action": page.action, "incident_id": page.group.id,
           "summary": summary(page.group, page.action), "priority": page.group.priority,
           "at": _iso(page.at), "details": details(page.group)}
    if console := console_link(page.group, console_url):
        doc["console_url"] = console
    return doc

"""Rendering of pages (grouping.Page) into the documents each paging API expects: pure functions.

- PagerDuty Events API v2: {routing_key, event_action, dedup_key (= incident id), payload{summary, source,
  severity, timestamp, component, group, class, custom_details}, links, client}. Updates are `trigger`
  events with the same dedup_key (PagerDuty adds them to the open alert).
- Opsgenie Alert API: {message, alias (= incident id), description, priority P1-P5, details, tags, entity, source}.
- Slack chat.postMessage: a Block Kit message; updates and the resolve are replies with `thread_ts`.
- Alertmanager /api/v2/alerts: a list of {labels, annotations, startsAt, endsAt, generatorURL}; an `endsAt`
  in the past resolves the alert.
- Generic webhooks on a grouping route: a signed incident document (`webhook_page`).

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
    return f"{verb}[{g.priority}] {brand}: {g.count} mention{'s' if g.count != 1 else ''}{what}"[:1024]


def details(g: Group) -> dict[str, Any]:
    return {
        "incident_id": g.incident_id or g.id,
        "route": g.route,
        "mentions": g.count,
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


def _console_text(g: Group) -> str:
    return f"incident {g.incident_id} in the triage console" if g.incident_id else "triage console"


def links(g: Group, console_url: str = "") -> list[dict[str, str]]:
    console = console_link(g, console_url)
    first = [{"href": console, "text": _console_text(g)}] if console else []
    return first + [{"href": s["url"], "text": f"sample {s['mention_id']}"} for s in g.samples if s.get("url")]


def pagerduty_event(page: Page, routing_key: str, source: str = "social-triage",
                    console_url: str = "") -> dict[str, Any]:
    g = page.group
    if page.action in ("resolve", "acknowledge"):
        return {"routing_key": routing_key, "event_action": page.action, "dedup_key": g.id}
    event: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": g.id,
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
    return event


def opsgenie_alert(page: Page, console_url: str = "") -> dict[str, Any]:
    g = page.group
    d = details(g)
    console = console_link(g, console_url)
    if console:
        d["console_url"] = console
    # The link goes first in the description so the 15,000-character cut never drops it.
    return {
        "message": summary(g)[:130],
        "alias": g.id[:512],
        "description": "\n".join(([f"Console: {console}"] if console else [])
                                 + ["Top reasons:"] + [f"- {r}" for r in d["top_reasons"]]
                                 + ["Samples:"] + [f"- {s['text']} {s['url']}" for s in d["samples"]])[:15000],
        "priority": OPSGENIE_PRIORITY.get(g.priority, "P1"),
        "details": {k: (v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)) for k, v in d.items()},
        "tags": ["social-triage", g.labels.get("brand", "")],
        "entity": g.labels.get("brand", ""),
        "source": "social-triage",
    }


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_message(page: Page, channel: str, thread_ts: str = "", console_url: str = "") -> dict[str, Any]:
    g = page.group
    title = {"trigger": ":rotating_light: Incident", "update": ":arrows_counterclockwise: Update",
             "resolve": ":white_check_mark: Resolved"}[page.action]
    text = f"{title}: {summary(g, page.action)}"
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": f"*{text}*"}}]
    if page.action != "resolve":
        reasons = "\n".join(f"• {r} ({n})" for r, n in g.top_reasons()) or "•"
        langs = ", ".join(f"{k} {v}" for k, v in sorted(g.languages.items(), key=lambda kv: -kv[1]))
        blocks.append({"type": "section", "fields": [
            {"type": "mrkdwn", "text": f"*Top reasons*\n{reasons}"},
            {"type": "mrkdwn", "text": f"*Mentions* {g.count}\n*Languages* {langs}"}]})
        samples = "\n".join(f"> {s['text'][:200]}" + (f" <{s['url']}|link>" if s["url"] else "") for s in g.samples)
        if samples:
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": samples[:2900]}})
    context = f"incident `{g.id}` · route {g.route}"
    if console := console_link(g, console_url):
        # A mrkdwn link rather than a button: a URL button still sends Slack an interaction the app must
        # acknowledge, and this bot has no interaction endpoint.
        context += f" · <{_slack_escape(console)}|open in the console>"
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]})
    msg: dict[str, Any] = {"channel": channel, "text": text, "blocks": blocks, "unfurl_links": False}
    if thread_ts:
        msg["thread_ts"] = thread_ts
    return msg


def alertmanager_alerts(page: Page, generator_url: str = "", console_url: str = "") -> list[dict[str, Any]]:
    g = page.group
    labels = {"alertname": "SocialMentionIncident", "incident": g.id, "priority": g.priority,
              **{k: v for k, v in g.labels.items() if v}}
    alert: dict[str, Any] = {
        "labels": labels,
        "annotations": {"summary": summary(g, page.action),
                        "description": "; ".join(f"{r} ({n})" for r, n in g.top_reasons()),
                        "mentions": str(g.count)},
        "startsAt": _iso(g.first_at),
        "generatorURL": generator_url or console_link(g, console_url)
        or (g.samples[0]["url"] if g.samples and g.samples[0]["url"] else ""),
    }
    if page.action == "resolve":
        alert["endsAt"] = _iso(page.at)
    return [alert]


def webhook_page(page: Page, console_url: str = "") -> dict[str, Any]:
    doc = {"version": "1", "kind": "incident", "action": page.action, "incident_id": page.group.id,
           "summary": summary(page.group, page.action), "priority": page.group.priority,
           "at": _iso(page.at), "details": details(page.group)}
    if console := console_link(page.group, console_url):
        doc["console_url"] = console
    return doc

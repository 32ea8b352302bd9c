"""Paging receivers: incidents (grouping.Page) to PagerDuty, Opsgenie, Slack, Alertmanager and webhooks.

Payload builders are pure functions shaped like the real APIs; the receiver
classes only add HTTP, auth headers and error classification (DeliveryError,
retryable for timeouts/5xx/429, see receivers.py).

- PagerDuty Events API v2: POST /v2/enqueue, {routing_key, event_action, dedup_key (= incident id),
  payload{summary, source, severity, timestamp, component, group, class, custom_details}, links, client}.
  Updates are `trigger` events with the same dedup_key (PagerDuty adds them to the open alert).
- Opsgenie Alert API: POST /v2/alerts {message, alias (= incident id), description, priority P1-P5, details, tags,
  entity, source} with `Authorization: GenieKey <key>`; updates add a note
  (POST /v2/alerts/{alias}/notes?identifierType=alias); resolve closes
  (POST /v2/alerts/{alias}/close?identifierType=alias).
- Slack: incoming webhooks cannot thread, so this uses chat.postMessage with a bot token: the trigger posts a
  Block Kit message, its `ts` is kept in the group state, updates and the resolve are replies with `thread_ts`
  (one thread per incident). Slack answers HTTP 200 with {"ok": false, "error": ...} for API errors.
- Alertmanager: POST /api/v2/alerts with a list of {labels, annotations, startsAt, endsAt, generatorURL};
  re-posting the same labels updates the alert, an `endsAt` in the past resolves it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx

from services.router.grouping import Group, Page
from services.router.receivers import USER_AGENT, DeliveryError, _classify_http, secret_from

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


def links(g: Group) -> list[dict[str, str]]:
    return [{"href": s["url"], "text": f"sample {s['mention_id']}"} for s in g.samples if s.get("url")]


def pagerduty_event(page: Page, routing_key: str, source: str = "social-triage") -> dict[str, Any]:
    g = page.group
    if page.action in ("resolve", "acknowledge"):
        return {"routing_key": routing_key, "event_action": page.action, "dedup_key": g.id}
    return {
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
        "links": links(g),
        "client": "social-triage",
    }


def opsgenie_alert(page: Page) -> dict[str, Any]:
    g = page.group
    d = details(g)
    return {
        "message": summary(g)[:130],
        "alias": g.id[:512],
        "description": "\n".join(["Top reasons:"] + [f"- {r}" for r in d["top_reasons"]]
                                 + ["Samples:"] + [f"- {s['text']} {s['url']}" for s in d["samples"]])[:15000],
        "priority": OPSGENIE_PRIORITY.get(g.priority, "P1"),
        "details": {k: (v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)) for k, v in d.items()},
        "tags": ["social-triage", g.labels.get("brand", "")],
        "entity": g.labels.get("brand", ""),
        "source": "social-triage",
    }


def slack_message(page: Page, channel: str, thread_ts: str = "") -> dict[str, Any]:
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
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"incident `{g.id}` · route {g.route}"}]})
    msg: dict[str, Any] = {"channel": channel, "text": text, "blocks": blocks, "unfurl_links": False}
    if thread_ts:
        msg["thread_ts"] = thread_ts
    return msg


def alertmanager_alerts(page: Page, generator_url: str = "") -> list[dict[str, Any]]:
    g = page.group
    labels = {"alertname": "SocialMentionIncident", "incident": g.id, "priority": g.priority,
              **{k: v for k, v in g.labels.items() if v}}
    alert: dict[str, Any] = {
        "labels": labels,
        "annotations": {"summary": summary(g, page.action),
                        "description": "; ".join(f"{r} ({n})" for r, n in g.top_reasons()),
                        "mentions": str(g.count)},
        "startsAt": _iso(g.first_at),
        "generatorURL": generator_url or (g.samples[0]["url"] if g.samples and g.samples[0]["url"] else ""),
    }
    if page.action == "resolve":
        alert["endsAt"] = _iso(page.at)
    return [alert]


class _HttpPager:
    kind = ""

    def __init__(self, name: str, client: httpx.AsyncClient):
        self.name = name
        self.client = client

    async def _post(self, url: str, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
        try:
            resp = await self.client.post(url, content=json.dumps(body, ensure_ascii=False).encode(),
                                          headers={"Content-Type": "application/json", "User-Agent": USER_AGENT,
                                                   **(headers or {})})
        except httpx.HTTPError as exc:
            raise DeliveryError(f"{self.kind} {self.name}: {type(exc).__name__}: {exc}") from exc
        _classify_http(resp, f"{self.kind} {self.name}")
        return resp


class PagerDutyReceiver(_HttpPager):
    kind = "pagerduty"

    def __init__(self, name: str, client: httpx.AsyncClient, routing_key: str,
                 url: str = "https://events.pagerduty.com/v2/enqueue"):
        super().__init__(name, client)
        self.url, self.routing_key = url, routing_key

    async def notify(self, page: Page) -> str:
        await self._post(self.url, pagerduty_event(page, self.routing_key))
        return ""


class OpsgenieReceiver(_HttpPager):
    kind = "opsgenie"

    def __init__(self, name: str, client: httpx.AsyncClient, api_key: str, url: str = "https://api.opsgenie.com"):
        super().__init__(name, client)
        self.base, self.headers = url.rstrip("/"), {"Authorization": f"GenieKey {api_key}"}

    async def notify(self, page: Page) -> str:
        g = page.group
        if page.action == "trigger":
            await self._post(f"{self.base}/v2/alerts", opsgenie_alert(page), self.headers)
        elif page.action == "update":
            note = f"{g.count} mentions; top: " + "; ".join(f"{r} ({n})" for r, n in g.top_reasons(3))
            await self._post(f"{self.base}/v2/alerts/{_quote(g.id)}/notes?identifierType=alias",
                             {"note": note[:25000], "source": "social-triage"}, self.headers)
        else:
            await self._post(f"{self.base}/v2/alerts/{_quote(g.id)}/close?identifierType=alias",
                             {"note": summary(g, "resolve"), "source": "social-triage"}, self.headers)
        return ""


def _quote(s: str) -> str:
    from urllib.parse import quote

    return quote(s, safe="")


class SlackReceiver(_HttpPager):
    kind = "slack"

    def __init__(self, name: str, client: httpx.AsyncClient, token: str, channel: str,
                 url: str = "https://slack.com/api/chat.postMessage"):
        super().__init__(name, client)
        self.url, self.channel, self.headers = url, channel, {"Authorization": f"Bearer {token}"}

    async def notify(self, page: Page) -> str:
        thread = page.group.thread_ref if page.action != "trigger" else ""
        resp = await self._post(self.url, slack_message(page, self.channel, thread), self.headers)
        try:
            data = resp.json()
        except ValueError:
            raise DeliveryError(f"slack {self.name}: answer is not JSON", retryable=True) from None
        if not data.get("ok"):
            err = str(data.get("error", "unknown"))
            # ratelimited / internal errors are worth retrying; invalid_auth, channel_not_found are not.
            raise DeliveryError(f"slack {self.name}: {err}", retryable=err in ("ratelimited", "internal_error",
                                                                              "service_unavailable",
                                                                              "fatal_error"))
        return str(data.get("ts", "")) if page.action == "trigger" else ""


class AlertmanagerReceiver(_HttpPager):
    kind = "alertmanager"

    def __init__(self, name: str, client: httpx.AsyncClient, url: str):
        super().__init__(name, client)
        base = url.rstrip("/")
        self.url = base if base.endswith("/api/v2/alerts") else base + "/api/v2/alerts"

    async def notify(self, page: Page) -> str:
        await self._post(self.url, alertmanager_alerts(page))
        return ""


def webhook_page(page: Page) -> dict[str, Any]:
    return {"version": "1", "kind": "incident", "action": page.action, "incident_id": page.group.id,
            "summary": summary(page.group, page.action), "priority": page.group.priority,
            "at": _iso(page.at), "details": details(page.group)}


async def webhook_notify(receiver: Any, page: Page) -> str:
    """A generic webhook on a grouping route gets signed incident documents instead of single mentions."""
    await receiver.post_signed(webhook_page(page), f"{page.group.id}:{page.action}:{int(page.at)}")
    return ""


def required_secret(opts: dict[str, Any], key: str, what: str) -> str:
    value = secret_from(opts, key)
    if value is None:
        raise ValueError(f"{what}: `{key}` must name the environment variable holding the secret")
    return value.decode()

"""Paging receivers: incidents (grouping.Page) to PagerDuty, Opsgenie, Slack, Alertmanager and webhooks.

Payload builders are pure functions shaped like the real APIs (`render.py`); the receiver
classes only add HTTP, auth headers and the reason of a failure (DeliveryError: auth_error,
rate_limited, client_error, server_error, timeout, network; see transport.py). Each is a
`receivers.Pager`.

- PagerDuty Events API v2: POST /v2/enqueue, {routing_key, event_action, dedup_key (= incident id, <= 255),
  payload{summary, source, severity, timestamp, component, group, class, custom_details}, links, client}.
  Updates are `trigger` events with the same dedup_key (PagerDuty adds them to the open alert).
- Opsgenie Alert API: POST /v2/alerts {message, alias (= incident id, <= 512), description, priority P1-P5,
  details, tags, entity, source} with `Authorization: GenieKey <key>`; updates add a note
  (POST /v2/alerts/{alias}/notes?identifierType=alias); resolve closes
  (POST /v2/alerts/{alias}/close?identifierType=alias).
- Slack: incoming webhooks cannot thread, so this uses chat.postMessage with a bot token: the trigger posts a
  Block Kit message, its `ts` is kept in the group state, updates and the resolve are replies with `thread_ts`
  (one thread per incident). Slack answers HTTP 200 with {"ok": false, "error": ...} for API errors.
- Alertmanager: POST /api/v2/alerts with a list of {labels, annotations, startsAt, endsAt, generatorURL};
  re-posting the same labels updates the alert, an `endsAt` in the past resolves it. Every firing post sets
  `endsAt` 3 heartbeats ahead and the router re-posts open alerts every `heartbeat` (heartbeat.py).

What each receiver accepts beyond the JSON shape (escaping, lengths) is in contracts.py.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import httpx

from services.common.errors import DeliveryReason
from services.router.contracts import opsgenie_alias
from services.router.grouping import Page
from services.router.heartbeat import DEFAULT_HEARTBEAT_SECONDS, alert_ttl
from services.router.render import alertmanager_alerts, opsgenie_alert, opsgenie_note, pagerduty_event, slack_message
from services.router.transport import USER_AGENT, classify_http, delivery_error, transport_failure

# Slack answers HTTP 200 with {"ok": false, "error": ...}: the reason of each error it documents that matters.
SLACK_REASONS = {
    "ratelimited": DeliveryReason.RATE_LIMITED,
    "internal_error": DeliveryReason.SERVER_ERROR, "service_unavailable": DeliveryReason.SERVER_ERROR,
    "fatal_error": DeliveryReason.SERVER_ERROR,
    "invalid_auth": DeliveryReason.AUTH_ERROR, "not_authed": DeliveryReason.AUTH_ERROR,
    "account_inactive": DeliveryReason.AUTH_ERROR, "token_revoked": DeliveryReason.AUTH_ERROR,
    "token_expired": DeliveryReason.AUTH_ERROR, "no_permission": DeliveryReason.AUTH_ERROR,
    "missing_scope": DeliveryReason.AUTH_ERROR, "not_allowed_token_type": DeliveryReason.AUTH_ERROR,
}  # any other error (channel_not_found, invalid_blocks, ...) is the request's fault: client_error


class _HttpPager:
    kind = ""

    def __init__(self, name: str, client: httpx.AsyncClient, console_url: str = ""):
        self.name = name
        self.client = client
        self.console_url = console_url  # base URL of the responder console: pages link back to it

    async def _post(self, url: str, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
        try:
            resp = await self.client.post(url, content=json.dumps(body, ensure_ascii=False).encode(),
                                          headers={"Content-Type": "application/json", "User-Agent": USER_AGENT,
                                                   **(headers or {})})
        except httpx.HTTPError as exc:
            raise transport_failure(exc, f"{self.kind} {self.name}") from exc
        classify_http(resp, f"{self.kind} {self.name}")
        return resp


class PagerDutyReceiver(_HttpPager):
    """A `Pager` for PagerDuty's Events API v2: trigger, acknowledge and resolve with dedup_key = incident.

    Opsgenie, Slack and Alertmanager pagers below have the same shape; the registry builds them from
    a routing file's receivers, and the paging stage calls ``notify`` once per due page.

    Example:

        import httpx
        from services.router.paging import PagerDutyReceiver

        async with httpx.AsyncClient(timeout=10) as client:
            pager = PagerDutyReceiver("oncall", client, routing_key=os.environ["PD_ROUTING_KEY"])
            await pager.notify(page)     # raises DeliveryError(reason=auth_error|rate_limited|...) on failure
    """

    kind = "pagerduty"

    def __init__(self, name: str, client: httpx.AsyncClient, routing_key: str,
                 url: str = "https://events.pagerduty.com/v2/enqueue", console_url: str = ""):
        super().__init__(name, client, console_url)
        self.url, self.routing_key = url, routing_key

    async def notify(self, page: Page) -> str:
        await self._post(self.url, pagerduty_event(page, self.routing_key, console_url=self.console_url))
        return ""


class OpsgenieReceiver(_HttpPager):
    kind = "opsgenie"

    def __init__(self, name: str, client: httpx.AsyncClient, api_key: str, url: str = "https://api.opsgenie.com",
                 console_url: str = ""):
        super().__init__(name, client, console_url)
        self.base, self.headers = url.rstrip("/"), {"Authorization": f"GenieKey {api_key}"}

    async def notify(self, page: Page) -> str:
        if page.action == "trigger":
            await self._post(f"{self.base}/v2/alerts", opsgenie_alert(page, self.console_url), self.headers)
            return ""
        alias = _quote(opsgenie_alias(page.group.id))  # the alias the trigger created, bounded the same way
        verb = "notes" if page.action == "update" else "close"
        await self._post(f"{self.base}/v2/alerts/{alias}/{verb}?identifierType=alias", opsgenie_note(page),
                         self.headers)
        return ""


def _quote(s: str) -> str:
    return quote(s, safe="")


class SlackReceiver(_HttpPager):
    kind = "slack"

    def __init__(self, name: str, client: httpx.AsyncClient, token: str, channel: str,
                 url: str = "https://slack.com/api/chat.postMessage", console_url: str = ""):
        super().__init__(name, client, console_url)
        self.url, self.channel, self.headers = url, channel, {"Authorization": f"Bearer {token}"}

    async def notify(self, page: Page) -> str:
        thread = page.group.thread_ref if page.action != "trigger" else ""
        resp = await self._post(self.url, slack_message(page, self.channel, thread, self.console_url), self.headers)
        try:
            data = resp.json()
        except ValueError:
            raise delivery_error(f"slack {self.name}: answer is not JSON", DeliveryReason.SERVER_ERROR) from None
        if not isinstance(data, dict):  # (a proxy's answer, say): Slack's own answers are objects
            raise delivery_error(f"slack {self.name}: answer is not a JSON object", DeliveryReason.SERVER_ERROR)
        if not data.get("ok"):
            err = str(data.get("error", "unknown"))
            # ratelimited / internal errors are worth retrying; invalid_auth, channel_not_found are not.
            raise delivery_error(f"slack {self.name}: {err}", SLACK_REASONS.get(err, DeliveryReason.CLIENT_ERROR))
        return str(data.get("ts", "")) if page.action == "trigger" else ""


class AlertmanagerReceiver(_HttpPager):
    kind = "alertmanager"

    def __init__(self, name: str, client: httpx.AsyncClient, url: str, console_url: str = "",
                 heartbeat_seconds: float = DEFAULT_HEARTBEAT_SECONDS):
        super().__init__(name, client, console_url)
        base = url.rstrip("/")
        self.url = base if base.endswith("/api/v2/alerts") else base + "/api/v2/alerts"
        self.heartbeat_seconds = heartbeat_seconds  # open alerts are re-posted this often (heartbeat.py)

    async def notify(self, page: Page) -> str:
        await self._post(self.url, alertmanager_alerts(page, console_url=self.console_url,
                                                       ttl=alert_ttl(self.heartbeat_seconds)))
        return ""

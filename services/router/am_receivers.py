"""Alertmanager receivers (`pagerduty_configs`, `opsgenie_configs`, `slack_configs`, `webhook_configs`,
`msteams_configs`) mapped onto the project's own receiver kinds (pure; registry.py builds them).

    receivers:
      - name: oncall
        pagerduty_configs:
          - routing_key_file: /etc/alertmanager/pd-key      # or routing_key / service_key(_file)
      - name: chat
        slack_configs:
          - api_url: https://slack.com/api/chat.postMessage
            channel: '#incidents'
            http_config: {authorization: {credentials_file: /etc/alertmanager/slack-bot-token}}
      - name: hook
        webhook_configs: [{url: https://hooks.example.com/alerts}]
      - name: blackhole                                      # no integration: a route to it sends nothing

Secrets stay where the file puts them: inline (`routing_key`), or a file (`routing_key_file`, read when
the receiver is built, as the project reads `*_env`). What cannot act as in Alertmanager is not dropped in
silence: Go templates in `text`, `title`, `description`, `details`... are reported as using the project's
rendering (render.py), a second integration in one receiver, `send_resolved: false` (the project always
resolves its incidents), TLS and proxy settings and unsupported integrations (email, ...) are reported
too (`RoutingTree.notices`, shown by `triage route-check`).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.common.errors import TriageError

SUPPORTED = {"pagerduty_configs": "pagerduty", "opsgenie_configs": "opsgenie", "slack_configs": "slack",
             "webhook_configs": "webhook", "msteams_configs": "webhook"}
UNSUPPORTED = ("discord_configs", "email_configs", "incidentio_configs", "jira_configs", "mattermost_configs",
               "msteamsv2_configs", "pushover_configs", "rocketchat_configs", "sns_configs", "telegram_configs",
               "victorops_configs", "webex_configs", "wechat_configs")
AM_RECEIVER_KEYS = frozenset(SUPPORTED) | frozenset(UNSUPPORTED)

# Fields whose value is a Go template in Alertmanager: the project renders its own messages instead.
_TEMPLATED = {
    "pagerduty_configs": ("client", "client_url", "description", "details", "severity", "class", "component",
                          "group", "links", "images", "source"),
    "opsgenie_configs": ("message", "description", "source", "details", "entity", "responders", "actions", "tags",
                         "note", "priority", "visible_to"),
    "slack_configs": ("title", "title_link", "text", "pretext", "fields", "actions", "footer", "fallback",
                      "color", "username", "icon_emoji", "icon_url", "image_url", "thumb_url", "callback_id",
                      "link_names", "mrkdwn_in", "short_fields", "message_text"),
    "webhook_configs": ("max_alerts", "timeout"),
    "msteams_configs": ("title", "summary", "text"),
}
_KNOWN = {
    "pagerduty_configs": ("send_resolved", "http_config", "routing_key", "routing_key_file", "service_key",
                          "service_key_file", "url"),
    "opsgenie_configs": ("send_resolved", "http_config", "api_key", "api_key_file", "api_url", "update_alerts"),
    "slack_configs": ("send_resolved", "http_config", "api_url", "api_url_file", "channel"),
    "webhook_configs": ("send_resolved", "http_config", "url", "url_file"),
    "msteams_configs": ("send_resolved", "http_config", "webhook_url", "webhook_url_file"),
}
_SENDS_RESOLVED_BY_DEFAULT = {"pagerduty_configs": True, "opsgenie_configs": True, "slack_configs": False,
                              "webhook_configs": True, "msteams_configs": True}


@dataclass
class Notice:
    reason: str
    path: str = ""
    node: Any = None  # the YAML mapping holding `key` (for the line)
    key: str = ""


@dataclass
class MappedReceiver:
    kind: str | None  # None: a null receiver (sends nothing)
    options: dict[str, Any] = field(default_factory=dict)
    notices: list[Notice] = field(default_factory=list)


class ReceiverMappingError(TriageError, ValueError):
    def __init__(self, reason: str, path: str = "", node: Any = None, key: str = ""):
        super().__init__(reason)
        self.path, self.node, self.key = path, node, key


def _read_file(path: Any, where: str, node: Any, key: str) -> str:
    try:
        return Path(str(path)).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ReceiverMappingError(f"cannot read {path}: {exc.strerror}", where, node, key) from None


def _url(value: Any, where: str, node: Any, key: str) -> str:
    url = str(value)
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme not in ("http", "https"):
        raise ReceiverMappingError(f"unsupported scheme {scheme!r} for URL", where, node, key)
    if not url.split("://", 1)[1].split("/", 1)[0]:
        raise ReceiverMappingError("missing host for URL", where, node, key)
    return url


def _auth(http: Any, where: str) -> tuple[str, str, list[Notice]]:
    """(`Authorization` scheme, credentials, notices) from an Alertmanager `http_config`."""
    notices: list[Notice] = []
    if not http:
        return "", "", notices
    if not isinstance(http, dict):
        raise ReceiverMappingError("expected a mapping", f"{where}.http_config")
    for k in http:
        if k not in ("authorization", "basic_auth", "bearer_token", "bearer_token_file", "follow_redirects",
                     "enable_http2"):
            notices.append(Notice(f"http_config.{k} is not used: the router's own HTTP client settings apply "
                                  "(TLS verification with the system's CAs, no proxy)",
                                  f"{where}.http_config", http, k))
    if "authorization" in http:
        a = http["authorization"] or {}
        scheme = str(a.get("type", "Bearer"))
        cred = str(a["credentials"]) if "credentials" in a else (
            _read_file(a["credentials_file"], f"{where}.http_config.authorization", a, "credentials_file")
            if "credentials_file" in a else "")
        return scheme, cred, notices
    if "bearer_token" in http or "bearer_token_file" in http:
        cred = str(http["bearer_token"]) if "bearer_token" in http else _read_file(
            http["bearer_token_file"], f"{where}.http_config", http, "bearer_token_file")
        return "Bearer", cred, notices
    if "basic_auth" in http:
        b = http["basic_auth"] or {}
        password = str(b["password"]) if "password" in b else (
            _read_file(b["password_file"], f"{where}.http_config.basic_auth", b, "password_file")
            if "password_file" in b else "")
        token = base64.b64encode(f"{b.get('username', '')}:{password}".encode()).decode()
        return "Basic", token, notices
    return "", "", notices


def _secret(cfg: dict[str, Any], names: tuple[str, ...], out_key: str, opts: dict[str, Any]) -> bool:
    """Copy the first of `names` (inline or `_file`) into opts as `out_key` / `out_key_file`."""
    for n in names:
        if cfg.get(n):
            opts[out_key] = str(cfg[n])
            return True
        if cfg.get(f"{n}_file"):
            opts[f"{out_key}_file"] = str(cfg[f"{n}_file"])
            return True
    return False


def map_receiver(name: str, item: dict[str, Any], glob: dict[str, Any]) -> MappedReceiver:
    """One Alertmanager receiver -> the project's kind and options (see the module docstring)."""
    integrations = [(k, i, c) for k in item if k != "name" for i, c in enumerate(item[k] or [])]
    mapped = MappedReceiver(None)
    for k in item:
        if k != "name" and not isinstance(item[k] or [], list):
            raise ReceiverMappingError("expected a list of configs", k, item, k)
    used = [(k, i, c) for k, i, c in integrations if k in SUPPORTED]
    for k, i, _ in integrations:
        if k not in SUPPORTED:
            mapped.notices.append(Notice(f"{k} is not supported by the project: this integration sends nothing",
                                         f"{k}[{i}]", item, k))
    if not used:
        if not integrations:
            mapped.notices.append(Notice("no integration: routes to this receiver send nothing (Alertmanager's "
                                         "null receiver)", "", None, ""))
        return mapped
    for k, i, _ in used[1:]:
        mapped.notices.append(Notice(f"not used: the project sends one integration per receiver (the first, "
                                     f"{used[0][0]}[{used[0][1]}]); give this one its own receiver and route "
                                     "with `continue: true`", f"{k}[{i}]", item, k))
    key, idx, cfg = used[0]
    where = f"{key}[{idx}]"
    if not isinstance(cfg, dict):
        raise ReceiverMappingError("expected a mapping", where, item, key)
    mapped.kind = SUPPORTED[key]
    opts: dict[str, Any] = {}
    for f in cfg:
        if f in _TEMPLATED[key]:
            mapped.notices.append(Notice(f"{f}: not used; this receiver uses the project's rendering "
                                         "(services/router/render.py), not Alertmanager templates", where, cfg, f))
        elif f not in _KNOWN[key]:
            raise ReceiverMappingError(f"field {f} not found in type config.{key}", where, cfg, f)
    if cfg.get("send_resolved", _SENDS_RESOLVED_BY_DEFAULT[key]) is False and key != "webhook_configs":
        mapped.notices.append(Notice("send_resolved: false is not honoured: the project resolves every incident "
                                     "it paged", where, cfg, "send_resolved"))
    scheme, cred, auth_notices = _auth(cfg.get("http_config") or glob.get("http_config"), where)
    mapped.notices += auth_notices
    if key == "pagerduty_configs":
        if not _secret(cfg, ("routing_key", "service_key"), "routing_key", opts):
            raise ReceiverMappingError("missing service or routing key in PagerDuty config", where, item, key)
        if cfg.get("service_key") or cfg.get("service_key_file"):
            mapped.notices.append(Notice("service_key (Events API v1) is sent as an Events API v2 routing key",
                                         where, cfg, "service_key" if "service_key" in cfg else "service_key_file"))
        opts["url"] = _url(cfg.get("url") or glob.get("pagerduty_url") or "https://events.pagerduty.com/v2/enqueue",
                           where, cfg, "url")
    elif key == "opsgenie_configs":
        if not _secret(cfg, ("api_key",), "api_key", opts) and not _secret(glob, ("opsgenie_api_key",), "api_key",
                                                                          opts):
            raise ReceiverMappingError("no global OpsGenie API Key set either inline or in a file", where, item, key)
        opts["url"] = _url(cfg.get("api_url") or glob.get("opsgenie_api_url") or "https://api.opsgenie.com",
                           where, cfg, "api_url").rstrip("/")
    elif key == "slack_configs":
        if cfg.get("api_url") or glob.get("slack_api_url"):
            opts["url"] = _url(cfg.get("api_url") or glob.get("slack_api_url"), where, cfg, "api_url")
        elif cfg.get("api_url_file") or glob.get("slack_api_url_file"):
            opts["url"] = _url(_read_file(cfg.get("api_url_file") or glob.get("slack_api_url_file"), where, cfg,
                                          "api_url_file"), where, cfg, "api_url_file")
        else:
            raise ReceiverMappingError("no global Slack API URL set either inline or in a file", where, item, key)
        if not cred:
            raise ReceiverMappingError(
                "the project's Slack receiver posts with chat.postMessage and a bot token, so that updates and the "
                "resolve reply in the incident's thread; incoming webhooks cannot: set api_url "
                "https://slack.com/api/chat.postMessage and http_config.authorization.credentials_file",
                where, item, key)
        if not cfg.get("channel"):
            # Alertmanager may leave it to the incoming webhook's channel; chat.postMessage has none.
            raise ReceiverMappingError("required: the project's Slack receiver posts with chat.postMessage, which "
                                       "needs the channel to post to", f"{where}.channel", cfg, "channel")
        opts["token"] = cred
        opts["channel"] = str(cfg["channel"])
    else:  # webhook_configs, msteams_configs: the project's webhook (its own JSON document)
        url_key = "url" if key == "webhook_configs" else "webhook_url"
        if cfg.get(url_key):
            opts["url"] = _url(cfg[url_key], where, cfg, url_key)
        elif cfg.get(f"{url_key}_file"):
            opts["url"] = _url(_read_file(cfg[f"{url_key}_file"], where, cfg, f"{url_key}_file"), where, cfg,
                               f"{url_key}_file")
        else:
            raise ReceiverMappingError(f"one of {url_key} or {url_key}_file must be configured", where, item, key)
        mapped.notices.append(Notice("receives the project's webhook document (a RoutedMention per mention, see "
                                     "ROUTING.md), not Alertmanager's webhook payload", where, item, key))
        if cred:
            opts["headers"] = {"Authorization": f"{scheme} {cred}"}
    mapped.options = opts
    return mapped


def global_notices(glob: dict[str, Any], source: str, line: int) -> list[str]:
    used = {"http_config", "pagerduty_url", "opsgenie_api_url", "opsgenie_api_key", "opsgenie_api_key_file",
            "slack_api_url", "slack_api_url_file"}
    out = []
    for k in glob:
        if k == "resolve_timeout":
            out.append(f"{source}:{line}: global.resolve_timeout: not used: incidents resolve from the `incidents` "
                       "topic, or after the route's quiet_period")
        elif k not in used:
            out.append(f"{source}:{line}: global.{k}: not used by the project's receivers")
    return out

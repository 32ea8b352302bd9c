"""Each paging receiver's contract beyond the JSON shape: escaping and documented limits, one section per receiver.

render.py builds the documents; every piece of user or model text (posts, reasons, brands, labels) that
reaches a receiver passes through the functions here, so what a receiver accepts and how it displays
text is decided in one place per receiver. The limits are the receivers' documented ones:

- Slack (https://api.slack.com/reference/surfaces/formatting#escaping,
  https://api.slack.com/reference/block-kit/blocks#section): mrkdwn needs `&`, `<`, `>` escaped, or a post
  containing `<!channel>` pings the channel and `<https://evil.example|refund>` becomes a disguised link;
  links are only built here (`slack_link`). Section text 3,000, a field 2,000, 10 fields, 50 blocks,
  message `text` 40,000. `slack_cut` never cuts inside an escape (`&amp;`) or a link.
- PagerDuty Events API v2 (https://developer.pagerduty.com/docs/events-api-v2/trigger-events/):
  dedup_key <= 255, summary <= 1,024, the whole event <= 512 KB.
- Opsgenie Alert API (https://docs.opsgenie.com/docs/alert-api): message 130, alias 512, description
  15,000, at most 20 tags of 50 each, entity 512, source 100, note 25,000, details 8,000 in total.
- Alertmanager API v2 (api/v2/openapi.yaml; prometheus/common model.LabelName): label names
  `[a-zA-Z_][a-zA-Z0-9_]*`, label and annotation values strings; an empty value means "no label".

Lengths are counted in code points, as Slack's and slack_sdk's validators do; keys that identify an alert
(dedup_key, alias) are bounded in UTF-8 bytes, which is never more than the code points.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from typing import Any

ELLIPSIS = "…"


def cut(text: str, limit: int) -> str:
    """`text` with at most `limit` characters, ending in an ellipsis when it was cut."""
    if len(text) <= limit:
        return text
    return text[: max(0, limit - 1)] + ELLIPSIS if limit > 0 else ""


def stable_key(ident: str, limit: int) -> str:
    """`ident` if it fits in `limit` UTF-8 bytes, else its prefix and a hash of the whole: the same long id
    always gives the same key (trigger, update and resolve find the same alert) and two ids that share a
    long prefix never collide."""
    raw = ident.encode()
    if len(raw) <= limit:
        return ident
    digest = hashlib.sha256(raw).hexdigest()[:16]
    return raw[: limit - len(digest) - 1].decode(errors="ignore") + "~" + digest


# ---- Slack ---------------------------------------------------------------------------------------------------

SLACK_SECTION_TEXT = 3000
SLACK_FIELD_TEXT = 2000
SLACK_MAX_FIELDS = 10
SLACK_CONTEXT_TEXT = 3000
SLACK_MAX_BLOCKS = 50
SLACK_MESSAGE_TEXT = 40000

_SAFE_URL = re.compile(r"^https?://[^\s|]+$", re.I)


def slack_escape(text: str) -> str:
    """User or model text as literal mrkdwn: `<!channel>`, `<@U123>`, `<url|label>` arrive as text."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_plain(text: str) -> str:
    """Escaped, on one line (a newline would end a `>` quote or a list item early)."""
    return slack_escape(" ".join(text.split()))


def slack_link(url: str, label: str) -> str:
    """`<url|label>` for an http(s) URL, built only here; "" for anything else (a `javascript:` URL, one with
    spaces). A `|` in the URL would end it early: it is percent-encoded; `&`, `<`, `>` are escaped."""
    url = url.strip().replace("|", "%7C")
    if not _SAFE_URL.match(url):
        return ""
    return f"<{slack_escape(url)}|{slack_plain(label)}>"


def slack_code(text: str) -> str:
    """An inline code span of `text` (escaped; a backquote would end the span)."""
    return "`" + slack_plain(text).replace("`", "'") + "`"


def slack_cut(mrkdwn: str, limit: int) -> str:
    """Escaped mrkdwn cut to `limit` characters without splitting an escape (`&amp;`) or a link (`<...>`):
    after escaping, every `&` starts an escape and every `<` starts a link this module built."""
    if len(mrkdwn) <= limit:
        return mrkdwn
    head = mrkdwn[: max(0, limit - 1)]
    amp = head.rfind("&")
    if amp != -1 and ";" not in head[amp:]:
        head = head[:amp]
    lt = head.rfind("<")
    if lt != -1 and ">" not in head[lt:]:
        head = head[:lt]
    return head + ELLIPSIS


def slack_mrkdwn(text: str, limit: int) -> dict[str, Any]:
    """A mrkdwn text object; `verbatim` keeps Slack from linking bare channel names and URLs by itself."""
    return {"type": "mrkdwn", "text": slack_cut(text, limit), "verbatim": True}


# ---- PagerDuty -----------------------------------------------------------------------------------------------

PAGERDUTY_DEDUP_KEY = 255
PAGERDUTY_SUMMARY = 1024
PAGERDUTY_EVENT_BYTES = 512 * 1024
_PAGERDUTY_DETAIL = 1000  # each custom_details string, when the event would be over its size


def pagerduty_dedup_key(incident_id: str) -> str:
    return stable_key(incident_id, PAGERDUTY_DEDUP_KEY)


def json_size(doc: Any) -> int:
    return len(json.dumps(doc, ensure_ascii=False).encode())


def pagerduty_bounded(event: dict[str, Any]) -> dict[str, Any]:
    """The event within 512 KB: its custom_details shortened (each string, then the lists) when needed."""
    if json_size(event) <= PAGERDUTY_EVENT_BYTES or "payload" not in event:
        return event
    payload = event["payload"]
    details = payload.get("custom_details", {})
    payload["custom_details"] = {k: _short(v) for k, v in details.items()}
    if json_size(event) > PAGERDUTY_EVENT_BYTES:
        payload["custom_details"] = {k: v for k, v in payload["custom_details"].items()
                                     if not isinstance(v, list | dict)}
        payload["custom_details"]["truncated"] = "details over the Events API's 512 KB were left out"
    event["links"] = event.get("links", [])[:10]
    return event


def _short(v: Any) -> Any:
    if isinstance(v, str):
        return cut(v, _PAGERDUTY_DETAIL)
    if isinstance(v, list):
        return [_short(x) for x in v[:10]]
    if isinstance(v, dict):
        return {cut(str(k), 100): _short(x) for k, x in list(v.items())[:50]}
    return v


# ---- Opsgenie ------------------------------------------------------------------------------------------------

OPSGENIE_MESSAGE = 130
OPSGENIE_ALIAS = 512
OPSGENIE_DESCRIPTION = 15000
OPSGENIE_TAG = 50
OPSGENIE_MAX_TAGS = 20
OPSGENIE_ENTITY = 512
OPSGENIE_SOURCE = 100
OPSGENIE_NOTE = 25000
OPSGENIE_DETAILS = 8000  # keys and values together


def opsgenie_alias(incident_id: str) -> str:
    """The alias of the incident's alert: the same for create, note and close."""
    return stable_key(incident_id, OPSGENIE_ALIAS)


def opsgenie_tags(tags: Iterable[str]) -> list[str]:
    out: list[str] = []
    for t in tags:
        t = cut(" ".join(t.split()), OPSGENIE_TAG)
        if t and t not in out:
            out.append(t)
    return out[:OPSGENIE_MAX_TAGS]


def opsgenie_details(details: dict[str, str]) -> dict[str, str]:
    """Details within 8,000 characters in total, in their order: a value that does not fit is cut, and keys
    that no longer fit at all are left out (put what matters first)."""
    out: dict[str, str] = {}
    left = OPSGENIE_DETAILS
    for k, v in details.items():
        k = cut(k, 100)
        room = left - len(k)
        if room < 2:
            continue
        out[k] = cut(v, room)
        left -= len(k) + len(out[k])
    return out


# ---- Alertmanager --------------------------------------------------------------------------------------------

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def alertmanager_label_name(name: str) -> str:
    """A valid label name for `name`: other characters become `_`, a leading digit gets a `_` before it."""
    if _LABEL_NAME.match(name):
        return name
    fixed = re.sub(r"[^a-zA-Z0-9_]", "_", name) or "_"
    return fixed if not fixed[0].isdigit() else "_" + fixed


def alertmanager_labels(labels: dict[str, Any]) -> dict[str, str]:
    """A label set: valid names, string values, no empty values (Alertmanager reads them as absent)."""
    out: dict[str, str] = {}
    for k, v in labels.items():
        value = "" if v is None else str(v)
        name = alertmanager_label_name(str(k))
        if value and name not in out:
            out[name] = value
    return out


def http_url(url: str) -> str:
    """`url` when it is an absolute http(s) URL without spaces (what a `format: uri` field accepts), else ""."""
    url = url.strip()
    return url if re.match(r"^https?://[^\s]+$", url, re.I) else ""

"""Silences: time-bounded matchers that keep pages from going out, e.g. during a planned launch (pure).

One `Silence` type, wherever a silence comes from: the routing file's `silences:` (below) or the console,
which publishes them on the compacted `silences` topic (silence_feed.py; those also carry an id, the
incident they were made from and who expired them).

    silences:
      - matchers: ['brand="acme"', 'intent="outage_report"']
        starts_at: 2026-11-24T08:00:00Z
        ends_at: 2026-11-24T12:00:00Z
        comment: planned maintenance window, status page is up

A silence mutes notifications to paging receivers (pagerduty, opsgenie, slack,
alertmanager) for mentions whose labels it matches while it is active
([starts_at, ends_at)). Queue and webhook deliveries still happen: an inbox item
is never dropped, only the page is.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from services.common.alerting.matchers import Matcher


@dataclass(frozen=True)
class Silence:
    """Mutes pages for labels all `matchers` match while starts_at <= now < ends_at.

    `id`, `incident_id`, `created_at` and `expired_by` are set for a silence made on the console (the
    `silences` topic) and empty for one from the routing file.
    """

    matchers: tuple[Matcher, ...]
    starts_at: float
    ends_at: float
    comment: str = ""
    created_by: str = ""
    id: str = ""
    incident_id: str = ""
    created_at: float = 0.0
    expired_by: str = ""

    def active(self, now: float) -> bool:
        return self.starts_at <= now < self.ends_at

    def state(self, now: float) -> str:
        """`pending` (starts later), `active` or `expired`, as Alertmanager's UI shows them."""
        if now < self.starts_at:
            return "pending" if self.ends_at > self.starts_at else "expired"
        return "active" if now < self.ends_at else "expired"

    def silences(self, labels: dict[str, str], now: float) -> bool:
        return self.active(now) and all(m.matches(labels) for m in self.matchers)


def parse_instant(value: Any) -> float:
    """ISO 8601 (YAML may already have made it a datetime) or epoch seconds -> epoch seconds (UTC default)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, date):
        dt = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"bad time {value!r}: expected ISO 8601, e.g. 2026-11-24T08:00:00Z") from None
    else:
        raise ValueError(f"bad time {value!r}: expected ISO 8601, e.g. 2026-11-24T08:00:00Z")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def active_silence(silences: list[Silence], labels: dict[str, str], now: float) -> Silence | None:
    return next((s for s in silences if s.silences(labels, now)), None)

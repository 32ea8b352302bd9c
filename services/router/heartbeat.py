"""Alertmanager heartbeats: an open incident's alert is re-posted before its `endsAt` lapses.

Alertmanager resolves an alert at its `endsAt`; one posted without `endsAt` resolves `resolve_timeout`
(5 min by default) after the last post. Pages alone re-post an incident only on an update (every
`group_interval` while mentions arrive, else every `repeat_interval`), so an outage that went quiet for a
while would disappear from Alertmanager while it is still open. Prometheus keeps its alerts alive the
same way: every firing post carries `endsAt` = now + a few resend intervals, and it resends well before.

Here every firing post sets `endsAt` = now + `TTL_HEARTBEATS` x the receiver's heartbeat (render.py), and
`AlertHeartbeat` says which open groups of an Alertmanager receiver are due for a re-post: a heartbeat
after their last post (a page or a heartbeat). If the router stops, its alerts lapse on their own after
three heartbeats instead of firing forever. The resolve (a page) sets `endsAt` to now.

The schedule is pure (clock passed in) and in memory: after a restart every open alert is re-posted at the
next tick, which is harmless (a re-post of the same labels only updates the alert).

    beat = AlertHeartbeat()
    for g in beat.due(grouper.open_groups(), {"am": 60.0}, now):   # groups whose alert needs a re-post
        ...post it...; beat.sent(g, now)                            # or beat.failed(g, now, 60.0)
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from services.common.errors import DeliveryError
from services.common.logging import get_logger
from services.router import metrics as rm
from services.router.grouping import Group, Page, PageAction

DEFAULT_HEARTBEAT_SECONDS = 60.0
TTL_HEARTBEATS = 3  # endsAt this many heartbeats ahead: two lost re-posts in a row are survived
RETRY_FRACTION = 0.25  # a failed re-post is tried again after this share of the heartbeat

log = get_logger("router.heartbeat")


def alert_ttl(heartbeat_seconds: float) -> float:
    """How far ahead of a post its `endsAt` is."""
    return TTL_HEARTBEATS * heartbeat_seconds


def firing(g: Group) -> bool:
    """Whether the group's alert is firing at the receiver and nothing else is about to change that: its
    trigger was delivered, it is not resolved or resolving, and no page of it is pending (a pending page posts
    the alert itself, or resolves it)."""
    return bool(g.triggered_at) and not g.resolved_at and not g.closing and not g.outbox and not g.abandoned


@dataclass
class AlertHeartbeat:
    """Which open groups' alerts are due for a re-post (pure; `now` passed in)."""

    beats: dict[str, float] = field(default_factory=dict)     # group key -> last heartbeat sent
    retry_at: dict[str, float] = field(default_factory=dict)  # group key -> next try after a failed one

    def due(self, groups: Iterable[Group], every: Mapping[str, float], now: float) -> list[Group]:
        """Groups of a heartbeat receiver (`every`: receiver name -> heartbeat seconds) whose last post is a
        heartbeat old. Forgets groups no longer passed in (resolved, or another replica's now)."""
        out: list[Group] = []
        seen: set[str] = set()
        for g in groups:
            interval = every.get(g.receiver)
            if interval is None or not firing(g):
                continue
            seen.add(g.key)
            last = max(g.last_sent_at, self.beats.get(g.key, 0.0))
            if now >= last + interval and now >= self.retry_at.get(g.key, 0.0):
                out.append(g)
        for key in [k for k in self.beats if k not in seen]:
            del self.beats[key]
        for key in [k for k in self.retry_at if k not in seen]:
            del self.retry_at[key]
        return out

    def sent(self, g: Group, at: float) -> None:
        self.beats[g.key] = at
        self.retry_at.pop(g.key, None)

    def failed(self, g: Group, now: float, interval: float) -> None:
        self.retry_at[g.key] = now + RETRY_FRACTION * interval

    async def run(self, groups: Iterable[Group], receivers: Mapping[str, Any], now: float) -> None:
        """Re-post every due alert once, concurrently (the paging stage's tick calls this after its pages).
        `receivers`: the router's pagers; those with a `heartbeat_seconds` take part. A failed re-post is
        counted and logged with its reason and tried again a quarter heartbeat later; it is not a page (no
        `pages` record, no dead letter): the next one carries the same alert."""
        every = {name: float(r.heartbeat_seconds) for name, r in receivers.items()
                 if getattr(r, "heartbeat_seconds", None)}
        if every:
            await asyncio.gather(*(self._beat(g, receivers[g.receiver], every[g.receiver], now)
                                   for g in self.due(groups, every, now)))

    async def _beat(self, g: Group, receiver: Any, interval: float, now: float) -> None:
        try:
            await receiver.notify(Page(PageAction.UPDATE, g, now))
        except DeliveryError as exc:
            self.failed(g, now, interval)
            rm.ALERT_HEARTBEATS.labels(g.receiver, "failed", str(exc.reason)).inc()
            log.warning("alert_heartbeat_failed", receiver=g.receiver, incident=g.id, reason=str(exc.reason),
                        error=str(exc)[:200])
            return
        self.sent(g, now)
        rm.ALERT_HEARTBEATS.labels(g.receiver, "sent", "").inc()

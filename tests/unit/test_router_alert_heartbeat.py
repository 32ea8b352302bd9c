"""Alertmanager alerts live as long as their incident (heartbeat.py, render.alertmanager_alerts): pure, clock
injected. A small model of Alertmanager's rule (an alert is firing until its endsAt; re-posting the same label
set replaces it) stands in for the server here; tests/integration/test_router_alertmanager_live.py runs the
real one."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from services.common.errors import DeliveryError, DeliveryReason
from services.router.grouping import IncidentGrouper, Page, Sample
from services.router.heartbeat import AlertHeartbeat, alert_ttl
from services.router.render import alertmanager_alerts
from services.router.transport import delivery_error

T0 = 1_800_000_000.0


class AlertmanagerModel:
    """Alerts by label set -> endsAt, the way Alertmanager keeps them."""

    def __init__(self) -> None:
        self.ends: dict[tuple[tuple[str, str], ...], float] = {}
        self.down = False
        self.posts = 0

    async def notify(self, page: Page) -> str:
        if self.down:
            raise delivery_error("alertmanager answered HTTP 503", DeliveryReason.SERVER_ERROR)
        self.posts += 1
        for a in alertmanager_alerts(page, ttl=alert_ttl(self.heartbeat_seconds)):
            ends = datetime.fromisoformat(a["endsAt"].replace("Z", "+00:00")).timestamp()
            self.ends[tuple(sorted(a["labels"].items()))] = ends
        return ""

    heartbeat_seconds = 60.0

    def firing(self, now: float) -> list[dict[str, str]]:
        return [dict(k) for k, ends in self.ends.items() if ends > now]


def add(g: IncidentGrouper, now: float, priority: str = "P2") -> Any:
    return g.add(receiver="am", route="root/0", incident_id="inc-1", group_by=["brand"], labels={"brand": "acme"},
                 priority=priority, reasons=["outage 0.9"], sample=Sample("x:1", "down", "", "en"), now=now,
                 group_wait=30, group_interval=300, repeat_interval=4 * 3600, quiet_period=900)


def tick(grouper: IncidentGrouper, beat: AlertHeartbeat, am: AlertmanagerModel, now: float) -> None:
    """What RouterWorker.tick does for pages and heartbeats."""
    async def run() -> None:
        for page in grouper.due(now):
            try:
                await am.notify(page)
            except DeliveryError:
                grouper.mark_failed(page, now, "503", 5.0)
            else:
                grouper.mark_sent(page, page.group.count)
        await beat.run(grouper.open_groups(), {"am": am}, now)
    asyncio.run(run())


def test_an_incident_open_for_an_hour_stays_firing_across_a_priority_change_and_resolves_once() -> None:
    grouper, beat, am = IncidentGrouper(), AlertHeartbeat(), AlertmanagerModel()
    add(grouper, T0)
    t = T0
    while t < T0 + 3600:
        if t == T0 + 1200:
            add(grouper, t, priority="P1")  # P2 -> P1: the same alert, priority is an annotation
        tick(grouper, beat, am, t)
        if t >= T0 + 30:  # the trigger went out at group_wait
            assert len(am.firing(t)) == 1, t  # never lapsed, never two
        t += 1.0
    assert am.posts < 3600 / 60 + 5  # a heartbeat a minute, not a post per tick
    grouper.close_incident("inc-1", t)
    tick(grouper, beat, am, t)
    assert am.firing(t) == [] and len(am.ends) == 1  # resolved; no orphaned label set


def test_without_the_heartbeat_the_alert_would_lapse_while_the_incident_is_open() -> None:
    grouper, am = IncidentGrouper(), AlertmanagerModel()
    add(grouper, T0)
    idle = AlertHeartbeat()
    idle.run = lambda *a, **k: asyncio.sleep(0)  # type: ignore[method-assign]
    for t in range(0, 600):
        tick(grouper, idle, am, T0 + t)
    assert am.firing(T0 + 599) == []  # the 3-heartbeat endsAt passed: the guard the heartbeat exists for


def test_a_failed_heartbeat_is_retried_before_the_alert_lapses() -> None:
    grouper, beat, am = IncidentGrouper(), AlertHeartbeat(), AlertmanagerModel()
    add(grouper, T0)
    tick(grouper, beat, am, T0 + 30)
    am.down = True
    for t in range(31, 150):
        tick(grouper, beat, am, T0 + t)
    assert beat.retry_at  # failing: retried every quarter heartbeat
    am.down = False
    for t in range(150, 400):
        tick(grouper, beat, am, T0 + t)
        assert am.firing(T0 + t)


def test_only_firing_groups_of_heartbeat_receivers_are_due() -> None:
    grouper, beat = IncidentGrouper(), AlertHeartbeat()
    g = add(grouper, T0)
    assert beat.due([g], {"am": 60.0}, T0 + 100) == []         # never triggered
    g.triggered_at = g.last_sent_at = T0 + 30
    assert beat.due([g], {"pd": 60.0}, T0 + 100) == []         # not a heartbeat receiver
    assert beat.due([g], {"am": 60.0}, T0 + 89) == []          # a heartbeat after the last post
    assert beat.due([g], {"am": 60.0}, T0 + 90) == [g]
    g.closing = True                                            # resolving: the resolve page posts it
    assert beat.due([g], {"am": 60.0}, T0 + 200) == []
    beat.sent(g, T0 + 90)
    assert beat.due([], {"am": 60.0}, T0 + 300) == [] and beat.beats == {}  # forgotten with the group

"""The routing tree at run time: receivers, routes and matching (pure); the file is parsed by routing_file.py.

The routing file is YAML in the style of Alertmanager's `route`:

    route:                      # the root catches everything
      receiver: normal
      routes:
        - matchers: ['priority="P1"']
          receiver: oncall
          continue: true        # keep looking at the next sibling too
        - matchers: ['priority=~"P1|P2"']
          receiver: urgent
    receivers:
      - name: oncall
        webhook: {url: "https://hooks.example.com/triage", secret_env: TRIAGE_WEBHOOK_SECRET}
      - name: urgent
        kafka_queue: {queue: urgent}
      - name: normal
        kafka_queue: {queue: normal}
    sla: {P1: 15m, P2: 1h, P3: 24h}

Matching follows Alertmanager: a mention enters the root, descends into the
first child whose matchers all hold, recursively; the deepest matching routes
are the result. `continue: true` on a matching route lets the siblings after
it be tried as well. A route with no matching child is itself the match.

Time: a route with `active_time_intervals` is muted outside all of them, and one with
`mute_time_intervals` inside any of them (names from the top-level `time_intervals`, see
services/common/alerting/timeintervals.py). What a muted route does is its `when_muted`:
`fall_through` (the project's behaviour): the route does not match, the mention falls through to the
next sibling or stays with the parent, so it is never dropped; `stay` (Alertmanager's): routing ignores
time, the mention stays on the muted route and nothing is sent for it. `when_muted` is inherited; its
default is `fall_through` in a file that declares any receiver of the project's own kinds
(`kafka_queue`, `webhook`, `pagerduty`, ...) and `stay` in a verbatim Alertmanager file. The time
interval keys are not inherited and the root may not have them.

Paging: receivers of the kinds pagerduty, opsgenie, slack and alertmanager (and
any receiver of a route with `group_by`) get incidents, not single mentions:
see grouping.py (`group_wait`, `group_interval`, `repeat_interval`,
`quiet_period`). A paging route with `triage: true` holds a new incident's trigger for a person to
confirm ("page now" / "dismiss" on the console's Triage page) for at most `triage_timeout` (default
10m), after which it pages on its own (grouping.py, "Triage"); `triage_below_confidence: 0.5` holds
only the incidents of lower confidence (GroupingStage.confidence), `triage_notify` names the Slack
receiver told of each hold. `silences`
(services/common/alerting/silences.py) and `inhibit_rules` (inhibition.py) suppress those pages;
queue and webhook deliveries are never suppressed.

SLA: `sla` gives the first-response time per priority, `sla_time_interval`
makes it business time, `escalate_to` names the receiver of breaches (sla.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from services.common.alerting.matchers import Matcher
from services.common.alerting.silences import Silence, active_silence
from services.common.alerting.timeintervals import TimeInterval
from services.router.inhibition import InhibitRule
from services.router.registry import PAGING_KINDS, ReceiverConfig

FALL_THROUGH, STAY = "fall_through", "stay"  # Route.when_muted


@dataclass
class Route:
    receiver: str
    matchers: list[Matcher] = field(default_factory=list)
    continue_: bool = False
    routes: list[Route] = field(default_factory=list)
    group_by: list[str] = field(default_factory=list)
    group_wait: float = 30.0
    group_interval: float = 300.0
    repeat_interval: float = 4 * 3600.0
    sla: dict[str, float] = field(default_factory=dict)
    path: str = "root"
    line: int = 0
    active_time_intervals: list[TimeInterval] = field(default_factory=list)
    mute_time_intervals: list[TimeInterval] = field(default_factory=list)
    quiet_period: float = 900.0
    escalate_to: str = ""
    sla_time_interval: TimeInterval | None = None
    when_muted: str = FALL_THROUGH
    triage: bool = False             # hold a new incident's trigger for a person to confirm first
    triage_timeout: float = 600.0    # ... for at most this long, then it pages on its own
    triage_notify: str = ""          # a slack receiver told of each hold, with links to page now / dismiss
    triage_below_confidence: float = 0.0  # >0: hold (as `triage`) an incident whose confidence is below this

    def holds_for_triage(self, confidence: float) -> bool:
        """Whether a new incident group of this route, of this confidence (0..1), waits for a person first."""
        return self.triage or (self.triage_below_confidence > 0 and confidence < self.triage_below_confidence)

    @property
    def group_by_all(self) -> bool:
        """`group_by: ['...']`: group by every label (Alertmanager's wildcard)."""
        return self.group_by == ["..."]

    def matches(self, labels: dict[str, str]) -> bool:
        return all(m.matches(labels) for m in self.matchers)

    def in_time(self, now: float) -> bool:
        """Outside its active intervals, or inside a mute interval, a route does not match."""
        if self.active_time_intervals and not any(t.contains(now) for t in self.active_time_intervals):
            return False
        return not any(t.contains(now) for t in self.mute_time_intervals)


@dataclass
class RoutingTree:
    root: Route
    receivers: dict[str, ReceiverConfig]
    source: str = "<routing>"
    time_intervals: dict[str, TimeInterval] = field(default_factory=dict)
    silences: list[Silence] = field(default_factory=list)
    inhibit_rules: list[InhibitRule] = field(default_factory=list)
    # Things in the file that load but do not act as they would in Alertmanager ("file:line: key: why"),
    # shown by `triage route-check` as `note:` lines.
    notices: list[str] = field(default_factory=list)
    # Receivers without any integration (Alertmanager's "null" receiver): a route to one sends nothing.
    null_receivers: set[str] = field(default_factory=set)

    def match(self, labels: dict[str, str], now: float | None = None) -> list[Route]:
        """The routes a mention with these labels is delivered by (deepest matches, Alertmanager order),
        at `now` (time intervals; default: the current time). A route it stays on but that sends nothing
        (muted with `when_muted: stay`, or a null receiver) is left out: see `routes_for`."""
        t = time.time() if now is None else now
        return [r for r in _match(self.root, labels, t) if r.in_time(t) and r.receiver not in self.null_receivers]

    def routes_for(self, labels: dict[str, str], now: float | None = None) -> list[Route]:
        """Every route the mention ends on, muted ones included (`amtool config routes test`)."""
        return _match(self.root, labels, time.time() if now is None else now)

    def silenced_by(self, labels: dict[str, str], now: float) -> Silence | None:
        return active_silence(self.silences, labels, now)

    def is_paging(self, route: Route) -> bool:
        """Whether this route's receiver gets grouped incidents rather than single mentions."""
        receiver = self.receivers.get(route.receiver)
        return (receiver is not None and receiver.kind in PAGING_KINDS) or bool(route.group_by)

    def queues(self) -> list[str]:
        return sorted({r.options["queue"] for r in self.receivers.values() if r.kind == "kafka_queue"})


def _match(route: Route, labels: dict[str, str], now: float) -> list[Route]:
    if not route.matches(labels) or (route.when_muted == FALL_THROUGH and not route.in_time(now)):
        return []
    found: list[Route] = []
    for child in route.routes:
        hits = _match(child, labels, now)
        if hits:
            found += hits
            if not child.continue_:
                break
    return found or [route]

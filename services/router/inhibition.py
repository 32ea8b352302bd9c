"""Inhibition: an open incident suppresses the individual pages it already explains (pure).

    inhibit_rules:
      - source_matchers: ['kind="outage_cluster"']     # an open outage incident...
        target_matchers: ['intent="complaint"']        # ...mutes complaint pages...
        equal: ['brand']                               # ...about the same brand

Sources are the open incidents the router has seen on the `incidents` topic,
labelled `incident`, `brand`, `kind` (lower-case IncidentKind) and `state`.
Like Alertmanager, a mention that belongs to the source incident itself is
never inhibited by it, and a label missing on both sides counts as equal.
Inhibited mentions still reach their queues; only the page is suppressed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from services.common.alerting.matchers import Matcher
from services.common.codec import pb


@dataclass(frozen=True)
class InhibitRule:
    source_matchers: tuple[Matcher, ...]
    target_matchers: tuple[Matcher, ...]
    equal: tuple[str, ...] = ()
    line: int = 0

    def inhibits(self, target: dict[str, str], source: dict[str, str]) -> bool:
        if target.get("incident") and target.get("incident") == source.get("incident"):
            return False
        return (all(m.matches(source) for m in self.source_matchers)
                and all(m.matches(target) for m in self.target_matchers)
                and all(target.get(k, "") == source.get(k, "") for k in self.equal))


def incident_labels(inc: pb.Incident) -> dict[str, str]:
    return {
        "incident": inc.id,
        "brand": inc.brand,
        "kind": pb.IncidentKind.Name(inc.kind).lower() if inc.kind else "unknown",
        "state": pb.IncidentState.Name(inc.state).lower() if inc.state else "unknown",
    }


def inhibiting_rule(rules: list[InhibitRule], target: dict[str, str],
                    sources: Iterable[dict[str, str]]) -> tuple[InhibitRule, dict[str, str]] | None:
    srcs = list(sources)
    for rule in rules:
        for src in srcs:
            if rule.inhibits(target, src):
                return rule, src
    return None

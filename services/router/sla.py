"""First-response SLA clocks for routed mentions (pure, clock injected).

Each routed mention with a deadline (`respond_by`, from the route's `sla`, in
business time when the route names an `sla_time_interval`) is an open item until
a ResponseEvent for it arrives on `responses`. An item whose deadline passes
unanswered is escalated once (to the route's `escalate_to` receiver).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class SlaItem:
    mention_id: str
    queue: str
    priority: str
    route: str
    routed_at: float
    due: float
    escalate_to: str = ""
    scored_b64: str = ""          # the ScoredMention, for the escalation message
    escalated: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SlaItem:
        return cls(**d)


@dataclass(frozen=True)
class Answered:
    item: SlaItem
    first_response_seconds: float
    in_time: bool


class SlaTracker:
    """Open items by mention id; `respond` stops a clock, `breaches` finds the ones to escalate."""

    def __init__(self) -> None:
        self.items: dict[str, SlaItem] = {}

    def open(self, item: SlaItem) -> bool:
        """Start the clock; a redelivered mention keeps its first clock (returns False)."""
        if item.mention_id in self.items:
            return False
        self.items[item.mention_id] = item
        return True

    def restore(self, item: SlaItem) -> None:
        """Put back an item read from the state topic (its clock keeps running from `routed_at`)."""
        self.items[item.mention_id] = item

    def forget(self, owned_elsewhere: Callable[[str], bool]) -> None:
        """Drop the items whose mention id `owned_elsewhere` (another replica's now; durable on the state topic)."""
        for mention_id in [m for m in self.items if owned_elsewhere(m)]:
            del self.items[mention_id]

    def respond(self, mention_id: str, at: float) -> Answered | None:
        item = self.items.pop(mention_id, None)
        if item is None:
            return None
        return Answered(item, max(0.0, at - item.routed_at), at <= item.due)

    def drop(self, deleted: Callable[[SlaItem], bool]) -> list[str]:
        """Stop and forget the clocks of deleted mentions (no escalation, no count); their mention ids."""
        gone = [k for k, item in self.items.items() if deleted(item)]
        for k in gone:
            del self.items[k]
        return gone

    def breaches(self, now: float) -> list[SlaItem]:
        """Items past their deadline, not yet escalated; they are marked escalated (stay open for the response)."""
        out = []
        for item in self.items.values():
            if not item.escalated and now > item.due:
                item.escalated = True
                out.append(item)
        return out

    def expire(self, now: float, retention: float) -> list[str]:
        """Forget escalated items still unanswered `retention` after their deadline (bounded memory)."""
        old = [k for k, i in self.items.items() if i.escalated and now - i.due > retention]
        for k in old:
            del self.items[k]
        return old

    def open_counts(self) -> dict[tuple[str, str], int]:
        counts: dict[tuple[str, str], int] = {}
        for item in self.items.values():
            counts[(item.queue, item.priority)] = counts.get((item.queue, item.priority), 0) + 1
        return counts

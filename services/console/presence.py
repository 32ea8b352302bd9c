"""Who else is looking at an incident or a queue item now: "also viewing: bo (4 s ago)" (pure, clock passed in).

While a signed-in person has an incident page or a queue page open, the console replica serving them
publishes a `Presence` heartbeat naming what the page shows (`incident:<id>`, `item:<mention id>`) on
`triage.console.presence`; every replica folds the topic into a `PresenceBoard`. A viewer is forgotten
`expiry` seconds (TRIAGE_CONSOLE_PRESENCE_EXPIRY_SECONDS) after their last heartbeat, so a closed tab
drops off within that time. Pages and the presence API list the others, never the person asking.

Memory is bounded: at most `max_targets` targets (the least recently seen are dropped first) and at most
`MAX_TARGETS_PER_HEARTBEAT` targets in one heartbeat.

Example:

    board = PresenceBoard(expiry=30)
    board.apply(board.heartbeat("ana", ["item:x:1"], now=1000.0))   # published, then folded (any replica)
    board.viewers("item:x:1", now=1004.0, excluding="bo")          # [Viewer(name='ana', seen_at=1000.0)]
    board.viewers("item:x:1", now=1004.0, excluding="ana")         # []: never yourself
    board.viewers("item:x:1", now=1031.0)                          # []: ana's page is gone
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from services.common.codec import pb
from services.common.timeutil import epoch, ts_from_epoch

DEFAULT_EXPIRY_SECONDS = 30.0
MAX_TARGETS_PER_HEARTBEAT = 200
MAX_TARGET_CHARS = 300
INCIDENT_PREFIX = "incident:"
ITEM_PREFIX = "item:"


def incident_target(incident_id: str) -> str:
    return INCIDENT_PREFIX + incident_id


def item_target(mention_id: str) -> str:
    return ITEM_PREFIX + mention_id


def valid_targets(raw: Iterable[object]) -> list[str]:
    """The targets of a heartbeat request that name an incident or an item, deduplicated, in order, at most
    MAX_TARGETS_PER_HEARTBEAT; anything else is dropped."""
    out: dict[str, None] = {}
    for t in raw:
        if (isinstance(t, str) and t.startswith((INCIDENT_PREFIX, ITEM_PREFIX)) and len(t) <= MAX_TARGET_CHARS
                and t.isprintable() and t not in (INCIDENT_PREFIX, ITEM_PREFIX)):
            out[t] = None
            if len(out) >= MAX_TARGETS_PER_HEARTBEAT:
                break
    return list(out)


@dataclass(frozen=True)
class Viewer:
    name: str
    seen_at: float

    def seconds_ago(self, now: float) -> int:
        return max(0, int(now - self.seen_at))

    def to_json(self, now: float) -> dict[str, Any]:
        return {"name": self.name, "seconds_ago": self.seconds_ago(now)}


def presence_line(viewers: list[Viewer], now: float) -> str:
    """What a page says: "also viewing: bo (4 s ago), cy (12 s ago)"; empty when nobody else looks."""
    if not viewers:
        return ""
    return "also viewing: " + ", ".join(f"{v.name} ({v.seconds_ago(now)} s ago)" for v in viewers)


class PresenceBoard:
    """Target -> {viewer: last heartbeat} folded from the presence topic; entries older than `expiry` are
    neither shown nor kept (dropped as the board is read and written)."""

    def __init__(self, expiry: float = DEFAULT_EXPIRY_SECONDS, max_targets: int = 20_000) -> None:
        if expiry <= 0:
            raise ValueError("presence expiry must be positive")
        self.expiry = expiry
        self.max_targets = max_targets
        self._seen: OrderedDict[str, dict[str, float]] = OrderedDict()
        self._latest = 0.0  # the newest heartbeat folded: expired targets are pruned against it

    def heartbeat(self, responder: str, targets: Iterable[str], now: float) -> pb.Presence:
        """The record to publish for `responder` looking at `targets` now."""
        msg = pb.Presence(responder=responder, targets=valid_targets(targets))
        msg.at.CopyFrom(ts_from_epoch(now))
        return msg

    def apply(self, msg: Any) -> None:
        """Fold one heartbeat (idempotent; a late, older copy never makes a viewer look older)."""
        if not msg.responder:
            return
        at = epoch(msg.at)
        for target in msg.targets[:MAX_TARGETS_PER_HEARTBEAT]:
            viewers = self._seen.get(target)
            if viewers is None:
                viewers = self._seen[target] = {}
            else:
                self._seen.move_to_end(target)
            if at > viewers.get(msg.responder, float("-inf")):
                viewers[msg.responder] = at
        if at > self._latest:
            self._latest = at
        self._prune()

    def _prune(self) -> None:
        # Least recently heartbeated targets are at the front: drop them while expired or too many.
        while self._seen:
            target, viewers = next(iter(self._seen.items()))
            if len(self._seen) <= self.max_targets and max(viewers.values()) > self._latest - self.expiry:
                break
            del self._seen[target]

    def viewers(self, target: str, now: float, excluding: str = "") -> list[Viewer]:
        """Who looked at `target` within `expiry` seconds, most recent first, without `excluding`."""
        found = self._seen.get(target, {})
        out = [Viewer(name, min(at, now)) for name, at in found.items()
               if name != excluding and now - at < self.expiry]
        return sorted(out, key=lambda v: (-v.seen_at, v.name))

    def __len__(self) -> int:
        return len(self._seen)

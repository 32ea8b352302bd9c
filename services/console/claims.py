"""Who is working which queue item: claims, hand-overs and releases (pure, clock passed in).

A responder claims an item so nobody else answers it at the same time; the claim is a `Claim` record on
the compacted `claims` topic keyed by the item's mention id, folded by every console replica into a
`ClaimBook`. The latest record of an item says who holds it:

    claim(ana)            -> ana holds it until claimed_at + TTL (TRIAGE_CONSOLE_CLAIM_TTL_SECONDS)
    hand over(ana -> bo)  -> bo holds it, with a fresh TTL
    release(bo)           -> nobody holds it
    TTL passes unanswered -> nobody holds it: the item is offered again

A claim on an item someone else holds is refused (`ClaimConflict`) until it lapses; only the holder
hands over or releases. Answering the item closes it, so its claim no longer matters.

Example:

    book = ClaimBook(ttl=900)
    msg = book.claim("x:1", "urgent", "ana", now=1000.0)      # a pb.Claim to publish, then fold:
    book.apply(msg)
    book.holder("x:1", now=1060.0)                           # ActiveClaim(holder='ana', ..., since=1000.0)
    book.holder("x:1", now=1000.0 + 901)                     # None: lapsed, offered again
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.common.codec import pb
from services.common.errors import TriageError
from services.common.timeutil import epoch, ts_from_epoch

DEFAULT_TTL_SECONDS = 15 * 60.0


class ClaimConflict(TriageError):
    """The claim, hand-over or release is not this responder's to make (someone else holds the item)."""


@dataclass(frozen=True)
class ActiveClaim:
    """Who holds an item now and since when (`since`: the claim or the hand-over to them)."""

    item_id: str
    queue: str
    holder: str
    since: float
    expires_at: float
    handed_over_by: str = ""  # who handed it to `holder` (empty: `holder` claimed it)

    def minutes(self, now: float) -> int:
        return max(0, int((now - self.since) // 60))

    def to_json(self, now: float) -> dict[str, Any]:
        return {"holder": self.holder, "since": self.since, "expires_at": self.expires_at,
                "handed_over_by": self.handed_over_by, "seconds_held": round(max(0.0, now - self.since), 1),
                "seconds_left": round(max(0.0, self.expires_at - now), 1)}


def _active(msg: Any) -> ActiveClaim | None:
    """The holder a Claim record leaves, None when it releases the item."""
    if msg.released:
        return None
    holder = msg.handed_over_to or msg.responder
    if not holder:
        return None
    return ActiveClaim(item_id=msg.item_id, queue=msg.queue, holder=holder, since=epoch(msg.claimed_at),
                       expires_at=epoch(msg.expires_at), handed_over_by=msg.responder if msg.handed_over_to else "")


class ClaimBook:
    """The latest claim of every item, as folded from the `claims` topic; `ttl` is how long a new claim
    (or hand-over) holds an item without an answer."""

    def __init__(self, ttl: float = DEFAULT_TTL_SECONDS) -> None:
        if ttl <= 0:
            raise ValueError("a claim's time to live must be positive")
        self.ttl = ttl
        self._latest: dict[str, ActiveClaim | None] = {}
        self._stamp: dict[str, float] = {}  # item -> claimed_at of the record kept

    # ---- folding (idempotent; an older record read late does not undo a newer one) -------------------------
    def apply(self, msg: Any) -> ActiveClaim | None:
        stamp = epoch(msg.claimed_at)
        old = self._stamp.get(msg.item_id)
        if old is not None and stamp < old:
            return self._latest.get(msg.item_id)
        self._stamp[msg.item_id] = stamp
        self._latest[msg.item_id] = found = _active(msg)
        return found

    def forget(self, item_id: str) -> None:
        """A tombstone on the topic: the item has no claim."""
        self._latest.pop(item_id, None)
        self._stamp.pop(item_id, None)

    # ---- reading ------------------------------------------------------------------------------------------
    def holder(self, item_id: str, now: float) -> ActiveClaim | None:
        """Who holds the item now; None when nobody does (never claimed, released or lapsed)."""
        found = self._latest.get(item_id)
        if found is None or now >= found.expires_at:
            return None
        return found

    def held(self, now: float) -> dict[str, ActiveClaim]:
        return {k: c for k, c in self._latest.items() if c is not None and now < c.expires_at}

    # ---- what a responder's action becomes -----------------------------------------------------------------
    def _record(self, item_id: str, queue: str, responder: str, now: float, **fields: Any) -> pb.Claim:
        # Each record of an item is stamped after the one it follows (two actions in one clock tick too), so
        # the consumed copy of an earlier record, read after this one was folded in, cannot undo it.
        last = self._stamp.get(item_id)
        now = max(now, last + 0.001) if last is not None else now
        msg = pb.Claim(item_id=item_id, queue=queue, responder=responder, **fields)
        msg.claimed_at.CopyFrom(ts_from_epoch(now))
        msg.expires_at.CopyFrom(ts_from_epoch(now if fields.get("released") else now + self.ttl))
        return msg

    def claim(self, item_id: str, queue: str, responder: str, now: float) -> pb.Claim:
        """`responder` takes the item (or renews their own claim); refused while someone else holds it."""
        current = self.holder(item_id, now)
        if current is not None and current.holder != responder:
            raise ClaimConflict(f"{current.holder} is on it ({current.minutes(now)} min); they can hand it over, "
                                f"or it is offered again when their claim lapses")
        return self._record(item_id, queue, responder, now)

    def hand_over(self, item_id: str, queue: str, responder: str, to: str, now: float) -> pb.Claim:
        """The holder (or anyone, when nobody holds it) gives the item to `to`, whose claim starts now."""
        current = self.holder(item_id, now)
        if current is not None and current.holder != responder:
            raise ClaimConflict(f"{current.holder} holds it: only they can hand it over")
        if to == responder:
            raise ClaimConflict("hand it over to someone else (claim it to keep it)")
        return self._record(item_id, queue, responder, now, handed_over_to=to)

    def release(self, item_id: str, queue: str, responder: str, now: float) -> pb.Claim:
        """The holder lets the item go; it is offered again at once."""
        current = self.holder(item_id, now)
        if current is None:
            raise ClaimConflict("nobody holds it")
        if current.holder != responder:
            raise ClaimConflict(f"{current.holder} holds it: only they can release it")
        return self._record(item_id, queue, responder, now, released=True)

"""Words every service uses with one meaning, defined once: priorities, the intent threshold, reach tiers.

Services never import each other, so what classify decides with and what the router matches on
(`priority`, `intents`, `reach` labels) come from here.
"""

from __future__ import annotations

from enum import StrEnum

INTENT_THRESHOLD = 0.5  # an intent "is present" at or above this probability

# Author reach tiers (followers): `reach` routing label small < medium < large < huge; the priority
# policy raises a complaint from a medium author to P2 and a negative post from a large one to P1.
MEDIUM_REACH = 10_000
LARGE_REACH = 100_000
HUGE_REACH = 1_000_000


def reach_tier(followers: int) -> str:
    if followers >= HUGE_REACH:
        return "huge"
    if followers >= LARGE_REACH:
        return "large"
    if followers >= MEDIUM_REACH:
        return "medium"
    return "small"


class Priority(StrEnum):
    """P1 (page now) .. P4 (no response needed); compare urgency with `rank`, never the strings."""

    P1 = "P1"
    P2 = "P2"
    P3 = "P3"
    P4 = "P4"

    @property
    def rank(self) -> int:
        return int(self.value[1:])

    @classmethod
    def of(cls, value: str | int) -> Priority:
        """From "P2" or the protobuf enum number 2 (0, unset, is P4)."""
        if isinstance(value, int):
            return cls(f"P{value}") if 1 <= value <= 4 else cls.P4
        return cls(value)


def more_urgent(a: str, b: str) -> str:
    """The more urgent of two priorities ("P1" beats "P2"; a known priority beats an unknown one)."""
    def rank(p: str) -> int:
        return Priority(p).rank if p in Priority.__members__ else 99
    return a if rank(a) < rank(b) else b

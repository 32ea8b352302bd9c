"""Sliding event counts in fixed buckets, the per-minute series a baseline learns from, and detector verdicts."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Verdict:
    """What a detector concludes at one evaluation.

    firing: the open condition held for `persistence` consecutive buckets (may open an incident);
    active: the weaker close condition holds (keeps an open incident open: hysteresis).
    """

    firing: bool = False
    active: bool = False
    severity: float = 0.0
    reasons: list[str] = field(default_factory=list)


    @classmethod
    def from_window_checks(cls, streak: int, persistence: int, anomalous: bool, active: bool,
                           best_ratio: float, why: str) -> Verdict:
        """The verdict of a rate detector after its windows were checked (spike and outage share this)."""
        verdict = cls(firing=streak >= persistence, active=active or anomalous,
                      severity=severity_from_ratio(best_ratio))
        if why and (anomalous or active):
            verdict.reasons.append(why)
        return verdict


def severity_from_ratio(ratio: float) -> float:
    """0..1 on one scale for every kind: log10(observed/expected) / 2, so 10x = 0.5 and 100x = 1.0."""
    if ratio <= 1.0:
        return 0.0
    return round(min(1.0, math.log10(ratio) / 2.0), 3)


class WindowCounter:
    """Counts per `bucket_seconds` bucket over a horizon, plus per-minute totals not yet learned."""

    def __init__(self, bucket_seconds: int, horizon_seconds: int):
        self.bucket_seconds = bucket_seconds
        self.horizon_buckets = max(1, math.ceil(horizon_seconds / bucket_seconds)) + 1
        self.buckets: dict[int, int] = {}
        self.minutes: dict[int, int] = {}   # minute index -> count, popped once the baseline learned it

    def add(self, t: float, n: int = 1) -> None:
        b = int(t // self.bucket_seconds)
        self.buckets[b] = self.buckets.get(b, 0) + n
        m = int(t // 60)
        self.minutes[m] = self.minutes.get(m, 0) + n

    def prune(self, now: float) -> None:
        oldest = int(now // self.bucket_seconds) - self.horizon_buckets
        for b in [b for b in self.buckets if b < oldest]:
            del self.buckets[b]

    def count(self, now: float, seconds: int) -> int:
        """Events in the `seconds` ending at the bucket containing `now` (that bucket included)."""
        cur = int(now // self.bucket_seconds)
        first = cur - max(1, seconds // self.bucket_seconds) + 1
        return sum(c for b, c in self.buckets.items() if first <= b <= cur)

    def pop_minute(self, minute: int) -> int:
        return self.minutes.pop(minute, 0)

    def to_dict(self) -> dict[str, Any]:
        return {"b": [[k, v] for k, v in self.buckets.items()], "m": [[k, v] for k, v in self.minutes.items()]}

    def load(self, d: dict[str, Any]) -> None:
        self.buckets = {int(k): int(v) for k, v in d.get("b", [])}
        self.minutes = {int(k): int(v) for k, v in d.get("m", [])}


class Streak:
    """Consecutive anomalous buckets (the persistence / "longevity" condition)."""

    def __init__(self) -> None:
        self.length = 0
        self.bucket: int | None = None

    def update(self, anomalous: bool, bucket: int) -> int:
        if not anomalous:
            self.length, self.bucket = 0, None
        elif bucket != self.bucket:
            self.length += 1
            self.bucket = bucket
        return self.length

    def to_dict(self) -> list[Any]:
        return [self.length, self.bucket]

    def load(self, d: list[Any]) -> None:
        self.length, self.bucket = int(d[0]), (None if d[1] is None else int(d[1]))

"""Sliding event counts in fixed buckets, the per-minute series a baseline learns from, and detector verdicts."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
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


def scan_windows(counts: Callable[[int], int], windows: Iterable[tuple[int, int]],
                 expected: Callable[[int], float], anomalous: Callable[[int, int, float], bool],
                 active: Callable[[int, int, float], bool] | None, describe: Callable[[int, int, float], str]
                 ) -> tuple[bool, bool, float, str, list[int]]:
    """The window loop the rate detectors share: for each (seconds, min_count) window, the observed count and
    its expectation; returns (any anomalous, any active, best ratio among windows at their minimum, the
    best one's description, the anomalous windows' seconds). `anomalous`/`active`/`describe` get
    (seconds, observed, expected). Without an `active` check (None) a window under its minimum count decides
    nothing, so its expectation is not computed (most windows of a quiet brand, at every evaluation)."""
    any_anomalous, any_active, best_ratio, why, hits = False, False, 0.0, "", []
    for seconds, min_count in windows:
        observed = counts(seconds)
        if active is None and observed < min_count:
            continue
        exp = expected(seconds)
        ratio = observed / exp
        if observed >= min_count and anomalous(seconds, observed, exp):
            any_anomalous = True
            hits.append(seconds)
        if active is not None and active(seconds, observed, exp):
            any_active = True
        if observed >= min_count and ratio > best_ratio:
            best_ratio, why = ratio, describe(seconds, observed, exp)
    return any_anomalous, any_active, best_ratio, why, hits


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


class MinuteRing:
    """Counts of the last `size` closed minutes with running sums over given spans (O(1) per minute), for
    windows too long to sum bucket by bucket at every evaluation."""

    def __init__(self, size: int, spans: Iterable[int]):
        self.size = max(1, size)
        self.values = [0] * self.size
        self.pos = 0                       # index of the next minute to write
        self.spans = sorted({max(1, min(self.size, int(k))) for k in spans})
        self.sums = {k: 0 for k in self.spans}

    def push(self, value: int) -> None:
        for k in self.spans:
            self.sums[k] += value - self.values[(self.pos - k) % self.size]
        self.values[self.pos] = value
        self.pos = (self.pos + 1) % self.size

    def push_zeros(self, n: int) -> None:
        """`n` empty minutes at once (a quiet stretch): at most `size` writes, whatever n."""
        if n >= self.size:
            self.values = [0] * self.size
            self.sums = {k: 0 for k in self.spans}
            return
        for _ in range(n):
            self.push(0)

    def last(self, minutes: int) -> int:
        return self.sums[max(1, min(self.size, minutes))] if minutes > 0 else 0

    def to_dict(self) -> list[Any]:
        return [self.pos, [[i, v] for i, v in enumerate(self.values) if v]]

    def load(self, d: list[Any]) -> None:
        self.pos = int(d[0]) % self.size
        self.values = [0] * self.size
        for i, v in d[1]:
            if int(i) < self.size:
                self.values[int(i)] = int(v)
        self.sums = {k: sum(self.values[(self.pos - j) % self.size] for j in range(1, k + 1)) for k in self.spans}


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

"""Complaint surge detector: complaints over hours vs. the same hours of previous days (issue 16).

Minutes-scale detectors miss a storm day on which complaints about cancellations rise 2.5x over an
afternoon: no minute is unusual. Here complaint-like mentions (the `complaint` intent at or above
`intent_threshold`) are counted in `bucket_seconds` buckets; the last 1 h and 3 h (`window_hours`) are compared with
the same clock hours of each of the previous `days` days (a daily seasonality baseline: Meltwater-style
"last hours vs the same hours before"). Expected = the mean of those days' counts (days without coverage
are skipped, at least `min_days` are needed: a brand whose coverage just started is in warm-up and never
fires). A window is anomalous when the complaints rose (observed >= ratio x
expected, >= min_count) and rose *faster than the rest of the brand's traffic*: the odds of a mention being
a complaint are >= share_ratio x their usual odds in those hours (a campaign or a news day that doubles all
traffic is not a surge; an airline whose traffic is mostly complaints can still surge), and that share is
significant: a quasi-binomial tail of the complaints among all of the window's mentions at the usual share
is <= p_value. Testing the share rather than the count cancels what moves all of a brand's traffic at once
(a busy day, a quieter weekend): only the day-to-day variation of the share itself (`share_dispersion`) is
noise. The detector fires after `persistence` consecutive anomalous buckets and stays active while
observed >= close_ratio x expected.
A surge is its own incident kind (COMPLAINT_SURGE); its mentions are not re-tagged P1 (they keep their
own priority: a surge is worked from the queue, an outage pages now).
"""

from __future__ import annotations

from typing import Any

from services.classify.crisis.config import SurgeConfig
from services.classify.crisis.stats import binom_sf
from services.classify.crisis.windows import Streak, Verdict

DAY = 86400


class SurgeDetector:
    def __init__(self, config: SurgeConfig | None = None):
        self.cfg = config or SurgeConfig()
        self.buckets: dict[int, int] = {}     # bucket index -> complaint count
        self.totals: dict[int, int] = {}      # bucket index -> all mentions (the complaint share's denominator)
        self.seen: dict[int, int] = {}        # day index -> mentions seen (coverage of that day)
        self.first: float | None = None
        self.streak = Streak()
        self._cached: tuple[int, Verdict] | None = None

    def is_complaint(self, intents: dict[str, float]) -> bool:
        return float(intents.get(self.cfg.intent, 0.0)) >= self.cfg.intent_threshold

    def add(self, t: float, complaint: bool) -> None:
        if self.first is None or t < self.first:
            self.first = t
        d = int(t // DAY)
        self.seen[d] = self.seen.get(d, 0) + 1
        tb = int(t // self.cfg.bucket_seconds)
        self.totals[tb] = self.totals.get(tb, 0) + 1
        if complaint:
            b = int(t // self.cfg.bucket_seconds)
            self.buckets[b] = self.buckets.get(b, 0) + 1

    def _window(self, end_bucket: int, hours: float, counts: dict[int, int] | None = None) -> int:
        n = int(hours * 3600 // self.cfg.bucket_seconds)
        src = self.buckets if counts is None else counts
        return sum(src.get(b, 0) for b in range(end_bucket - n + 1, end_bucket + 1))

    def prune(self, now: float) -> None:
        c = self.cfg
        oldest = int((now - (c.days + 1) * DAY) // c.bucket_seconds)
        if self.buckets and min(self.buckets) < oldest:
            self.buckets = {b: v for b, v in self.buckets.items() if b >= oldest}
            self.totals = {b: v for b, v in self.totals.items() if b >= oldest}
            self.seen = {d: v for d, v in self.seen.items() if d >= int(now // DAY) - c.days - 1}

    def expected(self, now: float, hours: float, source: dict[int, int] | None = None) -> tuple[float, int]:
        """(mean complaints (or `source` counts) of the same window on previous covered days, how many days)."""
        c = self.cfg
        cur = int(now // c.bucket_seconds)
        per_day = DAY // c.bucket_seconds
        counts: list[int] = []
        for k in range(1, c.days + 1):
            start = now - k * DAY - hours * 3600
            if self.first is None or start < self.first:
                break   # not covered (yet): warm-up
            if self.seen.get(int((now - k * DAY) // DAY), 0) == 0 and self.seen.get(int(start // DAY), 0) == 0:
                continue
            counts.append(self._window(cur - k * per_day, hours, source))
        if not counts:
            return 0.0, 0
        return sum(counts) / len(counts), len(counts)

    def evaluate(self, now: float) -> Verdict:
        """Judged once per bucket (hours-scale windows: a bucket's delay is nothing, the cost is)."""
        bucket = int(now // self.cfg.bucket_seconds)
        if self._cached is not None and self._cached[0] == bucket:
            return self._cached[1]
        verdict = self._evaluate(now, bucket)
        self._cached = (bucket, verdict)
        return verdict

    def _evaluate(self, now: float, bucket: int) -> Verdict:
        c = self.cfg
        self.prune(now)
        anomalous, active, best, why = False, False, 0.0, ""
        for hours in c.window_hours:
            exp, days = self.expected(now, hours)
            if days < c.min_days:
                continue
            observed = self._window(bucket, hours)
            expected = max(exp, c.floor_expected)
            ratio = observed / expected
            # The complaints' share of all mentions must rise too: a campaign that doubles volume doubles
            # its complaints, and that is not a complaint surge. Odds, not shares, so that a brand whose
            # traffic is mostly complaints (an airline on a storm day) can surge.
            total = self._window(bucket, hours, self.totals)
            total_exp = self.expected(now, hours, self.totals)[0]
            usual = min(expected / max(total_exp, expected, 1.0), 0.95)
            odds_ratio = (observed / max(total - observed, 1)) / (usual / (1.0 - usual))
            if (observed >= c.min_count and ratio >= c.ratio and odds_ratio >= c.share_ratio
                    and binom_sf(observed, max(total, observed), usual, c.share_dispersion) <= c.p_value):
                anomalous = True
            if observed >= c.min_count and ratio >= c.close_ratio:
                active = True
            if observed >= c.min_count and ratio > best:
                best = ratio
                why = (f"complaints {ratio:.1f}x the same {hours:g} h of the previous {days} days "
                       f"({observed} vs {exp:.1f}; {observed / max(total, 1):.0%} of mentions vs "
                       f"{usual:.0%} usually)")
        streak = self.streak.update(anomalous, bucket)
        return Verdict.from_window_checks(streak, c.persistence, anomalous, active, best, why)

    def to_dict(self) -> dict[str, Any]:
        return {"b": [[k, v] for k, v in self.buckets.items()], "t": [[k, v] for k, v in self.totals.items()],
                "seen": [[k, v] for k, v in self.seen.items()],
                "first": self.first, "streak": self.streak.to_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any], config: SurgeConfig | None = None) -> SurgeDetector:
        det = cls(config)
        det.buckets = {int(k): int(v) for k, v in d.get("b", [])}
        det.seen = {int(k): int(v) for k, v in d.get("seen", [])}
        det.totals = {int(k): int(v) for k, v in d.get("t", [])}
        det.first = None if d.get("first") is None else float(d["first"])
        if d.get("streak"):
            det.streak.load(d["streak"])
        return det

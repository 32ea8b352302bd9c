"""Outage cluster detector: the rate of outage_report mentions of a brand (any language) vs. its usual rate.

A mention counts when its `outage_report` intent probability is >= intent_threshold. The usual rate is a
long-memory EWMA of per-minute outage counts (outage reports are rare, so a short memory would forget
what normal is), floored by `prior_rate_per_minute` until `warm_minutes` of history (cold start is
conservative: the prior is the floor, and the minimum counts apply from the first minute). Once warm, the
expectation also scales with the brand's current volume (shrunk and capped, see `expected_count`), so a
campaign that multiplies volume does not look like an outage. A window is
anomalous when its count is >= a minimum, >= open_ratio x expected and has a negative-binomial tail
probability <= open_p_value; the detector fires after `persistence` consecutive anomalous buckets.
Evidence (languages, sources, phrases, samples) is aggregated by the incident tracker.
"""

from __future__ import annotations

import math
from typing import Any

from services.classify.crisis.config import OutageConfig
from services.classify.crisis.stats import half_life_alpha, nbinom_sf
from services.classify.crisis.windows import Streak, Verdict, WindowCounter


class OutageDetector:
    def __init__(self, config: OutageConfig | None = None):
        self.cfg = config or OutageConfig()
        c = self.cfg
        self.counter = WindowCounter(c.bucket_seconds, max(c.short_window_seconds, c.long_window_seconds) + 60)
        self.other = WindowCounter(c.bucket_seconds, max(c.short_window_seconds, c.long_window_seconds) + 60)
        self.rate = 0.0              # learned outage reports per minute
        self.other_rate = 0.0        # learned other (non-outage) mentions per minute, same memory
        self.history_minutes = 0
        self.last_minute: int | None = None
        self.streak = Streak()
        self._alpha = half_life_alpha(c.baseline_half_life_minutes)

    def is_outage_report(self, intents: dict[str, float]) -> bool:
        return float(intents.get(self.cfg.intent, 0.0)) >= self.cfg.intent_threshold

    def expected_per_minute(self) -> float:
        if self.history_minutes < self.cfg.warm_minutes:
            return max(self.cfg.prior_rate_per_minute, self.rate)
        return max(self.rate, 1e-3)

    def advance(self, now: float) -> None:
        cur = int(now // 60)
        if self.last_minute is None:
            self.last_minute = min([cur, *self.counter.minutes])
        if cur - self.last_minute > 1440:
            for m in [m for m in self.counter.minutes if m < cur - 1440]:
                self.counter.pop_minute(m)
            self.last_minute = cur - 1440
        while self.last_minute < cur:
            y = float(self.counter.pop_minute(self.last_minute))
            z = float(self.other.pop_minute(self.last_minute))
            yhat = self.expected_per_minute()
            y = min(y, max(yhat * self.cfg.update_clip_ratio, yhat + 3 * math.sqrt(yhat) + 1))
            alpha = max(self._alpha, 1.0 / (self.history_minutes + 1))
            self.rate = alpha * y + (1 - alpha) * self.rate
            self.other_rate = alpha * z + (1 - alpha) * self.other_rate
            self.history_minutes += 1
            self.last_minute += 1
        self.counter.prune(now)
        self.other.prune(now)

    def add(self, t: float, n: int = 1) -> None:
        """Count outage reports."""
        self.counter.add(t, n)

    def add_other(self, t: float, n: int = 1) -> None:
        """Count the brand's other mentions: outage reports are expected in proportion to volume."""
        self.other.add(t, n)

    def expected_count(self, now: float, seconds: int) -> float:
        """The usual rate over the window, scaled up by how much the brand's other volume is above its usual:
        a campaign that triples volume triples the model's false outage reports too, and that is not an
        outage. The scale is shrunk by `volume_prior_count` pseudo-mentions and capped: the old estimate
        (usual share x the window's other mentions) let a sparse brand's handful of companion posts (the
        outage's own complaints) raise the expectation above the cluster and cancel it (issue 16)."""
        c = self.cfg
        by_rate = self.expected_per_minute() * seconds / 60.0
        if self.history_minutes < c.warm_minutes or self.other_rate <= 0:
            return by_rate
        usual_other = self.other_rate * seconds / 60.0
        scale = (self.other.count(now, seconds) + c.volume_prior_count) / (usual_other + c.volume_prior_count)
        return by_rate * min(c.max_volume_scale, max(1.0, scale))

    def evaluate(self, now: float) -> Verdict:
        c = self.cfg
        self.advance(now)
        anomalous, active, best_ratio, why = False, False, 0.0, ""
        for seconds, min_count in ((c.short_window_seconds, c.min_count_short),
                                   (c.long_window_seconds, c.min_count_long)):
            observed = self.counter.count(now, seconds)
            expected = self.expected_count(now, seconds)
            ratio = observed / expected
            if (observed >= min_count and ratio >= c.open_ratio
                    and nbinom_sf(observed, expected, c.dispersion) <= c.open_p_value):
                anomalous = True
            if seconds == c.long_window_seconds and observed >= c.close_min_count and ratio >= c.close_ratio:
                active = True
            if observed >= min_count and ratio > best_ratio:
                best_ratio = ratio
                why = f"{observed} outage reports in {seconds // 60} min ({expected:.1f} expected)"
        streak = self.streak.update(anomalous, int(now // c.bucket_seconds))
        return Verdict.from_window_checks(streak, c.persistence, anomalous, active, best_ratio, why)

    def to_dict(self) -> dict[str, Any]:
        return {"counter": self.counter.to_dict(), "other": self.other.to_dict(), "rate": self.rate,
                "other_rate": self.other_rate, "n": self.history_minutes,
                "last": self.last_minute, "streak": self.streak.to_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any], config: OutageConfig | None = None) -> OutageDetector:
        det = cls(config)
        det.counter.load(d["counter"])
        det.other.load(d["other"])
        det.rate, det.other_rate, det.history_minutes = float(d["rate"]), float(d["other_rate"]), int(d["n"])
        det.last_minute = None if d["last"] is None else int(d["last"])
        det.streak.load(d["streak"])
        return det

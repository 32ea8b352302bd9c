"""Volume spike detector: mention counts in 1-min/5-min windows vs. a seasonal Holt-Winters baseline.

Baseline (per brand, learned from closed minutes): expected per-minute count
    E(t) = level * hour_factor[hour-of-day(t)] * weekday_factor[weekday(t)]
`level` is an EWMA (default half-life 60 min) of deseasonalised counts, so a smooth rise (a marketing
campaign, the ordinary daily curve) is followed; the hour/weekday factors (multiplicative Holt-Winters
seasonality, used once a slot has `season_min_observations` minutes) predict regular sharp changes, e.g.
a lunchtime peak that is normal. Minutes are learned winsorised at `update_clip_ratio` x expected, so a
burst does not teach the baseline that a crisis is normal. Hours are UTC: the factors are learned per
slot, so a brand's own time zone is captured without being configured.

A window is anomalous when the negative-binomial tail probability of its count is <= open_p_value, the
count is >= open_ratio x expected and >= a minimum count (a quiet brand's 3 posts are never a spike).
It fires after `persistence` consecutive anomalous buckets. Cold start: no verdict before
`no_baseline_minutes` of history, then stricter thresholds until `warm_minutes`.
"""

from __future__ import annotations

import math
from typing import Any

from services.classify.crisis.config import SpikeConfig
from services.classify.crisis.stats import half_life_alpha, nbinom_sf
from services.classify.crisis.windows import Streak, Verdict, WindowCounter, scan_windows

_FACTOR_MIN, _FACTOR_MAX = 0.05, 20.0


def _slots(minute: int) -> tuple[int, int]:
    """(hour of day, weekday with Monday = 0) in UTC of the minute ``minute`` since the epoch: what
    ``time.gmtime(minute * 60)`` gives (1970-01-01 was a Thursday), without the call: every minute of every
    brand is learned, so a year's backtest made millions of them."""
    return (minute // 60) % 24, (minute // 1440 + 3) % 7


class SpikeDetector:
    def __init__(self, config: SpikeConfig | None = None):
        self.cfg = config or SpikeConfig()
        c = self.cfg
        self.counter = WindowCounter(c.bucket_seconds, max(c.short_window_seconds, c.long_window_seconds) + 60)
        self.level = 0.0
        self.history_minutes = 0
        self.hour_factor = [1.0] * 24
        self.hour_obs = [0] * 24
        self.weekday_factor = [1.0] * 7
        self.weekday_obs = [0] * 7
        self.last_minute: int | None = None
        self.streak = Streak()
        self._alpha = half_life_alpha(c.level_half_life_minutes)
        self._gamma_hour = half_life_alpha(c.season_half_life_days * 60)        # 60 obs per slot per day
        self._gamma_weekday = half_life_alpha(c.season_half_life_days / 7 * 1440 * 2)

    # -- baseline -------------------------------------------------------------------------------------
    def _season(self, minute: int) -> float:
        return self._season_at(*_slots(minute))

    def _season_at(self, h: int, d: int) -> float:
        n = self.cfg.season_min_observations
        fh = self.hour_factor[h] if self.hour_obs[h] >= n else 1.0
        fd = self.weekday_factor[d] if self.weekday_obs[d] >= 7 * n else 1.0
        return fh * fd

    def expected_per_minute(self, t: float) -> float:
        return self.level * self._season(int(t // 60))

    def expected_count(self, now: float, seconds: int, floor_per_minute: float = 0.05) -> float:
        """Expected mentions in the window `WindowCounter.count(now, seconds)` covers, integrating the
        seasonal rate over it (a window that straddles the end of a daily peak expects the peak). The rate is
        constant within an hour (its hour and weekday slots are), so the window is integrated hour piece by
        hour piece, not minute by minute: every brand's windows are judged at every tick."""
        bs = self.cfg.bucket_seconds
        cur = int(now // bs)
        start, end = (cur - max(1, seconds // bs) + 1) * bs, (cur + 1) * bs
        total, t = 0.0, float(start)
        while t < end:
            nxt = min(end, (int(t // 3600) + 1) * 3600)
            total += max(self.expected_per_minute(t), floor_per_minute) * (nxt - t) / 60.0
            t = nxt
        return total

    def _learn(self, minute: int, y: float) -> None:
        c = self.cfg
        h, d = _slots(minute)
        s = self._season_at(h, d)
        yhat = self.level * s
        if self.history_minutes >= c.no_baseline_minutes:
            y = min(y, max(yhat * c.update_clip_ratio, yhat + 3 * math.sqrt(yhat) + 2))
        alpha = max(self._alpha, 1.0 / (self.history_minutes + 1))
        self.level = alpha * (y / s) + (1 - alpha) * self.level
        # Smoothed ratios (+0.5) keep near-zero night-time minutes from producing wild factors.
        gh = max(self._gamma_hour, 1.0 / (self.hour_obs[h] + 1))
        fd = self.weekday_factor[d] if self.weekday_obs[d] >= 7 * c.season_min_observations else 1.0
        rh = (y + 0.5) / (self.level * fd + 0.5)
        self.hour_factor[h] = min(_FACTOR_MAX, max(_FACTOR_MIN, gh * rh + (1 - gh) * self.hour_factor[h]))
        self.hour_obs[h] += 1
        gd = max(self._gamma_weekday, 1.0 / (self.weekday_obs[d] + 1))
        fh = self.hour_factor[h] if self.hour_obs[h] >= c.season_min_observations else 1.0
        rd = (y + 0.5) / (self.level * fh + 0.5)
        self.weekday_factor[d] = min(_FACTOR_MAX, max(_FACTOR_MIN, gd * rd + (1 - gd) * self.weekday_factor[d]))
        self.weekday_obs[d] += 1
        self.history_minutes += 1

    def advance(self, now: float) -> None:
        """Learn every minute that closed before `now` (silent minutes count as zero)."""
        cur = int(now // 60)
        if self.last_minute is None:
            self.last_minute = min([cur, *self.counter.minutes])
        if cur - self.last_minute > self.cfg.max_gap_minutes:
            # A long silence: learn the last max_gap minutes of it only (older history is irrelevant).
            for m in [m for m in self.counter.minutes if m < cur - self.cfg.max_gap_minutes]:
                self.counter.pop_minute(m)
            self.last_minute = cur - self.cfg.max_gap_minutes
        while self.last_minute < cur:
            self._learn(self.last_minute, float(self.counter.pop_minute(self.last_minute)))
            self.last_minute += 1
        self.counter.prune(now)

    # -- detection ------------------------------------------------------------------------------------
    def add(self, t: float, n: int = 1) -> None:
        self.counter.add(t, n)

    def evaluate(self, now: float) -> Verdict:
        c = self.cfg
        self.advance(now)
        bucket = int(now // c.bucket_seconds)
        if self.history_minutes < c.no_baseline_minutes:
            self.streak.update(False, bucket)
            return Verdict()
        warm = self.history_minutes >= c.warm_minutes
        p_open = c.open_p_value if warm else c.cold_open_p_value
        r_open = c.open_ratio if warm else c.cold_open_ratio
        windows = ((c.short_window_seconds, c.min_count_short), (c.long_window_seconds, c.min_count_long))

        def anomalous_at(seconds: int, observed: int, expected: float) -> bool:
            return observed / expected >= r_open and nbinom_sf(observed, expected, c.dispersion) <= p_open

        def active_at(seconds: int, observed: int, expected: float) -> bool:
            return observed >= c.min_count_short and observed / expected >= c.close_ratio

        def describe(seconds: int, observed: int, expected: float) -> str:
            ratio = observed / expected
            return f"{ratio:.0f}x normal volume in {seconds // 60} min ({observed} vs {expected:.1f} expected)"

        anomalous, active, best_ratio, why, _ = scan_windows(
            lambda s: self.counter.count(now, s), windows, lambda s: self.expected_count(now, s),
            anomalous_at, active_at, describe)
        streak = self.streak.update(anomalous, bucket)
        return Verdict.from_window_checks(streak, c.persistence, anomalous, active, best_ratio, why)

    def idle(self, now: float) -> bool:
        """Without new mentions no evaluation from `now` on can be anomalous or change the streak (counts only
        fall): fewer mentions in the long window than either minimum, and no streak running."""
        c = self.cfg
        return (self.streak.length == 0
                and self.counter.count(now, max(c.short_window_seconds, c.long_window_seconds))
                < min(c.min_count_short, c.min_count_long))

    # -- state ----------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"counter": self.counter.to_dict(), "level": self.level, "n": self.history_minutes,
                "hf": self.hour_factor, "hn": self.hour_obs, "wf": self.weekday_factor, "wn": self.weekday_obs,
                "last": self.last_minute, "streak": self.streak.to_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any], config: SpikeConfig | None = None) -> SpikeDetector:
        det = cls(config)
        det.counter.load(d["counter"])
        det.level, det.history_minutes = float(d["level"]), int(d["n"])
        det.hour_factor, det.hour_obs = [float(x) for x in d["hf"]], [int(x) for x in d["hn"]]
        det.weekday_factor, det.weekday_obs = [float(x) for x in d["wf"]], [int(x) for x in d["wn"]]
        det.last_minute = None if d["last"] is None else int(d["last"])
        det.streak.load(d["streak"])
        return det

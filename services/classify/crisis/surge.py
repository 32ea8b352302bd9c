"""Complaint surge detector: complaints over hours vs. the same hours of previous days (issue 16).

Minutes-scale detectors miss a storm day on which complaints about cancellations rise 2.5x over an
afternoon: no minute is unusual. Here complaint-like mentions (the `complaint` intent at or above
`intent_threshold`) are counted in `bucket_seconds` buckets; the last 1, 2 and 3 h (`window_hours`) are
compared with the same clock hours of each of the previous `days` days (a daily seasonality baseline:
Meltwater-style "last hours vs the same hours before"). Days without coverage are skipped; at least
`min_days` are needed: a brand whose coverage just started is in warm-up and never fires.

A window is anomalous on either of two paths (both need >= min_count complaints):
- **share**: complaints rose (>= ratio x the usual count) and *faster than the rest of the brand's
  traffic*: their odds >= share_ratio x the usual odds, and significant: a beta-binomial tail of the
  complaints among the window's mentions <= p_value, the usual share being the same hours' share on the
  previous days shrunk towards the brand's all-hours share (`share_prior_mentions`) and no more certain
  than the share's day-to-day variation: rho, the brand's own (each clock hour's share over its previous
  days, beyond binomial noise) shrunk by precision towards `share_dispersion` (`share_dispersion(now)`).
  Testing the share cancels what moves all of a brand's traffic at once (a busy day, a quieter weekend,
  a campaign); odds rather than shares, so an airline whose traffic is mostly complaints can surge.
- **count**: on a storm day the rest rises too (rebooking questions, news), and the share barely moves
  while the complaints double. On windows of `count_min_hours` or more: complaints >= count_ratio x the
  same hours of the previous days at today's level (the brand's mentions in the `level_hours` before the
  window vs the same hours of those days: a quiet weekend morning, a busy day), not rising slower than the
  rest (odds >= count_share_ratio: a campaign whose own traffic is praise and chatter lowers them), and a
  negative-binomial tail <= p_value with the next day's predictive variance (the days' own variance shrunk
  towards Poisson + `count_dispersion`, times 1 + 1/k for a mean of k days).
The detector fires after `persistence` consecutive anomalous buckets and stays active while
observed >= close_ratio x expected.
A surge is its own incident kind (COMPLAINT_SURGE); its mentions are not re-tagged P1 (they keep their
own priority: a surge is worked from the queue, an outage pages now).

**Weekly seasonality** (issue 24): the previous days' same hours are one of each weekday, so a rush that
comes every Monday morning is a surge against their mean. Once a brand has `weekly_min_days` of history,
every `previous` count (complaints and mentions, so the share, the count path and the day's level alike) is
scaled by a weekday factor from a weekly profile (168 weekday-hour slots, an EWMA over weeks of each
slot's complaints and mentions, learnt from each covered day once it closed): the same hours on the same
weekday, shrunk towards the mean over the weekdays with an empirical-Bayes weight tau^2 / (tau^2 +
noise), tau^2 being how much the weekdays differ at those hours beyond the noise of their estimates. One
week of a consistent Monday rush already moves Mondays most of the way; weekdays that differ by noise
only leave the daily profile as it was. The profile is 3 x 168 numbers per brand; a checkpoint saved
before it existed loads and rebuilds it from the buckets it holds (up to 7 days).

**Small brands** (windows of 1-3 h, `min_count` = 10 complaints, tail <= `p_value`): a brand of 100
mentions a day with ~12% complaints has ~12 complaints a day, ~1.5 in 3 h. A 2x day (24 instead of 12)
never opens: even over a whole day it is within day-to-day noise (negative-binomial tail ~3e-3 against
1e-4; 2.5x would be ~4e-5, but only once most of the day had passed, so day-long windows were not
added). What it gets is a burst of ~10+ extra complaints within 1-3 h (5-10x its rate for those hours),
found 40-55 min (12 in 1 h) to 2-3 h (10-12 in 3 h) after the burst starts; docs/operating.md has the measured
table by brand size. Its outages are the outage detector's (1 min to 6 h against the brand's own rate).
"""

from __future__ import annotations

import math
from typing import Any

from services.classify.crisis.config import SurgeConfig
from services.classify.crisis.stats import betabinom_sf, nbinom_sf
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
        self._dispersion: tuple[int, float] | None = None   # (day, rho) of `share_dispersion`
        # Weekly profile: weekday * 24 + hour -> EWMA over weeks of that hour's complaints / mentions, and
        # how many weeks it has seen; `folded` is the last day learnt into it.
        self.week_complaints = [0.0] * 168
        self.week_totals = [0.0] * 168
        self.week_n = [0] * 168
        self.folded: int | None = None

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

    def previous(self, now: float, hours: float, source: dict[int, int] | None = None) -> list[float]:
        """Complaints (or `source` counts) of the same window on each previous covered day, scaled to today's
        weekday once the brand has a week of history (`weekly_factor`)."""
        c = self.cfg
        cur = int(now // c.bucket_seconds)
        per_day = DAY // c.bucket_seconds
        counts: list[float] = []
        for k in range(1, c.days + 1):
            start = now - k * DAY - hours * 3600
            if self.first is None or start < self.first:
                break   # not covered (yet): warm-up
            if self.seen.get(int((now - k * DAY) // DAY), 0) == 0 and self.seen.get(int(start // DAY), 0) == 0:
                continue
            counts.append(float(self._window(cur - k * per_day, hours, source)))
        if counts:
            f = self.weekly_factor(now, hours, totals=source is self.totals)
            if f != 1.0:
                counts = [x * f for x in counts]
        return counts

    # -- weekly seasonality ---------------------------------------------------------------------------
    def fold(self, now: float) -> None:
        """Learn every covered day that closed before `now` (and whose buckets are still kept) into the
        weekly profile, hour by hour; hours before coverage began are not learnt."""
        c = self.cfg
        today = int(now // DAY)
        if self.folded is None:
            if not self.seen:
                return
            self.folded = min(self.seen) - 1
        per_hour = 3600 // c.bucket_seconds
        alpha = 1.0 - 0.5 ** (1.0 / max(c.weekly_half_life_weeks, 1e-9))
        for d in range(max(self.folded + 1, today - c.days), today):
            if self.seen.get(d, 0) == 0:
                continue
            weekday = (d + 3) % 7   # day 0 (1970-01-01) was a Thursday; Monday = 0
            for h in range(24):
                if self.first is None or d * DAY + h * 3600 < self.first:
                    continue
                b0 = (d * DAY + h * 3600) // c.bucket_seconds
                slot = weekday * 24 + h
                a = max(alpha, 1.0 / (self.week_n[slot] + 1))
                cc = sum(self.buckets.get(b, 0) for b in range(b0, b0 + per_hour))
                tt = sum(self.totals.get(b, 0) for b in range(b0, b0 + per_hour))
                self.week_complaints[slot] += a * (cc - self.week_complaints[slot])
                self.week_totals[slot] += a * (tt - self.week_totals[slot])
                self.week_n[slot] = min(self.week_n[slot] + 1, 10_000)
        self.folded = max(self.folded, today - 1)

    def _weekday_window(self, end: float, hours: float, profile: list[float]) -> tuple[float, int]:
        """The profile's expected count in [end - hours, end) and the fewest weeks any of its hours has."""
        total, weeks, t = 0.0, 10_000, end - hours * 3600
        while t < end - 1e-6:
            nxt = min(end, (t // 3600 + 1) * 3600)
            d = int(t // DAY)
            slot = ((d + 3) % 7) * 24 + int((t % DAY) // 3600)
            total += profile[slot] * (nxt - t) / 3600
            weeks = min(weeks, self.week_n[slot])
            t = nxt
        return total, weeks

    def weekly_factor(self, now: float, hours: float, totals: bool = False) -> float:
        """Today's weekday against the mean weekday for the window of `hours` ending at `now` (1.0 before
        `weekly_min_days` of history or without a profile): the same weekday's expected count shrunk towards
        the weekdays' mean with the empirical-Bayes weight tau^2 / (tau^2 + its noise), over that mean."""
        c = self.cfg
        if not c.weekly or self.first is None or now - self.first < c.weekly_min_days * DAY:
            return 1.0
        profile = self.week_totals if totals else self.week_complaints
        alpha = 1.0 - 0.5 ** (1.0 / max(c.weekly_half_life_weeks, 1e-9))
        max_weeks = (2.0 - alpha) / alpha    # an EWMA's effective number of weeks
        means: list[float] = []
        noise: list[float] = []
        for k in range(7):
            m, n = self._weekday_window(now - k * DAY, hours, profile)
            if n == 0:
                if k == 0:
                    return 1.0
                continue
            means.append(m)
            mm = max(m, c.floor_expected)
            noise.append((mm + c.count_dispersion * mm * mm) / min(n, max_weeks))
        if len(means) < 5:
            return 1.0
        mean = sum(means) / len(means)
        spread = sum((m - mean) ** 2 for m in means) / (len(means) - 1)
        tau2 = max(0.0, spread - sum(noise) / len(noise))
        if tau2 <= 0.0:
            return 1.0
        w = tau2 / (tau2 + noise[0])
        return (w * means[0] + (1 - w) * mean + 0.5) / (mean + 0.5)

    def level(self, now: float, hours: float) -> float:
        """The day's level: the brand's mentions in the `level_hours` before the window of `hours` that ends
        at `now`, against the same hours of the previous covered days (1.0 without them), shrunk towards 1
        by `level_prior_mentions` and kept within `level_bounds`. A quiet Saturday morning makes a quiet
        Saturday afternoon usual; a busy morning a busy afternoon."""
        c = self.cfg
        if c.level_hours <= 0:
            return 1.0
        start = now - hours * 3600
        before = self.previous(start, c.level_hours, self.totals)
        if not before:
            return 1.0
        today = self._window(int(start // c.bucket_seconds), c.level_hours, self.totals)
        usual = sum(before) / len(before)
        lo, hi = c.level_bounds
        return min(max((today + c.level_prior_mentions) / (usual + c.level_prior_mentions), lo), hi)

    def share_dispersion(self, now: float) -> float:
        """rho for the share's day-to-day variation: the brand's own, shrunk towards `share_dispersion` by
        precision. The brand's own is a method-of-moments estimate over every clock hour covered on two or
        more of the previous `days` days: how far each day's share of that hour strays from the hour's share
        over those days, beyond binomial noise (E[sum n (s - p)^2] = (days - 1) p(1-p)(1 + (n - 1) rho)).
        Its variance is ~2 df / den^2 (a chi-square's, over the weight `den` = sum (days - 1)(n_bar - 1)):
        three days of a 10,000-a-day brand pin rho to +-0.0006, of a 1,000-a-day brand to +-0.005 (so the
        prior, `share_dispersion` +- `share_dispersion_sd`, decides there). Computed once a day (the days it reads
        closed)."""
        c = self.cfg
        today = int(now // DAY)
        if self._dispersion is not None and self._dispersion[0] == today:
            return self._dispersion[1]
        block = int(c.share_dispersion_hours)
        num = den = 0.0          # sum of n (s - p)^2 / (p (1 - p)) - (days - 1), and of (days - 1)(n_bar - 1)
        df = 0
        for h in range(0, 24, block):
            cells = []
            for d in range(today - c.days, today):
                if self.seen.get(d, 0) == 0 or self.first is None or d * DAY + h * 3600 < self.first:
                    continue
                last = int((d * DAY + (h + block) * 3600) // c.bucket_seconds) - 1   # the block's last bucket
                n = self._window(last, block, self.totals)
                if n >= 2:
                    cells.append((self._window(last, block), n))
            k = len(cells)
            if k < 2:
                continue
            n_all = sum(n for _, n in cells)
            p = sum(x for x, _ in cells) / n_all
            if not 0.0 < p < 1.0:
                continue
            num += sum(n * (x / n - p) ** 2 for x, n in cells) / (p * (1.0 - p)) - (k - 1)
            den += (k - 1) * (n_all / k - 1.0)
            df += k - 1
        rho = c.share_dispersion
        if den > 0 and c.share_dispersion_sd > 0:
            own = num / den      # unclipped: clipping each noisy estimate at 0 would bias it upwards
            tau2 = c.share_dispersion_sd ** 2
            w = tau2 / (tau2 + 2.0 * df / den ** 2)
            rho = max(w * own + (1.0 - w) * c.share_dispersion, c.share_dispersion_min)
        self._dispersion = (today, rho)
        return rho

    def share_p_value(self, observed: int, total: int, usual_complaints: float, usual_total: float,
                      before: int, dispersion: float | None = None) -> float:
        """How rare `observed` complaints among `total` mentions are, given `usual_complaints` among
        `usual_total` in the same window of the previous days: a beta-binomial tail whose share is as
        uncertain as those days make it. The same-hours share is shrunk towards the brand's share over all
        the hours it has before bucket `before` (worth `share_prior_mentions` mentions), so two quiet nights
        that happened to have 5% complaints do not make an ordinary 15% hour rare; and the share is never
        more certain than its day-to-day variation allows (`dispersion`: rho, `share_dispersion` unless given;
        `_evaluate` passes the brand's own, `share_dispersion(...)`)."""
        c = self.cfg
        rho = c.share_dispersion if dispersion is None else dispersion
        past_total = sum(v for b, v in self.totals.items() if b < before)
        past = sum(v for b, v in self.buckets.items() if b < before)
        prior_share = (past + 0.5) / (past_total + 1.0)
        prior_weight = min(float(past_total), c.share_prior_mentions)
        a = prior_share * prior_weight + usual_complaints + 0.5
        b = (1.0 - prior_share) * prior_weight + (usual_total - usual_complaints) + 0.5
        cap = (1.0 - rho) / rho if rho > 0 else math.inf
        if a + b > cap:
            a, b = a * cap / (a + b), b * cap / (a + b)
        return betabinom_sf(observed, max(total, observed), a, b)

    def count_p_value(self, observed: int, counts: list[float]) -> float:
        """How rare `observed` complaints are given the same window's counts on the previous days.

        A negative binomial with the predictive variance of the next day: the days' own variance shrunk
        towards a prior (Poisson plus `count_dispersion`, worth `count_prior_days` days), floored at
        Poisson, times 1 + 1/k for the uncertainty of a mean of k days. A brand whose days are alike gets
        a tight band; a brand whose days swing gets a wide one; two days of 1 and 3 are no evidence that
        11 is rare."""
        c = self.cfg
        k = len(counts)
        m = max(sum(counts) / k, c.floor_expected)
        s2 = sum((x - m) ** 2 for x in counts) / (k - 1) if k > 1 else 0.0
        prior = m + c.count_dispersion * m * m
        v = max(((k - 1) * s2 + c.count_prior_days * prior) / (k - 1 + c.count_prior_days), m) * (1 + 1 / k)
        return nbinom_sf(observed, m, max(v - m, 0.0) / (m * m))

    def idle(self, now: float) -> bool:
        """No streak and fewer than min_count complaints in the longest window: no evaluation without new
        complaints can be anomalous."""
        return self.streak.length == 0 and self._too_few(int(now // self.cfg.bucket_seconds))

    def _too_few(self, bucket: int) -> bool:
        """Fewer than min_count complaints in the longest window ending at `bucket`: every window ends there,
        so none holds more, and a window with fewer is neither anomalous nor active."""
        return self._window(bucket, max(self.cfg.window_hours)) < self.cfg.min_count

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
        self.fold(now)
        self.prune(now)
        if self._too_few(bucket):
            # the verdict judging every window would give, without the previous days' baselines (most of a
            # sparse brand's backtest time)
            return Verdict.from_window_checks(self.streak.update(False, bucket), c.persistence, False, False, 0.0, "")
        anomalous, active, best, why = False, False, 0.0, ""
        for hours in c.window_hours:
            previous = self.previous(now, hours)
            days = len(previous)
            if days < c.min_days:
                continue
            exp = sum(previous) / days
            observed = self._window(bucket, hours)
            expected = max(exp, c.floor_expected)
            ratio = observed / expected
            # The complaints' odds against the rest of the brand's traffic: the share path needs them up
            # (a campaign that doubles volume doubles its complaints too), the count path only not down.
            # Odds, not shares, so that a brand whose traffic is mostly complaints can surge.
            total = self._window(bucket, hours, self.totals)
            previous_totals = self.previous(now, hours, self.totals)
            total_exp = sum(previous_totals) / len(previous_totals)
            usual = min(expected / max(total_exp, expected, 1.0), 0.95)
            odds_ratio = (observed / max(total - observed, 1)) / (usual / (1.0 - usual))
            if (observed >= c.min_count and ratio >= c.ratio and odds_ratio >= c.share_ratio
                    and self.share_p_value(observed, total, sum(previous), sum(previous_totals),
                                           bucket - int(hours * 3600 // c.bucket_seconds) + 1,
                                           self.share_dispersion(now)) <= c.p_value):
                anomalous = True
            elif (hours >= c.count_min_hours and observed >= c.min_count and odds_ratio >= c.count_share_ratio
                    and observed >= c.count_ratio * expected * (lvl := self.level(now, hours))
                    and self.count_p_value(observed, [x * lvl for x in previous]) <= c.p_value):
                anomalous = True   # the count path: complaints doubled while the rest rose too (a storm day),
                #                    against the same hours of the previous days at today's level
            if observed >= c.min_count and ratio >= c.close_ratio:
                active = True
            if observed >= c.min_count and ratio > best:
                best = ratio
                f = self.weekly_factor(now, hours)
                why = (f"complaints {ratio:.1f}x the same {hours:g} h of the previous {days} days "
                       f"({observed} vs {exp:.1f}; {observed / max(total, 1):.0%} of mentions vs "
                       f"{usual:.0%} usually)" + (f"; weekday-adjusted x{f:.2f}" if abs(f - 1) >= 0.05 else ""))
        streak = self.streak.update(anomalous, bucket)
        return Verdict.from_window_checks(streak, c.persistence, anomalous, active, best, why)

    def to_dict(self) -> dict[str, Any]:
        return {"b": [[k, v] for k, v in self.buckets.items()], "t": [[k, v] for k, v in self.totals.items()],
                "seen": [[k, v] for k, v in self.seen.items()],
                "first": self.first, "streak": self.streak.to_dict(),
                "week": {"c": [round(x, 3) for x in self.week_complaints],
                         "t": [round(x, 3) for x in self.week_totals], "n": self.week_n, "folded": self.folded}}

    @classmethod
    def from_dict(cls, d: dict[str, Any], config: SurgeConfig | None = None) -> SurgeDetector:
        det = cls(config)
        det.buckets = {int(k): int(v) for k, v in d.get("b", [])}
        det.seen = {int(k): int(v) for k, v in d.get("seen", [])}
        det.totals = {int(k): int(v) for k, v in d.get("t", [])}
        det.first = None if d.get("first") is None else float(d["first"])
        if d.get("streak"):
            det.streak.load(d["streak"])
        week = d.get("week")   # absent in checkpoints saved before weekly seasonality: rebuilt by `fold`
        if week and len(week.get("n", [])) == 168:
            det.week_complaints = [float(x) for x in week["c"]]
            det.week_totals = [float(x) for x in week["t"]]
            det.week_n = [int(x) for x in week["n"]]
            det.folded = None if week.get("folded") is None else int(week["folded"])
        return det

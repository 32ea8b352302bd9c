"""Outage cluster detector: outage_report mentions of a brand (any language) over windows from 1 minute to
6 hours, judged by how improbable each count is under the brand's own rate (issue 24).

A mention counts when its `outage_report` probability is >= intent_threshold. Per brand the detector learns
the usual rate of outage reports and of its other mentions per minute (EWMAs with a long memory, outage
reports being rare). The expectation for a window is an empirical-Bayes estimate: the brand's own rate over
its effective memory H (= min(history, 1/alpha) minutes), shrunk towards a prior pooled over the other brands
(their share of mentions that are outage reports, worth `prior_mentions` mentions), so a new or sparse
brand borrows strength from the others instead of from a hard floor:

    share = (O + pooled_share * prior_mentions) / (N + prior_mentions),   rate = share * volume_rate

(O outage reports among N mentions over H minutes), and the count of a window is negative-binomial with
that mean and dispersion `dispersion` + 1 / (O + pooled_share * prior_mentions) (the share's uncertainty:
a brand that has seen a handful of reports needs more to be surprised). Minutes are learned winsorised, so a
cluster does not teach the baseline that outages are normal. Once warm the expectation
scales with the brand's current volume (shrunk and capped, see `expected_from`), so a campaign that
multiplies volume does not look like an outage. Cold start: until `warm_minutes` of history the rate is
at least `prior_rate_per_minute`.

Leave-window-out: the tail probability of a window is computed under the state learned before the window
began (`expected_before`: snapshots of the learned state at every hour mark, up to the longest window + 1 h
back, and in the first `warm_minutes` each time the history doubles), not under the current one. A sparse
brand's winsorising clip lets one report a minute through in full, so with the current state each report of
a slow cluster raised the expectation of the next (a CrisisLex utility at ~2 posts an hour: 5 reports in
2 h met 0.64 expected instead of 0.3, p 2e-3 instead of 1e-4, and no CrisisLex stream opened). The ratio
(`open_ratio`) and the close condition of a warm window still use the larger of the two expectations, so a
brand whose stray share steps up for a day is judged as before.

Cold start (a window whose earlier state is younger than `warm_minutes`, `is_cold`): a brand's first hour can
tell its volume, not which share of it is normal; a new brand whose first mentions are an outage would learn
from them that outage reports are its normal. So a cold window is judged only against the state before it
(for the ratio and the close condition too) and the null is composite: the count is improbable only when
neither the rate view (a negative binomial around the earlier state's rate, at least the prior rate) nor
the share view explains it. The share view: the window's k reports among its n mentions are
BetaBinomial(n, pooled_share x prior_mentions, (1 - pooled_share) x prior_mentions), the share of a brand
the detector cannot know yet taken from the brands pooled (at least `prior_share`; brands' stray shares
are ~2% +- 1%). A new busy brand's steady 1-4% of stray outage scores opens nothing (a steady 8% neither,
in a sweep of new brands at 0.05-300 mentions a minute); a new brand's first hour of 30 reports over 60
minutes opens ~10 min after the first report with nothing else, ~17 min among one ordinary mention a
minute, ~26-36 min among two. The price: a new brand whose steady share of stray outage scores is 12% or
more looks like an outage in its first hours (a share of 12% is ~3e-8 under the pooled prior), and among 3
ordinary mentions a minute a slow outage's 14% share needs about an hour (15 of ~105 mentions in 30
minutes are p ~2e-5 under that prior).

A window is anomalous when its tail probability is <= open_p_value / (number of windows) (Bonferroni over
the windows: the scan over 1 min ... 6 h keeps one family-wise level), its count >= open_ratio x expected
and >= `min_count`, a tiny absolute safety floor (3: one or two stray posts never page, however quiet the
brand). It fires after `persistence` consecutive anomalous buckets. Targets (tests/unit/test_crisis_outage.py,
test_crisis_outage_firsthour.py): 10 reports in an hour on a brand with a few mentions a day open within
30 min, a slow outage of 30 reports over 60 minutes opens (within 30 min on a new brand with up to one
ordinary mention a minute), a 30,000-a-day brand's ordinary 1-4% of stray outage scores does not.
The incident stays active while any window up to 4x the shortest one that fired (at least
`close_window_seconds`) keeps >= close_min_count reports at >= close_ratio x expected, so a slow outage
(anomalous only over 15+ minutes) does not flap open and closed between its reports, and a burst closes
as before. Windows of 5 minutes or less are counted in 10 s
buckets, longer ones in whole closed minutes plus the current minute.
"""

from __future__ import annotations

import math
from typing import Any

from services.classify.crisis.config import OutageConfig
from services.classify.crisis.stats import betabinom_sf, half_life_alpha, nbinom_sf
from services.classify.crisis.windows import MinuteRing, Streak, Verdict, WindowCounter, scan_windows

_SHORT = 300   # windows up to this many seconds are counted in buckets, longer ones in minutes
_SNAP_MINUTES = 60   # the baseline is snapshotted at every hour mark (a window's baseline lags it by < 1 h)


class OutageDetector:
    def __init__(self, config: OutageConfig | None = None):
        self.cfg = config or OutageConfig()
        c = self.cfg
        self.windows = tuple(sorted(c.windows_seconds))
        self.counter = WindowCounter(c.bucket_seconds, _SHORT + 60)
        self.other = WindowCounter(c.bucket_seconds, _SHORT + 60)
        spans = [w // 60 - 1 for w in self.windows if w > _SHORT]
        longest = max([1, *spans])
        self.ring = MinuteRing(longest, spans or [1])
        self.other_ring = MinuteRing(longest, spans or [1])
        self.rate = 0.0              # learned outage reports per minute
        self.other_rate = 0.0        # learned other (non-outage) mentions per minute, same memory
        self.history_minutes = 0
        self.last_minute: int | None = None
        self.streak = Streak()
        self.fired_window = 0        # shortest window anomalous in the current episode (close hysteresis)
        self.episode_end = 0.0       # when the last episode ended: windows reaching back before it do not fire
        self.pooled_share = c.prior_share   # set by the engine: outage reports / mentions over all brands
        self._alpha = half_life_alpha(c.baseline_half_life_minutes)
        # The learned state at the brand's first minute and at every hour mark since (newest last, as far back
        # as the longest window needs): a window is judged against the baseline as it was before the window
        # began, so the reports under test are never part of their own expectation (leave-window-out).
        self.snaps: list[tuple[int, float, float, int]] = []   # (minute, rate, other_rate, history_minutes)
        self._snap_keep = self.windows[-1] // 60 + _SNAP_MINUTES

    def is_outage_report(self, intents: dict[str, float]) -> bool:
        return float(intents.get(self.cfg.intent, 0.0)) >= self.cfg.intent_threshold

    # -- baseline -------------------------------------------------------------------------------------
    def posterior(self) -> tuple[float, float]:
        """The current state's `posterior_of`."""
        return self.posterior_of(self.rate, self.other_rate, self.history_minutes)

    def memory(self, history_minutes: int | None = None) -> float:
        """The effective memory H of the learned rates, in minutes: min(history, 1 / alpha)."""
        return float(min(self.history_minutes if history_minutes is None else history_minutes, 1.0 / self._alpha))

    def posterior_of(self, rate: float, other_rate: float, history_minutes: int) -> tuple[float, float]:
        """(expected outage reports per minute, shape a of the share's beta posterior) of a learned state.

        The brand's share of outage reports among its mentions ~ Beta(pooled * k, (1 - pooled) * k) a priori
        (k = prior_mentions: brands differ, 200 pseudo-mentions is a share sd of ~1% at 2%), updated with
        its own O reports among N mentions over its memory: share = (O + pooled k) / (N + k); the expected
        rate is share x the brand's volume per minute."""
        c = self.cfg
        h = self.memory(history_minutes)
        volume = rate + other_rate
        a = rate * h + self.pooled_share * c.prior_mentions
        mean = a / (volume * h + c.prior_mentions) * volume
        if history_minutes < c.warm_minutes:   # cold start is conservative: never below the prior
            mean = max(c.prior_rate_per_minute, rate, mean)   # floor nor the brand's own rate so far
            a = max(a, c.prior_mentions * c.prior_share)
        return max(mean, 1e-6), max(a, 1e-3)

    def expected_per_minute(self) -> float:
        return self.posterior()[0]

    def _learn(self, y: float, z: float) -> None:
        yhat = self.expected_per_minute()
        # A cluster must not teach the baseline that outages are normal: minutes are learned winsorised (not
        # frozen during an episode: a wrong baseline must still converge, or its episode would never end).
        y = min(y, max(yhat * self.cfg.update_clip_ratio, yhat + 3 * math.sqrt(yhat) + 1))
        alpha = max(self._alpha, 1.0 / (self.history_minutes + 1))
        self.rate = alpha * y + (1 - alpha) * self.rate
        self.other_rate = alpha * z + (1 - alpha) * self.other_rate
        self.history_minutes += 1

    def _learn_zeros(self, n: int) -> None:
        """`n` empty minutes: the EWMAs in closed form once alpha is constant (a quiet stretch costs O(1))."""
        while n > 0 and 1.0 / (self.history_minutes + 1) > self._alpha:
            self._learn(0.0, 0.0)
            n -= 1
        if n > 0:
            decay = (1 - self._alpha) ** n
            self.rate *= decay
            self.other_rate *= decay
            self.history_minutes += n

    def advance(self, now: float) -> None:
        """Learn every minute that closed before `now`; empty stretches in closed form."""
        cur = int(now // 60)
        if self.last_minute is None:
            self.last_minute = min([cur, *self.counter.minutes, *self.other.minutes])
        if cur - self.last_minute > 1440:
            for m in [m for m in self.counter.minutes if m < cur - 1440]:
                self.counter.pop_minute(m)
            for m in [m for m in self.other.minutes if m < cur - 1440]:
                self.other.pop_minute(m)
            self.last_minute = cur - 1440
        while self.last_minute < cur:
            self._snapshot(self.last_minute)
            pending = [m for m in (*self.counter.minutes, *self.other.minutes) if self.last_minute <= m < cur]
            stop = min(pending) if pending else cur
            if stop > self.last_minute:        # a quiet stretch up to the next minute with mentions, paused at
                # the hour marks the snapshots need (older ones are skipped in one closed-form step)
                mark = (self.last_minute // _SNAP_MINUTES + 1) * _SNAP_MINUTES
                horizon = (cur - self._snap_keep) // _SNAP_MINUTES * _SNAP_MINUTES
                n = min(stop, max(mark, horizon)) - self.last_minute
                self._learn_zeros(n)
                self.ring.push_zeros(n)
                self.other_ring.push_zeros(n)
                self.last_minute += n
                continue
            y = self.counter.pop_minute(self.last_minute)
            z = self.other.pop_minute(self.last_minute)
            self._learn(float(y), float(z))
            self.ring.push(y)
            self.other_ring.push(z)
            self.last_minute += 1
        self.counter.prune(now)
        self.other.prune(now)

    def _snapshot(self, minute: int) -> None:
        """The state as of the start of `minute` (every earlier minute learned), at the brand's first minute,
        at hour marks, and in cold start whenever the history has doubled since the last snapshot (1, 2, 4,
        ... minutes: a new brand's short windows are judged against the state of its own first minutes, not
        only against its first, empty state); snapshots no window can reach are dropped."""
        if self.snaps:
            last_minute, _, _, last_history = self.snaps[-1]
            young = 2 * max(last_history, 1) <= self.history_minutes < self.cfg.warm_minutes
            if last_minute >= minute or (minute % _SNAP_MINUTES and not young):
                return
        self.snaps.append((minute, self.rate, self.other_rate, self.history_minutes))
        while len(self.snaps) > 1 and self.snaps[1][0] <= minute - self._snap_keep:
            self.snaps.pop(0)

    def baseline_before(self, start: float) -> tuple[float, float, int]:
        """(rate, other_rate, history_minutes) as learned before `start`: the newest snapshot taken at or
        before the minute containing `start` (none learned anything of the window), or the brand's first
        state when the window reaches back before every snapshot (the brand is newer than the window). Without
        snapshots (a checkpoint from before they existed) the current state."""
        minute = int(start // 60)
        best = None
        for snap in self.snaps:
            if snap[0] > minute:
                break
            best = snap
        if best is None:
            if not self.snaps:
                return self.rate, self.other_rate, self.history_minutes
            best = self.snaps[0]
        return best[1], best[2], best[3]

    # -- detection ------------------------------------------------------------------------------------
    def add(self, t: float, n: int = 1) -> None:
        """Count outage reports."""
        self.counter.add(t, n)

    def add_other(self, t: float, n: int = 1) -> None:
        """Count the brand's other mentions: outage reports are expected in proportion to volume."""
        self.other.add(t, n)

    def _count(self, counter: WindowCounter, ring: MinuteRing, now: float, seconds: int) -> int:
        if seconds <= _SHORT:
            return counter.count(now, seconds)
        return ring.last(seconds // 60 - 1) + counter.minutes.get(int(now // 60), 0)

    def count(self, now: float, seconds: int) -> int:
        return self._count(self.counter, self.ring, now, seconds)

    def expected_count(self, now: float, seconds: int) -> float:
        """The usual count of a window from the brand's current learned state (`expected_from`)."""
        return self.expected_from(now, seconds, (self.rate, self.other_rate, self.history_minutes))[0]

    def expected_before(self, now: float, seconds: int) -> tuple[float, float]:
        """`expected_from` the state learned before the window began (`baseline_before`): the reports under
        test are not part of their own expectation. A sparse brand's EWMA learns each report in full (one
        report a minute is within the winsorising clip), so against its current state every report of a
        slow cluster raised the expectation of the next (a CrisisLex utility's 5 reports in 2 h met 0.64
        expected instead of 0.3, p 2e-3 instead of 1e-4). In cold start too: a new brand's first hour of
        outage reports, judged against its current state, taught it that they were normal."""
        return self.expected_from(now, seconds, self.baseline_before(now - seconds))

    def is_cold(self, state: tuple[float, float, int]) -> bool:
        """Whether a window whose earlier state (`baseline_before`) is ``state`` is judged in cold start: that
        state is younger than `warm_minutes`, too short a history to know which share of the brand's mentions
        are outage reports."""
        return state[2] < self.cfg.warm_minutes

    def share_prior(self) -> tuple[float, float]:
        """Beta(a, b) of a brand's share of outage reports among its mentions before its own history can tell:
        the share pooled over brands (at least the configured prior: the pool, learned from the brands'
        winsorised rates, lags while every brand is new) worth `prior_mentions` mentions. The brand's own
        first minutes are not added: its learned outage rate is winsorised from a tiny cold expectation
        while its other mentions are learned in full, so they would show a busy brand a share far below its
        real one, and with the confidence of hundreds of mentions."""
        share = max(self.pooled_share, self.cfg.prior_share)
        return share * self.cfg.prior_mentions, (1.0 - share) * self.cfg.prior_mentions

    def p_value(self, now: float, seconds: int, observed: int, stop_above: float = 1.0,
                state: tuple[float, float, int] | None = None) -> float:
        """Tail probability of `observed` reports in the window under the state learned before it began.

        Warm: negative binomial around `expected_before`. Cold (`is_cold`), the null is composite, and the
        window is improbable only when neither view explains it, so the larger of two tail probabilities:
        the rate view (the negative binomial around the state's rate, at least `prior_rate_per_minute`) and
        the share view: the window's k reports among its n mentions are BetaBinomial(n, `share_prior`), the
        share a brand's first hours cannot know for themselves taken from the brands pooled. A new busy
        brand's steady 1-4% of stray scores is ordinary under it; a new brand whose mentions are mostly
        outage reports is not, however slowly they come. (Computed cheap view first: when it is above
        `stop_above` it is returned without the other.) `state`: `baseline_before(now - seconds)` when the
        caller has it already."""
        state = state or self.baseline_before(now - seconds)
        mean, dispersion = self.expected_from(now, seconds, state)
        if not self.is_cold(state):
            return nbinom_sf(observed, mean, dispersion)
        by_rate = self.posterior_of(*state)[0] * seconds / 60.0
        p = nbinom_sf(observed, by_rate, dispersion)
        if p > stop_above:
            return p
        total = observed + self._count(self.other, self.other_ring, now, seconds)
        return max(p, betabinom_sf(observed, total, *self.share_prior()))

    def expected_from(self, now: float, seconds: int, state: tuple[float, float, int]) -> tuple[float, float]:
        """(expectation of the window's count, dispersion of the count) from a learned state (rate,
        other_rate, history_minutes).

        The usual rate over the window, scaled up by how much the brand's other volume is above that usual:
        a campaign that triples volume triples the model's false outage reports too, and that is not an
        outage. The scale is shrunk by `volume_prior_count` pseudo-mentions and capped, so a sparse brand's
        handful of companion posts (the outage's own complaints) cannot cancel a real cluster (issue 16).
        The dispersion is `dispersion` + 1 / the posterior's shape (the share's uncertainty)."""
        c = self.cfg
        rate, other_rate, history = state
        mean, shape = self.posterior_of(rate, other_rate, history)
        dispersion = c.dispersion + 1.0 / shape
        by_rate = mean * seconds / 60.0
        if history < c.warm_minutes or other_rate <= 0:
            # Cold: the learned rates do not know the brand's volume yet (nothing is learned before a minute
            # closes), so the window's own mentions times the share pooled over brands (`share_prior`, at
            # least the configured prior) are expected too. A new brand whose first minutes carry a steady
            # share of stray outage scores is not an outage; a burst of reports on a brand with little else
            # is (its expectation is a pooled share of itself). The pool is learned from the brands'
            # winsorised rates, which lag while every brand is new (a fresh install, a demo): a pool of 0.15%
            # made a new brand's steady 2% of stray outage scores at 1,000 mentions a minute look like an
            # outage, hence the configured floor.
            total = self.count(now, seconds) + self._count(self.other, self.other_ring, now, seconds)
            a, b = self.share_prior()
            return max(by_rate, a / (a + b) * total), dispersion
        usual_other = other_rate * seconds / 60.0
        other = self._count(self.other, self.other_ring, now, seconds)
        scale = (other + c.volume_prior_count) / (usual_other + c.volume_prior_count)
        return by_rate * min(c.max_volume_scale, max(1.0, scale)), dispersion

    def evaluate(self, now: float) -> Verdict:
        c = self.cfg
        self.advance(now)
        seen: dict[int, tuple[int, float]] = {}
        p_open = c.open_p_value / len(self.windows)
        states: dict[int, tuple[float, float, int]] = {}

        def before(seconds: int) -> tuple[float, float, int]:
            """`baseline_before` the window, looked up once per window and evaluation."""
            if seconds not in states:
                states[seconds] = self.baseline_before(now - seconds)
            return states[seconds]

        def expected(seconds: int) -> float:
            """The larger of the expectations from the current state and from the state before the window:
            the ratio and the close condition use it (an effect as large as before); the tail probability
            is judged under the state before the window (`p_value`). A cold window only the state before it
            (`is_cold`): a new brand's current state has learned the window's own reports."""
            state = before(seconds)
            by_state = self.expected_from(now, seconds, state)[0]
            if self.is_cold(state):
                return by_state
            return max(by_state, self.expected_count(now, seconds))

        def count(seconds: int) -> int:
            return self.count(now, seconds)

        def anomalous(seconds: int, observed: int, expected: float) -> bool:
            seen[seconds] = (observed, expected)
            if now - seconds < self.episode_end:   # holds the last episode's reports: judged already
                return False
            return (observed >= c.open_ratio * expected
                    and self.p_value(now, seconds, observed, stop_above=p_open, state=before(seconds)) <= p_open)

        def describe(seconds: int, observed: int, expected: float) -> str:
            span = f"{seconds // 3600} h" if seconds >= 3600 and seconds % 3600 == 0 else f"{seconds // 60} min"
            return f"{observed} outage reports in {span} ({expected:.1f} expected)"

        hit, _, best_ratio, why, hits = scan_windows(
            count, [(w, c.min_count) for w in self.windows], expected, anomalous, None, describe)
        # Active (hysteresis): >= close_min_count reports at >= close_ratio x expected in a window up to 4x the
        # shortest window that fired in this episode (at least close_window_seconds): a burst closes minutes
        # after it ends, a slow outage stays open between its reports. Long windows stay anomalous for hours
        # after a burst, so a window counts as anomalous only while the episode is active, and windows that
        # reach back into a finished episode are not judged again.
        shortest = min([*hits, *([self.fired_window] if self.fired_window else [])], default=0)
        close_upto = max(c.close_window_seconds, 4 * shortest)
        act = any(w <= close_upto and o >= c.close_min_count and o >= c.close_ratio * e for w, (o, e) in seen.items())
        if not act and (hit or self.fired_window) and c.close_min_count < c.min_count:
            # The scan judged only windows with >= min_count reports: the ones between close_min_count and it
            # keep an episode active too (what close_min_count says), and only then are worth an expectation.
            act = any(w <= close_upto and w not in seen and c.close_min_count <= (o := count(w)) < c.min_count
                      and o >= c.close_ratio * expected(w) for w in self.windows)
        hit = hit and act
        if hit:
            self.fired_window = shortest
        elif not act and self.fired_window:
            self.fired_window = 0
            self.episode_end = now
        streak = self.streak.update(hit, int(now // c.bucket_seconds))
        return Verdict.from_window_checks(streak, c.persistence, hit, act, best_ratio, why)

    def idle(self, now: float) -> bool:
        """Without new reports no evaluation from `now` on can be anomalous or change state: no episode, no
        streak, and fewer than `min_count` reports in the longest window."""
        c = self.cfg
        return (self.streak.length == 0 and not self.fired_window
                and self.count(now, self.windows[-1]) < c.min_count)

    # -- state ----------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"counter": self.counter.to_dict(), "other": self.other.to_dict(), "rate": self.rate,
                "other_rate": self.other_rate, "n": self.history_minutes,
                "last": self.last_minute, "streak": self.streak.to_dict(), "ring": self.ring.to_dict(),
                "other_ring": self.other_ring.to_dict(), "fired": self.fired_window,
                "episode_end": self.episode_end, "snaps": [list(s) for s in self.snaps]}

    @classmethod
    def from_dict(cls, d: dict[str, Any], config: OutageConfig | None = None) -> OutageDetector:
        det = cls(config)
        det.counter.load(d["counter"])
        det.other.load(d["other"])
        det.rate, det.other_rate, det.history_minutes = float(d["rate"]), float(d["other_rate"]), int(d["n"])
        det.last_minute = None if d["last"] is None else int(d["last"])
        det.streak.load(d["streak"])
        if "ring" in d:
            det.ring.load(d["ring"])
            det.other_ring.load(d["other_ring"])
        det.fired_window = int(d.get("fired", 0))
        det.episode_end = float(d.get("episode_end", 0.0))
        det.snaps = [(int(m), float(r), float(o), int(n)) for m, r, o, n in d.get("snaps", [])]
        return det

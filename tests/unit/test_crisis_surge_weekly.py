"""Complaint surges with weekly seasonality (issue 24): a rush that comes every Monday is no surge, a real surge
still is, weekdays that differ by noise keep the daily profile, and checkpoints from before load."""

from __future__ import annotations

import json
import random

from services.classify.crisis.config import SurgeConfig
from services.classify.crisis.surge import SurgeDetector
from tests.unit.test_crisis_surge import T0, _feed, _fired_at  # T0 is a Monday 00:00 UTC

DAY = 86400


def _weeks(det: SurgeDetector, days: int) -> SurgeDetector:
    """`days` days of 60 mentions an hour, 20% complaints, except every Monday 08:00-11:00: 96 an hour, half of
    them complaints (the weekend's problems reported on Monday morning); then day `days` up to 08:00. The
    detector is evaluated at each day's end, as the engine's ticks would."""
    for day in range(days):
        if day % 7 == 0:
            _feed(det, day, 0, 8, 60, 0.2)
            _feed(det, day, 8, 11, 96, 0.5)
            _feed(det, day, 11, 24, 60, 0.2)
        else:
            _feed(det, day, 0, 24, 60, 0.2)
        det.evaluate(T0 + (day + 1) * DAY - 1)
    _feed(det, days, 0, 8, 60, 0.2)
    return det


def test_a_monday_morning_rush_that_comes_every_week_is_no_surge_once_a_week_is_known():
    det = _weeks(SurgeDetector(), 14)
    _feed(det, 14, 8, 11, 96, 0.5)
    assert _fired_at(det, 14, 8, 11) is None
    assert det.weekly_factor(T0 + 14 * DAY + 11 * 3600 - 1, 3.0) > 1.8   # Mondays expect ~2x the complaints
    # Without weekly seasonality the same rush is a surge every Monday.
    daily = _weeks(SurgeDetector(SurgeConfig(weekly=False)), 14)
    _feed(daily, 14, 8, 11, 96, 0.5)
    assert _fired_at(daily, 14, 8, 11) is not None


def test_a_real_surge_on_top_of_the_monday_rush_is_still_a_surge():
    det = _weeks(SurgeDetector(), 14)
    _feed(det, 14, 8, 11, 144, 96 / 144)   # complaints 2x the usual Monday rush, the rest unchanged
    fired = _fired_at(det, 14, 8, 11)
    assert fired is not None and fired <= 1.0, fired
    assert "weekday-adjusted" in det.evaluate(T0 + 14 * DAY + 10 * 3600).reasons[0]


def test_a_2x_surge_on_an_ordinary_weekday_is_found_sooner_than_against_the_daily_mean():
    # The daily mean of 08:00-11:00 carries Monday's rush: against it a Wednesday's 2x surge at those hours
    # looks like 1.4x. Against Wednesdays (the weekly profile) it is 2x and fires within its 3 h window.
    det = _weeks(SurgeDetector(), 16)      # day 16 is a Wednesday
    _feed(det, 16, 8, 14, 72, 24 / 72)     # complaints 12 -> 24 an hour, the other 48 unchanged
    fired = _fired_at(det, 16, 8, 14)
    assert fired is not None and fired <= 3.0, fired
    assert det.weekly_factor(T0 + 16 * DAY + 11 * 3600, 3.0) < 0.8   # Wednesdays expect fewer than the mean
    daily = _weeks(SurgeDetector(SurgeConfig(weekly=False)), 16)
    _feed(daily, 16, 8, 14, 72, 24 / 72)
    late = _fired_at(daily, 16, 8, 14)   # a steady brand's share makes even the daily mean see it, hours later
    assert late is None or late >= fired + 2.0, (late, fired)


def test_weekdays_that_differ_only_by_noise_keep_the_daily_profile():
    rng = random.Random(3)
    det = SurgeDetector()
    for day in range(21):
        for h in range(24):
            n = 40 + rng.randint(-6, 6)
            _feed(det, day, h, h + 1, n, 0.2)
        det.evaluate(T0 + (day + 1) * DAY - 1)
    for day in range(21, 28):
        f = det.weekly_factor(T0 + day * DAY + 15 * 3600, 3.0)
        assert 0.9 < f < 1.1, (day, f)


def test_the_weekly_profile_waits_for_seven_days_of_history():
    det = _weeks(SurgeDetector(), 6)
    assert det.weekly_factor(T0 + 6 * DAY + 7 * 3600, 3.0) == 1.0


def test_the_weekly_profile_is_checkpointed_with_bounded_size():
    det = _weeks(SurgeDetector(), 14)
    d = json.loads(json.dumps(det.to_dict()))
    assert len(d["week"]["c"]) == len(d["week"]["t"]) == len(d["week"]["n"]) == 168
    again = SurgeDetector.from_dict(d)
    t = T0 + 14 * DAY + 11 * 3600 - 1
    assert again.weekly_factor(t, 3.0) == det.weekly_factor(t, 3.0)
    longer = _weeks(SurgeDetector(), 28)
    assert len(json.dumps(longer.to_dict()["week"])) < 1.3 * len(json.dumps(d["week"]))   # no growth with weeks


def test_a_checkpoint_saved_before_weekly_seasonality_loads_and_rebuilds_the_profile_from_its_buckets():
    det = _weeks(SurgeDetector(), 14)
    old = det.to_dict()
    del old["week"]    # the state the previous code saved: buckets, totals, seen, first, streak
    restored = SurgeDetector.from_dict(json.loads(json.dumps(old)))
    assert restored.week_n == [0] * 168
    _feed(restored, 14, 8, 11, 96, 0.5)
    assert _fired_at(restored, 14, 8, 11) is None   # the kept week of buckets already shows the Monday rush
    assert restored.weekly_factor(T0 + 14 * DAY + 11 * 3600 - 1, 3.0) > 1.5

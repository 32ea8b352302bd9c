"""Complaint surges over hours vs the same hours of previous days (issue 16): detected, warm-up, calm."""

from __future__ import annotations

import json
from fractions import Fraction

from bench.backtest_scenarios import generate
from services.classify.crisis.backtest import parse_lines, run_backtest, score_rows
from services.classify.crisis.surge import SurgeDetector
from services.common.timeutil import epoch

T0 = 1_793_577_600.0


def backtest(scenario: str, seed: int = 7):
    rows = sorted(parse_lines(json.dumps(r) for r in generate(scenario, seed)),
                  key=lambda r: epoch(r.mention.created_at))
    return run_backtest(score_rows(rows, None))


def test_a_2_5x_afternoon_complaint_surge_opens_one_surge_incident_within_2_hours():
    result = backtest("surge")
    opened = result.opened()
    assert [e["kind"] for e in opened] == ["COMPLAINT_SURGE"]
    assert "2026-11-05T12:00:00Z" <= opened[0]["at"] <= "2026-11-05T14:00:00Z"
    assert "previous" in opened[0]["reasons"][0]


def test_calm_brands_big_and_small_open_nothing():
    assert backtest("calm", seed=11).opened() == []


def test_a_brand_without_history_is_in_warm_up():
    det = SurgeDetector()
    for k in range(500):   # a first day of coverage full of complaints
        det.add(T0 + k * 60, True)
    assert not any(det.evaluate(T0 + k * 600).firing for k in range(50))


def test_surge_reasons_name_its_dominant_terms_and_intents_vs_the_baseline():
    opened = backtest("surge").opened()[0]
    about = [r for r in opened["reasons"] if r.startswith("about: ")]
    assert about, opened["reasons"]
    assert "complaint" in about[0] and "usual" in about[0]
    assert any(w in about[0] for w in ("cancelled", "delayed", "flight", "rebooking"))


def _feed(det: SurgeDetector, day: int, hour_from: float, hour_to: float, per_hour: int, complaints: float) -> None:
    """`per_hour` mentions an hour, evenly spaced, of which a share `complaints` are complaints."""
    n = int((hour_to - hour_from) * per_hour)
    share = Fraction(complaints).limit_denominator(1000)
    for k in range(n):
        t = T0 + day * 86400 + hour_from * 3600 + k * 3600 / per_hour
        det.add(t, int((k + 1) * share) > int(k * share))   # an exact share, spread evenly


def _fired_at(det: SurgeDetector, day: int, hour_from: float, hour_to: float) -> float | None:
    for k in range(int((hour_to - hour_from) * 12)):
        t = T0 + day * 86400 + hour_from * 3600 + (k + 1) * 300 - 1
        if det.evaluate(t).firing:
            return (t - (T0 + day * 86400 + hour_from * 3600)) / 3600
    return None


def test_a_brand_whose_traffic_is_mostly_complaints_can_still_surge():
    # An airline: 60% of its mentions are complaints; on a storm afternoon complaints rise 2.4x, the rest do
    # not. The complaints' share only goes 60% -> 78% (1.3x), but their odds 1.5 -> 3.6 (2.4x): a surge.
    det = SurgeDetector()
    for day in range(3):
        _feed(det, day, 0, 24, 60, 0.6)
    _feed(det, 3, 0, 12, 60, 0.6)
    _feed(det, 3, 12, 16, 60 + 36 * 14 // 10, (36 * 24 / 10) / (60 + 36 * 14 / 10))
    fired = _fired_at(det, 3, 12, 16)
    assert fired is not None and fired <= 2.0, fired


def test_a_campaign_that_doubles_all_traffic_is_no_surge():
    det = SurgeDetector()
    for day in range(3):
        _feed(det, day, 0, 24, 60, 0.2)
    _feed(det, 3, 0, 12, 60, 0.2)
    _feed(det, 3, 12, 18, 180, 0.2)   # 3x the mentions, the same share of complaints
    assert _fired_at(det, 3, 12, 18) is None
    # ... while the same complaints without the rest of the campaign are one
    det2 = SurgeDetector()
    for day in range(3):
        _feed(det2, day, 0, 24, 60, 0.2)
    _feed(det2, 3, 0, 12, 60, 0.2)
    _feed(det2, 3, 12, 18, 84, 36 / 84)   # complaints 12 -> 36 an hour, the other 48 unchanged
    assert _fired_at(det2, 3, 12, 18) is not None


def test_a_quiet_day_on_which_the_complaints_share_doubles_is_a_surge():
    # Day-to-day volume noise moves complaints and the rest together; the share cancels it. A day with 30%
    # less traffic whose complaint share doubles has only ~1.4x the usual complaints, and is a surge.
    det = SurgeDetector()
    for day in range(3):
        _feed(det, day, 0, 24, 200, 0.1)
    _feed(det, 3, 0, 12, 140, 0.1)
    _feed(det, 3, 12, 16, 140, 0.2)
    assert _fired_at(det, 3, 12, 16) is not None


def test_binomial_tail_matches_the_exact_sum_and_overdispersion_weakens_it():
    import math

    from services.classify.crisis.stats import binom_sf

    def exact(k: int, n: int, p: float) -> float:
        return sum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(k, n + 1))

    for k, n, p in ((10, 100, 0.05), (54, 294, 0.109), (13, 54, 0.109), (30, 30, 0.5)):
        assert math.isclose(binom_sf(k, n, p), exact(k, n, p), rel_tol=1e-9)
    assert binom_sf(54, 294, 0.109, overdispersion=0.002) > 10 * binom_sf(54, 294, 0.109)
    assert binom_sf(5, 100, 0.1) == 1.0   # at or below the mean: not significant

"""Outage cluster detector: known answers for cold start, noise, a handful of reports, an adaptive baseline."""

from __future__ import annotations

import random
from collections.abc import Callable

from services.classify.crisis.outage import OutageDetector

T0 = 1_793_577_600.0


def feed(det: OutageDetector, start: float, minutes: float, per_minute: Callable[[float], float],
         other: float = 0.0) -> list[float]:
    """`per_minute(t)` outage reports and `other` ordinary mentions a minute, evaluated every 10 s; the firings."""
    fired, carry, carry_other = [], 0.0, 0.0
    for step in range(int(minutes * 6)):
        t = start + step * 10
        carry += per_minute(t) / 6
        n = int(carry)
        carry -= n
        for i in range(n):
            det.add(t + 10 * i / max(n, 1))
        carry_other += other / 6
        k = int(carry_other)
        carry_other -= k
        for i in range(k):
            det.add_other(t + 10 * i / k)
        if det.evaluate(t + 9.99).firing:
            fired.append(t + 9.99)
    return fired


def test_intent_threshold_decides_what_counts():
    det = OutageDetector()
    assert det.is_outage_report({"outage_report": 0.7})
    assert not det.is_outage_report({"outage_report": 0.3, "complaint": 0.9})


def test_cold_start_burst_fires_within_a_minute():
    det = OutageDetector()   # no history at all: the prior rate is the baseline
    fired = feed(det, T0, 5, lambda t: 30)
    assert fired and fired[0] - T0 <= 60


def test_background_noise_never_fires():
    det = OutageDetector()
    # One report every ~7 minutes (a model's false positives, 2% of a brand's ~7.5 mentions a minute) for
    # two days: the expectation is the brand's share of outage reports among its mentions.
    assert _stream(det, T0, 2 * 1440, 7.5 * 1440, lambda d: 0.02, seed=7) == []


def test_a_handful_of_reports_is_not_an_outage():
    det = OutageDetector()
    # ~0.1 stray outage scores a minute among ~5 mentions a minute (the expectation is the brand's own rate
    # shrunk towards the pooled share of its volume: a brand's outage reports come with its other traffic)
    for m in range(600):
        for k in range(5):
            det.add_other(T0 + m * 60 + k * 12)
    feed(det, T0, 600, lambda t: 0.1)
    t = T0 + 600 * 60
    for i in range(4):
        det.add(t + i * 10)
    assert not any(det.evaluate(t + s).firing for s in range(0, 400, 10))


def test_threshold_adapts_to_a_brand_that_always_gets_outage_reports():
    # An ISP: 3 reports a minute among its ~100 mentions a minute is a normal day, from its first minute on (a
    # brand's first hours are judged against the share of outage reports pooled over brands, 2% +- 1%: a new
    # brand whose mentions are nothing but outage reports is an outage, test_crisis_outage_firsthour.py).
    det = OutageDetector()
    assert feed(det, T0, 12 * 60, lambda t: 3, other=97) == []
    assert feed(det, T0 + 12 * 3600, 10, lambda t: 6, other=97) == []   # 2x normal is not a cluster
    onset = T0 + 12 * 3600 + 600
    fired = feed(det, onset, 3, lambda t: 40, other=97)
    assert fired and fired[0] - onset <= 60


def test_stays_active_after_the_peak_then_goes_inactive():
    det = OutageDetector()
    feed(det, T0, 120, lambda t: 0.05)
    feed(det, T0 + 7200, 5, lambda t: 40)
    assert det.evaluate(T0 + 7200 + 5 * 60 + 30).active        # reports still in the 5-min window
    assert not det.evaluate(T0 + 7200 + 20 * 60).active        # window empty: inactive


def test_expected_reports_scale_with_volume_so_a_campaign_is_not_an_outage():
    det = OutageDetector()
    for step in range(8 * 360):      # 8 h: 10 mentions a minute, one in fifty looks like an outage report
        t = T0 + step * 10
        det.add_other(t)
        det.add_other(t + 5)
        if step % 30 == 0:
            det.add(t)
        det.evaluate(t + 9)
    start = T0 + 8 * 3600
    fired = []
    for step in range(360):          # a campaign: 5x the volume, and 5x the false outage reports with it
        t = start + step * 10
        for k in range(8):
            det.add_other(t + k)
        if step % 6 == 0:
            det.add(t)
        fired.append(det.evaluate(t + 9).firing)
    assert not any(fired)
    onset = start + 3600
    got = feed(det, onset, 2, lambda t: 30)   # a real outage on top of it
    assert got and got[0] - onset <= 60


def _stream(det: OutageDetector, start: float, minutes: int, per_day: float, share: Callable[[int], float],
            seed: int, extra: Callable[[float], int] = lambda t: 0) -> list[float]:
    """A brand's mentions (Poisson, `per_day`), a `share(day)` of them stray outage scores, plus `extra(t)`
    outage reports per 10 s; evaluated every 10 s; returns the times it fired."""
    rng = random.Random(seed)
    fired = []
    lam = per_day / 8640.0
    for step in range(minutes * 6):
        t = start + step * 10
        n = 0
        p, x = rng.random(), 1.0
        threshold = 2.718281828459045 ** -lam
        while x * p > threshold:   # Poisson by multiplication (lam is small per 10 s)
            n += 1
            x *= p
            p = rng.random()
        day = int((t - T0) // 86400)
        for i in range(n):
            if rng.random() < share(day):
                det.add(t + i * 10 / (n + 1))
            else:
                det.add_other(t + i * 10 / (n + 1))
        for i in range(extra(t)):
            det.add(t + 1 + i)
        if det.evaluate(t + 9.99).firing:
            fired.append(t + 9.99)
    return fired


def test_sparse_brand_ten_reports_in_an_hour_open_within_30_minutes():
    # Issue 24's ice storm: a utility with ~4 mentions a day gets ~10 outage reports an hour. Its own rate
    # is tiny, so 10 an hour is thousands of times it, and the 3-report safety floor is the only floor.
    det = OutageDetector()
    assert _stream(det, T0, 5 * 1440, 4, lambda d: 0.02, seed=1) == []
    onset = T0 + 5 * 86400 + 9 * 3600
    reports = [onset + k * 360 + 37 for k in range(10)]   # one every 6 minutes
    fired = _stream(det, onset, 60, 4, lambda d: 0.02, seed=2,
                    extra=lambda t: sum(1 for r in reports if t <= r < t + 10))
    assert fired and fired[0] - reports[0] <= 30 * 60


def test_two_stray_reports_on_a_sparse_brand_do_not_page():
    det = OutageDetector()
    _stream(det, T0, 3 * 1440, 4, lambda d: 0.02, seed=3)
    t = T0 + 3 * 86400
    det.add(t)
    det.add(t + 20)
    assert not any(det.evaluate(t + 30 + s).firing for s in range(0, 3600, 10))


def test_slow_outage_of_30_reports_over_60_minutes_opens():
    det = OutageDetector()   # 1,000 mentions a day, 2% stray outage scores (20 a day)
    assert _stream(det, T0, 2 * 1440, 1000, lambda d: 0.02, seed=4) == []
    onset = T0 + 2 * 86400 + 14 * 3600
    fired = _stream(det, onset, 70, 1000, lambda d: 0.02, seed=5,
                    extra=lambda t: 1 if onset <= t < onset + 3600 and int(t - onset) % 120 == 0 else 0)
    assert fired and fired[0] - onset <= 60 * 60


def test_large_brand_ordinary_stray_outage_scores_never_fire():
    # 30,000 mentions a day, 1-4% of them stray outage scores, the share changing from day to day.
    det = OutageDetector()
    shares = [0.01, 0.04, 0.02, 0.035]
    assert _stream(det, T0, 4 * 1440, 30_000, lambda d: shares[d % 4], seed=6) == []

"""Outage cluster detector: known answers for cold start, noise, a handful of reports, an adaptive baseline."""

from __future__ import annotations

from collections.abc import Callable

from services.classify.crisis.outage import OutageDetector

T0 = 1_793_577_600.0


def feed(det: OutageDetector, start: float, minutes: float, per_minute: Callable[[float], float]) -> list[float]:
    fired, carry = [], 0.0
    for step in range(int(minutes * 6)):
        t = start + step * 10
        carry += per_minute(t) / 6
        n = int(carry)
        carry -= n
        for i in range(n):
            det.add(t + 10 * i / max(n, 1))
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
    # One report every ~7 minutes (a model's false positives) for two days.
    assert feed(det, T0, 2 * 1440, lambda t: 0.15) == []


def test_a_handful_of_reports_is_not_an_outage():
    det = OutageDetector()
    feed(det, T0, 600, lambda t: 0.1)
    t = T0 + 600 * 60
    for i in range(4):
        det.add(t + i * 10)
    assert not any(det.evaluate(t + s).firing for s in range(0, 400, 10))


def test_threshold_adapts_to_a_brand_that_always_gets_outage_reports():
    det = OutageDetector()
    assert feed(det, T0, 12 * 60, lambda t: 3) == []     # an ISP: 3 reports a minute is a normal day
    assert feed(det, T0 + 12 * 3600, 10, lambda t: 6) == []   # 2x normal is not a cluster
    onset = T0 + 12 * 3600 + 600
    fired = feed(det, onset, 3, lambda t: 40)
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

"""Volume spike detector on synthetic series with known answers (cold start, seasonality, bursts, ramps)."""

from __future__ import annotations

import json
from collections.abc import Callable

from services.classify.crisis.config import SpikeConfig
from services.classify.crisis.spike import SpikeDetector
from services.classify.crisis.stats import nbinom_sf

T0 = 1_793_577_600.0  # Monday 00:00 UTC


def feed(det: SpikeDetector, start: float, minutes: float, per_minute: Callable[[float], float]) -> list[float]:
    """Evenly spaced mentions at the given rate; evaluates every 10 s; returns the times it fired."""
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


def test_tail_probability_matches_known_values():
    # Poisson(2): P(X >= 5) = 0.05265; P(X >= 10) = 4.65e-5.
    assert abs(nbinom_sf(5, 2.0) - 0.052653) < 1e-5
    assert abs(nbinom_sf(10, 2.0) - 4.6498e-5) < 1e-8
    # Overdispersion makes the same count less surprising.
    assert nbinom_sf(10, 2.0, dispersion=0.5) > nbinom_sf(10, 2.0)
    assert nbinom_sf(1, 2.0) == 1.0


def test_steady_volume_never_fires_and_a_10x_burst_fires_within_a_minute():
    det = SpikeDetector()
    assert feed(det, T0, 8 * 60, lambda t: 10) == []
    onset = T0 + 8 * 3600
    fired = feed(det, onset, 5, lambda t: 100)
    assert fired and fired[0] - onset <= 60


def test_cold_start_gives_no_verdict_then_conservative_thresholds():
    det = SpikeDetector()
    # No baseline in the first minutes: even a burst is not judged (there is no "normal" yet).
    assert feed(det, T0, 10, lambda t: 10 if t < T0 + 300 else 200) == []
    det = SpikeDetector()
    feed(det, T0, 30, lambda t: 10)
    assert det.history_minutes < SpikeConfig().warm_minutes
    # 4x would be a spike for a warm baseline, but not before warm_minutes of history...
    assert feed(det, T0 + 1800, 3, lambda t: 40) == []
    warm = SpikeDetector()
    feed(warm, T0, 7 * 60, lambda t: 10)
    assert feed(warm, T0 + 7 * 3600, 3, lambda t: 40) != []
    # ...while a 15x burst fires even in cold start.
    cold = SpikeDetector()
    feed(cold, T0, 30, lambda t: 10)
    assert feed(cold, T0 + 1800, 3, lambda t: 150) != []


def _lunch_peak(t: float) -> float:
    hour = (t % 86400) / 3600
    return 24.0 if 12 <= hour < 13 else 6.0


def test_daily_peak_that_is_normal_does_not_fire_once_learned():
    det = SpikeDetector()
    day1 = feed(det, T0, 1440, _lunch_peak)
    # The first day has no seasonal memory: a sudden 4x lunch peak is a spike then.
    assert day1
    later = feed(det, T0 + 86400, 3 * 1440, _lunch_peak)
    assert later == []
    assert det.hour_factor[12] > 2 * det.hour_factor[10]
    # A burst at lunchtime on top of the learned peak still fires.
    onset = T0 + 4 * 86400 + 12 * 3600 + 600
    fired = feed(det, onset, 3, lambda t: 10 * _lunch_peak(t))
    assert fired and fired[0] - onset <= 60


def test_smooth_campaign_ramp_does_not_fire():
    det = SpikeDetector()
    feed(det, T0, 8 * 60, lambda t: 10)
    start = T0 + 8 * 3600

    def ramp(t: float) -> float:  # 10/min -> 40/min over 3 hours, then holds
        return 10 + 30 * min(1.0, (t - start) / (3 * 3600))

    assert feed(det, start, 6 * 60, ramp) == []


def test_quiet_brand_with_a_handful_of_posts_does_not_fire():
    det = SpikeDetector()
    feed(det, T0, 1440, lambda t: 0.02)
    t = T0 + 86400
    for i in range(4):
        det.add(t + i * 15)
    assert not any(det.evaluate(t + s).firing for s in range(0, 300, 10))


def test_state_roundtrip_keeps_the_baseline():
    det = SpikeDetector()
    feed(det, T0, 8 * 60, lambda t: 10)
    restored = SpikeDetector.from_dict(json.loads(json.dumps(det.to_dict())))
    assert restored.expected_per_minute(T0 + 8 * 3600) == det.expected_per_minute(T0 + 8 * 3600)
    onset = T0 + 8 * 3600
    assert feed(restored, onset, 2, lambda t: 100) == feed(det, onset, 2, lambda t: 100)


def test_hour_and_weekday_slots_are_what_gmtime_gives() -> None:
    import random
    import time

    from services.classify.crisis.spike import _slots

    rng = random.Random(3)
    minutes = [0, -1, 59, 60, 1439, 1440, -1441, *(rng.randrange(-10**8, 10**8) for _ in range(5000))]
    for m in minutes:
        tm = time.gmtime(m * 60)
        assert _slots(m) == (tm.tm_hour, tm.tm_wday), m

"""Viral complaint detector: velocity from engagement snapshots, reach weighting, adaptive threshold."""

from __future__ import annotations

import random

from services.classify.crisis.viral import ViralDetector

T0 = 1_793_577_600.0


def grow(det: ViralDetector, pid: str, start: float, per_minute: float, updates: int, followers: int = 500,
         eligible: bool = True, every: float = 20.0) -> list[bool]:
    """Snapshots of a post growing at `per_minute` weighted engagement; returns firing after each one."""
    out = []
    for k in range(updates):
        t = start + k * every
        det.observe(pid, t, per_minute * (t - start) / 60, followers, eligible)
        out.append(det.evaluate(t).firing)
    return out


def warm_brand(det: ViralDetector, usual: float, posts: int = 200, seed: int = 1) -> float:
    rng = random.Random(seed)
    t = T0
    for i in range(posts):
        rate = usual * rng.lognormvariate(0, 0.5)
        for k in range(3):
            det.observe(f"p{i}", t + k * 120, rate * k * 2, 300, eligible=False)
        t += 30
    return t + 600


def test_cold_start_uses_a_conservative_absolute_bar():
    det = ViralDetector()
    assert not any(grow(det, "a", T0, 25, 10))            # 25/min x reach weight ~1.9: under the cold bar
    fired = grow(det, "b", T0, 400, 4)
    assert fired == [False, False, True, True]             # fires on the 2nd fast snapshot (persistence 2)


def test_positive_post_exploding_is_not_a_complaint():
    det = ViralDetector()
    assert not any(grow(det, "happy", T0, 5000, 10, eligible=False))


def test_reach_weights_velocity():
    det = ViralDetector()
    small = det.observe("s", T0, 0, 10, True), det.observe("s", T0 + 60, 100, 10, True)
    big = det.observe("b", T0, 0, 1_000_000, True), det.observe("b", T0 + 60, 100, 1_000_000, True)
    assert big[1] > 2 * small[1] > 0


def test_threshold_adapts_to_the_brands_usual_engagement():
    quiet, busy = ViralDetector(), ViralDetector()
    t1 = warm_brand(quiet, usual=2)
    t2 = warm_brand(busy, usual=60)
    assert busy.threshold() > 5 * quiet.threshold()
    # 150/min is viral for a brand whose posts usually grow 2/min, ordinary for one at 60/min.
    assert any(grow(quiet, "x", t1, 150, 6))
    assert not any(grow(busy, "x", t2, 150, 6))
    assert any(grow(busy, "y", t2, 5000, 6))


def test_velocity_uses_creation_as_first_snapshot():
    det = ViralDetector()
    v = det.observe("new", T0 + 120, 600, 1000, True, created_at=T0)
    assert v > 300   # 600 in 2 minutes, weighted by reach

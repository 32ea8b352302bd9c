"""Complaint surges over hours vs the same hours of previous days (issue 16): detected, warm-up, calm."""

from __future__ import annotations

import json

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

"""The capacity plan's arithmetic (bench/capacity.py; docs/scaling.md, "Capacity plan")."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bench.capacity import (
    PlanSettings,
    RuntimeFigure,
    choose_partitions,
    figures_from_results,
    parity_verdicts,
    partitions_for,
    plan,
    ramp,
    replicas_for,
    step_for,
)
from bench.capacity import main as capacity_main
from bench.results import write_results

ISSUE_RATE = RuntimeFigure("torch-bf16", 105.0, 2.0, cold_start_s=8.0)   # issue 27: 105 tweets/s on 2 cores


def test_per_core_rate_and_cpu_seconds_per_thousand_mentions() -> None:
    assert ISSUE_RATE.per_core == pytest.approx(52.5)
    assert ISSUE_RATE.cpu_seconds_per_1000 == pytest.approx(1000 / 52.5)   # 19.0 CPU-s


def test_a_brand_with_a_million_mentions_a_day_fits_the_default_six_partitions() -> None:
    p = plan(ISSUE_RATE, PlanSettings(), [1_000_000])
    lp = p.loads[0]
    assert lp.average_per_s == pytest.approx(1_000_000 / 86_400)          # 11.6 /s
    assert lp.peak_per_s == pytest.approx(10 * 1_000_000 / 86_400)        # 116 /s
    assert p.pod_planned_per_s == pytest.approx(105 * 0.7)                # 73.5 /s per 2-core pod at 70%
    assert lp.pods_peak == 2                                              # 116 / 73.5 = 1.6
    assert (lp.partitions, lp.hpa_min, lp.hpa_max) == (6, 2, 6)
    assert lp.lag_target == round(73.5 * 5)                               # 5 s of a pod's planned work


def test_a_vendor_with_a_hundred_million_a_day_needs_partitions_for_its_crisis_peak() -> None:
    lp = plan(ISSUE_RATE, PlanSettings(), [100_000_000]).loads[0]
    assert lp.pods_peak == math.ceil(10 * 100_000_000 / 86_400 / 73.5)    # 158
    assert lp.partitions >= lp.replicas_peak >= lp.pods_peak
    assert lp.replicas_peak <= math.ceil(lp.pods_peak * 1.1)              # the split wastes at most 10%
    assert lp.hpa_max == lp.partitions
    assert lp.hpa_min >= math.ceil(100_000_000 / 86_400 / 73.5)           # the average load, 16 pods


def test_a_faster_runtime_needs_fewer_pods_and_less_headroom_needs_fewer_still() -> None:
    slow = plan(ISSUE_RATE, PlanSettings(), [100_000_000]).loads[0]
    fast = plan(RuntimeFigure("onnx-int8", 315.0, 2.0), PlanSettings(), [100_000_000]).loads[0]
    assert fast.pods_peak == math.ceil(11_574.07 / (315 * 0.7)) == 53
    flat_out = plan(ISSUE_RATE, PlanSettings(utilisation=1.0), [100_000_000]).loads[0]
    assert flat_out.pods_peak == math.ceil(11_574.07 / 105) < slow.pods_peak


def test_partition_counts_are_divisor_rich_and_at_least_the_minimum() -> None:
    assert partitions_for(1) == 6
    assert partitions_for(7) == 12
    assert partitions_for(53) == 60
    assert partitions_for(11, minimum=24) == 24
    assert partitions_for(1441) == 1440 + 480 and partitions_for(2000) == 2400


def test_a_replica_owns_whole_partitions_so_an_uneven_split_costs_replicas() -> None:
    # 53 pods' worth of load over 60 partitions: a pod cannot take two partitions' share, so one each.
    assert replicas_for(53 * 100.0, 100.0, 60) == 60
    assert replicas_for(53 * 100.0, 100.0, 120) == 60     # two each
    assert replicas_for(100.0, 100.0, 6) == 1
    assert replicas_for(700.0, 100.0, 6) is None          # one partition's share (117/s) is more than a pod
    p, r = choose_partitions(53 * 100.0, 100.0)
    assert (p, r) == (60, 60)                              # no ladder count up to 4x does better


def test_the_ramp_adds_pods_after_the_window_and_their_cold_start() -> None:
    # 2 pods of 110/s, crisis of 400/s; +2 pods at 60 s, scoring 10 s later: 70 s of a 180/s shortfall.
    r = ramp(start=2, target=4, step=2, period_s=120, window_s=60, cold_start_s=10, peak_per_s=400, pod_rate=110)
    assert r.seconds == pytest.approx(70)
    assert r.backlog == pytest.approx(180 * 70)
    assert r.drain_s == pytest.approx(180 * 70 / 40)      # 4 x 110 - 400 spare
    slow = ramp(start=2, target=6, step=2, period_s=120, window_s=60, cold_start_s=10, peak_per_s=600, pod_rate=110)
    assert slow.seconds == pytest.approx(190)             # the second step comes one period later
    assert slow.backlog == pytest.approx((600 - 220) * 70 + (600 - 440) * 120)


def test_the_ramp_never_drains_when_the_target_cannot_carry_the_peak() -> None:
    assert ramp(2, 4, 2, 120, 60, 10, 400, 100).drain_s is None


def test_the_recommended_step_reaches_the_peak_within_the_target() -> None:
    assert step_for(2, 60, period_s=120, window_s=60, cold_start_s=10, within_s=120) == 58   # one step
    assert step_for(2, 60, period_s=30, window_s=0, cold_start_s=10, within_s=120) == 15     # 4 steps
    assert step_for(6, 6, 120, 60, 10, 120) == 0


def test_figures_come_from_the_staged_worker_loop_where_measured_else_the_best_batch() -> None:
    doc = {"figures": {
        "threads": 2,
        "rows": [{"runtime": "torch-fp32", "batch": 32, "mentions_per_s": 60.0},
                 {"runtime": "torch-fp32", "batch": 128, "mentions_per_s": 70.0},
                 {"runtime": "onnx-int8", "batch": 64, "mentions_per_s": 200.0}],
        "staged": [{"path": "sequential", "runtime": "torch-fp32", "max_batch": 32, "mentions_per_s": 40.0},
                   {"path": "staged", "runtime": "torch-fp32", "max_batch": 32, "mentions_per_s": 65.0}],
        "cold_start": [{"config": "onnx:int8", "runtime": "onnx-int8", "cold_start_s": 6.5},
                       {"config": "torch:fp32", "runtime": "torch-fp32", "cold_start_s": None}],
    }}
    figs = {f.runtime: f for f in figures_from_results(doc)}
    assert figs["torch-fp32"].mentions_per_s == 65.0 and "staged" in figs["torch-fp32"].source
    assert figs["torch-fp32"].cold_start_s is None
    assert figs["onnx-int8"].mentions_per_s == 200.0 and figs["onnx-int8"].cold_start_s == 6.5
    assert all(f.cores == 2 for f in figs.values())


def test_make_capacity_plans_from_the_file_make_bench_wrote(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_results("classify", {"threads": 2, "rows": [
        {"runtime": "onnx-int8", "batch": 128, "mentions_per_s": 315.0}]}, tmp_path)
    assert capacity_main(["--from", str(path), "--cold-start", "8", "--parity", str(tmp_path / "none.json")]) == 0
    out = capsys.readouterr().out
    assert "Parity: not recorded (run `make parity`)" in out
    assert "| onnx-int8 | Scorer, batch 128 | 315 (2) | 158 | 6.3 |" in out
    assert "| onnx-int8 | 100,000,000 | 1,157 | 11,574 | 6 | 53 | 60 | 60 | 6..60 |" in out


def test_make_capacity_without_figures_says_what_to_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        capacity_main(["--from", str(tmp_path / "missing.json")])
    assert "make bench" in capsys.readouterr().err


def test_runtimes_that_fail_parity_are_marked_and_listed_after_those_that_pass(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def trial(name: str, agreement: float) -> dict:
        return {"name": name, "seconds": 1.0, "agreement": agreement, "sentiment_agreement": agreement,
                "intent_agreement": 1.0, "min_cosine": 0.99, "f1": {}}

    choices = {"choice:x": {"runtime": "onnx-fp32"},
               "parity:old": {"at": "2026-01-01T00:00:00Z", "trials": {"onnx-int8": trial("onnx-int8", 1.0)}},
               "parity:new": {"at": "2026-12-06T00:00:00Z", "trials": {
                   "torch-fp32": trial("torch-fp32", 1.0), "onnx-int8": trial("onnx-int8", 0.85)}}}
    verdicts, at = parity_verdicts(choices)
    assert at.startswith("2026-12-06") and verdicts["torch-fp32"] == "pass"
    assert verdicts["onnx-int8"].startswith("fail: label agreement 85.0% < 99%")
    parity_file = tmp_path / "runtime-choices.json"
    parity_file.write_text(json.dumps(choices))
    path = write_results("classify", {"threads": 2, "rows": [
        {"runtime": "onnx-int8", "batch": 128, "mentions_per_s": 140.0},
        {"runtime": "torch-int8", "batch": 128, "mentions_per_s": 110.0},
        {"runtime": "torch-fp32", "batch": 128, "mentions_per_s": 85.0}]}, tmp_path)
    assert capacity_main(["--from", str(path), "--parity", str(parity_file)]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "Scorer" in line]
    assert [r.split(" | ")[0] for r in rows] == ["| torch-fp32", "| onnx-int8", "| torch-int8"]
    assert rows[0].endswith("| pass |") and "| fail: label agreement 85.0%" in rows[1]
    assert rows[2].endswith("| not a parity candidate |")

"""`make capacity`: a capacity plan from measured figures (issue 27; method in docs/scaling.md, "Capacity plan").

Takes the classify throughput per runtime that `make bench` measured (its JSON results file, or `--rate
RUNTIME=MENTIONS_PER_S` with `--cores`) and the cold start, and prints per runtime: mentions/s per core,
CPU-seconds per 1,000 mentions, and for each daily volume (1M: one brand; 100M: a vendor) with a crisis peak
(10x the day's average): classify pods needed, the partition count that allows them, and the HPA settings
that follow, with how long the HPA's scale-up policy takes to reach the peak and the backlog built meanwhile.

The arithmetic is `plan()` and the functions it calls: pure, no I/O, unit-tested (tests/unit/test_bench_capacity.py).
Assumptions, all options: a pod has `--pod-cores` cores (2, as deploy/k8s/base/classify/statefulset.yaml) and
scores `pod_cores x mentions/s per core` (linear within a pod: measure with the pod's core count to make it
exact); it is planned to run at `--utilisation` (0.7) of that, the rest is headroom for rebalances, noisy
neighbours and uneven partitions; the crisis is a step from the average to the peak at once (the worst case
for the autoscaler).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

SECONDS_PER_DAY = 86_400
DEFAULT_LOADS = (1_000_000, 100_000_000)
# Partition counts rich in divisors, so that many replica counts split them evenly (docs/scaling.md); above the
# ladder, multiples of its last step.
PARTITION_LADDER = (6, 12, 24, 36, 48, 60, 72, 96, 120, 144, 180, 240, 360, 480, 720, 960, 1440)


@dataclass(frozen=True)
class RuntimeFigure:
    """One measured throughput: ``mentions_per_s`` scored by one process using ``cores`` cores."""
    runtime: str
    mentions_per_s: float
    cores: float
    source: str = ""
    cold_start_s: float | None = None

    @property
    def per_core(self) -> float:
        return self.mentions_per_s / self.cores

    @property
    def cpu_seconds_per_1000(self) -> float:
        return 1000.0 / self.per_core


@dataclass(frozen=True)
class PlanSettings:
    pod_cores: float = 2.0
    utilisation: float = 0.7            # run a pod at most at this share of its measured capacity
    peak_factor: float = 10.0           # crisis peak = this x the day's average
    min_replicas_floor: int = 2         # never fewer (a pod lost or restarting must not stop scoring)
    min_partitions: int = 6             # today's default (TRIAGE_CLASSIFY_PARTITIONS)
    lag_seconds: float = 5.0            # HPA lag target = this many seconds of one pod's planned work
    # The HPA's scale-up behaviour (deploy/k8s/base/classify/hpa.yaml today: +2 pods per 120 s, 60 s window).
    scale_up_pods: int = 2
    scale_up_period_s: float = 120.0
    scale_up_window_s: float = 60.0
    ramp_target_s: float = 120.0        # the scale-up policy recommended reaches the peak within this
    cold_start_s: float = 10.0          # used when the figure has none


@dataclass(frozen=True)
class Ramp:
    """The step from ``start`` replicas to ``target`` under an HPA policy of +``step`` pods per ``period_s``."""
    seconds: float                      # crisis start -> the last pod scoring
    backlog: float                      # mentions waiting at that moment
    drain_s: float | None               # then, at the peak with every pod flat out; None = never drains


@dataclass(frozen=True)
class LoadPlan:
    mentions_per_day: int
    average_per_s: float
    peak_per_s: float
    pods_average: int                   # CPU alone, at the planned utilisation
    pods_peak: int
    partitions: int                     # TRIAGE_CLASSIFY_PARTITIONS (HPA maxReplicas)
    replicas_peak: int                  # with the partitions split as evenly as they go
    hpa_min: int
    hpa_max: int
    lag_target: int                     # HPA averageValue of triage_consumer_lag_messages per replica
    ramp_current: Ramp                  # under PlanSettings' scale-up policy
    recommended_step: int               # pods per period that reach the peak within ramp_target_s
    ramp_recommended: Ramp


@dataclass(frozen=True)
class RuntimePlan:
    figure: RuntimeFigure
    pod_capacity_per_s: float           # measured, pod_cores cores
    pod_planned_per_s: float            # at the planned utilisation
    cold_start_s: float
    loads: list[LoadPlan] = field(default_factory=list)
    parity: str = "not recorded"        # `make parity`'s verdict on this CPU: pass, fail: why, not a candidate

    @property
    def passes_parity(self) -> bool:
        return self.parity == "pass"


def partitions_for(replicas: int, minimum: int = 6) -> int:
    """The smallest divisor-rich partition count >= ``replicas`` (and >= ``minimum``)."""
    need = max(replicas, minimum)
    for p in PARTITION_LADDER:
        if p >= need:
            return p
    step = PARTITION_LADDER[-1] - PARTITION_LADDER[-2]
    return PARTITION_LADDER[-1] + step * math.ceil((need - PARTITION_LADDER[-1]) / step)


def replicas_for(rate: float, pod_rate: float, partitions: int) -> int | None:
    """Replicas that carry ``rate`` when it is spread evenly over ``partitions`` (mentions are keyed by id) and a
    replica owns whole partitions: the busiest replica, with ceil(partitions / replicas) of them, must stay
    within ``pod_rate``. None if even one partition's share is more than a pod carries."""
    if rate <= 0:
        return 1
    per_replica = math.floor(pod_rate * partitions / rate + 1e-9)   # partitions one replica can carry
    if per_replica < 1:
        return None
    return math.ceil(partitions / per_replica)


def choose_partitions(peak_per_s: float, pod_rate: float, minimum: int = 6, waste: float = 0.1,
                      search: int = 4) -> tuple[int, int]:
    """(partitions, replicas at the peak): the smallest ladder count >= the pods the peak needs whose split costs
    at most ``waste`` more replicas than the CPU alone; failing that within ``search`` x those pods, the count
    that needs the fewest replicas (the smaller on a tie). A replica owns whole partitions, so 53 pods' worth of
    load over 60 partitions takes 60 replicas (one partition each: two would be too much for one pod)."""
    pods = max(1, math.ceil(peak_per_s / pod_rate))
    first = partitions_for(pods, minimum)
    best: tuple[int, int] | None = None
    candidates = [p for p in PARTITION_LADDER if first <= p <= max(first, search * pods)] or [first]
    for p in candidates:
        r = replicas_for(peak_per_s, pod_rate, p)
        if r is None:
            continue
        if r <= math.ceil(pods * (1 + waste)):
            return p, r
        if best is None or r < best[1]:
            best = (p, r)
    assert best is not None   # p >= pods always leaves a replica room for one partition
    return best


def ramp(start: int, target: int, step: int, period_s: float, window_s: float, cold_start_s: float,
         peak_per_s: float, pod_rate: float) -> Ramp:
    """Crisis at t=0 with ``start`` replicas; the HPA adds ``step`` pods at t = window, window + period, ...
    until ``target``; each new pod scores ``cold_start_s`` later. Pods work flat out (``pod_rate``) while a
    backlog waits."""
    if target <= start:
        excess = peak_per_s - start * pod_rate
        return Ramp(0.0, 0.0, None if excess > 0 else 0.0)
    steps = math.ceil((target - start) / max(1, step))
    events = [(window_s + i * period_s + cold_start_s, min(target, start + (i + 1) * step)) for i in range(steps)]
    t, replicas, backlog = 0.0, start, 0.0
    for at, now in events:
        backlog = max(0.0, backlog + (peak_per_s - replicas * pod_rate) * (at - t))
        t, replicas = at, now
    spare = replicas * pod_rate - peak_per_s
    drain = backlog / spare if spare > 0 else (0.0 if backlog == 0 else None)
    return Ramp(t, backlog, drain)


def step_for(start: int, target: int, period_s: float, window_s: float, cold_start_s: float, within_s: float) -> int:
    """Pods per scale-up period so that ``target`` replicas score within ``within_s`` of the crisis starting
    (at least the whole gap in one step when even the first step lands later than that)."""
    gap = target - start
    if gap <= 0:
        return 0
    periods = max(1, math.floor((within_s - window_s - cold_start_s) / period_s) + 1)
    return math.ceil(gap / periods)


def plan(figure: RuntimeFigure, settings: PlanSettings, loads: Sequence[int] = DEFAULT_LOADS) -> RuntimePlan:
    s = settings
    pod_capacity = figure.per_core * s.pod_cores
    planned = pod_capacity * s.utilisation
    cold = figure.cold_start_s if figure.cold_start_s is not None else s.cold_start_s
    result = RuntimePlan(figure, pod_capacity, planned, cold)
    for per_day in loads:
        avg = per_day / SECONDS_PER_DAY
        peak = avg * s.peak_factor
        pods_avg = max(1, math.ceil(avg / planned))
        pods_peak = max(1, math.ceil(peak / planned))
        partitions, replicas_peak = choose_partitions(peak, planned, s.min_partitions)
        replicas_avg = replicas_for(avg, planned, partitions) or partitions
        hpa_min = min(partitions, max(s.min_replicas_floor, replicas_avg))
        current = ramp(hpa_min, replicas_peak, s.scale_up_pods, s.scale_up_period_s, s.scale_up_window_s, cold,
                       peak, pod_capacity)
        step = max(1, step_for(hpa_min, replicas_peak, s.scale_up_period_s, s.scale_up_window_s, cold,
                               s.ramp_target_s))
        recommended = ramp(hpa_min, replicas_peak, step, s.scale_up_period_s, s.scale_up_window_s, cold, peak,
                           pod_capacity)
        result.loads.append(LoadPlan(
            mentions_per_day=per_day, average_per_s=avg, peak_per_s=peak, pods_average=pods_avg,
            pods_peak=pods_peak, partitions=partitions, replicas_peak=replicas_peak, hpa_min=hpa_min,
            hpa_max=partitions, lag_target=max(1, round(planned * s.lag_seconds)), ramp_current=current,
            recommended_step=step, ramp_recommended=recommended))
    return result


# ------------------------------------------------------------------------------------------------ input
def figures_from_results(doc: dict[str, Any]) -> list[RuntimeFigure]:
    """Per runtime, the figure a worker would reach, from a `make bench` results file: the staged worker loop
    (decode -> prepare -> model -> encode overlapped, what the Faust agent runs) where measured for that
    runtime, else the best `Scorer` row over the batch sizes; with that runtime's cold start."""
    figs = doc.get("figures", doc)
    cores = float(figs.get("threads") or figs.get("available_cpus") or 1)
    cold: dict[str, float] = {}
    for row in figs.get("cold_start") or []:
        if row.get("runtime") and row.get("cold_start_s") is not None:
            cold[row["runtime"]] = min(cold.get(row["runtime"], math.inf), float(row["cold_start_s"]))
    best: dict[str, tuple[float, str]] = {}
    for row in figs.get("rows") or []:
        rt, rate = row["runtime"], float(row["mentions_per_s"])
        if rate > best.get(rt, (0.0, ""))[0]:
            best[rt] = (rate, f"Scorer, batch {row['batch']}")
    for row in figs.get("staged") or []:
        if row.get("path") == "staged":
            best[row["runtime"]] = (float(row["mentions_per_s"]), f"staged worker loop, max batch {row['max_batch']}")
    return [RuntimeFigure(rt, rate, cores, source, cold.get(rt)) for rt, (rate, source) in best.items()]


def parity_verdicts(choices: dict[str, Any]) -> tuple[dict[str, str], str]:
    """Per runtime, the verdict of the newest `make parity` record in a model's ``runtime-choices.json``
    ("pass" or "fail: why"), and when it was recorded; ({}, "") when `make parity` never ran here."""
    from services.classify.encoder.runtime import Trial

    records = [v for k, v in choices.items() if k.startswith("parity:") and isinstance(v, dict) and v.get("trials")]
    if not records:
        return {}, ""
    newest = max(records, key=lambda r: str(r.get("at", "")))
    verdicts = {}
    for name, trial in newest["trials"].items():
        failures = Trial.from_json(trial).failures()
        verdicts[name] = "fail: " + "; ".join(failures) if failures else "pass"
    return verdicts, str(newest.get("at", ""))


def with_parity(plans: Sequence[RuntimePlan], verdicts: dict[str, str]) -> list[RuntimePlan]:
    """``plans`` with their parity verdicts, those that pass first (a runtime that fails parity is never chosen
    by TRIAGE_RUNTIME=auto, so its figure is not a plan), each group fastest first."""
    if verdicts:
        plans = [replace(p, parity=verdicts.get(p.figure.runtime, "not a parity candidate")) for p in plans]
    return sorted(plans, key=lambda p: (not p.passes_parity, -p.figure.per_core))


def parse_rate(text: str, cores: float, cold_start_s: float | None) -> RuntimeFigure:
    name, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"--rate {text!r}: expected RUNTIME=MENTIONS_PER_S")
    return RuntimeFigure(name, float(value), cores, "given", cold_start_s)


# ------------------------------------------------------------------------------------------------ output
def _n(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:,.1f}"


def _ramp(r: Ramp) -> str:
    drain = "never" if r.drain_s is None else f"{r.drain_s:.0f} s"
    return f"{r.seconds:.0f} s, backlog {r.backlog:,.0f}, drained in {drain}"


def _ramp_cells(lp: LoadPlan, s: PlanSettings) -> str:
    if lp.replicas_peak <= lp.hpa_min:
        return "min replicas carry the peak | -"
    return (f"{_ramp(lp.ramp_current)} | +{lp.recommended_step} pods / {s.scale_up_period_s:g} s: "
            f"{_ramp(lp.ramp_recommended)}")


def report(plans: Sequence[RuntimePlan], settings: PlanSettings, machine: dict[str, Any] | None = None) -> str:
    s = settings
    out = []
    if machine:
        flags = ", ".join(f for f, on in (machine.get("flags") or {}).items() if on) or "none of interest"
        out.append(f"Measured on: {machine.get('model_name', '?')} ({machine.get('isa', '?')}; {flags}), "
                   f"{machine.get('usable_cpus', '?')} usable CPUs, load average at write "
                   f"{', '.join(f'{x:.1f}' for x in machine.get('load_average') or [])}\n")
    out.append(f"Pod: {s.pod_cores:g} cores, planned at <= {s.utilisation:.0%} of measured capacity; crisis peak "
               f"{s.peak_factor:g}x the day's average; HPA floor {s.min_replicas_floor}; lag target = "
               f"{s.lag_seconds:g} s of a pod's planned work; scale-up today +{s.scale_up_pods} pods / "
               f"{s.scale_up_period_s:g} s after a {s.scale_up_window_s:g} s window\n")
    out.append("| runtime | source | mentions/s measured (cores) | mentions/s per core | CPU-s per 1,000 mentions "
               "| pod capacity /s | planned /s per pod | cold start s | parity |\n"
               "|---|---|---:|---:|---:|---:|---:|---:|---|")
    for p in plans:
        f = p.figure
        cold = f"{p.cold_start_s:.1f}" + ("" if f.cold_start_s is not None else " (assumed)")
        out.append(f"| {f.runtime} | {f.source} | {_n(f.mentions_per_s)} ({f.cores:g}) | {_n(f.per_core)} | "
                   f"{f.cpu_seconds_per_1000:.1f} | {_n(p.pod_capacity_per_s)} | {_n(p.pod_planned_per_s)} | {cold} | "
                   f"{p.parity} |")
    out.append("\n| runtime | mentions/day | average /s | peak /s | pods at average | pods at peak (CPU) | partitions "
               "| replicas at peak (partition split) | HPA min..max | lag target | scale-up today: peak reached "
               "| recommended scale-up: peak reached |\n|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---|---|")
    for p in plans:
        for lp in p.loads:
            out.append(
                f"| {p.figure.runtime} | {lp.mentions_per_day:,} | {_n(lp.average_per_s)} | {_n(lp.peak_per_s)} | "
                f"{lp.pods_average} | {lp.pods_peak} | {lp.partitions} | {lp.replicas_peak} | "
                f"{lp.hpa_min}..{lp.hpa_max} | {lp.lag_target} | {_ramp_cells(lp, s)} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    from bench.results import DEFAULT_DIR, read_results

    d = PlanSettings()
    parser = argparse.ArgumentParser(prog="bench.capacity", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--from", dest="source", type=Path, default=DEFAULT_DIR / "classify-latest.json",
                        help="a `make bench` results file (default .cache/bench/classify-latest.json)")
    parser.add_argument("--rate", action="append", default=[],
                        help="RUNTIME=MENTIONS_PER_S measured with --cores cores, instead of a results file "
                             "(repeatable)")
    parser.add_argument("--parity", type=Path, default=None,
                        help="runtime-choices.json whose newest `make parity` record marks the runtimes that pass "
                             "(default: the default model's, where it exists)")
    parser.add_argument("--cores", type=float, default=2.0, help="cores the --rate figures were measured with")
    parser.add_argument("--cold-start", type=float, default=None,
                        help="cold start seconds (overrides the results file's; default there 10)")
    parser.add_argument("--loads", default=",".join(str(x) for x in DEFAULT_LOADS), help="mentions per day")
    parser.add_argument("--pod-cores", type=float, default=d.pod_cores)
    parser.add_argument("--utilisation", type=float, default=d.utilisation)
    parser.add_argument("--peak-factor", type=float, default=d.peak_factor)
    parser.add_argument("--min-replicas", type=int, default=d.min_replicas_floor)
    parser.add_argument("--min-partitions", type=int, default=d.min_partitions)
    parser.add_argument("--lag-seconds", type=float, default=d.lag_seconds)
    parser.add_argument("--scale-up-pods", type=int, default=d.scale_up_pods)
    parser.add_argument("--scale-up-period", type=float, default=d.scale_up_period_s)
    parser.add_argument("--scale-up-window", type=float, default=d.scale_up_window_s)
    parser.add_argument("--ramp-target", type=float, default=d.ramp_target_s)
    args = parser.parse_args(argv)
    if not 0 < args.utilisation <= 1:
        parser.error("--utilisation must be in (0, 1]")
    settings = PlanSettings(
        pod_cores=args.pod_cores, utilisation=args.utilisation, peak_factor=args.peak_factor,
        min_replicas_floor=args.min_replicas, min_partitions=args.min_partitions, lag_seconds=args.lag_seconds,
        scale_up_pods=args.scale_up_pods, scale_up_period_s=args.scale_up_period,
        scale_up_window_s=args.scale_up_window, ramp_target_s=args.ramp_target,
        cold_start_s=args.cold_start if args.cold_start is not None else d.cold_start_s)
    machine = None
    if args.rate:
        figures = [parse_rate(r, args.cores, args.cold_start) for r in args.rate]
    else:
        if not args.source.is_file():
            parser.error(f"{args.source}: no results file; run `make bench` first, or give --rate RUNTIME=N")
        doc = read_results(args.source)
        machine = doc.get("machine")
        figures = figures_from_results(doc)
        if args.cold_start is not None:
            figures = [RuntimeFigure(f.runtime, f.mentions_per_s, f.cores, f.source, args.cold_start)
                       for f in figures]
        print(f"# Capacity plan from {args.source} ({doc.get('at', '?')})\n")
    if not figures:
        parser.error("no throughput figures found")
    loads = [int(float(x)) for x in args.loads.split(",") if x]
    parity_file = args.parity
    if parity_file is None:
        from services.classify.encoder.loader import default_model_dir
        from services.classify.encoder.runtime import RUNTIME_CACHE_FILE
        parity_file = default_model_dir() / RUNTIME_CACHE_FILE
    verdicts, at = parity_verdicts(json.loads(parity_file.read_text())) if parity_file.is_file() else ({}, "")
    print(f"Parity: `make parity` of {at} ({parity_file})\n" if verdicts else
          "Parity: not recorded (run `make parity`); every runtime is listed as measured\n")
    plans = with_parity([plan(f, settings, loads) for f in figures], verdicts)
    print(report(plans, settings, machine))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Replay of scored mentions through crisis detection in event time (pure, no Kafka, no model).

`replay(scored, observe, tick, engine)` feeds each mention to `observe(scored, now)` in order and calls
`tick(now)` on the grid of `tick_seconds` of event time, skipping the empty stretches in which every brand
is idle (`CrisisEngine.idle`): the incidents are those of ticking all the way, in a fraction of the time
on a sparse history. `triage backtest` (services/analysis/backtest.py) wires the worker's CrisisMonitor in.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from services.classify.crisis.engine import CrisisEngine
from services.common.codec import pb
from services.common.timeutil import epoch

MAX_IDLE_SECONDS = 6 * 3600.0   # an idle replay still ticks this often (baselines learn gaps up to a day)


def iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


@dataclass
class BacktestResult:
    events: list[dict[str, Any]] = field(default_factory=list)
    mentions: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))   # (brand, day)

    def opened(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e["state"] == "OPEN"]


def event_json(inc: pb.Incident) -> dict[str, Any]:
    at = epoch(inc.resolved_at) if inc.state == pb.RESOLVED else epoch(inc.updated_at)
    return {"id": inc.id, "brand": inc.brand, "kind": pb.IncidentKind.Name(inc.kind),
            "state": pb.IncidentState.Name(inc.state), "at": iso(at), "mention_count": inc.mention_count,
            "reasons": list(inc.reasons)}


def summary_table(result: BacktestResult) -> str:
    kinds = sorted({e["kind"] for e in result.opened()})
    opened: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for e in result.opened():
        opened[(e["brand"], e["at"][:10])][e["kind"]] += 1
    keys = sorted(set(result.mentions) | set(opened))
    short = [k.lower().replace("_", " ") for k in kinds]
    header = f"{'brand':<20} {'day':<10} {'mentions':>8} " + " ".join(f"{s:>16}" for s in short)
    lines = [header, "-" * len(header)]
    for brand, day in keys:
        row = opened.get((brand, day), {})
        lines.append(f"{brand:<20} {day:<10} {result.mentions.get((brand, day), 0):>8} "
                     + " ".join(f"{row.get(k, 0):>16}" for k in kinds))
    lines.append(f"{len(result.opened())} incidents opened, {len(keys)} brand-days")
    return "\n".join(lines)


def replay(scored: Iterable[pb.ScoredMention], observe: Callable[[pb.ScoredMention, float], list[pb.Incident]],
           tick: Callable[[float], list[pb.Incident]], engine: CrisisEngine, tick_seconds: float = 10.0,
           drain_seconds: float = 3600.0, on_event: Callable[[dict[str, Any]], None] | None = None,
           skip_idle: bool = True, clock: list[float] | None = None) -> BacktestResult:
    """Mentions in order through `observe`, `tick` every `tick_seconds` of event time (the grid k x tick);
    after the last mention the clock runs on `drain_seconds` (or until nothing is open) so incidents resolve.

    Event time skips empty stretches: while every brand is idle (no open incident, no detector that could
    fire or change state without a new mention), the ticks up to the next mention would only learn quiet
    minutes, which the next evaluation does anyway, so the replay jumps to the last tick before the next
    mention (ticking at least every MAX_IDLE_SECONDS, so no baseline sees a gap beyond its max_gap).
    `clock[0]`, when given, is kept at the replay's event time (the monitor's wall clock)."""
    clock = clock if clock is not None else [0.0]
    result = BacktestResult()

    def emit(updates: list[pb.Incident]) -> None:
        for inc in updates:
            ev = event_json(inc)
            result.events.append(ev)
            if on_event is not None:
                on_event(ev)

    idle_ticks = max(1, int(MAX_IDLE_SECONDS // tick_seconds))
    k: int | None = None            # index of the next tick on the grid k * tick_seconds
    for sm in scored:
        t = epoch(sm.mention.received_at) or epoch(sm.mention.created_at)
        if k is None:
            k = int(t // tick_seconds) + 1
        while k * tick_seconds <= t:
            if skip_idle and engine.idle():
                k = max(k, min(int(t // tick_seconds), k + idle_ticks))
            clock[0] = k * tick_seconds
            emit(tick(clock[0]))
            k += 1
        clock[0] = max(clock[0], t)
        emit(observe(sm, clock[0]))
        day = time.strftime("%Y-%m-%d", time.gmtime(t))
        for b in dict.fromkeys(sm.mention.brands):
            result.mentions[(b, day)] += 1
    if k is not None:
        end = clock[0] + drain_seconds
        while k * tick_seconds <= end:
            clock[0] = k * tick_seconds
            emit(tick(clock[0]))
            k += 1
            if not engine.open_incidents() and k * tick_seconds > end - drain_seconds + 60:
                break
    return result


def replay_opened(scored: Iterable[pb.ScoredMention], engine: CrisisEngine, tick_seconds: float = 10.0,
                  drain_seconds: float = 0.0) -> tuple[list[pb.Incident], int]:
    """The incidents `engine` opens on `scored` (in event-time order), and how many mentions it tagged with an
    incident: `replay` with the engine's own observe and tick (the benches, bench/eval_crisis.py and
    bench/crisis_realtext.py, judge these; `triage backtest` wires in the worker's monitor instead)."""
    opened: list[pb.Incident] = []
    tagged = 0

    def observe(sm: pb.ScoredMention, now: float) -> list[pb.Incident]:
        nonlocal tagged
        incident_id, updates = engine.observe(sm, now)
        tagged += bool(incident_id)
        opened.extend(i for i in updates if i.state == pb.OPEN)
        return updates

    def tick(now: float) -> list[pb.Incident]:
        updates = engine.tick(now)
        opened.extend(i for i in updates if i.state == pb.OPEN)
        return updates

    replay(scored, observe, tick, engine, tick_seconds=tick_seconds, drain_seconds=drain_seconds)
    return opened, tagged

"""`triage backtest FILE`: what would have paged? Crisis detection over a file of mentions, in event time.

Input: JSONL mentions in the ingest schema (`services/ingest/normalize.py`: `created_at`, `brands`, `text`,
`author`, `engagement`, `source`, `external_id`; `source` defaults to "x" and `external_id` to the line
number; `--brands-file` adds the tracked brands found in the text, as ingest's matcher does). A line may
carry its scores (`intents`: {name: prob}, `sentiment`: {negative, neutral, positive} or a label): then the
model is not loaded; lines without scores are scored with the worker's Scorer (`factory.build_scorer`, the
classify settings from TRIAGE_* env vars, `TRIAGE_CRISIS_EVENT_TIME`/`_LATENESS_SECONDS` included).

Event time: each mention's `received_at` is set to its `created_at` (a replay of history is judged as it
happened, not at arrival), mentions are processed in `created_at` order (`--file-order` keeps the file's
order = arrival order, so late posts arrive late), and the worker's own code path runs: `CrisisMonitor`
annotates each mention and `tick()` runs every `crisis_tick_seconds` of event time. After the last mention
the clock runs on (`--drain` seconds) so open incidents resolve.

Output (stdout): one JSON line per incident event {"id", "brand", "kind", "state", "at", "mention_count",
"reasons"} (`at` = ISO 8601 event time), then a per-brand, per-day summary table (mentions, incidents
opened per kind). `--no-table` prints the JSON lines only.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from services.classify.crisis.config import CrisisConfig
from services.classify.crisis.engine import CrisisEngine
from services.common.codec import pb
from services.common.timeutil import epoch

_SENTIMENTS = ("negative", "neutral", "positive")


def iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


@dataclass
class Row:
    line: int
    mention: pb.Mention
    scores: dict[str, Any] | None   # given intents/sentiment, or None (score with the model)


def parse_lines(lines: Iterable[str], errors: IO[str] | None = None, matcher: Any = None) -> Iterator[Row]:
    """Ingest-schema JSONL -> mentions with received_at = created_at (invalid lines reported and skipped).

    `matcher` (ingest's BrandMatcher) adds the tracked brands found in the text, as ingest does."""
    from services.ingest.normalize import Limits, MentionError, normalize

    limits = Limits()
    far_future = time.time() + 10 * 365 * 86400.0   # history is never "in the future" of a backtest
    for i, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            continue
        try:
            obj = json.loads(line)
            if not isinstance(obj, dict):
                raise MentionError("$", "expected a JSON object")
            obj.setdefault("source", "x")
            obj.setdefault("external_id", str(obj.get("id") or obj.get("mention_id") or f"line{i}"))
            if obj.get("created_at") is None:
                raise MentionError("created_at", "required for a backtest (event time)")
            m = normalize(obj, line.encode(), limits, now=far_future)
        except (ValueError, MentionError) as exc:
            if errors is not None:
                print(f"backtest: line {i}: {exc}", file=errors)
            continue
        m.received_at.CopyFrom(m.created_at)
        m.raw_payload = b""
        if matcher is not None:
            m.brands.extend(b for b in matcher.match(m.text).brands if b not in m.brands)
        given = None
        if "intents" in obj or "sentiment" in obj:
            given = {"intents": obj.get("intents") or {}, "sentiment": obj.get("sentiment") or {}}
        yield Row(i, m, given)


def scored_from_given(m: pb.Mention, given: dict[str, Any]) -> pb.ScoredMention:
    sm = pb.ScoredMention(language=m.language_hint, model_version="given")
    sm.mention.CopyFrom(m)
    for name, p in dict(given.get("intents") or {}).items():
        sm.intents[str(name)] = float(p)
    s = given.get("sentiment")
    if isinstance(s, str):
        s = {s: 1.0}
    s = dict(s or {})
    sm.sentiment.negative = float(s.get("negative", 0.0))
    sm.sentiment.neutral = float(s.get("neutral", 0.0))
    sm.sentiment.positive = float(s.get("positive", 0.0))
    label = max(_SENTIMENTS, key=lambda k: float(s.get(k, 0.0)))
    sm.sentiment.label = {"negative": pb.NEGATIVE, "neutral": pb.NEUTRAL, "positive": pb.POSITIVE}[label]
    return sm


def score_rows(rows: list[Row], scorer_factory: Callable[[], Any] | None, batch_size: int = 32
               ) -> list[pb.ScoredMention]:
    """Given scores as they are; the rest through the worker's Scorer (loaded only if needed)."""
    out: list[pb.ScoredMention | None] = [None] * len(rows)
    todo = [i for i, r in enumerate(rows) if r.scores is None]
    for i, r in enumerate(rows):
        if r.scores is not None:
            out[i] = scored_from_given(r.mention, r.scores)
    if todo:
        if scorer_factory is None:
            raise ValueError(f"{len(todo)} mentions have no intents/sentiment and no model is available")
        scorer = scorer_factory()
        for k in range(0, len(todo), batch_size):
            idx = todo[k:k + batch_size]
            for i, sm in zip(idx, scorer.score_mentions([rows[i].mention for i in idx]), strict=True):
                out[i] = sm
    return [sm for sm in out if sm is not None]


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


def run_backtest(scored: Iterable[pb.ScoredMention], config: CrisisConfig | None = None,
                 tick_seconds: float = 10.0, drain_seconds: float = 3600.0,
                 on_event: Callable[[dict[str, Any]], None] | None = None) -> BacktestResult:
    """The worker's path (CrisisMonitor.annotate per mention, tick every `tick_seconds`) on event time."""
    from services.classify.crisis_agent import CrisisMonitor

    clock = [0.0]
    monitor = CrisisMonitor(CrisisEngine(config), store={}, checkpoint_seconds=1e12, clock=lambda: clock[0])
    result = BacktestResult()

    def emit(updates: list[pb.Incident]) -> None:
        for inc in updates:
            ev = event_json(inc)
            result.events.append(ev)
            if on_event is not None:
                on_event(ev)

    next_tick: float | None = None
    for sm in scored:
        t = epoch(sm.mention.received_at) or epoch(sm.mention.created_at)
        if next_tick is None:
            next_tick = (t // tick_seconds + 1) * tick_seconds
        while next_tick <= t:
            clock[0] = next_tick
            emit(monitor.tick(next_tick))
            next_tick += tick_seconds
        clock[0] = max(clock[0], t)
        emit(monitor.annotate([sm], now=clock[0]))
        day = time.strftime("%Y-%m-%d", time.gmtime(t))
        for b in dict.fromkeys(sm.mention.brands):
            result.mentions[(b, day)] += 1
    if next_tick is not None:
        end = clock[0] + drain_seconds
        while next_tick <= end:
            clock[0] = next_tick
            emit(monitor.tick(next_tick))
            next_tick += tick_seconds
            if not monitor.engine.open_incidents() and next_tick > end - drain_seconds + 60:
                break
    return result


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="triage backtest", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", help="JSONL mentions (ingest schema); - for stdin")
    parser.add_argument("--file-order", action="store_true",
                        help="process in file (arrival) order instead of sorting by created_at")
    parser.add_argument("--tick", type=float, default=None, help="tick seconds (default: crisis_tick_seconds)")
    parser.add_argument("--drain", type=float, default=3600.0, help="event seconds to run on after the last mention")
    parser.add_argument("--no-table", action="store_true", help="JSON lines only, no summary table")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--brands-file", type=Path, default=None,
                        help="tracked brands YAML: add the brands found in each text, as ingest does with "
                             "TRIAGE_BRANDS_FILE (default: the brands the file gives)")
    args = parser.parse_args(argv)
    from services.classify.config import ClassifySettings
    from services.common.logging import configure_logging

    configure_logging("WARNING")   # stdout is the incident events and the table; logs go to stderr

    settings = ClassifySettings()
    fh: IO[str] = sys.stdin if args.file == "-" else Path(args.file).open(encoding="utf-8")
    matcher = None
    if args.brands_file is not None:
        from services.ingest.brands import BrandMatcher, load_brands

        matcher = BrandMatcher(load_brands(args.brands_file))
    with fh:
        rows = list(parse_lines(fh, errors=sys.stderr, matcher=matcher))
    if not args.file_order:
        rows.sort(key=lambda r: epoch(r.mention.created_at))

    def factory() -> Any:
        from services.classify.factory import build_scorer

        return build_scorer(settings)

    scored = score_rows(rows, factory, args.batch_size)

    def show(ev: dict[str, Any]) -> None:
        print(json.dumps(ev, ensure_ascii=False), flush=True)

    from services.classify.crisis_agent import crisis_config

    result = run_backtest(scored, crisis_config(settings), tick_seconds=args.tick or settings.crisis_tick_seconds,
                          drain_seconds=args.drain, on_event=show)
    if not args.no_table:
        print()
        print(summary_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

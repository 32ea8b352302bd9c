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

`--scores SCORES` reuses `triage score FILE > SCORES` (same FILE; matched by input line number): a
history is scored once and backtested as often as needed without loading the model. Emerging issues need
the embedding: score with `triage score --sketch` (a line's `sketch`); scores without one leave those
mentions out of the emerging-issue clusters, and the backtest says how many on stderr.

Output (stdout): one JSON line per incident event {"id", "brand", "kind", "state", "at", "mention_count",
"reasons"} (`at` = ISO 8601 event time), then a per-brand, per-day summary table (mentions, incidents
opened per kind). `--no-table` prints the JSON lines only. The elapsed time (reading and scoring,
detection) goes to stderr. Event time skips empty stretches (see `run_backtest`): a year of 10,000
pre-scored mentions takes seconds, not minutes.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from services.classify.crisis.config import CrisisConfig
from services.classify.crisis.engine import CrisisEngine
from services.classify.crisis.replay import BacktestResult, replay, summary_table
from services.classify.crisis_agent import CrisisMonitor, crisis_config
from services.common.codec import pb
from services.common.timeutil import epoch

_SENTIMENTS = ("negative", "neutral", "positive")


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


def load_scores(lines: Iterable[str], errors: IO[str] | None = None) -> dict[int, dict[str, Any]]:
    """`triage score` output (one JSON object per input line: {"line", "language", "sentiment", "intents",
    ...}, or {"line", "error"}) -> scores by input line number; error lines and bad JSON are skipped."""
    out: dict[int, dict[str, Any]] = {}
    for i, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
            n = int(obj["line"])
        except (ValueError, KeyError, TypeError) as exc:
            if errors is not None:
                print(f"backtest: scores line {i}: {exc}", file=errors)
            continue
        if "error" not in obj and ("intents" in obj or "sentiment" in obj):
            out[n] = {"intents": obj.get("intents") or {}, "sentiment": obj.get("sentiment") or {},
                      "language": obj.get("language", ""), "model_version": obj.get("model_version", "")}
            if obj.get("sketch"):
                sk = sketch_bytes(obj["sketch"])
                if sk is None:
                    if errors is not None:
                        print(f"backtest: scores line {i}: sketch is not base64: left out of emerging issues",
                              file=errors)
                else:
                    out[n]["sketch"] = sk
    return out


def sketch_bytes(value: Any) -> bytes | None:
    """A `triage score --sketch` sketch (base64 of int8 components) as bytes; None when it is not base64."""
    if isinstance(value, bytes):
        return value
    try:
        return base64.b64decode(str(value), validate=True)
    except ValueError:
        return None


def apply_scores(rows: list[Row], scores: dict[int, dict[str, Any]]) -> int:
    """Give rows without scores of their own the `triage score` output for their line; returns how many."""
    n = 0
    for r in rows:
        if r.scores is None and r.line in scores:
            r.scores = scores[r.line]
            n += 1
    return n


def scored_from_given(m: pb.Mention, given: dict[str, Any]) -> pb.ScoredMention:
    sm = pb.ScoredMention(language=str(given.get("language") or m.language_hint),
                          model_version=str(given.get("model_version") or "given"))
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
    sk = sketch_bytes(given["sketch"]) if given.get("sketch") else None
    if sk:   # `triage score --sketch`: the embedding, for emerging issues
        sm.embedding_sketch = sk
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
        scorer.batch_size = batch_size
        # The worker's staged pipeline (prepare overlapped with the model, length buckets).
        for i, sm in zip(todo, scorer.stream_mentions(rows[i].mention for i in todo), strict=True):
            out[i] = sm
    return [sm for sm in out if sm is not None]


def run_backtest(scored: Iterable[pb.ScoredMention], config: CrisisConfig | None = None,
                 tick_seconds: float = 10.0, drain_seconds: float = 3600.0,
                 on_event: Callable[[dict[str, Any]], None] | None = None, skip_idle: bool = True) -> BacktestResult:
    """The worker's path (CrisisMonitor.annotate per mention, tick every `tick_seconds`) on event time,
    skipping the stretches where every brand is idle (`crisis.replay.replay`: the same incidents as
    ticking all the way, `skip_idle=False`)."""
    clock = [0.0]
    monitor = CrisisMonitor(CrisisEngine(config), store={}, checkpoint_seconds=1e12, clock=lambda: clock[0])
    return replay(scored, lambda sm, now: monitor.annotate([sm], now=now), monitor.tick, monitor.engine,
                  tick_seconds=tick_seconds, drain_seconds=drain_seconds, on_event=on_event, skip_idle=skip_idle,
                  clock=clock)


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
    parser.add_argument("--scores", type=Path, default=None,
                        help="`triage score FILE` output for this same FILE (matched by line number): its "
                             "scores are used and the model is not loaded (lines it lacks are scored)")
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
    started = time.monotonic()
    with fh:
        rows = list(parse_lines(fh, errors=sys.stderr, matcher=matcher))
    if args.scores is not None:
        with args.scores.open(encoding="utf-8") as sf:
            apply_scores(rows, load_scores(sf, errors=sys.stderr))
    if not args.file_order:
        rows.sort(key=lambda r: epoch(r.mention.created_at))

    def factory() -> Any:
        from services.classify.factory import build_scorer

        return build_scorer(settings)

    scored = score_rows(rows, factory, args.batch_size)
    scored_at = time.monotonic()
    cfg = crisis_config(settings)
    unsketched = sum(1 for sm in scored if not sm.embedding_sketch)
    if unsketched and cfg.emerging.enabled:
        print(f"backtest: {unsketched} of {len(scored)} mentions have given scores without an embedding sketch: "
              "they are left out of emerging-issue clusters (score with `triage score --sketch`)", file=sys.stderr)

    def show(ev: dict[str, Any]) -> None:
        print(json.dumps(ev, ensure_ascii=False), flush=True)

    result = run_backtest(scored, cfg, tick_seconds=args.tick or settings.crisis_tick_seconds,
                          drain_seconds=args.drain, on_event=show)
    if not args.no_table:
        print()
        print(summary_table(result))
    done = time.monotonic()
    print(f"backtest: {len(scored)} mentions, {len(result.opened())} incidents opened in {done - started:.1f} s "
          f"({scored_at - started:.1f} s reading and scoring, {done - scored_at:.1f} s detection)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

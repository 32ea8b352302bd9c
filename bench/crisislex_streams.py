"""Real timestamped crisis streams for `make eval-crisis`: CrisisLex T26 events replayed in event time.

CrisisLex T26 (../shared/data/crisislex-t26, 26 crises of 2012-13, ~1,000 labelled tweets each) gives no
times, but its tweet ids are Twitter snowflakes: a post's time is `(id >> 22) + 1288834974657` ms. Each
event becomes one stream of real posts at their real times, for one brand (the utility / authority of that
region: `event:<name>`), and goes through the detectors the worker uses, on the backtest path
(`services.analysis.backtest`: ingest's normalisation, `CrisisMonitor.annotate`, ticks in event time that
skip idle stretches).

Scores are the real model's, computed once with `triage score` (its output format, which
`triage backtest --scores` reuses) and cached under .cache/eval_crisis/crisislex/ with a fingerprint of the
model files and settings (`fingerprint`); later runs load no model. Scoring the
~28,000 posts takes tens of CPU minutes (hours on a busy 2-core machine): run it once,
`nice -n 10 python -m bench.crisislex_streams --score`; events without cached scores print as "not
scored", so the table fills in as scoring proceeds.

Measured per event: the first human-labelled outage-like post (Information Type "Infrastructure and
utilities": power, telecom, roads, transport, water) vs the first OUTAGE_CLUSTER incident (delay in
minutes; negative = before the first labelled report), and false outage incidents: an OUTAGE_CLUSTER that
opens with no labelled infrastructure post in the `TRUE_LOOKBACK_SECONDS` before it. Other kinds (a
crisis is a volume spike for its brand) are counted, not judged.

Split by event, so tuning and judging never share one: JUDGING_EVENTS are the CrisisLex events the
classifier never trained on (`CRISISLEX_EVAL_EVENTS` in services/classify/training/intent_sources.py:
the synthetic set's dev events plus the events held out for data/outage_eval), so their scores are the
model's on unseen crises; TUNING_EVENTS are the other 17, the model's training events (its scores there
are optimistic): detector changes may be tuned on them, and are judged on the others only.

The data are a *sample* (~1,000 labelled tweets per event drawn from a collection of thousands to
hundreds of thousands), not the stream: a brand's rate here is its sampled rate, 10-1,000x below the real
one. A detector that judges rates against the brand's own (sampled) baseline sees the same ratios, but
its counts are small, so floors (min counts, persistence) bite sooner and delays are upper bounds. And
each stream starts with its crisis: there is no calm history, so every brand is in cold start.
"""

from __future__ import annotations

import bisect
import calendar
import csv
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.analysis.backtest import apply_scores, load_scores, parse_lines, run_backtest, score_rows
from services.classify.crisis import CrisisConfig
from services.classify.training.intent_sources import CRISISLEX_EVAL_EVENTS
from services.common.timeutil import epoch

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("TRIAGE_SHARED_DATA", REPO.parent / "shared" / "data")) / "crisislex-t26"
CACHE = REPO / ".cache" / "eval_crisis" / "crisislex"
TWITTER_EPOCH_MS = 1288834974657
OUTAGE_TYPE = "Infrastructure and utilities"
TRUE_LOOKBACK_SECONDS = 6 * 3600.0   # an outage incident is true when a labelled report came this soon before


def snowflake_time(tweet_id: int) -> float:
    """Epoch seconds of a Twitter snowflake id (ids from November 2010 on)."""
    return ((tweet_id >> 22) + TWITTER_EPOCH_MS) / 1000.0


def all_events(data: Path = DATA) -> list[str]:
    return sorted(p.name.removesuffix("-tweets_labeled.csv") for p in data.glob("*-tweets_labeled.csv"))


def judging_events(data: Path = DATA) -> list[str]:
    return [e for e in all_events(data) if e in CRISISLEX_EVAL_EVENTS]


def tuning_events(data: Path = DATA) -> list[str]:
    return [e for e in all_events(data) if e not in CRISISLEX_EVAL_EVENTS]


@dataclass(frozen=True)
class Post:
    event: str
    tweet_id: int
    t: float
    text: str
    info_type: str

    @property
    def outage_like(self) -> bool:
        return self.info_type == OUTAGE_TYPE


def load_event(event: str, data: Path = DATA) -> list[Post]:
    """One event's posts in time order (duplicate ids once; rows without a numeric id skipped)."""
    path = data / f"{event}-tweets_labeled.csv"
    posts: dict[int, Post] = {}
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        header = [h.strip() for h in next(reader)]
        col = {h: i for i, h in enumerate(header)}
        for row in reader:
            try:
                tid = int(row[col["Tweet ID"]].strip().strip("'\""))
            except (ValueError, IndexError):
                continue
            posts.setdefault(tid, Post(event, tid, snowflake_time(tid), row[col["Tweet Text"]],
                                       row[col["Information Type"]].strip()))
    return sorted(posts.values(), key=lambda p: (p.t, p.tweet_id))


def brand_of(event: str) -> str:
    return f"event:{event.lower()}"


def mention_json(p: Post) -> dict[str, object]:
    """A post in the ingest schema `triage backtest` and `triage score` read."""
    return {"source": "x", "external_id": str(p.tweet_id), "text": p.text,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(p.t)) + f".{int(p.t * 1000) % 1000:03d}Z",
            "brands": [brand_of(p.event)], "url": f"https://x.com/i/status/{p.tweet_id}"}


def mentions_path(event: str) -> Path:
    return CACHE / f"{event}.jsonl"


def write_mentions(event: str, posts: list[Post]) -> Path:
    """One event's posts as JSONL mentions in time order (rewritten only when they change)."""
    path = mentions_path(event)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(mention_json(p), ensure_ascii=False) + "\n" for p in posts)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")
    return path


def scores_path(event: str, fp: str) -> Path:
    return CACHE / f"{event}.scores-{fp}.jsonl"




def fingerprint() -> str:
    """The score cache's key: `bench.crisis_realtext.score_fingerprint` (model files and scoring settings)."""
    from bench.crisis_realtext import score_fingerprint

    return score_fingerprint()


class EventScorer:
    """`triage score`'s output for a file of mentions, with one model load for every event (the scorer of
    `services.classify.score_file`; its output lines, the format `triage backtest --scores` reads)."""

    def __init__(self) -> None:
        self._scorer: object | None = None

    def score(self, mentions: Path, scores: Path, log: Callable[[str], None]) -> None:
        """Into a temporary file first, so a stopped run leaves no partial cache."""
        from services.classify.score_file import chunks

        if self._scorer is None:
            from services.classify.config import ClassifySettings
            from services.classify.factory import build_scorer

            self._scorer = build_scorer(ClassifySettings())
        scorer: Any = self._scorer
        started = time.perf_counter()
        tmp = scores.with_suffix(".partial")
        with mentions.open(encoding="utf-8") as fh, tmp.open("w", encoding="utf-8") as out:
            for chunk in chunks(fh, 32, jsonl=True):
                ok = [c for c in chunk if c[3] is None]
                scored = iter(scorer.score_texts([c[1] for c in ok], [c[2] for c in ok]))
                for lineno, _, _, err in chunk:
                    line = {"line": lineno, "error": err} if err else {"line": lineno,
                                                                        **next(scored).as_json(scorer.model_version)}
                    out.write(json.dumps(line, ensure_ascii=False) + "\n")
        tmp.rename(scores)
        log(f"scored {mentions.name} in {time.perf_counter() - started:.0f} s -> {scores.relative_to(REPO)}")


def scoring_order() -> list[str]:
    """Judging events first, each set by its labelled outage-like posts (most first): a scoring run stopped
    early has the events that say most about outages."""
    def key(event: str) -> int:
        return -sum(p.outage_like for p in load_event(event))

    return [*sorted(judging_events(), key=key), *sorted(tuning_events(), key=key)]


def score_all(log: Callable[[str], None] = print) -> None:
    """Score every event without cached scores (run it `nice -n 10`: tens of CPU minutes)."""
    fp = fingerprint()
    scorer = EventScorer()
    for event in scoring_order():
        scores = scores_path(event, fp)
        if not scores.exists():
            scorer.score(write_mentions(event, load_event(event)), scores, log)


@dataclass
class EventResult:
    event: str
    posts: int
    outage_posts: int
    start: float
    end: float
    first_report: float | None
    first_open: float | None
    outage_opened: list[float] = field(default_factory=list)
    false_outage: int = 0
    other: dict[str, int] = field(default_factory=dict)
    flagged: int = 0            # posts the model scored outage_report >= the detector's threshold
    flagged_labelled: int = 0   # ... of them labelled infrastructure

    @property
    def delay_minutes(self) -> float | None:
        if self.first_report is None or self.first_open is None:
            return None
        return (self.first_open - self.first_report) / 60.0


def _epoch_of(at: str) -> float:
    return float(calendar.timegm(time.strptime(at, "%Y-%m-%dT%H:%M:%SZ")))


def replay_event(event: str, posts: list[Post], scores: Path, config: CrisisConfig | None = None) -> EventResult:
    """One event through the worker's detectors on the backtest path (pre-scored: no model)."""
    config = config or CrisisConfig()
    with mentions_path(event).open(encoding="utf-8") as fh:
        rows = list(parse_lines(fh, errors=sys.stderr))
    with scores.open(encoding="utf-8") as fh:
        apply_scores(rows, load_scores(fh, errors=sys.stderr))
    rows.sort(key=lambda r: epoch(r.mention.created_at))
    scored = score_rows(rows, None)
    result = run_backtest(scored, config)
    labelled = {str(p.tweet_id) for p in posts if p.outage_like}
    reports = sorted(p.t for p in posts if p.outage_like)
    threshold = config.outage.intent_threshold
    flagged = [sm for sm in scored if sm.intents.get(config.outage.intent, 0.0) >= threshold]
    r = EventResult(event, len(posts), len(reports), posts[0].t, posts[-1].t, reports[0] if reports else None, None,
                    flagged=len(flagged),
                    flagged_labelled=sum(1 for sm in flagged if sm.mention.external_id in labelled))
    for ev in result.opened():
        t = _epoch_of(ev["at"])
        if ev["kind"] != "OUTAGE_CLUSTER":
            r.other[ev["kind"]] = r.other.get(ev["kind"], 0) + 1
            continue
        r.outage_opened.append(t)
        i = bisect.bisect_right(reports, t)
        if i == 0 or t - reports[i - 1] > TRUE_LOOKBACK_SECONDS:
            r.false_outage += 1
    true_opens = [t for t in r.outage_opened if r.first_report is not None and t >= r.first_report - 60]
    r.first_open = min(true_opens) if true_opens else None
    return r


def _hm(t: float | None, start: float) -> str:
    if t is None:
        return "-"
    return f"{time.strftime('%m-%d %H:%M', time.gmtime(t))} (+{(t - start) / 3600:.1f} h)"


def _delay(minutes: float | None) -> str:
    return "-" if minutes is None else f"{minutes:.0f}"


def table(results: dict[str, EventResult | None], out: Callable[[str], None] = print) -> None:
    """The per-event Markdown table, judging events first, then totals per set."""
    out("\n# CrisisLex T26 streams: real posts at their real times (tweet-id snowflakes), one brand per event\n")
    out("Each event is one brand's stream (the region's utility / authority) through the worker's detectors on "
        "the backtest path, scored by the real model (cached `triage score` output). **A sample, not the "
        "stream**: CrisisLex kept ~1,000 labelled tweets per event out of thousands to hundreds of thousands "
        "collected, so rates here are the sampled rates (tens of posts a day, 10-1,000x below the real "
        "stream): the detectors judge each brand against its own (sampled) rate, so ratios survive the "
        "sampling but counts are small, minimum counts and persistence bite sooner, and a delay here is an "
        "upper bound on the full stream's. Every stream starts with its crisis (no calm history: cold start). "
        "Outage-like = the human label 'Infrastructure and utilities' (power, telecom, roads, transport, water; "
        "it also holds damage without a cut service). Delay = first OUTAGE_CLUSTER opened at or after the "
        "first labelled report minus that report, in minutes; a false outage incident opens with no labelled "
        "report in the 6 h before it. Judging events: the CrisisLex events the classifier never trained on "
        "(CRISISLEX_EVAL_EVENTS); tuning events: its training events (scores optimistic there). Tune "
        "detectors on tuning events only.\n")
    out("| set | event | posts | days | outage-like (labelled) | model flags: all / labelled | first labelled "
        "report | first outage incident | delay (min) | outage incidents | false outage incidents | other "
        "incidents |")
    out("|---|---|---:|---:|---:|---|---|---|---:|---:|---:|---|")
    totals: dict[str, list[int]] = {}
    for name, events in (("judging", judging_events()), ("tuning", tuning_events())):
        tot = totals.setdefault(name, [0, 0, 0, 0, 0, 0])
        for event in events:
            r = results.get(event)
            if r is None:
                out(f"| {name} | {event} | not scored: `nice -n 10 python -m bench.crisislex_streams --score` "
                    "|||||||||| ")
                continue
            other = ", ".join(f"{k.lower().replace('_', ' ')} {v}" for k, v in sorted(r.other.items())) or "-"
            out(f"| {name} | {event} | {r.posts} | {(r.end - r.start) / 86400:.1f} | {r.outage_posts} | "
                f"{r.flagged} / {r.flagged_labelled} | {_hm(r.first_report, r.start)} | "
                f"{_hm(r.first_open, r.start)} | {_delay(r.delay_minutes)} | {len(r.outage_opened)} | "
                f"{r.false_outage} | {other} |")
            tot[0] += 1
            tot[1] += r.first_report is not None
            tot[2] += r.first_open is not None
            tot[3] += r.false_outage
            tot[4] += round((r.end - r.start) / 86400)
            tot[5] += r.delay_minutes is not None and r.delay_minutes <= 30
    for name, (n, with_reports, opened, false, days, fast) in totals.items():
        out(f"\n{name}: {n} events replayed, {with_reports} with labelled outage-like posts, an outage incident "
            f"in {opened} of them ({fast} within 30 min of the first labelled report), {false} false outage "
            f"incidents over {days} event-days.")


def run(score: bool = False, out: Callable[[str], None] = print) -> bool:
    """Replay every event whose scores are cached (scoring the rest first when `score`); print the table."""
    fp = fingerprint()
    scorer = EventScorer()
    results: dict[str, EventResult | None] = {}
    started = time.perf_counter()
    for event in [*judging_events(), *tuning_events()]:
        posts = load_event(event)
        mentions = write_mentions(event, posts)
        scores = scores_path(event, fp)
        if score and not scores.exists():
            scorer.score(mentions, scores, lambda s: print(s, file=sys.stderr))
        results[event] = replay_event(event, posts, scores) if scores.exists() else None
    table(results, out)
    out(f"\n({time.perf_counter() - started:.1f} s wall, model {fp})")
    return True


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--score", action="store_true", help="score events without cached scores (slow, CPU)")
    args = ap.parse_args(argv)
    from services.common.logging import configure_logging

    configure_logging("WARNING")
    return 0 if run(score=args.score) else 1


if __name__ == "__main__":
    sys.exit(main())

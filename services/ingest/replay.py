"""`triage replay FILE`: push a JSONL or CSV file of mentions through ingest's HTTP API.

The same path as live traffic (validation, dedupe, Kafka acks). Lines ingest
rejects as invalid are reported on stderr with their reason and skipped; a 503
(Kafka unavailable) is retried after Retry-After, so nothing acknowledged is lost.

`--event-time --speed N` replays history as it happened: mentions are sent in `created_at` order, each
at (its created_at - the first one's) / N seconds after the start, so the spacing of the original stream is
kept, compressed N times. Ingest stamps `received_at` with the replay's wall clock; run the classify worker
with `TRIAGE_CRISIS_EVENT_TIME=created_at` so crisis detection judges the stream on created_at (event time,
with a watermark and `TRIAGE_CRISIS_LATENESS_SECONDS` of allowed lateness; docs/operating.md). The same
file through `triage backtest` predicts the same incidents. Lines without a usable created_at are rejected
in this mode (ingest would stamp them "now", far ahead of the history, and every later post would be late).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

CSV_FIELDS_INT = {"followers", "likes", "reposts", "replies", "quotes"}


def read_records(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, JSON text) per mention; CSV rows become JSON objects (flat columns mapped)."""
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as fh:
            for i, row in enumerate(csv.DictReader(fh), start=2):
                yield i, json.dumps(_csv_row(row), ensure_ascii=False)
        return
    with path.open(encoding="utf-8") as fh:
        for i, line in enumerate(fh, start=1):
            if line.strip():
                yield i, line.rstrip("\n")


def _csv_row(row: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {"author": {}, "engagement": {}}
    for k, v in row.items():
        if k is None or v is None or v == "":
            continue
        if k in ("followers", "verified", "handle"):
            out["author"][k] = int(v) if k == "followers" else (v.lower() in ("1", "true", "yes") if k == "verified"
                                                                 else v)
        elif k in CSV_FIELDS_INT:
            out["engagement"][k] = int(v)
        elif k == "brands":
            out["brands"] = [b for b in v.split("|") if b]
        else:
            out[k] = v
    return out


@dataclass
class ReplayReport:
    sent: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: list[str] = field(default_factory=list)
    event_span: float = 0.0   # --event-time: seconds of history replayed (last created_at - first)
    behind: float = 0.0       # --event-time: most wall seconds a batch went out after its due time


class _Sender:
    """POSTs NDJSON batches to ingest: 422 lines are reported and dropped, 429/503 retried after Retry-After."""

    def __init__(self, client: httpx.Client, url: str, path: Path, report: ReplayReport, token: str | None,
                 max_retries: int):
        self.client, self.url, self.path, self.report, self.max_retries = client, url, path, report, max_retries
        self.headers = {"Content-Type": "application/x-ndjson"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"

    def flush(self, batch: list[tuple[int, str]]) -> None:
        pending = list(batch)
        retries = 0
        report = self.report
        while pending:
            body = ("\n".join(t for _, t in pending) + "\n").encode()
            try:
                resp = self.client.post(self.url, content=body, headers=self.headers)
            except httpx.ConnectError as exc:
                raise SystemExit(f"replay: nothing is listening at {self.url} ({exc}); start ingest (`make up`)") \
                    from None
            if resp.status_code == 202:
                data = resp.json()
                report.accepted += len(data["accepted"])
                report.duplicates += len(data["duplicates"])
                report.sent += len(pending)
                return
            if resp.status_code == 422:
                bad = {e.get("line") for e in resp.json().get("errors", [])}
                for e in resp.json().get("errors", []):
                    n = e.get("line")
                    src = pending[n - 1][0] if isinstance(n, int) and 0 < n <= len(pending) else "?"
                    report.rejected.append(f"{self.path.name}:{src}: {e.get('field')}: {e.get('reason')}")
                pending = [p for i, p in enumerate(pending, start=1) if i not in bad]
                continue
            if resp.status_code in (429, 503) and retries < self.max_retries:
                retries += 1
                time.sleep(float(resp.headers.get("Retry-After", "1")))
                continue
            raise SystemExit(f"replay: ingest answered {resp.status_code}: {resp.text[:300]}")


def replay(path: Path, url: str, rate: float = 0.0, batch_size: int = 200, timeout: float = 30.0,
           token: str | None = None, max_retries: int = 20) -> ReplayReport:
    """Send the file in NDJSON batches, at most `rate` mentions/s (0 = as fast as ingest answers)."""
    report = ReplayReport()
    batch: list[tuple[int, str]] = []
    started = time.monotonic()
    with httpx.Client(timeout=timeout) as client:
        sender = _Sender(client, url, path, report, token, max_retries)
        for lineno, text in read_records(path):
            batch.append((lineno, text))
            if len(batch) >= batch_size:
                sender.flush(batch)
                batch.clear()
            if rate > 0:
                ahead = (report.sent + len(batch)) / rate - (time.monotonic() - started)
                if ahead > 0:
                    if batch:
                        sender.flush(batch)
                        batch.clear()
                    time.sleep(ahead)
        if batch:
            sender.flush(batch)
    return report


def created_epoch(value: Any) -> float | None:
    """A record's created_at as epoch seconds (ISO 8601, epoch seconds or milliseconds), None if unusable."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            try:
                dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            except ValueError:
                return None
            return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value) / 1000.0 if value > 1e11 else float(value)
    return None


@dataclass
class TimedRecord:
    due: float      # seconds after the replay's start
    created: float
    line: int
    text: str


def event_time_schedule(records: Iterable[tuple[int, str]], speed: float, report: ReplayReport,
                        source: str = "") -> list[TimedRecord]:
    """Records in created_at order with their send offsets ((created - first) / speed); lines without a usable
    created_at are rejected into `report`."""
    timed: list[tuple[float, int, str]] = []
    for lineno, text in records:
        try:
            obj = json.loads(text)
        except ValueError:
            obj = None
        created = created_epoch(obj.get("created_at")) if isinstance(obj, dict) else None
        if created is None:
            report.rejected.append(f"{source}:{lineno}: created_at: required for an event-time replay")
            continue
        timed.append((created, lineno, text))
    timed.sort(key=lambda r: (r[0], r[1]))
    if not timed:
        return []
    first = timed[0][0]
    return [TimedRecord((c - first) / speed if speed > 0 else 0.0, c, i, t) for c, i, t in timed]


def replay_event_time(path: Path, url: str, speed: float, batch_size: int = 200, timeout: float = 30.0,
                      token: str | None = None, max_retries: int = 20,
                      clock: Callable[[], float] = time.monotonic,
                      sleep: Callable[[float], None] = time.sleep) -> ReplayReport:
    """Send the file in created_at order, keeping its spacing compressed `speed` times (0 = no pacing)."""
    report = ReplayReport()
    schedule = event_time_schedule(read_records(path), speed, report, path.name)
    with httpx.Client(timeout=timeout) as client:
        sender = _Sender(client, url, path, report, token, max_retries)
        started = clock()
        k = 0
        while k < len(schedule):
            wait = schedule[k].due - (clock() - started)
            if wait > 0:
                sleep(wait)
            elapsed = clock() - started
            batch: list[tuple[int, str]] = []
            while k < len(schedule) and len(batch) < batch_size and schedule[k].due <= elapsed:
                batch.append((schedule[k].line, schedule[k].text))
                k += 1
            if not batch:
                continue
            sender.flush(batch)
            report.behind = max(report.behind, clock() - started - schedule[k - 1].due)
    if schedule:
        report.event_span = schedule[-1].created - schedule[0].created
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="triage replay", description=__doc__)
    parser.add_argument("file", type=Path)
    parser.add_argument("--url", default="http://127.0.0.1:8080/v1/mentions")
    parser.add_argument("--rate", type=float, default=0.0, help="mentions per second (0 = unthrottled)")
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--token", default=None, help="bearer token, if ingest requires one")
    parser.add_argument("--event-time", action="store_true",
                        help="send in created_at order, keeping the history's spacing (see --speed)")
    parser.add_argument("--speed", type=float, default=1.0,
                        help="--event-time: compress the history's spacing this many times (0 = no pacing)")
    args = parser.parse_args(argv)
    if not args.file.exists():
        print(f"replay: no such file: {args.file}", file=sys.stderr)
        return 2
    if args.speed < 0 or not math.isfinite(args.speed):
        print("replay: --speed must be a finite number >= 0", file=sys.stderr)
        return 2
    if args.event_time:
        report = replay_event_time(args.file, args.url, args.speed, args.batch_size, token=args.token)
    else:
        report = replay(args.file, args.url, args.rate, args.batch_size, token=args.token)
    for r in report.rejected:
        print(f"rejected {r}", file=sys.stderr)
    out: dict[str, Any] = {"sent": report.sent, "accepted": report.accepted, "duplicates": report.duplicates,
                           "rejected": len(report.rejected)}
    if args.event_time:
        out.update(event_seconds=round(report.event_span, 3), speed=args.speed,
                   max_behind_seconds=round(report.behind, 3))
    print(json.dumps(out))
    return 0

"""`triage replay FILE`: push a JSONL or CSV file of mentions through ingest's HTTP API.

The same path as live traffic (validation, dedupe, Kafka acks). Lines ingest
rejects as invalid are reported on stderr with their reason and skipped; a 503
(Kafka unavailable) is retried after Retry-After, so nothing acknowledged is lost.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
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


def replay(path: Path, url: str, rate: float = 0.0, batch_size: int = 200, timeout: float = 30.0,
           token: str | None = None, max_retries: int = 20) -> ReplayReport:
    """Send the file in NDJSON batches, at most `rate` mentions/s (0 = as fast as ingest answers)."""
    report = ReplayReport()
    headers = {"Content-Type": "application/x-ndjson"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    batch: list[tuple[int, str]] = []
    started = time.monotonic()
    with httpx.Client(timeout=timeout) as client:
        def flush() -> None:
            pending = list(batch)
            retries = 0
            while pending:
                body = ("\n".join(t for _, t in pending) + "\n").encode()
                try:
                    resp = client.post(url, content=body, headers=headers)
                except httpx.ConnectError as exc:
                    raise SystemExit(f"replay: nothing is listening at {url} ({exc}); start ingest (`make up`)") \
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
                        report.rejected.append(f"{path.name}:{src}: {e.get('field')}: {e.get('reason')}")
                    pending = [p for i, p in enumerate(pending, start=1) if i not in bad]
                    continue
                if resp.status_code in (429, 503) and retries < max_retries:
                    retries += 1
                    time.sleep(float(resp.headers.get("Retry-After", "1")))
                    continue
                raise SystemExit(f"replay: ingest answered {resp.status_code}: {resp.text[:300]}")

        for lineno, text in read_records(path):
            batch.append((lineno, text))
            if len(batch) >= batch_size:
                flush()
                batch.clear()
            if rate > 0:
                ahead = (report.sent + len(batch)) / rate - (time.monotonic() - started)
                if ahead > 0:
                    if batch:
                        flush()
                        batch.clear()
                    time.sleep(ahead)
        if batch:
            flush()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="triage replay", description=__doc__)
    parser.add_argument("file", type=Path)
    parser.add_argument("--url", default="http://127.0.0.1:8080/v1/mentions")
    parser.add_argument("--rate", type=float, default=0.0, help="mentions per second (0 = unthrottled)")
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--token", default=None, help="bearer token, if ingest requires one")
    args = parser.parse_args(argv)
    if not args.file.exists():
        print(f"replay: no such file: {args.file}", file=sys.stderr)
        return 2
    report = replay(args.file, args.url, args.rate, args.batch_size, token=args.token)
    for r in report.rejected:
        print(f"rejected {r}", file=sys.stderr)
    print(json.dumps({"sent": report.sent, "accepted": report.accepted, "duplicates": report.duplicates,
                      "rejected": len(report.rejected)}))
    return 0

"""Generate JSONL files (ingest schema, given scores) for `triage backtest`: sparse brands and real-feed artefacts.

    python bench/backtest_scenarios.py OUT.jsonl [--scenario all|sparse-outage|surge|backfill|dupes|calm]

Every brand has a daily curve (quiet nights, busy afternoons) at its own rate; scenarios add, on the last
day: a cluster of outage reports on a sparse brand (8 in 90 s), a complaint surge (2.5x complaints
12:00-18:00), an end-of-day backfill (60 posts stamped 23:59:59) and 200 exact/near-duplicate rows.
Prints what was injected (UTC) on stderr, so a backtest's incidents can be compared with it.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from typing import Any

DAY = 86400.0
T0 = 1_793_577_600.0   # 2026-11-02T00:00:00Z, a Monday


def daily(t: float) -> float:
    """Relative rate by hour of day: 0.25 at 04:00, 1.75 at 16:00."""
    h = (t % DAY) / 3600.0
    return 1.0 + 0.75 * math.sin((h - 10.0) / 24.0 * 2 * math.pi)


def row(rng: random.Random, brand: str, t: float, kind: str, i: int) -> dict[str, Any]:
    if kind == "outage":
        text, intents, neg = rng.choice(["app down, cannot login", "is the site down?? outage again",
                                         "no service, app not loading"]), {"outage_report": 0.9, "complaint": 0.6}, 0.85
    elif kind == "complaint":
        text = rng.choice(["flight {} cancelled again, no rebooking", "delayed three hours at gate {} and no answer",
                           "cancelled my flight {}, worst service"]).format(rng.randint(10, 9999))
        intents, neg = {"complaint": 0.85, "outage_report": 0.02}, 0.8
    else:
        text = rng.choice(["thanks for the upgrade", "what is the baggage allowance", "booked for march",
                           "nice lounge", "is there wifi on board"]) + f" {rng.randint(0, 10**6)}"
        c = 0.7 if rng.random() < 0.2 else 0.05     # 20 % of ordinary traffic are complaints
        intents, neg = {"complaint": c, "outage_report": 0.01}, (0.6 if c > 0.5 else 0.15)
    return {"source": "x", "external_id": f"{brand}-{i}", "text": text, "created_at": round(t, 3),
            "brands": [brand], "author": {"handle": f"u{rng.randint(0, 10**5)}", "followers": 150},
            "engagement": {"likes": 0}, "intents": intents,
            "sentiment": {"negative": neg, "neutral": 1 - neg, "positive": 0.0}}


def traffic(rng: random.Random, brand: str, per_day: float, days: int, rows: list[dict[str, Any]],
            surge: tuple[float, float, float] | None = None) -> None:
    """Poisson traffic with the daily curve; `surge` = (start, end, x): complaints x times the usual mix."""
    peak = per_day / DAY * 1.75
    t, i = T0, len(rows)
    while True:
        t += rng.expovariate(peak)
        if t >= T0 + days * DAY:
            break
        if rng.random() < daily(t) / 1.75:
            rows.append(row(rng, brand, t, "ordinary", i))
            i += 1
    if surge:
        start, end, x = surge
        base = per_day / DAY * 0.2   # the usual complaints: 20 % of traffic
        t = start
        while True:
            t += rng.expovariate(base * (x - 1) * daily(t) + 1e-9)
            if t >= end:
                break
            rows.append(row(rng, brand, t, "complaint", 10**6 + i))
            i += 1


def generate(scenario: str, seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    last = T0 + 3 * DAY
    if scenario in ("all", "calm"):
        traffic(rng, "calm-big", 10_000, 4, rows)
        traffic(rng, "calm-small", 40, 4, rows)
    if scenario in ("all", "sparse-outage"):
        traffic(rng, "sparse", 300, 4, rows)
        for k in range(8):
            rows.append(row(rng, "sparse", last + 10 * 3600 + k * 11.0, "outage", 2 * 10**6 + k))
        print(f"sparse: 8 outage reports {last + 10 * 3600:.0f}+90s (day 4 10:00Z)", file=sys.stderr)
    if scenario in ("all", "surge"):
        traffic(rng, "airline", 800, 4, rows, surge=(last + 12 * 3600, last + 18 * 3600, 2.5))
        print("airline: complaints 2.5x day 4 12:00-18:00Z", file=sys.stderr)
    if scenario in ("all", "backfill"):
        traffic(rng, "backfilled", 500, 4, rows)
        for k in range(60):
            rows.append(row(rng, "backfilled", last - 1.0, "ordinary", 3 * 10**6 + k))
        print("backfilled: 60 posts stamped day 3 23:59:59Z", file=sys.stderr)
    if scenario in ("all", "dupes"):
        traffic(rng, "duped", 500, 4, rows)
        src = row(rng, "duped", last + 15 * 3600, "ordinary", 4 * 10**6)
        for k in range(200):
            d = dict(src, external_id=f"dup-{k}", created_at=src["created_at"] + k * 0.5,
                     text=(src["text"] if k % 2 else f"RT @fan{k}: {src['text']} https://t.co/x{k}"))
            rows.append(d)
        print("duped: 200 copies of one text in 100 s, day 4 15:00Z", file=sys.stderr)
    rows.sort(key=lambda r: r["created_at"])
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out")
    p.add_argument("--scenario", default="all")
    p.add_argument("--seed", type=int, default=7)
    a = p.parse_args(argv)
    with open(a.out, "w", encoding="utf-8") as fh:
        for r in generate(a.scenario, a.seed):
            fh.write(json.dumps(r) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Validate the team's labels of the real-text pools and print their tables (stdlib only).

Checks every `labels/*.jsonl` line: a pool id (dev labels: `pool.jsonl`; `train.*` labels:
`train_pool.jsonl`), intents from the six triage intents, no id twice. Prints per-source counts of
each intent for the dev set (first pass) and the training pool. Exit 1 with file:line on any problem.
Usage: python data/realdev/build.py
"""

from __future__ import annotations

import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
INTENTS = ("complaint", "question", "outage_report", "safety_or_legal_threat", "praise", "spam")


def read_pool(name: str) -> dict[str, dict]:
    path = HERE / name
    if not path.exists():
        return {}
    return {r["id"]: r for r in (json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x)}


def main() -> int:
    pools = {"dev": read_pool("pool.jsonl"), "train": read_pool("train_pool.jsonl")}
    problems: list[str] = []
    labelled: dict[str, dict[str, list[str]]] = {"pass1": {}, "pass2": {}, "train": {}}
    for path in sorted((HERE / "labels").glob("*.jsonl")):
        kind = "train" if path.name.startswith("train.") else path.name.split(".")[0]
        pool = pools["train" if kind == "train" else "dev"]
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            where = f"{path.relative_to(HERE)}:{n}"
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as err:
                problems.append(f"{where}: not JSON ({err})")
                continue
            if rec.get("id") not in pool:
                problems.append(f"{where}: unknown id {rec.get('id')!r}")
                continue
            bad = [i for i in rec.get("intents", []) if i not in INTENTS]
            if bad or not isinstance(rec.get("intents"), list):
                problems.append(f"{where}: bad intents {bad or rec.get('intents')!r}")
                continue
            if rec["id"] in labelled[kind]:
                problems.append(f"{where}: id {rec['id']} labelled twice in {kind}")
            labelled[kind][rec["id"]] = rec["intents"]
    for p in problems:
        print(p, file=sys.stderr)
    for kind, pool_name in (("pass1", "dev"), ("train", "train")):
        rows: dict[str, Counter] = defaultdict(Counter)
        for pid, intents in labelled[kind].items():
            family = pools[pool_name][pid]["source"].split(":")[0]
            rows[family]["records"] += 1
            rows[family].update(intents)
            if not intents:
                rows[family]["none"] += 1
        print(f"\n**{kind}** ({sum(r['records'] for r in rows.values())} of {len(pools[pool_name])} pool posts labelled)\n")
        print("| source | " + " | ".join(INTENTS) + " | none | records |")
        print("|---|" + "---:|" * (len(INTENTS) + 2))
        for family in sorted(rows):
            r = rows[family]
            print(f"| {family} | " + " | ".join(str(r[i]) for i in INTENTS) + f" | {r['none']} | {r['records']} |")
    print(f"\nsecond pass: {len(labelled['pass2'])} posts")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())

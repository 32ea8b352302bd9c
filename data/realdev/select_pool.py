"""Select the real-text annotation pool for the intent dev set (deterministic, stdlib only).

Writes `pool.jsonl` ({"id", "source", "lang", "text"}) from ../shared/data:
  customer-care first turns 500, UMSAB train 80 per language (8 languages), CrisisLex 250
  (120 of them "Infrastructure and utilities", where outage reports live), tweet-act 210
  (QUE/REQ/THT/SUG oversampled). Ranked by sha256 of the text inside each stratum, so the
  pool is stable. `second_pass_ids.txt` lists the 300 ids labelled a second time, independently.
Usage: python data/realdev/select_pool.py [--shared ../shared/data]
"""

from __future__ import annotations

import argparse
import csv
import glob
import hashlib
import json
import os
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
UMSAB = {"arabic": "ar", "english": "en", "french": "fr", "german": "de",
         "hindi": "hi", "italian": "it", "portuguese": "pt", "spanish": "es"}


def rank(text: str, salt: str) -> str:
    return hashlib.sha256(f"{salt}|{text}".encode("utf-8", "surrogatepass")).hexdigest()


def norm(text: str) -> str:
    return " ".join(text.casefold().split())


def take(items: list[dict], n: int, salt: str) -> list[dict]:
    seen: set[str] = set()
    out = []
    for it in sorted(items, key=lambda r: rank(r["text"], salt)):
        k = norm(it["text"])
        if k in seen or len(k) < 12:
            continue
        seen.add(k)
        out.append(it)
        if len(out) == n:
            break
    return out


def loads_lenient(line: str) -> dict:
    """json.loads, repairing backslashes before characters JSON cannot escape (one upstream line has `\\<email>`)."""
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return json.loads(re.sub(r'\\(?![\\"/bfnrtu])', r"\\\\", line))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train-pool", action="store_true",
                    help="write train_pool.jsonl instead: a disjoint pool labelled for training (never dev)")
    ap.add_argument("--shared", default=os.environ.get("TRIAGE_SHARED_DATA", str(HERE.parents[2] / "shared" / "data")))
    args = ap.parse_args()
    root = Path(args.shared)
    train = args.train_pool
    # The training pool skips every dev text (and uses other salts, so it draws other posts).
    dev_texts = ({norm(json.loads(x)["text"]) for x in (HERE / "pool.jsonl").open(encoding="utf-8")}
                 if train else set())
    n = {"cc": 600, "umsab": 50, "infra": 100, "other": 60} if train else \
        {"cc": 500, "umsab": 80, "infra": 120, "other": 130}
    salt = "train:" if train else ""

    def pick(items: list[dict], count: int, tag: str) -> list[dict]:
        return take([it for it in items if norm(it["text"]) not in dev_texts], count, salt + tag)

    pool: list[dict] = []

    cc = [loads_lenient(x) for x in (root / "customer-care-unlabelled" / "customer_care_texts.jsonl").open(encoding="utf-8")]
    cc = [{"source": f"customer-care:{r['company']}", "lang": "en", "text": r["text"], "ref": r["tweet_id"]}
          for r in cc if r["role"] == "customer_first_turn"]
    pool += pick(cc, n["cc"], "cc")

    for folder, code in UMSAB.items():
        texts = (root / "umsab-sentiment" / folder / "train_text.txt").read_text(encoding="utf-8").split("\n")
        items = [{"source": f"umsab-train:{code}", "lang": code, "text": t, "ref": str(i)}
                 for i, t in enumerate(texts) if t.strip()]
        pool += pick(items, n["umsab"], "umsab")

    infra, other = [], []
    for f in sorted(glob.glob(str(root / "crisislex-t26" / "*.csv"))):
        event = Path(f).name.replace("-tweets_labeled.csv", "")
        with open(f, encoding="utf-8", errors="replace", newline="") as fh:
            for r in csv.DictReader(fh):
                item = {"source": f"crisislex:{event}", "lang": "en", "text": r[" Tweet Text"], "ref": r["Tweet ID"]}
                (infra if r[" Information Type"] == "Infrastructure and utilities" else other).append(item)
    pool += pick(infra, n["infra"], "cl") + pick(other, n["other"], "cl")

    acts: dict[str, list[dict]] = {}
    with (root / "tweet-act" / "TWEET_DATA.csv").open(encoding="utf-8", newline="") as fh:
        for i, row in enumerate(csv.reader(fh)):
            acts.setdefault(row[1], []).append({"source": f"tweet-act:{row[1]}", "lang": "en", "text": row[0],
                                                "ref": str(i)})
    act_counts = {"QUE": 50, "REQ": 40, "THT": 40, "SUG": 20, "EXP": 30, "STM": 20, "OTH": 10}
    for act, count in act_counts.items():
        pool += pick(acts[act], count // 2 if train else count, "ta")

    seen: set[str] = set()
    out = []
    for it in pool:
        k = norm(it["text"])
        if k in seen:
            continue
        seen.add(k)
        it["id"] = "rd-" + hashlib.sha1(k.encode("utf-8", "surrogatepass")).hexdigest()[:10]
        out.append({"id": it["id"], "source": it["source"], "lang": it["lang"], "ref": it["ref"], "text": it["text"]})
    out.sort(key=lambda r: rank(r["id"], "order"))
    with (HERE / ("train_pool.jsonl" if train else "pool.jsonl")).open("w", encoding="utf-8") as fh:
        for r in out:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    if train:
        print(f"train pool: {len(out)} posts (none in the dev pool)")
        return 0
    second = sorted(out, key=lambda r: rank(r["id"], "second"))[:300]
    (HERE / "second_pass_ids.txt").write_text("".join(r["id"] + "\n" for r in sorted(second, key=lambda r: r["id"])))
    print(f"pool: {len(out)} posts; second pass: {len(second)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

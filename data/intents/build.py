#!/usr/bin/env python3
"""Build the multilingual mention-intent dataset (train/dev splits) from src/*.jsonl.

Stdlib only, deterministic: running it twice gives byte-identical train.jsonl and dev.jsonl.

    python data/intents/build.py            # validate, write train.jsonl + dev.jsonl, print counts
    python data/intents/build.py --check    # validate and print counts, write nothing
    python data/intents/build.py --min 40   # also fail if any (lang, intent) total is below 40

Source records (one JSON object per line):
    {"text": str, "lang": str, "intents": [str, ...], "source": "written" | "crisislex:<event>",
     "tweet_id": str (crisislex only, optional), "note": str (optional)}

Split rules
- Written records: stable hash of the normalised text -> bucket 0..99; bucket < DEV_PERCENT goes to
  dev. The hash is salted with the (lang, primary intent) stratum, so each stratum is split ~80/20
  independently, and adding records never moves an existing record to the other split.
- CrisisLex records: whole events go to one split (held out by event): events in DEV_EVENTS go to
  dev, every other event to train (to hold out a newly added event, list it in DEV_EVENTS).
Exit status is 1 with a message per problem on invalid data (unknown intent/lang/field, empty text,
duplicate after normalising whitespace and case, bad source), 2 if --min is not met.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import unicodedata
from collections import Counter, defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE / "src"

INTENTS = [
    "complaint",
    "question",
    "outage_report",
    "safety_or_legal_threat",
    "praise",
    "spam",
]
# Primary intent = first match in this priority order (most urgent first); "none" if no intent.
PRIMARY_ORDER = [
    "safety_or_legal_threat",
    "outage_report",
    "complaint",
    "question",
    "praise",
    "spam",
]
LANGS = {
    "en",
    "es",
    "de",
    "fr",
    "pt",
    "it",
    "ar",
    "hi",
    "el",
    "ru",
    "fa",
    "hi-Latn",  # Hinglish (romanised Hindi, code-mixed with English)
    "ar-Latn",  # Arabizi (romanised Arabic)
    "el-Latn",  # Greeklish
}
LANG_ORDER = ["en", "es", "de", "fr", "pt", "it", "ar", "hi", "el", "ru", "fa", "hi-Latn", "ar-Latn", "el-Latn"]
ALLOWED_KEYS = {"text", "lang", "intents", "source", "tweet_id", "note"}
SOURCE_RE = re.compile(r"^(written|crisislex:[A-Za-z0-9_]+)$")

DEV_PERCENT = 20
# CrisisLex events held out as dev (whole events; ~20% of the CrisisLex records).
DEV_EVENTS = {
    "2013_Alberta_floods",
    "2012_Typhoon_Pablo",
    "2013_NY_train_crash",
    "2013_Singapore_haze",
}


def normalise(text: str) -> str:
    """Key used for duplicate detection, ids and hashing: NFC, whitespace collapsed, casefolded."""
    return " ".join(unicodedata.normalize("NFC", text).split()).casefold()


def bucket(key: str) -> int:
    return int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:8], 16) % 100


def primary_intent(intents: list[str]) -> str:
    for name in PRIMARY_ORDER:
        if name in intents:
            return name
    return "none"


def load(src: Path, errors: list[str]) -> list[dict]:
    records: list[dict] = []
    seen: dict[str, str] = {}
    files = sorted(src.glob("*.jsonl"))
    if not files:
        errors.append(f"no source files in {src}")
    for path in files:
        rel = f"{path.parent.name}/{path.name}"
        with path.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                where = f"{rel}:{lineno}"
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    errors.append(f"{where}: invalid JSON ({exc})")
                    continue
                if not isinstance(obj, dict):
                    errors.append(f"{where}: not a JSON object")
                    continue
                extra = set(obj) - ALLOWED_KEYS
                if extra:
                    errors.append(f"{where}: unknown field(s) {sorted(extra)}")
                text = obj.get("text")
                if not isinstance(text, str) or not text.strip():
                    errors.append(f"{where}: empty or missing text")
                    continue
                lang = obj.get("lang")
                if lang not in LANGS:
                    errors.append(f"{where}: unknown lang {lang!r} (allowed: {sorted(LANGS)})")
                intents = obj.get("intents")
                if not isinstance(intents, list) or not all(isinstance(i, str) for i in intents):
                    errors.append(f"{where}: intents must be a list of strings")
                    continue
                unknown = [i for i in intents if i not in INTENTS]
                if unknown:
                    errors.append(f"{where}: unknown intent(s) {unknown} (allowed: {INTENTS})")
                if len(set(intents)) != len(intents):
                    errors.append(f"{where}: repeated intent in {intents}")
                source = obj.get("source")
                if not isinstance(source, str) or not SOURCE_RE.match(source):
                    errors.append(f"{where}: bad source {source!r} (want 'written' or 'crisislex:<event>')")
                    continue
                if source.startswith("crisislex:") and "tweet_id" in obj and not str(obj["tweet_id"]).isdigit():
                    errors.append(f"{where}: tweet_id must be digits")
                key = normalise(text)
                if key in seen:
                    errors.append(f"{where}: duplicate text (after normalising) of {seen[key]}")
                    continue
                seen[key] = where
                rec = {
                    "id": f"{lang}-{hashlib.sha1(key.encode('utf-8')).hexdigest()[:12]}",
                    "text": text,
                    "lang": lang,
                    "intents": [i for i in INTENTS if i in intents],
                    "source": source,
                }
                if "tweet_id" in obj:
                    rec["tweet_id"] = str(obj["tweet_id"])
                rec["_key"] = key
                records.append(rec)
    return records


def assign_split(rec: dict) -> str:
    source = rec["source"]
    if source.startswith("crisislex:"):
        event = source.split(":", 1)[1]
        return "dev" if event in DEV_EVENTS else "train"
    stratum = f"{rec['lang']}|{primary_intent(rec['intents'])}"
    return "dev" if bucket(f"split:{stratum}:{rec['_key']}") < DEV_PERCENT else "train"


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as fh:
        for r in rows:
            out = {k: r[k] for k in ("id", "text", "lang", "intents", "source", "tweet_id") if k in r}
            fh.write(json.dumps(out, ensure_ascii=False) + "\n")


def table(rows: list[dict], title: str) -> str:
    cols = [*INTENTS, "none", "records"]
    counts: dict[str, Counter] = defaultdict(Counter)
    for r in rows:
        c = counts[r["lang"]]
        c["records"] += 1
        for i in r["intents"] or ["none"]:
            c[i] += 1
    langs = [lg for lg in LANG_ORDER if lg in counts] + sorted(set(counts) - set(LANG_ORDER))
    head = "| lang | " + " | ".join(cols) + " |"
    sep = "|---|" + "---:|" * len(cols)
    lines = [f"**{title}** ({len(rows)} records)", "", head, sep]
    total: Counter = Counter()
    for lg in langs:
        lines.append(f"| {lg} | " + " | ".join(str(counts[lg][c]) for c in cols) + " |")
        total.update(counts[lg])
    lines.append("| **all** | " + " | ".join(str(total[c]) for c in cols) + " |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="validate and print counts; write nothing")
    ap.add_argument(
        "--min",
        type=int,
        default=0,
        metavar="N",
        help="fail (exit 2) if any of the 11 ISO languages has fewer than N hand-written examples "
        "of some intent (train+dev; romanised variants and CrisisLex are not checked)",
    )
    ap.add_argument("--src", type=Path, default=SRC, help="source folder (default: %(default)s)")
    ap.add_argument("--out", type=Path, default=HERE, help="output folder (default: %(default)s)")
    args = ap.parse_args()

    errors: list[str] = []
    records = load(args.src, errors)
    if errors:
        print(f"build.py: {len(errors)} problem(s) in {args.src}:", file=sys.stderr)
        for e in errors:
            print("  " + e, file=sys.stderr)
        return 1

    records.sort(key=lambda r: (LANG_ORDER.index(r["lang"]), r["id"]))
    train = [r for r in records if assign_split(r) == "train"]
    dev = [r for r in records if assign_split(r) == "dev"]

    if not args.check:
        write_jsonl(args.out / "train.jsonl", train)
        write_jsonl(args.out / "dev.jsonl", dev)

    print(table(train, "train"))
    print()
    print(table(dev, "dev"))
    print()
    print(table(records, "all"))
    cl_dev = sorted({r["source"].split(":", 1)[1] for r in dev if r["source"].startswith("crisislex:")})
    print(f"\ncrisislex dev events: {', '.join(cl_dev) or '-'}")

    if args.min:
        short = []
        totals: dict[str, Counter] = defaultdict(Counter)
        for r in records:
            if r["source"] == "written":
                for i in r["intents"]:
                    totals[r["lang"]][i] += 1
        for lang in ["en", "es", "de", "fr", "pt", "it", "ar", "hi", "el", "ru", "fa"]:
            for i in INTENTS:
                if totals[lang][i] < args.min:
                    short.append(f"{lang}/{i}={totals[lang][i]}")
        if short:
            print(f"build.py: below --min {args.min} (written records): {', '.join(short)}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Loaders for the labelled data the classifier is trained and evaluated on."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
SHARED_DATA = Path(os.environ.get("TRIAGE_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
UMSAB_DIR = SHARED_DATA / "umsab-sentiment"
INTENTS_DIR = REPO_ROOT / "data" / "intents"

# UMSAB folder -> ISO 639-1 code. (The Hindi set is mostly romanised Hindi/Hinglish.)
UMSAB_LANGUAGES: dict[str, str] = {
    "arabic": "ar", "english": "en", "french": "fr", "german": "de",
    "hindi": "hi", "italian": "it", "portuguese": "pt", "spanish": "es",
}


@dataclass
class Labelled:
    texts: list[str]
    labels: list[int]     # sentiment: 0 neg, 1 neu, 2 pos
    langs: list[str]


def load_umsab(split: str, root: Path = UMSAB_DIR) -> Labelled:
    if not root.exists():
        raise FileNotFoundError(f"UMSAB data not found at {root} (set TRIAGE_SHARED_DATA)")
    out = Labelled([], [], [])
    for folder, code in sorted(UMSAB_LANGUAGES.items()):
        tpath, lpath = root / folder / f"{split}_text.txt", root / folder / f"{split}_labels.txt"
        texts = tpath.read_text(encoding="utf-8").split("\n")
        labels = lpath.read_text(encoding="utf-8").split("\n")
        texts = texts[:-1] if texts and texts[-1] == "" else texts
        labels = [x for x in labels if x.strip()]
        if len(texts) != len(labels):
            raise ValueError(f"{tpath}: {len(texts)} texts but {len(labels)} labels")
        out.texts += texts
        out.labels += [int(x) for x in labels]
        out.langs += [code] * len(texts)
    return out


@dataclass
class IntentSet:
    texts: list[str]
    labels: list[list[str]]
    langs: list[str]


def load_intents(split: str, root: Path = INTENTS_DIR) -> IntentSet:
    path = root / f"{split}.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"intent data not found: {path}")
    out = IntentSet([], [], [])
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        rec = json.loads(line)
        out.texts.append(rec["text"])
        out.labels.append(list(rec["intents"]))
        out.langs.append(rec["lang"])
    return out


REALDEV_DIR = REPO_ROOT / "data" / "realdev"


def load_realdev(root: Path = REALDEV_DIR, labels_glob: str = "pass1.*.jsonl") -> IntentSet:
    """The real-text dev set: pool posts with the team's first-pass labels (never trained on).

    Empty when no labels exist yet. ``langs`` is the pool's language (UMSAB folder, else "en").
    Under the written definitions every outage report is a complaint (docs/intents.md); where an
    annotator marked outage_report alone, complaint is added here (the label files stay as written).
    """
    pool_path = root / "pool.jsonl"
    out = IntentSet([], [], [])
    if not pool_path.exists():
        return out
    pool = {r["id"]: r for r in (json.loads(x) for x in pool_path.read_text(encoding="utf-8").splitlines() if x)}
    for path in sorted((root / "labels").glob(labels_glob)):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                rec = json.loads(line)
                item = pool[rec["id"]]
                intents = list(rec["intents"])
                if "outage_report" in intents and "complaint" not in intents:
                    intents.insert(0, "complaint")
                out.texts.append(item["text"])
                out.labels.append(intents)
                out.langs.append(item["lang"])
    return out


OUTAGE_EVAL_DIR = REPO_ROOT / "data" / "outage_eval"


@dataclass
class OutagePost:
    id: str
    source: str
    lang: str
    label: str            # "outage" | "complaint" (ordinary: not an outage report) | "other"
    service: str | None   # power_gas_water, telecom, transport, payments, apps_sites_logins (or None)
    text: str


def load_outage_eval(root: Path = OUTAGE_EVAL_DIR) -> list[OutagePost]:
    """The team-labelled outage evaluation set (data/outage_eval/eval.jsonl; never trained on). Empty when absent."""
    path = root / "eval.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            r = json.loads(line)
            out.append(OutagePost(r["id"], r["source"], r["lang"], r["label"], r["service"], r["text"]))
    return out

"""Calibrate the emerging-issue clusters' cosine threshold on real text (prints the table in
services/classify/crisis/emerging.py's docstring).

Banking77's test set (real customer queries, 77 intents) stands in for paraphrases of one problem (same
intent) vs other problems; the shared customer-care tweets (first customer turns to 25 brands) for unrelated
real complaints. Embeddings come from the worker's scorer and go through the int8 sketch the crisis stage
receives. A centroid of 5 posts per intent; the share of the other posts at or above each threshold.

    TRIAGE_SHARED_DATA=../shared/data python -m bench.emerging_threshold
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np

from services.classify.config import ClassifySettings
from services.classify.crisis.emerging import sketch, unsketch
from services.classify.factory import build_scorer

THRESHOLDS = (0.85, 0.86, 0.87, 0.88, 0.89, 0.90, 0.91)


def _through_sketch(m: np.ndarray) -> np.ndarray:
    return np.stack([v for v in (unsketch(sketch(row)) for row in m) if v is not None])


def _customer_turns(path: Path) -> tuple[list[str], list[str]]:
    texts, companies = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                row = json.loads(line.replace("\\ ", " "), strict=False)
            except ValueError:
                continue
            if row.get("role") == "customer_first_turn":
                texts.append(row["text"])
                companies.append(row["company"])
    return texts, companies


def main() -> None:
    root = Path(os.environ.get("TRIAGE_SHARED_DATA", "../shared/data"))
    with open(root / "banking77-nlupp" / "banking77" / "test.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    tweets, companies = _customer_turns(root / "customer-care-unlabelled" / "customer_care_texts.jsonl")
    scorer = build_scorer(ClassifySettings())
    queries = _through_sketch(scorer.embed([r["text"] for r in rows]))
    cc = _through_sketch(scorer.embed(tweets))
    labels = [r["category"] for r in rows]
    rng = np.random.default_rng(0)
    names = sorted(set(labels))
    centroids, rest = [], []
    for name in names:
        idx = rng.permutation([i for i, x in enumerate(labels) if x == name])
        c = queries[idx[:5]].mean(0)
        centroids.append(c / np.linalg.norm(c))
        rest.append(idx[5:])
    cents = np.stack(centroids)
    same, other, other_any = [], [], []
    for j in range(len(names)):
        s = queries[rest[j]] @ cents.T
        same += list(s[:, j])
        o = np.delete(s, j, axis=1)
        other += list(o.ravel())
        other_any += list(o.max(1))
    tweet_any = (cc @ cents.T).max(1)
    sims = cc @ cc.T
    pairs = np.triu(np.ones_like(sims, dtype=bool), 1) & (np.array(companies)[:, None] != np.array(companies)[None, :])
    tweet_pairs = sims[pairs]
    print("| threshold | same intent -> centroid | other intent (per centroid) | reaches some of 76 wrong "
          "| tweet reaches some banking centroid | tweet pairs, two companies |")
    print("|---|---|---|---|---|---|")
    for t in THRESHOLDS:
        print(f"| {t:.2f} | {np.mean(np.array(same) >= t):.1%} | {np.mean(np.array(other) >= t):.1%} "
              f"| {np.mean(np.array(other_any) >= t):.1%} | {np.mean(tweet_any >= t):.1%} "
              f"| {np.mean(tweet_pairs >= t):.2%} |")


if __name__ == "__main__":
    main()

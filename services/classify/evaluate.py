"""`triage eval` / `make eval`: the classifier's figures on held-out data, as tables.

- Sentiment macro-F1 per UMSAB language on val (+ 8-language average) next to the published
  test-split figures (fastText 51.0, XLM-R 66.8, XLM-T 69.4: Barbieri et al., LREC 2022).
- Language-ID accuracy per UMSAB language on val (the folder's language is the truth).
- Intent F1 per intent on data/intents dev, and per language.
- Expected calibration error (15 bins) of sentiment (val) and intents (dev).
Same encoder, heads and language detector as the worker (via `build_scorer`).
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections import defaultdict

import numpy as np
from sklearn.metrics import f1_score

from services.classify.datasets import UMSAB_LANGUAGES, load_intents, load_umsab
from services.classify.priority import INTENTS

PUBLISHED = {"fastText (per language)": 51.0, "XLM-R base (all languages)": 66.8, "XLM-T (all languages)": 69.4}


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = 15) -> float:
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    for lo, hi in itertools.pairwise(edges):
        mask = (confidence > lo) & (confidence <= hi)
        if mask.any():
            ece += mask.mean() * abs(confidence[mask].mean() - correct[mask].mean())
    return float(ece)


def sentiment_table(scorer, emb: np.ndarray, labels: np.ndarray, langs: list[str]) -> tuple[str, float, float]:
    proba = scorer.heads.sentiment.predict_proba(emb)
    pred = proba.argmax(1)
    rows = ["| language | n | macro-F1 | accuracy |", "|---|---:|---:|---:|"]
    la = np.array(langs)
    scores = []
    for lang in sorted(set(langs)):
        m = la == lang
        f1 = f1_score(labels[m], pred[m], average="macro") * 100
        scores.append(f1)
        rows.append(f"| {lang} | {m.sum()} | {f1:.1f} | {(labels[m] == pred[m]).mean() * 100:.1f} |")
    avg = float(np.mean(scores))
    rows.append(f"| **8-language average (val)** | {len(labels)} | **{avg:.1f}** | |")
    for name, value in PUBLISHED.items():
        rows.append(f"| published, test split: {name} | | {value:.1f} | |")
    ece = expected_calibration_error(proba.max(1), (pred == labels).astype(float))
    return "\n".join(rows), avg, ece


def langid_table(scorer, texts: list[str], langs: list[str]) -> tuple[str, float]:
    detected = [code for code, _ in scorer.langid.detect(texts)]
    per: dict[str, list[bool]] = defaultdict(list)
    for d, t in zip(detected, langs, strict=True):
        per[t].append(d == t)
    rows = ["| language | n | accuracy | most common wrong answer |", "|---|---:|---:|---|"]
    for lang in sorted(per):
        wrong = [d for d, t in zip(detected, langs, strict=True) if t == lang and d != t]
        common = max(set(wrong), key=wrong.count) if wrong else "-"
        rows.append(f"| {lang} | {len(per[lang])} | {np.mean(per[lang]) * 100:.1f} | {common} |")
    overall = float(np.mean([np.mean(v) for v in per.values()]) * 100)
    rows.append(f"| **average** | {len(texts)} | **{overall:.1f}** | |")
    return "\n".join(rows), overall


def intents_table(scorer, emb: np.ndarray, labels: list[list[str]], langs: list[str]) -> tuple[str, str, float, float]:
    y = np.zeros((len(labels), len(INTENTS)))
    for i, labs in enumerate(labels):
        for lab in labs:
            y[i, INTENTS.index(lab)] = 1
    names = list(scorer.heads.intents.labels)
    order = [names.index(n) for n in INTENTS]
    proba = scorer.heads.intents.predict_proba(emb)[:, order]
    pred = (proba >= 0.5).astype(int)
    rows = ["| intent | support | precision | recall | F1 |", "|---|---:|---:|---:|---:|"]
    from sklearn.metrics import precision_recall_fscore_support

    p, r, f, s = precision_recall_fscore_support(y, pred, zero_division=0)
    for j, name in enumerate(INTENTS):
        rows.append(f"| {name} | {int(s[j])} | {p[j] * 100:.1f} | {r[j] * 100:.1f} | {f[j] * 100:.1f} |")
    macro = float(np.mean(f) * 100)
    rows.append(f"| **macro** | {len(labels)} | | | **{macro:.1f}** |")
    la = np.array(langs)
    lrows = ["| language | n | intent macro-F1 |", "|---|---:|---:|"]
    for lang in sorted(set(langs)):
        m = la == lang
        lf = f1_score(y[m], pred[m], average="macro", zero_division=0) * 100
        lrows.append(f"| {lang} | {m.sum()} | {lf:.1f} |")
    ece = expected_calibration_error(proba.ravel(), y.ravel())  # per-decision calibration of each sigmoid
    return "\n".join(rows), "\n".join(lrows), macro, ece


def main(argv: list[str] | None = None) -> int:
    from services.classify.config import ClassifySettings
    from services.classify.factory import build_scorer
    from services.classify.train import embed_cached

    parser = argparse.ArgumentParser(prog="triage eval", description=__doc__)
    parser.parse_args(argv)
    scorer = build_scorer(ClassifySettings())
    print(f"# Classifier evaluation (model {scorer.model_version})\n")

    val = load_umsab("val")
    emb = embed_cached(scorer.encoder, val.texts, scorer.max_length)
    table, avg, ece_s = sentiment_table(scorer, emb, np.array(val.labels), val.langs)
    print("## Sentiment: UMSAB val, macro-F1 (%)\n")
    print(table)
    print(f"\nSentiment expected calibration error (val, 15 bins): {ece_s:.3f}\n")

    print(f"## Language ID: UMSAB val ({len(UMSAB_LANGUAGES)} languages)\n")
    ltable, lacc = langid_table(scorer, val.texts, val.langs)
    print(ltable)
    print("\n(The UMSAB Hindi set is mostly romanised Hindi/Hinglish, which detectors read as English or other "
          "Latin-script languages.)\n")

    dev = load_intents("dev")
    demb = embed_cached(scorer.encoder, dev.texts, scorer.max_length)
    itable, ltable2, macro, ece_i = intents_table(scorer, demb, dev.labels, dev.langs)
    print("## Intents: data/intents dev (multi-label, threshold 0.5)\n")
    print(itable)
    print()
    print(ltable2)
    print(f"\nIntent expected calibration error (dev, all intent decisions, 15 bins): {ece_i:.3f}\n")
    print(f"SUMMARY sentiment_val_macro_f1={avg:.1f} langid_val_accuracy={lacc:.1f} intent_dev_macro_f1={macro:.1f} "
          f"sentiment_ece={ece_s:.3f} intent_ece={ece_i:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`triage model parity` (`make parity`): every encoder runtime against fp32 torch, and the verdicts recorded.

For each candidate runtime of this CPU (torch-fp32, torch-bf16 where the CPU has native bf16,
onnx-fp32, onnx-int8, onnx-int8-static, and openvino-fp32 / openvino-bf16 (where the openvino package is
installed, as the model dependencies do); see `encoder/runtime.py`), on the same weights (adapter merged) and heads:

- label agreement with torch-fp32 on the parity set (`artifacts/parity_set.jsonl`), >= 99%;
- intent macro-F1 on the real-text dev set (data/realdev, p >= 0.5, as shipped) and sentiment macro-F1
  on UMSAB val (the 8-language average of `triage eval`), each within 0.5 point of torch-fp32's.

Prints one table row per runtime with its verdict, and records the results in `runtime-choices.json`
beside the model, where `TRIAGE_RUNTIME=auto` reads them: a runtime that failed any check is never
chosen. `--limit N` scores only the first N texts of each set for a quick look; such a run is not recorded.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from services.classify.priority import INTENTS
from services.classify.training.datasets import load_realdev, load_umsab


def sentiment_macro_f1(heads, emb: np.ndarray, labels: np.ndarray, langs: list[str]) -> float:  # type: ignore[no-untyped-def]
    """Macro-F1 (points) of the sentiment head, averaged over languages as `triage eval` reports it."""
    from sklearn.metrics import f1_score

    pred = heads.sentiment.predict_proba(emb).argmax(1)
    la = np.array(langs)
    return float(np.mean([f1_score(labels[la == g], pred[la == g], average="macro") * 100 for g in sorted(set(langs))]))


def intent_macro_f1(heads, emb: np.ndarray, labels: list[list[str]]) -> float:  # type: ignore[no-untyped-def]
    """Macro-F1 (points) over the intents at p >= 0.5, with the shipped calibration."""
    from sklearn.metrics import f1_score

    names = list(heads.intents.labels)
    proba = heads.intents.predict_proba(emb)[:, [names.index(n) for n in INTENTS]]
    truth = np.array([[int(n in labs) for n in INTENTS] for labs in labels])
    return float(f1_score(truth, (proba >= 0.5).astype(int), average="macro", zero_division=0) * 100)


def main(argv: list[str] | None = None) -> int:
    from services.classify.config import ClassifySettings
    from services.classify.encoder.adapter import resolve_adapter
    from services.classify.encoder.loader import PRECISION_CACHE_FILE, ensure_default_model, load_encoder
    from services.classify.encoder.precision import PrecisionCache
    from services.classify.encoder.runtime import (
        REFERENCE,
        RUNTIME_CACHE_FILE,
        RuntimeChoices,
        Variants,
        candidates,
        head_labels,
        measure,
        parity_key,
        parity_texts,
    )
    from services.classify.heads import ARTIFACTS_DIR, HeadSet
    from services.classify.scorer import EMBED_PREFIX

    parser = argparse.ArgumentParser(prog="triage model parity", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runtimes", default="", help="comma-separated runtimes (default: every candidate here)")
    parser.add_argument("--limit", type=int, default=0, help="first N texts of each data set only (not recorded)")
    args = parser.parse_args(argv)

    settings = ClassifySettings()
    model_dir = Path(settings.model or ensure_default_model())
    heads = HeadSet.load(Path(settings.heads_dir) if settings.heads_dir else ARTIFACTS_DIR)
    encoder = load_encoder(str(model_dir), torch_threads=settings.torch_threads or None, precision="fp32",
                           adapter=resolve_adapter(settings.adapter_dir), batch_size=settings.max_batch)
    import torch

    threads = torch.get_num_threads()
    precision_cache = PrecisionCache(model_dir / PRECISION_CACHE_FILE)
    variants = Variants(encoder, threads, precision_cache, PrecisionCache.key(encoder.version, threads=threads))
    names = [n.strip() for n in args.runtimes.split(",") if n.strip()] or candidates("auto", "auto")
    names = [REFERENCE, *[n for n in names if n != REFERENCE]]
    limit = args.limit or None
    texts = parity_texts()[:limit]
    parity = head_labels(heads)
    print(f"# Runtime parity: model {encoder.version}, heads {heads.version}, {threads} threads, "
          f"{len(texts)} parity texts\n", flush=True)
    trials = {t.name: t for t in measure(variants, names, texts, parity)}

    val, real = load_umsab("val"), load_realdev()
    val_texts, val_labels, val_langs = val.texts[:limit], np.array(val.labels[:limit]), val.langs[:limit]
    real_texts, real_labels = real.texts[:limit], real.labels[:limit]
    for name in names:
        enc = variants.get(name)
        started = time.perf_counter()
        vemb = enc.embed(val_texts, prefix=EMBED_PREFIX, max_length=settings.max_tokens)
        checks = {"sentiment_umsab_val": sentiment_macro_f1(heads, vemb, val_labels, val_langs)}
        if real_texts:
            remb = enc.embed(real_texts, prefix=EMBED_PREFIX, max_length=settings.max_tokens)
            checks["intent_realdev"] = intent_macro_f1(heads, remb, real_labels)
        ref = trials[REFERENCE].f1
        trials[name].f1 = {k: [ref[k][0] if ref else v, v] for k, v in checks.items()}
        print(f"  {name}: {len(val_texts) + len(real_texts)} texts scored in {time.perf_counter() - started:.1f}s",
              file=sys.stderr, flush=True)

    print("| runtime | parity set s | label agreement | sentiment | intents | min cosine | sentiment macro-F1, "
          "UMSAB val | intent macro-F1, real dev | verdict |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for name in names:
        t = trials[name]
        f1 = {k: f"{v[1]:.2f} ({v[1] - v[0]:+.2f})" for k, v in t.f1.items()}
        verdict = "; ".join(t.failures()) or "pass"
        print(f"| {name} | {t.seconds:.2f} | {t.agreement:.1%} | {t.sentiment_agreement:.1%} | "
              f"{t.intent_agreement:.1%} | {t.min_cosine:.5f} | {f1.get('sentiment_umsab_val', '-')} | "
              f"{f1.get('intent_realdev', '-')} | {verdict} |")
    if limit:
        print("\n(--limit: not recorded)")
        return 0
    RuntimeChoices(model_dir / RUNTIME_CACHE_FILE).put(
        parity_key(encoder.version, parity.version, texts), {"trials": {n: asdict(t) for n, t in trials.items()}})
    print(f"\nrecorded in {model_dir / RUNTIME_CACHE_FILE} (TRIAGE_RUNTIME=auto never chooses a failed runtime)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`make bench`: classify throughput and batch latency on this machine.

Scores real UMSAB val tweets (all 8 languages) with the worker's code path
(`Scorer.score_texts`: length-sorted dynamic padding, inference_mode, heads,
language ID, priority) at batch sizes 1, 8, 32, 64, and, for comparison, a
naive baseline that embeds one mention at a time with
`transformers.pipeline("feature-extraction")` on the same model. Prints figures;
asserts nothing (benchmarks are not tests).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time

import numpy as np


def _percentile(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.classify", description=__doc__)
    parser.add_argument("--mentions", type=int, default=int(os.environ.get("BENCH_MENTIONS", "512")))
    parser.add_argument("--baseline-mentions", type=int, default=int(os.environ.get("BENCH_BASELINE", "128")))
    parser.add_argument("--batch-sizes", default="1,8,32,64")
    args = parser.parse_args(argv)

    import torch

    from services.classify.config import ClassifySettings
    from services.classify.datasets import load_umsab
    from services.classify.factory import build_scorer
    from services.classify.scorer import EMBED_PREFIX

    settings = ClassifySettings()
    scorer = build_scorer(settings)
    texts = load_umsab("val").texts
    random.Random(0).shuffle(texts)
    texts = texts[: args.mentions]
    print(f"# Classify benchmark: {len(texts)} UMSAB val tweets, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, max_tokens {scorer.max_length}, model {scorer.model_version}\n")
    scorer.score_texts(texts[:16])  # warm-up

    rows = ["| path | batch | mentions/s | p50 batch ms | p99 batch ms |", "|---|---:|---:|---:|---:|"]
    for bs in [int(x) for x in args.batch_sizes.split(",")]:
        scorer.batch_size = bs
        lat: list[float] = []
        started = time.perf_counter()
        for i in range(0, len(texts), bs):
            t0 = time.perf_counter()
            scorer.score_texts(texts[i:i + bs])
            lat.append(time.perf_counter() - t0)
        total = time.perf_counter() - started
        rows.append(f"| worker (Scorer) | {bs} | {len(texts) / total:.1f} | {statistics.median(lat) * 1000:.1f} | "
                    f"{_percentile(lat, 99) * 1000:.1f} |")
        print(rows[-1], flush=True)

    # Naive baseline: transformers.pipeline, one mention at a time, same weights, same heads.
    from transformers import pipeline

    model_dir = settings.model or str(__import__("services.classify.encoder.loader", fromlist=["x"])
                                      .ensure_default_model())
    pipe = pipeline("feature-extraction", model=model_dir, tokenizer=model_dir, device="cpu")
    base = texts[: args.baseline_mentions]
    lat = []
    started = time.perf_counter()
    for t in base:
        t0 = time.perf_counter()
        feats = np.asarray(pipe(EMBED_PREFIX + t, truncation=True, max_length=scorer.max_length))[0]
        emb = feats.mean(0)
        emb /= np.linalg.norm(emb)
        scorer.heads.sentiment.predict_proba(emb[None, :].astype(np.float32))
        scorer.heads.intents.predict_proba(emb[None, :].astype(np.float32))
        lat.append(time.perf_counter() - t0)
    total = time.perf_counter() - started
    rows.append(f"| naive transformers.pipeline | 1 | {len(base) / total:.1f} | {statistics.median(lat) * 1000:.1f} | "
                f"{_percentile(lat, 99) * 1000:.1f} |")
    print("\n" + "\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`make bench`: classify throughput against this machine's own matmul peak, per precision and batch size.

In one run, on the same real UMSAB val tweets (all 8 languages):
1. the matmul peak of this CPU in fp32 and bf16 (square 2048 matmuls, torch threads as configured);
2. the worker's code path (`Scorer.score_texts`: tokenise, length buckets with dynamic padding, encoder,
   heads, language ID, priority) per runtime and precision (PyTorch fp32, bf16 autocast, bf16 weights,
   int8; ONNX Runtime fp32, int8 dynamic and int8 static quantisation over the export cached by `triage model build`;
   OpenVINO fp32 and bf16 over that export (openvino is in the model dependencies))
   and batch size: mentions/s, tokens/s, achieved GFLOP/s (2 x non-embedding parameters per token, plus the
   attention matmuls) and % of the best peak measured in step 1;
3. the naive baseline: one tweet at a time through `transformers.pipeline`, fp32;
4. the ratio of the best worker row to the baseline;
5. cold start per runtime in fresh processes (`bench/coldstart.py`): spawn -> first scored mention, its
   phases, and the RSS of one scoring process.
Prints figures; asserts nothing (benchmarks are not tests). Also writes them, with the CPU's model name and
instruction sets, to a JSON file (`bench/results.py`; `$BENCH_OUT`, default `.cache/bench/`), which
`make capacity` reads.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time

import numpy as np

from bench import coldstart
from bench.results import write_results


def _percentile(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def matmul_peak(dtype_name: str, n: int = 2048, seconds: float = 2.0) -> float:
    """Best GFLOP/s of an n x n x n matmul in ``dtype_name`` over about ``seconds``."""
    import torch

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    torch.mm(a, b)
    best = 0.0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = max(best, 2 * n**3 / (time.perf_counter() - t0) / 1e9)
    return best


def flops_per_batch(model, lengths: list[int], batch_size: int) -> float:  # type: ignore[no-untyped-def]
    """Forward FLOPs for texts of ``lengths`` tokens chunked as the Encoder does (length buckets, padded)."""
    from services.classify.batching import length_buckets

    cfg = model.config
    emb_params = sum(p.numel() for n, p in model.named_parameters() if "embeddings" in n)
    dense = sum(p.numel() for p in model.parameters()) - emb_params
    total = 0.0
    for chunk in length_buckets(lengths, batch_size):
        width = max(lengths[i] for i in chunk)
        tokens = width * len(chunk)
        attn = 4 * cfg.num_hidden_layers * width * width * cfg.hidden_size * len(chunk)  # QK^T and AV
        total += 2 * dense * tokens + attn
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.classify", description=__doc__)
    parser.add_argument("--mentions", type=int, default=int(os.environ.get("BENCH_MENTIONS", "512")))
    parser.add_argument("--baseline-mentions", type=int, default=int(os.environ.get("BENCH_BASELINE", "128")))
    parser.add_argument("--batch-sizes", default="8,32,64,128")
    parser.add_argument("--precisions", default="fp32,bf16-autocast,bf16-weights,int8")
    parser.add_argument("--onnx-precisions", default="fp32,int8,int8-static",
                        help="ONNX Runtime rows ('' to skip them)")
    parser.add_argument("--openvino-precisions", default="fp32,bf16",
                        help="OpenVINO rows (openvino is in the model dependencies) ('' to skip them)")
    parser.add_argument("--staged-precision", default="auto",
                        help="precision of the sequential vs staged worker-loop rows ('' to skip them)")
    parser.add_argument("--cold-configs", default=os.environ.get("BENCH_COLD_CONFIGS", coldstart.DEFAULT_CONFIGS),
                        help="TRIAGE_RUNTIME:TRIAGE_PRECISION pairs for the cold-start table ('' to skip it)")
    parser.add_argument("--cold-repeats", type=int, default=int(os.environ.get("BENCH_COLD_REPEATS", "1")))
    args = parser.parse_args(argv)

    import torch

    from services.classify.config import ClassifySettings
    from services.classify.encoder.precision import native_bf16
    from services.classify.factory import build_scorer
    from services.classify.scorer import EMBED_PREFIX
    from services.classify.training.datasets import load_umsab

    texts = load_umsab("val").texts
    random.Random(0).shuffle(texts)
    texts = texts[: args.mentions]
    settings = ClassifySettings(precision="fp32")
    scorer = build_scorer(settings)
    print(f"# Classify benchmark: {len(texts)} UMSAB val tweets, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, native bf16: {'+'.join(native_bf16()) or 'none'}, "
          f"max_tokens {scorer.max_length}, model {scorer.model_version}\n")
    from services.classify.encoder.loader import available_cpus

    figures: dict = {"mentions": len(texts), "torch": torch.__version__, "threads": torch.get_num_threads(),
                     "available_cpus": available_cpus(), "native_bf16": sorted(native_bf16()),
                     "max_tokens": scorer.max_length, "model_version": scorer.model_version, "rows": []}
    peaks = {d: matmul_peak(d) for d in ("fp32", "bf16")}
    figures["peaks_gflops"] = peaks
    best_peak = max(peaks.values())
    print("| matmul 2048^3 | GFLOP/s |\n|---|---:|")
    for d, v in peaks.items():
        print(f"| {d} | {v:.0f} |")
    print()
    lengths = [min(n, scorer.max_length) for n in scorer.encoder.token_counts(texts)]
    n_tokens = sum(lengths)
    figures["tokens"] = n_tokens
    print(f"{n_tokens} tokens in all ({n_tokens / len(texts):.1f} per tweet incl. prefix and specials)\n")

    rows = ["| path | precision | batch | mentions/s | tokens/s | GFLOP/s | % of best peak | p50 batch ms "
            "| p99 batch ms |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    print("\n".join(rows), flush=True)
    best_rate = 0.0
    configs = [ClassifySettings(precision=p) for p in args.precisions.split(",") if p]  # type: ignore[arg-type]
    configs += [ClassifySettings(runtime="onnx", precision=p)  # type: ignore[arg-type]
                for p in args.onnx_precisions.split(",") if p]
    from services.classify.encoder.openvino_runtime import openvino_available

    if openvino_available():   # the optional extra
        configs += [ClassifySettings(runtime="openvino", precision=p)  # type: ignore[arg-type]
                    for p in args.openvino_precisions.split(",") if p]
    load_times = []
    for config in configs:
        prec = config.precision
        t0 = time.perf_counter()
        scorer = build_scorer(config)
        scorer.score_texts(texts[:1])
        loaded_s = time.perf_counter() - t0
        load_times.append(f"| {scorer.encoder.runtime} ({scorer.encoder.precision.mode}) | {loaded_s:.1f} |")
        figures.setdefault("in_process_load_s", {})[scorer.encoder.runtime] = loaded_s
        scorer.score_texts(texts[:32])  # warm-up (oneDNN kernel cache)
        for bs in [int(x) for x in args.batch_sizes.split(",")]:
            scorer.batch_size = bs
            lat: list[float] = []
            started = time.perf_counter()
            for i in range(0, len(texts), bs):
                t0 = time.perf_counter()
                scorer.score_texts(texts[i:i + bs])
                lat.append(time.perf_counter() - t0)
            total = time.perf_counter() - started
            torch_int8 = prec == "int8" and scorer.encoder.engine == "torch"
            flops = sum(flops_per_batch(scorer.encoder.model if not torch_int8 else build_ref(settings),
                                        lengths[i:i + bs], bs) for i in range(0, len(texts), bs))
            gflops = flops / total / 1e9
            rate = len(texts) / total
            best_rate = max(best_rate, rate)
            row = (f"| worker (Scorer) | {scorer.encoder.numerics} | {bs} | {rate:.1f} | {n_tokens / total:.0f} "
                   f"| {gflops:.0f} | {gflops / best_peak * 100:.1f} | {statistics.median(lat) * 1000:.1f} "
                   f"| {_percentile(lat, 99) * 1000:.1f} |")
            rows.append(row)
            print(row, flush=True)
            figures["rows"].append({
                "path": "worker (Scorer)", "runtime": scorer.encoder.runtime, "numerics": scorer.encoder.numerics,
                "batch": bs, "mentions_per_s": rate, "tokens_per_s": n_tokens / total, "gflops": gflops,
                "pct_of_best_peak": gflops / best_peak * 100, "p50_batch_ms": statistics.median(lat) * 1000,
                "p99_batch_ms": _percentile(lat, 99) * 1000})

    if args.staged_precision:
        try:
            for row in staged_rows(ClassifySettings(precision=args.staged_precision), texts,  # type: ignore[arg-type]
                                   figures.setdefault("staged", [])):
                rows.append(row)
                print(row, flush=True)
        except Exception as exc:  # a benchmark row failing should not cost the rest of the table
            print(f"staged worker-loop rows failed: {type(exc).__name__}: {exc}", flush=True)

    # Naive baseline: transformers.pipeline, one mention at a time, fp32, same weights, same heads.
    from transformers import pipeline

    from services.classify.encoder.loader import ensure_default_model

    model_dir = settings.model or str(ensure_default_model())
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
    naive = len(base) / total
    rows.append(f"| naive transformers.pipeline | fp32 | 1 | {naive:.1f} | | | | {statistics.median(lat) * 1000:.1f} "
                f"| {_percentile(lat, 99) * 1000:.1f} |")
    print("\n" + "\n".join(rows))
    print("\n| runtime | scorer built + first mention scored, s (in this process; ONNX export cached) |\n|---|---:|")
    print("\n".join(load_times))
    print(f"\nbest worker row {best_rate:.1f} mentions/s = {best_rate / naive:.1f}x the naive baseline "
          f"({naive:.1f}/s); peaks fp32 {peaks['fp32']:.0f}, bf16 {peaks['bf16']:.0f} GFLOP/s")
    figures.update({"naive_mentions_per_s": naive, "best_mentions_per_s": best_rate,
                    "best_vs_naive": best_rate / naive})

    cold_configs = [c for c in args.cold_configs.split(",") if c]
    if cold_configs:
        print("\n# Cold start: spawn -> first scored mention, a fresh process per run "
              f"(target < {coldstart.TARGET_SECONDS:.0f} s; bench/coldstart.py)\n", flush=True)
        results = coldstart.run_all(cold_configs, texts[:128], args.cold_repeats)
        print("\n" + coldstart.table(results))
        figures["cold_start"] = coldstart.summary(results)
    print(f"\nwrote {write_results('classify', figures)}")
    return 0


def staged_rows(settings, texts: list[str], figures: list | None = None) -> list[str]:  # type: ignore[no-untyped-def]
    """The worker's loop over protobuf Mentions: decode -> prepare -> model -> encode, first one batch after
    the other, then with `pipeline.StagedBatches` overlapping the stages (what the Faust agent runs)."""
    import asyncio

    from services.classify.app import ClassifyWorker
    from services.classify.factory import build_scorer
    from services.classify.pipeline import StagedBatches
    from services.common import codec
    from services.common.codec import pb

    scorer = build_scorer(settings)
    worker = ClassifyWorker(settings, scorer)
    records = []
    for i, t in enumerate(texts):
        m = pb.Mention(source=pb.SOURCE_X, external_id=f"bench-{i}", mention_id=f"x:bench-{i}", text=t)
        m.brands.append("acmebank")
        records.append(codec.encode(m))
    scorer.score_texts(texts[:32])  # warm-up
    bs = settings.max_batch
    out = []

    started = time.perf_counter()
    for i in range(0, len(records), bs):
        batch = worker.prepare(records[i:i + bs])
        for sm in worker.infer(batch):
            codec.encode(sm)
    seq = len(records) / (time.perf_counter() - started)
    if figures is not None:
        figures.append({"path": "sequential", "runtime": scorer.encoder.runtime, "max_batch": bs,
                        "mentions_per_s": seq})
    out.append(f"| worker loop, stages one after the other | {scorer.encoder.precision.mode} | <= {bs} | {seq:.1f} "
               "| | | | | |")

    async def staged() -> float:
        done = asyncio.Event()
        emitted = 0
        sizes: list[int] = []

        async def emit(items, batch, result) -> None:  # type: ignore[no-untyped-def]
            nonlocal emitted
            if isinstance(result, BaseException):
                raise result
            for sm in result:
                codec.encode(sm)
            emitted += len(items)
            sizes.append(len(items))
            if emitted >= len(records):
                done.set()

        pipe = StagedBatches(worker.policy, worker.prepare, worker.infer, emit, intake_limit=4 * bs,
                             prepare_pool=worker.prepare_executor, infer_pool=worker.executor)
        t0 = time.perf_counter()
        async with pipe.running():
            for r in records:
                await pipe.put(r)
            await done.wait()
        rate = len(records) / (time.perf_counter() - t0)
        if figures is not None:
            figures.append({"path": "staged", "runtime": scorer.encoder.runtime, "max_batch": bs,
                            "mean_batch": statistics.mean(sizes), "mentions_per_s": rate})
        out.append(f"| worker loop, stages overlapped (StagedBatches) | {scorer.encoder.precision.mode} | "
                   f"<= {bs} (mean {statistics.mean(sizes):.1f}) | {rate:.1f} | | | | | |")
        return rate

    asyncio.run(staged())
    worker.prepare_executor.shutdown()
    worker.executor.shutdown()
    return out


_REF = {}


def build_ref(settings):  # type: ignore[no-untyped-def]
    """An fp32 model for counting FLOPs of the int8 rows (quantised modules hide their weights)."""
    if "model" not in _REF:
        from services.classify.factory import build_scorer

        _REF["model"] = build_scorer(settings).encoder.model
    return _REF["model"]


if __name__ == "__main__":
    sys.exit(main())

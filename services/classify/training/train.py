"""`triage train`: fine-tune the encoder (LoRA, multi-task), then fit the serving heads on it.

1. Fine-tune (`finetune.py`): LoRA adapters on the converted base, on UMSAB sentiment and the intent
   examples of `intent_sources.training_examples` (synthetic set + real shared sets mapped to the
   triage intents + the team-labelled training pool), bf16 autocast where the CPU has native bf16.
   Written to `artifacts/adapter/` (about 1 MB). `--no-finetune` keeps the plain frozen base.
2. Heads on the (merged) encoder's embeddings. Sentiment: UMSAB train split (8 languages, minus the
   real dev set's texts), selection and temperature on UMSAB val. Intents: the same training
   examples with partial labels (unknown intents masked; the team-labelled pool weighted up, see
   `intent_sources.SOURCE_WEIGHTS`), selection on the real-text dev set
   (`data/realdev`, 2-fold), per-intent Platt calibration (temperature + offset) on it, so that
   "present" (p >= 0.5) means "more likely than not" on real posts.
Embeddings are cached under .cache/embeddings. Deterministic up to float noise.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import f1_score

from services.classify.heads import ARTIFACTS_DIR, SENTIMENT_LABELS, Head, HeadSet
from services.classify.langid import RomanisedHindi
from services.classify.offline import embed_texts
from services.classify.priority import INTENTS
from services.classify.scorer import EMBED_PREFIX
from services.classify.training.datasets import REPO_ROOT, load_intents, load_realdev, load_umsab
from services.classify.training.intent_sources import (
    SOURCE_WEIGHTS,
    IntentExample,
    check_disjoint_from_outage_eval,
    dev_texts,
    example_weights,
    loose_key,
    normalise,
    outage_eval_keys,
    summary,
    training_examples,
)

CACHE = REPO_ROOT / ".cache" / "embeddings"
MIN_GAIN = 0.005  # macro-F1 a larger head must add on held-out data to be preferred


def embed_cached(encoder, texts: list[str], max_length: int, batch_size: int = 64) -> np.ndarray:
    h = hashlib.sha256()
    h.update(f"{encoder.version}|{encoder.numerics}|{max_length}|{EMBED_PREFIX}".encode())
    for t in texts:
        h.update(t.encode("utf-8", "surrogatepass") + b"\0")
    path = CACHE / f"{h.hexdigest()[:24]}.npy"
    if path.exists():
        return np.load(path)
    started = time.perf_counter()
    emb = embed_texts(encoder, texts, EMBED_PREFIX, max_length, batch_size)   # staged like the worker
    print(f"  embedded {len(texts)} texts in {time.perf_counter() - started:.1f}s", file=sys.stderr)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, emb)
    return emb


@dataclass(frozen=True)
class HeadConfig:
    hidden: int          # 0 = linear
    weight_decay: float
    epochs: int = 60
    lr: float = 3e-3
    dropout: float = 0.1


def _fit(x: np.ndarray, y: np.ndarray, n_out: int, multilabel: bool, cfg: HeadConfig, seed: int = 0,
         class_weight: np.ndarray | None = None, mask: np.ndarray | None = None,
         sample_weight: np.ndarray | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Fit a head; for multi-label, ``mask`` [n, n_out] (1 = label known) drops unknown labels from the loss
    and ``sample_weight`` [n] scales each example's known labels (the loss stays a mean over known labels)."""
    torch.manual_seed(seed)
    layers: list[torch.nn.Module] = []
    d = x.shape[1]
    if cfg.hidden:
        layers += [torch.nn.Dropout(cfg.dropout), torch.nn.Linear(d, cfg.hidden), torch.nn.ReLU(),
                   torch.nn.Dropout(cfg.dropout), torch.nn.Linear(cfg.hidden, n_out)]
    else:
        layers += [torch.nn.Linear(d, n_out)]
    net = torch.nn.Sequential(*layers)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    xt = torch.from_numpy(x)
    yt = torch.from_numpy(y.astype(np.float32) if multilabel else y.astype(np.int64))
    cw = torch.from_numpy(class_weight.astype(np.float32)) if class_weight is not None else None
    loss_fn: torch.nn.Module = (torch.nn.BCEWithLogitsLoss(pos_weight=cw, reduction="none") if multilabel
                                else torch.nn.CrossEntropyLoss(weight=cw))
    mt = torch.from_numpy((mask if mask is not None else np.ones((len(x), n_out))).astype(np.float32))
    wt = torch.from_numpy((sample_weight if sample_weight is not None else np.ones(len(x))).astype(np.float32))
    gen = torch.Generator().manual_seed(seed)
    n = len(xt)
    for _ in range(cfg.epochs):
        net.train()
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, 256):
            idx = perm[i:i + 256]
            opt.zero_grad()
            loss = loss_fn(net(xt[idx]), yt[idx])
            if multilabel:
                m = mt[idx]
                loss = (loss * m * wt[idx, None]).sum() / m.sum().clamp(min=1.0)
            loss.backward()
            opt.step()
    net.eval()
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    return [(m.weight.detach().numpy().copy(), m.bias.detach().numpy().copy()) for m in linears]


def fit_temperature(logits: np.ndarray, y: np.ndarray, multilabel: bool) -> np.ndarray:
    """Temperature scaling (one per output for multi-label) minimising held-out NLL."""
    z = torch.from_numpy(logits.astype(np.float32))
    n_t = z.shape[1] if multilabel else 1
    log_t = torch.zeros(n_t, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200)
    target = torch.from_numpy(y.astype(np.float32) if multilabel else y.astype(np.int64))
    loss_fn: torch.nn.Module = torch.nn.BCEWithLogitsLoss() if multilabel else torch.nn.CrossEntropyLoss()

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = loss_fn(z / log_t.exp(), target)
        loss.backward()
        return loss

    opt.step(closure)
    return log_t.exp().detach().numpy().astype(np.float32)


def fit_platt(logits: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-output Platt scaling sigmoid(z / t + b): (temperature t, offset b) minimising held-out NLL."""
    z = torch.from_numpy(logits.astype(np.float32))
    target = torch.from_numpy(y.astype(np.float32))
    log_t = torch.zeros(z.shape[1], requires_grad=True)
    b = torch.zeros(z.shape[1], requires_grad=True)
    opt = torch.optim.LBFGS([log_t, b], lr=0.1, max_iter=300)
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = loss_fn(z / log_t.exp() + b, target) + 1e-3 * (b ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return log_t.exp().detach().numpy().astype(np.float32), b.detach().numpy().astype(np.float32)


def macro_f1_by_lang(y: np.ndarray, pred: np.ndarray, langs: list[str]) -> dict[str, float]:
    la = np.array(langs)
    out = {lang: float(f1_score(y[la == lang], pred[la == lang], average="macro")) for lang in sorted(set(langs))}
    out["avg"] = float(np.mean(list(out.values())))
    return out


def umsab_train_without_dev():
    """UMSAB train minus the texts drawn into the real-text intent dev set and the outage evaluation set
    (neither is ever trained on)."""
    train = load_umsab("train")
    held_out = dev_texts()
    eval_keys = outage_eval_keys()
    keep = [i for i, t in enumerate(train.texts) if normalise(t) not in held_out and loose_key(t) not in eval_keys]
    train.texts = [train.texts[i] for i in keep]
    train.labels = [train.labels[i] for i in keep]
    train.langs = [train.langs[i] for i in keep]
    return train


def train_sentiment(encoder, max_length: int, quick: bool) -> tuple[Head, dict]:
    train, val = umsab_train_without_dev(), load_umsab("val")
    xtr = embed_cached(encoder, train.texts, max_length)
    xva = embed_cached(encoder, val.texts, max_length)
    ytr, yva = np.array(train.labels), np.array(val.labels)
    counts = np.bincount(ytr, minlength=3)
    balanced = (len(ytr) / (3 * counts)).astype(np.float32)
    grid = [HeadConfig(0, 1e-4, epochs=40), HeadConfig(256, 1e-2, epochs=30), HeadConfig(512, 5e-2, epochs=40),
            HeadConfig(1024, 5e-2, epochs=30, dropout=0.2)]
    if quick:
        grid = grid[:1]
    best: tuple[float, list, HeadConfig, bool] | None = None
    for cfg in grid:
        for weighted in (False, True):
            w = _fit(xtr, ytr, 3, False, cfg, class_weight=balanced if weighted else None)
            head = Head(SENTIMENT_LABELS, w, multilabel=False)
            score = macro_f1_by_lang(yva, head.logits(xva).argmax(1), val.langs)["avg"]
            print(f"  sentiment {cfg} balanced={weighted}: val macro-F1 {score:.4f}", file=sys.stderr)
            # A bigger head must earn its size: half a point of val macro-F1 or it is not taken.
            if best is None or score > best[0] + (MIN_GAIN if cfg.hidden > best[2].hidden else 0.0):
                best = (score, w, cfg, weighted)
    assert best is not None
    score, weights, cfg, weighted = best
    head = Head(SENTIMENT_LABELS, weights, multilabel=False)
    head.temperature = fit_temperature(head.logits(xva), yva, multilabel=False)
    return head, {"sentiment_head": {"hidden": cfg.hidden, "weight_decay": cfg.weight_decay, "epochs": cfg.epochs,
                                     "class_balanced": weighted, "val_macro_f1": round(score, 4),
                                     "temperature": [round(float(t), 4) for t in head.temperature],
                                     "train_size": len(ytr)}}


def _multi_hot(labels: list[list[str]]) -> np.ndarray:
    y = np.zeros((len(labels), len(INTENTS)), dtype=np.float32)
    for i, labs in enumerate(labels):
        for lab in labs:
            y[i, INTENTS.index(lab)] = 1.0
    return y


def _partial(examples: list[IntentExample]) -> tuple[np.ndarray, np.ndarray]:
    y = np.array([[ex.labels.get(n, 0) for n in INTENTS] for ex in examples], dtype=np.float32)
    m = np.array([[1.0 if n in ex.labels else 0.0 for n in INTENTS] for ex in examples], dtype=np.float32)
    return y, m


def _two_folds(n: int) -> np.ndarray:
    return np.array([int(hashlib.sha256(f"fold|{i}".encode()).hexdigest(), 16) % 2 for i in range(n)])


def calibrated_dev_proba(head: Head, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Probabilities on the dev set with Platt scaling cross-fitted over 2 folds (honest dev figures)."""
    z = head.logits(x)
    folds = _two_folds(len(x))
    out = np.zeros_like(z)
    o = INTENTS.index("outage_report") if tuple(head.labels) == tuple(INTENTS) else -1
    for f in (0, 1):
        t, b = fit_platt(z[folds != f], y[folds != f])
        if o >= 0:   # the outage operating point, fitted on the same half as the calibration
            fitted = 1.0 / (1.0 + np.exp(-(z[folds != f] / t + b)))
            b = np.asarray(b, dtype=np.float32).copy()
            b[o] -= outage_shift(fitted[_ordinary(y[folds != f]), o])
        out[folds == f] = 1.0 / (1.0 + np.exp(-(z[folds == f] / t + b)))
    return out


def train_intents(encoder, max_length: int, quick: bool, examples: list[IntentExample]) -> tuple[Head, dict]:
    real = load_realdev()
    dev_name = "real-text dev (data/realdev, 2-fold Platt)" if real.texts else "synthetic dev (data/intents)"
    dev = real if real.texts else load_intents("dev")
    xtr = embed_cached(encoder, [ex.text for ex in examples], max_length)
    xdv = embed_cached(encoder, dev.texts, max_length)
    ytr, mtr = _partial(examples)
    wtr = np.array(example_weights(examples), dtype=np.float32)
    ydv = _multi_hot(dev.labels)
    grid = [HeadConfig(0, 1e-4, epochs=60), HeadConfig(256, 1e-2, epochs=40), HeadConfig(512, 5e-2, epochs=60)]
    if quick:
        grid = grid[:1]
    best = None
    for cfg in grid:
        w = _fit(xtr, ytr, len(INTENTS), True, cfg, mask=mtr, sample_weight=wtr)
        head = Head(INTENTS, w, multilabel=True)
        proba = calibrated_dev_proba(head, xdv, ydv) if real.texts else head.predict_proba(xdv)
        score = float(f1_score(ydv, (proba >= 0.5).astype(int), average="macro", zero_division=0))
        print(f"  intents {cfg}: {dev_name} macro-F1 {score:.4f}", file=sys.stderr)
        if best is None or score > best[0] + (MIN_GAIN if cfg.hidden > best[2].hidden else 0.0):
            best = (score, w, cfg)
    assert best is not None
    score, weights, cfg = best
    head = Head(INTENTS, weights, multilabel=True)
    shift = 0.0
    if real.texts:
        head.temperature, head.offset = fit_platt(head.logits(xdv), ydv)
        shift = outage_operating_point(head, xdv, ydv)
    else:
        head.temperature = fit_temperature(head.logits(xdv), ydv, multilabel=True)
    return head, {"intent_head": {"hidden": cfg.hidden, "weight_decay": cfg.weight_decay, "epochs": cfg.epochs,
                                  "dev": dev_name, "dev_macro_f1": round(score, 4),
                                  "outage_offset_shift": round(shift, 4),
                                  "outage_max_ordinary_flagged": OUTAGE_MAX_ORDINARY_FLAGGED,
                                  "temperature": [round(float(t), 4) for t in head.temperature],
                                  "offset": [round(float(b), 4) for b in np.ravel(head.offset)],
                                  "train_size": len(ytr), "train_sources": summary(examples),
                                  "source_weights": dict(SOURCE_WEIGHTS)}}


# Issue 24's operating point: at most this share of the real dev set's ordinary complaints (complaint, not an
# outage report) may be called outage reports (p >= 0.5, 2-fold cross-fitted): each one raises a brand's
# stray-report baseline and reads as "outage" to a responder.
OUTAGE_MAX_ORDINARY_FLAGGED = 0.05


def outage_shift(p_ordinary: np.ndarray, cap: float = OUTAGE_MAX_ORDINARY_FLAGGED) -> float:
    """How far (in logits) to lower p(outage_report) so at most ``cap`` of these ordinary complaints' probabilities
    stay at or above 0.5; 0 when they already do."""
    p = np.clip(np.asarray(p_ordinary, dtype=np.float64), 1e-6, 1 - 1e-6)
    if not len(p) or (p >= 0.5).mean() <= cap:
        return 0.0
    t = float(np.sort(p)[::-1][int(np.floor(cap * len(p)))])   # the first one that must fall below 0.5
    return float(np.log(t / (1 - t))) + 1e-4


def _ordinary(y: np.ndarray) -> np.ndarray:
    o, c = INTENTS.index("outage_report"), INTENTS.index("complaint")
    return (y[:, c] == 1) & (y[:, o] == 0)


def outage_operating_point(head: Head, x: np.ndarray, y: np.ndarray) -> float:
    """Lower the (Platt-calibrated) head's outage_report offset to the operating point `outage_shift` finds on
    the dev set; returns the shift applied. `calibrated_dev_proba` cross-fits the same step."""
    o = INTENTS.index("outage_report")
    shift = outage_shift(head.predict_proba(x)[_ordinary(y), o])
    head.offset = np.asarray(head.offset, dtype=np.float32).copy()
    head.offset[o] -= shift
    return shift


HI_LATN_MAX_FALSE_RATE = 0.02  # share of another Latin-script language's val posts that may be called Hindi


def train_romanised_hindi() -> tuple[RomanisedHindi, dict]:
    """Romanised-Hindi detector: UMSAB train (hi vs the Latin-script languages) + written Hinglish.

    The threshold is the lowest (0.5..0.95) at which no other Latin-script language of UMSAB val has more
    than HI_LATN_MAX_FALSE_RATE of its posts called Hindi.
    """
    train, syn, val = umsab_train_without_dev(), load_intents("train"), load_umsab("val")
    latin = {"en", "es", "fr", "de", "it", "pt"}
    pairs = [(t, int(lang == "hi")) for t, lang in zip(train.texts, train.langs, strict=True)
             if lang == "hi" or lang in latin]
    pairs += [(t, int(lang == "hi-Latn")) for t, lang in zip(syn.texts, syn.langs, strict=True)
              if lang == "hi-Latn" or lang in latin]
    model = RomanisedHindi.fit([t for t, _ in pairs], [y for _, y in pairs])
    p = model.proba(val.texts)
    la = np.array(val.langs)
    for th in np.arange(0.5, 0.96, 0.05):
        if all((p[la == lang] >= th).mean() <= HI_LATN_MAX_FALSE_RATE for lang in latin):
            break
    model.threshold = float(round(th, 2))
    recall = float((p[la == "hi"] >= model.threshold).mean())
    return model, {"romanised_hindi": {"threshold": model.threshold, "train_size": len(pairs),
                                       "val_hindi_recall": round(recall, 4)}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="triage train", description=__doc__)
    parser.add_argument("--model", default="", help="HF model dir or hub id (default: converted e5-small)")
    parser.add_argument("--out", type=Path, default=ARTIFACTS_DIR, help="where to write heads.npz/json")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--quick", action="store_true", help="one configuration per head (smoke runs)")
    parser.add_argument("--no-finetune", action="store_true", help="heads on the frozen base encoder (no adapter)")
    parser.add_argument("--finetune-examples", type=int, default=0, help="cap fine-tuning examples (0 = all)")
    parser.add_argument("--heads-only", action="store_true",
                        help="keep the adapter already in the output directory; refit the heads only")
    parser.add_argument("--intents-only", action="store_true",
                        help="like --heads-only, and keep the sentiment head and romanised-Hindi detector too")
    parser.add_argument("--finetune-only", action="store_true",
                        help="fine-tune the adapter and stop (fit the heads later with --heads-only)")
    parser.add_argument("--precision", default="auto", help="encoder precision for the head embeddings")
    args = parser.parse_args(argv)
    args.heads_only = args.heads_only or args.intents_only

    from services.classify.encoder.adapter import ADAPTER_DIR
    from services.classify.encoder.loader import ensure_default_model, load_encoder
    from services.classify.training.finetune import FinetuneConfig, build_items, finetune

    torch.manual_seed(0)
    started = time.perf_counter()
    model_dir = args.model or str(ensure_default_model())
    examples = training_examples()
    # The outage evaluation set (data/outage_eval) is never trained on: refuse to train if any text leaked in.
    check_disjoint_from_outage_eval([ex.text for ex in examples])
    meta_f: dict = {}
    adapter = None
    if not args.no_finetune:
        adapter = args.out / "adapter" if args.out != ARTIFACTS_DIR else ADAPTER_DIR
        if args.heads_only:
            previous = json.loads((args.out / "heads.json").read_text()) if (args.out / "heads.json").exists() else {}
            meta_f = {"finetune": previous.get("finetune", {})}
            if adapter is not None and (adapter / "finetune.json").exists():  # written by --finetune-only
                meta_f = json.loads((adapter / "finetune.json").read_text())
        else:
            sent = umsab_train_without_dev()
            items = build_items(sent.texts, sent.labels, training_examples(team_pool=False))
            check_disjoint_from_outage_eval([it.text for it in items])
            print(f"fine-tuning on {len(items)} examples ({len(sent.texts)} sentiment, {len(items) - len(sent.texts)} "
                  "intent)", file=sys.stderr)
            meta_f = finetune(model_dir, items, adapter, FinetuneConfig(max_examples=args.finetune_examples))
            if args.finetune_only:
                (adapter / "finetune.json").write_text(json.dumps(meta_f, indent=2, sort_keys=True) + "\n")
                print(f"wrote the adapter to {adapter} in {time.perf_counter() - started:.0f}s", file=sys.stderr)
                return 0
    encoder = load_encoder(model_dir, precision=args.precision, adapter=adapter)
    if args.intents_only:
        kept = HeadSet.load(args.out)
        sentiment = kept.sentiment
        meta_h = {"romanised_hindi": kept.meta["romanised_hindi"]}
        meta_s = {"sentiment_head": kept.meta["sentiment_head"]}
    else:
        hi_latn, meta_h = train_romanised_hindi()
        hi_latn.save(args.out / "hi_latn.npz")
        sentiment, meta_s = train_sentiment(encoder, args.max_tokens, args.quick)
    intents, meta_i = train_intents(encoder, args.max_tokens, args.quick, examples)
    meta = {"encoder_version": encoder.version, "max_tokens": args.max_tokens, "embed_prefix": EMBED_PREFIX,
            "adapter": bool(adapter), **meta_f, **meta_h, **meta_s, **meta_i}
    heads = HeadSet(sentiment, intents, meta)
    heads.save(args.out)
    print(f"wrote {args.out}/heads.npz (version {heads.version}) in {time.perf_counter() - started:.0f}s: "
          f"sentiment val macro-F1 {meta_s['sentiment_head']['val_macro_f1']:.4f}, "
          f"intents dev macro-F1 {meta_i['intent_head']['dev_macro_f1']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

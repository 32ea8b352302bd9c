"""`triage train`: fit the sentiment and intent heads on frozen encoder embeddings.

Sentiment: UMSAB train split (8 languages), model selection and temperature
calibration on UMSAB val only. Intents: data/intents train split, selection
and per-intent temperatures on its dev split. Embeddings are cached under
.cache/embeddings so re-training after a data change is fast. Deterministic
(fixed seeds, single-threaded reductions are not guaranteed by torch, but
results differ by at most float noise).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import f1_score

from services.classify.datasets import REPO_ROOT, load_intents, load_umsab
from services.classify.heads import ARTIFACTS_DIR, SENTIMENT_LABELS, Head, HeadSet
from services.classify.priority import INTENTS
from services.classify.scorer import EMBED_PREFIX

CACHE = REPO_ROOT / ".cache" / "embeddings"
MIN_GAIN = 0.005  # macro-F1 a larger head must add on held-out data to be preferred


def embed_cached(encoder, texts: list[str], max_length: int, batch_size: int = 64) -> np.ndarray:
    h = hashlib.sha256()
    h.update(f"{encoder.version}|{max_length}|{EMBED_PREFIX}".encode())
    for t in texts:
        h.update(t.encode("utf-8", "surrogatepass") + b"\0")
    path = CACHE / f"{h.hexdigest()[:24]}.npy"
    if path.exists():
        return np.load(path)
    started = time.perf_counter()
    emb = np.asarray(encoder.embed(texts, prefix=EMBED_PREFIX, max_length=max_length, batch_size=batch_size),
                     dtype=np.float32)
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
         class_weight: np.ndarray | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
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
    loss_fn: torch.nn.Module = (torch.nn.BCEWithLogitsLoss(pos_weight=cw) if multilabel
                                else torch.nn.CrossEntropyLoss(weight=cw))
    gen = torch.Generator().manual_seed(seed)
    n = len(xt)
    for _ in range(cfg.epochs):
        net.train()
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, 256):
            idx = perm[i:i + 256]
            opt.zero_grad()
            loss = loss_fn(net(xt[idx]), yt[idx])
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


def macro_f1_by_lang(y: np.ndarray, pred: np.ndarray, langs: list[str]) -> dict[str, float]:
    la = np.array(langs)
    out = {lang: float(f1_score(y[la == lang], pred[la == lang], average="macro")) for lang in sorted(set(langs))}
    out["avg"] = float(np.mean(list(out.values())))
    return out


def train_sentiment(encoder, max_length: int, quick: bool) -> tuple[Head, dict]:
    train, val = load_umsab("train"), load_umsab("val")
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


def train_intents(encoder, max_length: int, quick: bool) -> tuple[Head, dict]:
    train, dev = load_intents("train"), load_intents("dev")
    xtr, xdv = embed_cached(encoder, train.texts, max_length), embed_cached(encoder, dev.texts, max_length)
    ytr, ydv = _multi_hot(train.labels), _multi_hot(dev.labels)
    grid = [HeadConfig(0, 1e-4, epochs=80), HeadConfig(256, 1e-2, epochs=60), HeadConfig(512, 5e-2, epochs=80)]
    if quick:
        grid = grid[:1]
    best = None
    for cfg in grid:
        w = _fit(xtr, ytr, len(INTENTS), True, cfg)
        head = Head(INTENTS, w, multilabel=True)
        pred = (head.predict_proba(xdv) >= 0.5).astype(int)
        score = float(f1_score(ydv, pred, average="macro", zero_division=0))
        print(f"  intents {cfg}: dev macro-F1 {score:.4f}", file=sys.stderr)
        if best is None or score > best[0] + (MIN_GAIN if cfg.hidden > best[2].hidden else 0.0):
            best = (score, w, cfg)
    assert best is not None
    score, weights, cfg = best
    head = Head(INTENTS, weights, multilabel=True)
    head.temperature = fit_temperature(head.logits(xdv), ydv, multilabel=True)
    return head, {"intent_head": {"hidden": cfg.hidden, "weight_decay": cfg.weight_decay, "epochs": cfg.epochs,
                                  "dev_macro_f1": round(score, 4),
                                  "temperature": [round(float(t), 4) for t in head.temperature],
                                  "train_size": len(ytr)}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="triage train", description=__doc__)
    parser.add_argument("--model", default="", help="HF model dir or hub id (default: converted e5-small)")
    parser.add_argument("--out", type=Path, default=ARTIFACTS_DIR, help="where to write heads.npz/json")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--quick", action="store_true", help="one configuration per head (smoke runs)")
    args = parser.parse_args(argv)

    from services.classify.encoder.loader import ensure_default_model, load_encoder

    torch.manual_seed(0)
    encoder = load_encoder(args.model or str(ensure_default_model()))
    started = time.perf_counter()
    sentiment, meta_s = train_sentiment(encoder, args.max_tokens, args.quick)
    intents, meta_i = train_intents(encoder, args.max_tokens, args.quick)
    meta = {"encoder_version": encoder.version, "max_tokens": args.max_tokens, "embed_prefix": EMBED_PREFIX,
            **meta_s, **meta_i}
    heads = HeadSet(sentiment, intents, meta)
    heads.save(args.out)
    print(f"wrote {args.out}/heads.npz (version {heads.version}) in {time.perf_counter() - started:.0f}s: "
          f"sentiment val macro-F1 {meta_s['sentiment_head']['val_macro_f1']:.4f}, "
          f"intents dev macro-F1 {meta_i['intent_head']['dev_macro_f1']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

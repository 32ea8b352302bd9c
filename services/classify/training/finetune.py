"""Multi-task fine-tuning of the encoder (sentiment + intents) with LoRA adapters, on CPU.

The base encoder stays frozen; low-rank adapters (peft LoRA, rank 16 on every attention
projection and both feed-forward layers of the upper six layers) learn on UMSAB sentiment (8 languages)
and the intent examples of `intent_sources.training_examples` (partial labels: unknown intents are masked
out of the loss), through two linear heads on the mean-pooled, L2-normalised embedding: exactly the embedding the
serving heads read. Runs under bf16 autocast where the CPU has native bf16 (fp32 master weights),
one pass over the data, deterministic order. Writes `adapter_config.json` +
`adapter_model.safetensors` (about 2.7 MB); `train.py` then fits the serving heads on the merged
encoder's embeddings.
"""

from __future__ import annotations

import contextlib
import json
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from services.classify.encoder.precision import native_bf16
from services.classify.priority import INTENTS
from services.classify.scorer import EMBED_PREFIX
from services.classify.training.intent_sources import IntentExample


@dataclass(frozen=True)
class FinetuneConfig:
    rank: int = 16
    alpha: int = 32
    dropout: float = 0.1
    lr: float = 4e-4
    head_lr: float = 3e-3
    batch_size: int = 32
    epochs: int = 1
    max_length: int = 64
    seed: int = 0
    max_examples: int = 0   # 0 = all (a smaller number for smoke runs)
    first_layer: int = 6    # adapters on layers >= this: no backward pass through the lower half (2x cheaper)
    # attention projections and the feed-forward block ("output.dense" also names the attention output).
    # Session 14: adding the feed-forward layers (attention only before) raised outage recall on the outage set
    # 64.8 -> 66.4 with fewer ordinary complaints flagged, real dev outage recall 37.4 -> 40.0 and UMSAB
    # sentiment 62.7 -> 63.9 (data/outage_eval/README.md)
    target_modules: tuple[str, ...] = ("query", "key", "value", "attention.output.dense", "intermediate.dense",
                                       "output.dense")


@dataclass
class TrainItem:
    text: str
    sentiment: int                  # -1 = unknown
    intents: np.ndarray             # [len(INTENTS)] 0/1
    mask: np.ndarray                # [len(INTENTS)] 1 = known


def build_items(sent_texts: list[str], sent_labels: list[int], intents: list[IntentExample]) -> list[TrainItem]:
    zeros = np.zeros(len(INTENTS), dtype=np.float32)
    items = [TrainItem(t, int(y), zeros, zeros) for t, y in zip(sent_texts, sent_labels, strict=True)]
    for ex in intents:
        y = np.array([ex.labels.get(n, 0) for n in INTENTS], dtype=np.float32)
        m = np.array([1.0 if n in ex.labels else 0.0 for n in INTENTS], dtype=np.float32)
        items.append(TrainItem(ex.text, -1, y, m))
    return items


def _pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)
    return torch.nn.functional.normalize(pooled.float(), p=2, dim=1)


def finetune(model_dir: str, items: list[TrainItem], out: Path,
             cfg: FinetuneConfig = FinetuneConfig()) -> dict[str, Any]:
    """Train LoRA adapters on ``items``; save them under ``out``; return a summary for heads.json."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModel, AutoTokenizer

    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    tokenizer = AutoTokenizer.from_pretrained(model_dir, fix_mistral_regex=False)
    base = AutoModel.from_pretrained(model_dir, dtype=torch.float32)
    lora = LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                      target_modules=list(cfg.target_modules), bias="none",
                      layers_to_transform=list(range(cfg.first_layer, base.config.num_hidden_layers)))
    model = get_peft_model(base, lora)
    dim = base.config.hidden_size
    sent_head = torch.nn.Linear(dim, 3)
    intent_head = torch.nn.Linear(dim, len(INTENTS))
    # Embeddings are unit vectors: a scale lets linear heads reach confident logits.
    scale = torch.nn.Parameter(torch.tensor(20.0))
    params = [
        {"params": [p for p in model.parameters() if p.requires_grad], "lr": cfg.lr},
        {"params": [*sent_head.parameters(), *intent_head.parameters(), scale], "lr": cfg.head_lr},
    ]
    opt = torch.optim.AdamW(params, weight_decay=0.01)
    trainable = [p for p in model.parameters() if p.requires_grad] + [*sent_head.parameters(),
                                                                      *intent_head.parameters(), scale]
    order = list(range(len(items)))
    random.Random(cfg.seed).shuffle(order)
    if cfg.max_examples:
        order = order[: cfg.max_examples]
    steps = cfg.epochs * ((len(order) + cfg.batch_size - 1) // cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[cfg.lr, cfg.head_lr], total_steps=steps,
                                                pct_start=0.06, anneal_strategy="linear")
    use_bf16 = bool(native_bf16())
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if use_bf16 else contextlib.nullcontext
    ce = torch.nn.CrossEntropyLoss()
    started = time.perf_counter()
    step = 0
    model.train()
    for _epoch in range(cfg.epochs):
        for start in range(0, len(order), cfg.batch_size):
            batch = [items[i] for i in order[start : start + cfg.batch_size]]
            enc = tokenizer([EMBED_PREFIX + b.text for b in batch], truncation=True, max_length=cfg.max_length,
                            padding=True, return_tensors="pt", return_token_type_ids=False)
            with autocast():
                hidden = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
            emb = _pool(hidden, enc["attention_mask"]) * scale
            loss = torch.zeros(())
            sent_y = torch.tensor([b.sentiment for b in batch])
            has_sent = sent_y >= 0
            if has_sent.any():
                loss = loss + ce(sent_head(emb[has_sent]), sent_y[has_sent])
            mask = torch.from_numpy(np.stack([b.mask for b in batch]))
            if mask.sum() > 0:
                y = torch.from_numpy(np.stack([b.intents for b in batch]))
                bce = torch.nn.functional.binary_cross_entropy_with_logits(intent_head(emb), y, reduction="none")
                loss = loss + (bce * mask).sum() / mask.sum().clamp(min=1.0)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            opt.step()
            sched.step()
            step += 1
            if step % 50 == 0 or step == steps:
                rate = step * cfg.batch_size / (time.perf_counter() - started)
                print(f"  finetune step {step}/{steps} loss {loss.item():.4f} ({rate:.0f} examples/s, "
                      f"{'bf16 autocast' if use_bf16 else 'fp32'})", file=sys.stderr)
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    for extra in out.glob("README.md"):
        extra.unlink()  # peft's model card template: nothing in it is ours
    # The loader merges into whatever base it loaded; do not record this machine's path.
    cfg_path = out / "adapter_config.json"
    adapter_cfg = json.loads(cfg_path.read_text())
    adapter_cfg["base_model_name_or_path"] = Path(model_dir).name
    cfg_path.write_text(json.dumps(adapter_cfg, indent=2, sort_keys=True) + "\n")
    return {"finetune": {"rank": cfg.rank, "alpha": cfg.alpha, "lr": cfg.lr, "epochs": cfg.epochs,
                         "examples": len(order), "max_length": cfg.max_length,
                         "precision": "bf16-autocast" if use_bf16 else "fp32",
                         "seconds": round(time.perf_counter() - started, 1)}}

"""Classification heads on top of the sentence encoder: sentiment (softmax) and intents (sigmoid).

Each head is a small MLP (or a linear layer) over the L2-normalised pooled
embedding, with a calibration temperature fitted on held-out data. Heads are
tiny (tens of KB), so the trained ones are committed under
`services/classify/artifacts/` and `make train` reproduces them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SENTIMENT_LABELS: tuple[str, ...] = ("negative", "neutral", "positive")
ARTIFACTS_DIR = Path(__file__).resolve().parent / "artifacts"


@dataclass
class Head:
    """Weights of a 0- or 1-hidden-layer MLP; `temperature` divides the logits (calibration)."""

    labels: tuple[str, ...]
    weights: list[tuple[np.ndarray, np.ndarray]]  # [(W [out,in], b [out]), ...]
    multilabel: bool
    temperature: np.ndarray = field(default_factory=lambda: np.ones(1, dtype=np.float32))
    input_dim: int = 0
    # Platt offset added after the temperature (per output; fitted on the real-text dev set for intents)
    offset: np.ndarray = field(default_factory=lambda: np.zeros(1, dtype=np.float32))

    def logits(self, x: np.ndarray) -> np.ndarray:
        h = x.astype(np.float32, copy=False)
        for i, (w, b) in enumerate(self.weights):
            h = h @ w.T + b
            if i < len(self.weights) - 1:
                h = np.maximum(h, 0.0)  # ReLU
        return h

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        z = self.logits(x) / self.temperature + self.offset
        if self.multilabel:
            return 1.0 / (1.0 + np.exp(-z))
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        out = {f"{prefix}.temperature": self.temperature.astype(np.float32),
               f"{prefix}.offset": self.offset.astype(np.float32)}
        for i, (w, b) in enumerate(self.weights):
            out[f"{prefix}.{i}.weight"] = w.astype(np.float32)
            out[f"{prefix}.{i}.bias"] = b.astype(np.float32)
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str, labels: tuple[str, ...],
                    multilabel: bool) -> Head:
        weights = []
        i = 0
        while f"{prefix}.{i}.weight" in arrays:
            weights.append((arrays[f"{prefix}.{i}.weight"], arrays[f"{prefix}.{i}.bias"]))
            i += 1
        if not weights:
            raise ValueError(f"no weights for head {prefix!r}")
        if weights[-1][0].shape[0] != len(labels):
            raise ValueError(f"head {prefix!r} has {weights[-1][0].shape[0]} outputs, expected {len(labels)}")
        offset = arrays.get(f"{prefix}.offset", np.zeros(1, dtype=np.float32))
        return cls(labels, weights, multilabel, arrays[f"{prefix}.temperature"], weights[0][0].shape[1], offset)


@dataclass
class HeadSet:
    sentiment: Head
    intents: Head
    meta: dict[str, Any]

    @property
    def version(self) -> str:
        return str(self.meta.get("heads_sha256", ""))[:12]

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        arrays = {**self.sentiment.to_arrays("sentiment"), **self.intents.to_arrays("intents")}
        path = directory / "heads.npz"
        np.savez(path, **arrays)  # type: ignore[arg-type]
        meta = dict(self.meta)
        meta["sentiment_labels"] = list(self.sentiment.labels)
        meta["intent_labels"] = list(self.intents.labels)
        meta["heads_sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
        (directory / "heads.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        self.meta = meta

    @classmethod
    def load(cls, directory: Path = ARTIFACTS_DIR) -> HeadSet:
        npz, meta_path = directory / "heads.npz", directory / "heads.json"
        if not npz.exists() or not meta_path.exists():
            raise FileNotFoundError(f"trained heads not found in {directory}: run `make train`")
        meta = json.loads(meta_path.read_text())
        with np.load(npz) as data:
            arrays = {k: data[k] for k in data.files}
        sentiment = Head.from_arrays(arrays, "sentiment", tuple(meta["sentiment_labels"]), multilabel=False)
        intents = Head.from_arrays(arrays, "intents", tuple(meta["intent_labels"]), multilabel=True)
        actual = hashlib.sha256(npz.read_bytes()).hexdigest()
        if meta.get("heads_sha256") and meta["heads_sha256"] != actual:
            raise ValueError(f"{npz} does not match heads.json (sha256 {actual[:12]}): retrain or restore both")
        return cls(sentiment, intents, meta)

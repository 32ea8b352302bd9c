"""Which runtime runs the encoder: PyTorch, ONNX Runtime or OpenVINO, in which precision, chosen by parity and speed.

``TRIAGE_RUNTIME`` selects the engine, ``TRIAGE_PRECISION`` its numbers:

- ``torch`` (the default): PyTorch, precision as ``precision.py`` resolves it (no parity check here).
- ``onnx``: ONNX Runtime over the cached export of the same weights (``onnx_export.py``). Precision
  ``fp32``, ``int8`` (dynamic quantisation) or ``int8-static`` (static QDQ quantisation, calibrated) is
  taken as configured; ``auto`` is the fastest of onnx-fp32, onnx-int8 and onnx-int8-static among those
  that pass parity.
- ``openvino`` (the optional ``openvino`` package, ``openvino_runtime.py``): OpenVINO's CPU plugin over
  the same ONNX export, ``fp32`` or ``bf16`` (its ``INFERENCE_PRECISION_HINT``) as configured; ``auto`` is
  the faster of the two that passes parity (bf16 only where the CPU has native bf16).
- ``auto``: the fastest of torch-fp32, torch-bf16 (only where the CPU has native bf16), onnx-fp32,
  onnx-int8, onnx-int8-static, openvino-fp32 and openvino-bf16 (where installed; bf16 where native)
  that passes parity on this CPU (an explicit precision keeps only that precision's
  candidates). torch-int8 is not a candidate: it costs about a point of sentiment macro-F1.

Parity is measured against torch-fp32, the reference, on the parity set (``artifacts/parity_set.jsonl``:
300 real posts from the team's real-text pool, 8 languages): the heads' labels (sentiment, and every
intent decision at p >= 0.5) of each text must agree on >= 99% of the texts. ``triage model parity``
adds the macro-F1 checks (intent macro-F1 on the real-text dev set, sentiment macro-F1 on UMSAB val,
each within 0.5 point of torch-fp32) and records them; a runtime that failed any recorded check is
never chosen, and the log says why. Without that record the start-up check is the label agreement
alone, and the log says so.

The measurement (the parity set embedded by every candidate, plus the ONNX export if it is not cached)
is remembered in ``runtime-choices.json`` beside the model under a key of everything that decides it
(weights and adapter, heads, torch and ONNX Runtime versions, CPU model and matrix flags, threads,
the settings): a process starting on the same machine reuses it and pays nothing.

Example:

    enc = load_encoder(model_dir, runtime="auto", parity=ParityLabels(heads_labels, heads.version))
    enc.runtime, enc.runtime_reason   # ('onnx-int8', 'fastest passing parity: onnx-int8 0.9 s, ...')
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from services.classify.encoder.openvino_runtime import openvino_available, openvino_version
from services.classify.encoder.precision import (
    ChoiceFile,
    Precision,
    PrecisionCache,
    choose_precision,
    cpu_flags,
    cpu_model_name,
    native_bf16,
)

log = logging.getLogger(__name__)

RUNTIMES = ("auto", "torch", "onnx", "openvino")
CANDIDATES = ("torch-fp32", "torch-bf16", "onnx-fp32", "onnx-int8", "onnx-int8-static", "openvino-fp32",
              "openvino-bf16")
ONNX_CONFIGURABLE = ("fp32", "int8", "int8-static")   # TRIAGE_PRECISION values TRIAGE_RUNTIME=onnx takes as is
REFERENCE = "torch-fp32"
MIN_AGREEMENT = 0.99       # share of parity texts whose labels equal torch-fp32's
MAX_F1_DELTA = 0.5         # macro-F1 points from torch-fp32, either way
PARITY_SET = Path(__file__).resolve().parents[1] / "artifacts" / "parity_set.jsonl"
RUNTIME_CACHE_FILE = "runtime-choices.json"


def parity_texts(path: Path = PARITY_SET) -> list[str]:
    """The parity set's texts, in file order."""
    return [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@dataclass(frozen=True)
class ParityLabels:
    """What a runtime's embeddings are judged by: ``labels(emb)`` gives one row of label ids per text
    (column 0 the sentiment label, then one 0/1 column per intent), ``version`` names the heads."""

    labels: Callable[[np.ndarray], np.ndarray]
    version: str


def head_labels(heads: Any) -> ParityLabels:
    """``ParityLabels`` of a ``heads.HeadSet``: the sentiment argmax and each intent at p >= 0.5."""

    def labels(emb: np.ndarray) -> np.ndarray:
        sentiment = heads.sentiment.predict_proba(emb).argmax(1)[:, None]
        return np.hstack([sentiment, (heads.intents.predict_proba(emb) >= 0.5).astype(np.int64)])

    return ParityLabels(labels, heads.version)


@dataclass
class Trial:
    """One candidate runtime measured against torch-fp32 on the parity set (and, when recorded, the F1 checks)."""

    name: str
    seconds: float                  # the parity set embedded once, warm
    agreement: float                # share of texts with every label equal to torch-fp32's
    sentiment_agreement: float
    intent_agreement: float
    min_cosine: float               # lowest cosine to torch-fp32's embedding of the same text
    f1: dict[str, list[float]] = field(default_factory=dict)   # check -> [torch-fp32, this] (points)

    def failures(self) -> list[str]:
        """Why this runtime fails parity (empty: it passes)."""
        why = []
        if self.agreement < MIN_AGREEMENT:
            why.append(f"label agreement {self.agreement:.1%} < {MIN_AGREEMENT:.0%} (sentiment "
                       f"{self.sentiment_agreement:.1%}, intents {self.intent_agreement:.1%})")
        for check, (ref, got) in sorted(self.f1.items()):
            if abs(got - ref) > MAX_F1_DELTA:
                why.append(f"{check} macro-F1 {got:.2f} vs {ref:.2f} "
                           f"(off by {abs(got - ref):.2f} > {MAX_F1_DELTA} point)")
        return why

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Trial:
        return cls(**{k: data[k] for k in ("name", "seconds", "agreement", "sentiment_agreement",
                                           "intent_agreement", "min_cosine")}, f1=dict(data.get("f1", {})))


def choose(trials: Sequence[Trial]) -> tuple[str, str]:
    """The fastest trial that passes parity, and why; raises if none does (torch-fp32 always does)."""
    passing = sorted((t for t in trials if not t.failures()), key=lambda t: t.seconds)
    refused = [f"{t.name} refused: {'; '.join(t.failures())}" for t in trials if t.failures()]
    if not passing:
        raise RuntimeError("no runtime passes parity: " + " | ".join(refused))
    best = passing[0]
    timings = ", ".join(f"{t.name} {t.seconds:.2f}s" for t in passing)
    f1_note = "" if any(t.f1 for t in trials) else "; macro-F1 checks not recorded (run `triage model parity`)"
    reason = f"fastest passing parity ({timings} on the parity set){f1_note}"
    if refused:
        reason += "; " + "; ".join(refused)
    return best.name, reason


def candidates(runtime: str, precision: str, flags: set[str] | None = None, openvino: bool | None = None) -> list[str]:
    """The runtimes ``auto`` / ``onnx`` / ``openvino`` choose among for a ``precision`` setting, reference first
    (``openvino``: whether the package is installed, default: look)."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    openvino = openvino_available() if openvino is None else openvino
    if runtime == "openvino" and not openvino:
        raise ValueError("TRIAGE_RUNTIME=openvino needs the openvino package, one of the model dependencies: "
                         "install requirements.lock (or requirements-classify.lock)")
    if runtime == "openvino" and precision not in ("auto", "fp32", "bf16"):
        raise ValueError(f"OpenVINO runs fp32 or bf16 here, not {precision} (TRIAGE_PRECISION)")
    if runtime == "onnx" and precision.startswith("bf16"):
        raise ValueError(f"ONNX Runtime runs fp32, int8 or int8-static here, not {precision} (TRIAGE_PRECISION)")
    if precision in ("int8", "int8-static") and runtime == "auto":
        raise ValueError("TRIAGE_RUNTIME=auto with TRIAGE_PRECISION=int8: name the engine (torch or onnx)")
    names = list(CANDIDATES)
    if not native_bf16(flags):   # emulated bf16 is slower than fp32: not worth measuring
        names = [n for n in names if not n.endswith("-bf16")]
    if not openvino:
        names = [n for n in names if not n.startswith("openvino-")]
    if runtime in ("onnx", "openvino"):
        names = [n for n in names if n.startswith(f"{runtime}-")]
    if precision == "fp32":
        names = [n for n in names if n.endswith("-fp32")]
    elif precision.startswith("bf16"):
        names = [n for n in names if n.endswith("-bf16")] or [f"{runtime}-fp32" if runtime == "openvino"
                                                                else "torch-fp32"]
    return names


# ------------------------------------------------------------------------------------------ cache
class RuntimeChoices(ChoiceFile):
    """Measured runtime choices and recorded parity checks (`precision.ChoiceFile`: unreadable = empty,
    unwritable = measure again next time, atomic writes)."""

    what = "runtime choice"

    def get(self, key: str) -> dict[str, Any] | None:
        return self.get_entry(key)

    def put(self, key: str, value: dict[str, Any]) -> None:
        self.put_entry(key, value)


def parity_key(encoder_version: str, labels_version: str, texts: Sequence[str], flags: set[str] | None = None) -> str:
    """What decides parity: weights + adapter, heads, parity set, torch and ONNX Runtime, CPU model and flags."""
    import onnxruntime
    import torch

    flags = cpu_flags() if flags is None else flags
    matrix = sorted(f for f in flags if f.startswith(("amx", "avx512", "avx2", "avx_vnni", "fma")))
    texts_sha = hashlib.sha256("\0".join(texts).encode("utf-8", "surrogatepass")).hexdigest()
    ov = openvino_version()   # in the key only where installed: a machine without it keeps its recorded checks
    raw = json.dumps([encoder_version, labels_version, texts_sha, torch.__version__, onnxruntime.__version__,
                      cpu_model_name(), matrix, *([ov] if ov else [])])
    return "parity:" + hashlib.sha256(raw.encode()).hexdigest()[:32]


def choice_key(pkey: str, runtime: str, precision: str, threads: int, batch_size: int) -> str:
    raw = json.dumps([pkey, runtime, precision, threads, batch_size])
    return "choice:" + hashlib.sha256(raw.encode()).hexdigest()[:32]


# ------------------------------------------------------------------------------------------ measuring
class Variants:
    """The candidate runtimes of one fp32 torch ``Encoder``, built on demand (shallow copies sharing its
    tokenizer; bf16 weights and ONNX sessions are built once)."""

    def __init__(self, encoder: Any, threads: int, precision_cache: PrecisionCache | None = None,
                 precision_key: str = "", onnx_root: Path | None = None):
        if encoder.engine != "torch" or encoder.precision.mode != "fp32":
            raise ValueError(f"runtimes are built from the fp32 torch encoder, not {encoder.runtime}")
        self.encoder = encoder
        self.threads = threads
        self.precision_cache = precision_cache
        self.precision_key = precision_key
        self.onnx_root = onnx_root
        self._built: dict[str, Any] = {REFERENCE: encoder}

    def bf16_precision(self) -> Precision:
        """Which bf16 way (autocast or bf16 weights) this machine runs faster (precision.py's measurement)."""
        return choose_precision("bf16", self.encoder.model, cache=self.precision_cache, cache_key=self.precision_key)

    def get(self, name: str) -> Any:
        if name in self._built:
            return self._built[name]
        if name not in CANDIDATES:
            raise ValueError(f"unknown runtime {name!r}; one of {', '.join(CANDIDATES)}")
        variant = copy.copy(self.encoder)
        engine, precision = name.split("-", 1)
        if engine == "torch":   # torch-bf16
            chosen = self.bf16_precision()
            variant.precision = chosen
            if chosen.mode == "bf16-weights":
                variant.model = chosen.prepare(copy.deepcopy(self.encoder.model))
        elif engine == "onnx":
            from services.classify.encoder.onnx_export import ensure_onnx_export, onnx_session

            export = ensure_onnx_export(self.encoder, self.onnx_root)
            variant.use_onnx(onnx_session(export.path(precision), self.threads), precision, "measured")
        else:   # openvino: the fp32 ONNX export, compiled at the precision asked for
            from services.classify.encoder.onnx_export import ensure_onnx_export
            from services.classify.encoder.openvino_runtime import OpenVinoSession

            export = ensure_onnx_export(self.encoder, self.onnx_root)
            variant.use_onnx(OpenVinoSession(export.path("fp32"), precision, self.threads), precision, "measured",
                             engine="openvino")
        self._built[name] = variant
        return variant


def measure(variants: Variants, names: Sequence[str], texts: Sequence[str], parity: ParityLabels,
            batch_size: int | None = None) -> list[Trial]:
    """Every runtime in ``names`` against torch-fp32 on ``texts``: label agreement, cosine, seconds."""
    ids = variants.encoder.tokenize(list(texts))
    trials: list[Trial] = []
    ref_emb: np.ndarray | None = None
    ref_labels: np.ndarray | None = None
    for name in [REFERENCE, *[n for n in names if n != REFERENCE]]:
        enc = variants.get(name)
        emb = enc.embed_ids(ids, batch_size)   # also the warm-up (oneDNN / ONNX Runtime first-call work)
        started = time.perf_counter()
        enc.embed_ids(ids, batch_size)
        seconds = time.perf_counter() - started
        labels = parity.labels(emb)
        if ref_emb is None or ref_labels is None:
            ref_emb, ref_labels = emb, labels
        same = labels == ref_labels
        trials.append(Trial(name, seconds, agreement=float(same.all(axis=1).mean()),
                            sentiment_agreement=float(same[:, 0].mean()),
                            intent_agreement=float(same[:, 1:].all(axis=1).mean()),
                            min_cosine=float((emb * ref_emb).sum(axis=1).min())))
        log.info("runtime %s on the parity set: %.2fs, label agreement %.1f%%, min cosine %.5f", name, seconds,
                 trials[-1].agreement * 100, trials[-1].min_cosine)
    return [t for t in trials if t.name in names]


def apply(encoder: Any, name: str, variants: Variants, reason: str) -> None:
    """Switch ``encoder`` (fp32 torch) to runtime ``name`` in place."""
    if name == REFERENCE:
        encoder.precision = Precision("fp32", reason)
        encoder.runtime_reason = reason
        return
    built = variants.get(name)
    if built.engine in ("onnx", "openvino"):
        encoder.use_onnx(built.session, built.precision.mode, reason, engine=built.engine)
    else:
        encoder.model, encoder.precision, encoder.runtime_reason = built.model, Precision(built.precision.mode,
                                                                                          reason), reason
        if built.precision.mode == "bf16-weights":   # the bf16 copy replaces the fp32 weights
            variants._built.pop(name, None)


def select_runtime(encoder: Any, runtime: str, precision: str, parity: ParityLabels | None, threads: int,
                   cache: RuntimeChoices | None = None, precision_cache: PrecisionCache | None = None,
                   precision_key: str = "", onnx_root: Path | None = None,
                   texts: Sequence[str] | None = None) -> str:
    """Resolve ``runtime`` / ``precision`` for ``encoder`` (fp32 torch) and switch it there; the runtime's name."""
    variants = Variants(encoder, threads, precision_cache, precision_key, onnx_root)
    if runtime == "onnx" and precision in ONNX_CONFIGURABLE:
        name = f"{runtime}-{precision}"
        apply(encoder, name, variants, "configured")
        return name
    names = candidates(runtime, precision)
    if runtime == "openvino" and precision in ("fp32", "bf16"):
        # configured; bf16 only where the CPU has it natively (candidates leaves fp32 elsewhere)
        apply(encoder, names[0], variants, "configured" if names[0] == f"openvino-{precision}"
              else "configured bf16, but this CPU has no native bf16: fp32")
        return names[0]
    if len(names) == 1:
        apply(encoder, names[0], variants, "the only candidate for this precision")
        return names[0]
    if parity is None:
        raise ValueError(f"TRIAGE_RUNTIME={runtime} chooses by parity and needs the heads' labels")
    texts = list(texts) if texts is not None else parity_texts()
    pkey = parity_key(encoder.version, parity.version, texts)
    ckey = choice_key(pkey, runtime, precision, threads, encoder.batch_size)
    cache = cache or RuntimeChoices(None)
    recorded = cache.get(pkey) or {}
    hit = cache.get(ckey)
    if hit and hit.get("name") in names and hit.get("parity_at") == recorded.get("at"):
        name, reason = str(hit["name"]), f"{hit.get('reason', '')} (measured {hit.get('at', '?')}, cached)"
    else:
        trials = measure(variants, names, texts, parity)
        for t in trials:   # the macro-F1 checks `triage model parity` recorded for these weights and heads
            t.f1 = dict(recorded.get("trials", {}).get(t.name, {}).get("f1", {}))
        for t in trials:
            if t.failures():
                log.warning("runtime %s refused: %s", t.name, "; ".join(t.failures()))
        name, reason = choose(trials)
        cache.put(ckey, {"name": name, "reason": reason, "trials": {t.name: asdict(t) for t in trials},
                         "parity_at": recorded.get("at")})
    apply(encoder, name, variants, reason)
    return name

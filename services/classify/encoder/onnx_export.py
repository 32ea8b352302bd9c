"""ONNX copies of the encoder for ONNX Runtime: fp32, and int8 by dynamic quantisation.

Exported from the very weights the torch path serves (the converted base with the LoRA adapter merged),
so every runtime scores the same fine-tuned model. The files are cached under
``.cache/onnx/<encoder version>-opset<N>/`` (the version hashes the base weights, the tokenizer and the
adapter, see ``Encoder.version``): a new adapter or base model gets a fresh export, an unchanged one is
never exported twice. ``triage model build`` exports them; a worker asked for ONNX exports them once
if they are missing (export time counts toward cold start, so build them with the model).

- ``model.fp32.onnx``: the encoder graph, inputs ``input_ids`` and ``attention_mask`` (int64, dynamic
  batch and sequence axes), output ``last_hidden_state``. Pooling and normalisation stay in
  ``Encoder.embed_ids``, shared with the torch path.
- ``model.int8.onnx``: ``onnxruntime.quantization.quantize_dynamic`` of it (int8 weights, activations
  quantised per batch at run time; ONNX Runtime uses VNNI / AMX-INT8 where the CPU has them).

Processes starting side by side take a file lock, so only one of them exports; a finished export is
renamed into place whole, so no process ever loads a half-written file.

Example:

    files = ensure_onnx_export(encoder, onnx_cache_root())
    files.path("int8")     # .cache/onnx/<version>-opset17/model.int8.onnx
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

OPSET = 17
ONNX_PRECISIONS = ("fp32", "int8")
REPO_ROOT = Path(__file__).resolve().parents[3]


def onnx_cache_root() -> Path:
    """Where exports are cached: ``<repo>/.cache/onnx`` (never in git)."""
    return REPO_ROOT / ".cache" / "onnx"


@dataclass(frozen=True)
class OnnxExport:
    """A cached export: one directory holding ``model.<precision>.onnx`` per precision and ``export.json``."""

    directory: Path

    def path(self, precision: str) -> Path:
        if precision not in ONNX_PRECISIONS:
            raise ValueError(f"ONNX precision must be one of {', '.join(ONNX_PRECISIONS)}, got {precision!r}")
        return self.directory / f"model.{precision}.onnx"

    @property
    def info(self) -> dict[str, Any]:
        try:
            data = json.loads((self.directory / "export.json").read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def complete(self) -> bool:
        return all(self.path(p).is_file() for p in ONNX_PRECISIONS) and bool(self.info)


def export_dir(version: str, root: Path) -> OnnxExport:
    return OnnxExport(root / f"{version}-opset{OPSET}")


def _hidden_states_module(model: Any) -> Any:
    """The encoder as a module of (input_ids, attention_mask) -> last_hidden_state, for the exporter."""
    import torch

    class HiddenStates(torch.nn.Module):
        def __init__(self, inner: Any):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return self.inner(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    return HiddenStates(model).eval()


def export_onnx(model: Any, out: Path) -> dict[str, Any]:
    """Write ``model.fp32.onnx`` and ``model.int8.onnx`` of ``model`` (an fp32 transformers encoder) to ``out``."""
    import warnings

    import onnxruntime
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out.mkdir(parents=True, exist_ok=True)
    fp32, int8 = out / "model.fp32.onnx", out / "model.int8.onnx"
    ids = torch.randint(5, 1000, (2, 8), generator=torch.Generator().manual_seed(0))
    started = time.perf_counter()
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        # the TorchScript exporter: the dynamo one needs onnxscript, and this graph has no control flow
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _hidden_states_module(model), (ids, torch.ones_like(ids)), str(fp32), dynamo=False, opset_version=OPSET,
            input_names=["input_ids", "attention_mask"], output_names=["last_hidden_state"],
            dynamic_axes={"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
                          "last_hidden_state": {0: "batch", 1: "sequence"}},
        )
    export_s = time.perf_counter() - started
    started = time.perf_counter()
    root_logger = logging.getLogger()
    level = root_logger.level
    root_logger.setLevel(max(level, logging.WARNING))  # the quantiser logs a line per tensor on the root logger
    try:
        quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, per_channel=True)
    finally:
        root_logger.setLevel(level)
    quantize_s = time.perf_counter() - started
    return {"opset": OPSET, "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
            "export_seconds": round(export_s, 1), "quantize_seconds": round(quantize_s, 1),
            "int8": "quantize_dynamic QInt8 weights, per channel",
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_onnx_export(encoder: Any, root: Path | None = None, force: bool = False) -> OnnxExport:
    """The cached export of ``encoder`` (an fp32 ``loader.Encoder``), exporting it first if missing."""
    root = root or onnx_cache_root()
    target = export_dir(encoder.version, root)
    if target.complete() and not force:
        return target
    if encoder.precision.mode != "fp32":
        raise ValueError(f"export needs the fp32 weights, the encoder runs {encoder.precision.mode}")
    with _locked(root / f".{target.directory.name}.lock"):
        if target.complete() and not force:  # another process exported it while this one waited
            return target
        tmp = root / f".{target.directory.name}.{os.getpid()}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            info = export_onnx(encoder.model, tmp)
            info["encoder_version"] = encoder.version
            (tmp / "export.json").write_text(json.dumps(info, indent=1, sort_keys=True))
            if target.directory.exists():
                shutil.rmtree(target.directory)
            os.replace(tmp, target.directory)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("exported encoder %s to ONNX in %s (export %.1fs, int8 quantisation %.1fs)", encoder.version,
             target.directory, info["export_seconds"], info["quantize_seconds"])
    return target


def onnx_session(path: Path, threads: int) -> Any:
    """An ONNX Runtime CPU session over ``path`` with ``threads`` intra-op threads (one inter-op thread)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3  # warnings about unused initialisers etc. are noise here
    # Idle pool threads sleep instead of spinning: the worker tokenises the next batch on the same cores
    # while this one runs, and a spinning pool starves it (and anything else on a shared machine).
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])

"""ONNX copies of the encoder for ONNX Runtime: fp32, and int8 by dynamic and by static quantisation.

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
- ``model.int8-static.onnx``: ``quantize_static`` (QDQ): per-channel int8 weights and uint8 activations
  with ranges fixed ahead of time from real posts (``artifacts/calibration_set.jsonl``: 192 UMSAB train
  tweets in 8 languages, none of them in the parity set), so no range is computed at run time. Only the
  Linear layers' MatMuls are quantised (``MatMulConstBOnly``: attention's activation x activation
  MatMuls, embeddings, LayerNorm and Softmax stay fp32), and of those not the FFN output projections,
  whose GELU inputs have outliers no 8-bit range holds (measured here: quantising them drops label
  agreement from 90% to 69%), nor any of the first and last layer (90% -> 92%). Ranges:
  ``CalibrationMethod.Percentile`` (99.999), no ``reduce_range`` (VNNI/AMX have no u8 x s8 saturation).
  An export made before this file existed gets it added in place (the fp32 file is not exported again).

Processes starting side by side take a file lock, so only one of them exports; a finished export is
renamed into place whole, so no process ever loads a half-written file.

Example:

    files = ensure_onnx_export(encoder, onnx_cache_root())
    files.path("int8")          # .cache/onnx/<version>-opset17/model.int8.onnx
    files.path("int8-static")   # .cache/onnx/<version>-opset17/model.int8-static.onnx
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

OPSET = 17
ONNX_PRECISIONS = ("fp32", "int8", "int8-static")
CALIBRATION_SET = Path(__file__).resolve().parents[1] / "artifacts" / "calibration_set.jsonl"
CALIBRATION_WIDTH = 64      # tokens: every calibration batch has one shape (the histogram calibrators need it)
CALIBRATION_BATCH = 16
STATIC_INT8 = ("quantize_static QDQ: per-channel s8 weights, u8 activations (Percentile 99.999 on "
               "artifacts/calibration_set.jsonl), Linear MatMuls only; FFN output MatMuls and the first "
               "and last layer kept fp32")
REPO_ROOT = Path(__file__).resolve().parents[3]


def onnx_cache_root() -> Path:
    """Where exports are cached: ``TRIAGE_ONNX_CACHE``, by default ``<repo>/.cache/onnx`` (never in git). The
    classify image exports at build time into ``/opt/triage/onnx`` and points this there, so a pod starts on
    the baked export instead of exporting on a read-only root."""
    return cache_dir("TRIAGE_ONNX_CACHE", "onnx")


def cache_dir(env: str, name: str) -> Path:
    """The directory the environment variable ``env`` names (blank: unset), else ``<repo>/.cache/<name>``."""
    configured = os.environ.get(env, "").strip()
    return Path(configured) if configured else REPO_ROOT / ".cache" / name


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
        return not self.missing() and bool(self.info)

    def missing(self) -> list[str]:
        """The precisions whose file is not there yet."""
        return [p for p in ONNX_PRECISIONS if not self.path(p).is_file()]


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


def calibration_texts(path: Path = CALIBRATION_SET) -> list[str]:
    """The real posts static int8 calibrates on (never the parity set's)."""
    return [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def calibration_batches(ids: Sequence[Sequence[int]], pad_id: int, width: int = CALIBRATION_WIDTH,
                        batch: int = CALIBRATION_BATCH) -> list[dict[str, np.ndarray]]:
    """``ids`` as ONNX inputs of one shape ``[batch, width]`` each (sorted by length, truncated to ``width``,
    a short last batch dropped): ONNX Runtime's histogram calibrators stack every batch's activations."""
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    out = []
    for start in range(0, len(order) - batch + 1, batch):
        rows = np.full((batch, width), pad_id, dtype=np.int64)
        mask = np.zeros((batch, width), dtype=np.int64)
        for r, i in enumerate(order[start:start + batch]):
            seq = list(ids[i])[:width]
            rows[r, :len(seq)] = seq
            mask[r, :len(seq)] = 1
        out.append({"input_ids": rows, "attention_mask": mask})
    return out


def static_excluded(matmul_names: Sequence[str]) -> list[str]:
    """The MatMuls static int8 leaves in fp32: each layer's FFN output projection (``layer.N/output/dense``),
    and every MatMul of the first and the last layer."""
    layers = sorted({int(m.group(1)) for n in matmul_names if (m := re.search(r"/layer\.(\d+)/", n))})
    ends = {f"/layer.{layers[0]}/", f"/layer.{layers[-1]}/"} if layers else set()
    return [n for n in matmul_names
            if ("/output/dense/" in n and "/attention/" not in n) or any(e in n for e in ends)]


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    root_logger = logging.getLogger()
    level = root_logger.level
    root_logger.setLevel(max(level, logging.ERROR))  # the quantiser logs a line per tensor on the root logger
    try:
        yield
    finally:
        root_logger.setLevel(level)


def quantize_int8_static(fp32: Path, out: Path, batches: Sequence[dict[str, np.ndarray]]) -> None:
    """``out``: static (QDQ) int8 of ``fp32`` calibrated on ``batches`` (see the module docstring)."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.pending = list(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return self.pending.pop(0) if self.pending else None

    graph = onnx.load(str(fp32), load_external_data=False).graph
    matmuls = [n.name for n in graph.node if n.op_type == "MatMul"]
    del graph
    with _quiet_root_logger(), contextlib.redirect_stdout(io.StringIO()):  # it also prints its progress
        quantize_static(str(fp32), str(out), Reader(), quant_format=QuantFormat.QDQ, op_types_to_quantize=["MatMul"],
                        per_channel=True, reduce_range=False, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, nodes_to_exclude=static_excluded(matmuls),
                        calibrate_method=CalibrationMethod.Percentile,
                        extra_options={"MatMulConstBOnly": True, "CalibPercentile": 99.999,
                                       "ActivationSymmetric": False, "WeightSymmetric": True})


def quantize_int8_dynamic(fp32: Path, out: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet_root_logger():
        quantize_dynamic(str(fp32), str(out), weight_type=QuantType.QInt8, per_channel=True)


def quantize_missing(export: OnnxExport, calibration: Sequence[Sequence[int]], pad_id: int) -> dict[str, float]:
    """Write each quantised file of ``export`` that is missing (from its fp32 file); seconds per precision.
    Each is written beside its final name and renamed into place whole."""
    seconds: dict[str, float] = {}
    fp32 = export.path("fp32")
    for precision in export.missing():
        if precision == "fp32":
            continue
        final = export.path(precision)
        tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
        started = time.perf_counter()
        try:
            if precision == "int8":
                quantize_int8_dynamic(fp32, tmp)
            else:
                quantize_int8_static(fp32, tmp, calibration_batches(calibration, pad_id))
            os.replace(tmp, final)
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()
        seconds[precision] = round(time.perf_counter() - started, 1)
    return seconds


def export_onnx(model: Any, out: Path, calibration: Sequence[Sequence[int]], pad_id: int) -> dict[str, Any]:
    """Write ``model.<precision>.onnx`` of ``model`` (an fp32 transformers encoder) to ``out`` for every
    precision; ``calibration`` (token ids of the calibration texts) calibrates static int8."""
    import warnings

    import onnxruntime
    import torch

    out.mkdir(parents=True, exist_ok=True)
    fp32 = out / "model.fp32.onnx"
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
    seconds = quantize_missing(OnnxExport(out), calibration, pad_id)
    return {"opset": OPSET, "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
            "export_seconds": round(export_s, 1), "quantize_seconds": seconds.get("int8"),
            "int8": "quantize_dynamic QInt8 weights, per channel",
            "quantize_static_seconds": seconds.get("int8-static"), "int8-static": STATIC_INT8,
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
    calibration = encoder.tokenize(calibration_texts(), max_length=CALIBRATION_WIDTH)
    with _locked(root / f".{target.directory.name}.lock"):
        if target.complete() and not force:  # another process exported it while this one waited
            return target
        if not force and target.path("fp32").is_file() and target.info:
            # an export from before a precision was added: quantise only what is missing
            seconds = quantize_missing(target, calibration, encoder.pad_id)
            info = {**target.info, "int8-static": STATIC_INT8, "quantize_static_seconds": seconds.get("int8-static")}
            _write_info(target.directory, info)
            log.info("added %s to the ONNX export %s (%s)", ", ".join(seconds), target.directory,
                     ", ".join(f"{p} {s}s" for p, s in seconds.items()))
            return target
        tmp = root / f".{target.directory.name}.{os.getpid()}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            info = export_onnx(encoder.model, tmp, calibration, encoder.pad_id)
            info["encoder_version"] = encoder.version
            _write_info(tmp, info)
            if target.directory.exists():
                shutil.rmtree(target.directory)
            os.replace(tmp, target.directory)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("exported encoder %s to ONNX in %s (export %.1fs, int8 quantisation %.1fs, static int8 %.1fs)",
             encoder.version, target.directory, info["export_seconds"], info["quantize_seconds"],
             info["quantize_static_seconds"])
    return target


def _write_info(directory: Path, info: dict[str, Any]) -> None:
    tmp = directory / f".export.json.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(info, indent=1, sort_keys=True))
    os.replace(tmp, directory / "export.json")


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

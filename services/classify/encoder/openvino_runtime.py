"""OpenVINO for the encoder: the ONNX export (``onnx_export.py``, the same weights with the adapter merged)
compiled by OpenVINO's CPU plugin, in fp32 or bf16.

In the model dependencies (the classify image has it). Where the package is missing (an install without it)
``TRIAGE_RUNTIME=auto`` leaves OpenVINO out and ``TRIAGE_RUNTIME=openvino`` is a clear error at start-up.

- ``openvino-fp32``: ``INFERENCE_PRECISION_HINT=f32``. Set explicitly: on a CPU with AMX or AVX-512 BF16
  the plugin's default is bf16.
- ``openvino-bf16``: ``INFERENCE_PRECISION_HINT=bf16`` (only where the CPU has native bf16).

Compiled models are cached under ``TRIAGE_OPENVINO_CACHE/<precision>/`` (default ``.cache/openvino``;
OpenVINO's ``CACHE_DIR``; unwritable: no cache), so a second start on the same machine skips the compilation.
One directory per precision, not one for all: OpenVINO 2026.4's cache key leaves the precision hint out, and
a bf16 model loaded from the blob compiled for f32 crashes the process in its first inference (double free;
measured here on a Xeon with AMX).

``OpenVinoSession.run`` has ONNX Runtime's ``InferenceSession.run`` signature, so ``Encoder.embed_ids`` runs
either the same way (one caller at a time: the worker's model stage is one thread).

Example:

    session = OpenVinoSession(export.path("fp32"), "bf16", threads=2)
    encoder.use_onnx(session, "bf16", "configured", engine="openvino")
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from services.common.logging import get_logger

log = get_logger("classify")

OPENVINO_PRECISIONS = ("fp32", "bf16")
HINTS = {"fp32": "f32", "bf16": "bf16"}


def openvino_available() -> bool:
    """Whether the optional ``openvino`` package is installed."""
    return importlib.util.find_spec("openvino") is not None


def openvino_version() -> str:
    """OpenVINO's version, ``""`` where it is not installed."""
    if not openvino_available():
        return ""
    import openvino

    return str(openvino.__version__)


def openvino_config(precision: str, threads: int, cache_dir: Path | None) -> dict[str, Any]:
    """The CPU plugin's properties for ``precision`` (``fp32`` or ``bf16``) on ``threads`` threads."""
    if precision not in OPENVINO_PRECISIONS:
        raise ValueError(f"OpenVINO runs {' or '.join(OPENVINO_PRECISIONS)} here, not {precision!r}")
    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": HINTS[precision], "INFERENCE_NUM_THREADS": threads,
                              "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
    if cache_dir is not None:
        config["CACHE_DIR"] = str(cache_dir)
    return config


def openvino_cache_root() -> Path:
    """OpenVINO's compiled-model cache: ``TRIAGE_OPENVINO_CACHE``, by default ``<repo>/.cache/openvino``."""
    from services.classify.encoder.onnx_export import cache_dir

    return cache_dir("TRIAGE_OPENVINO_CACHE", "openvino")


class OpenVinoSession:
    """The ONNX file at ``path`` compiled for this CPU; ``run`` as ONNX Runtime's (one output)."""

    def __init__(self, path: Path, precision: str, threads: int, cache_dir: Path | None = None):
        import openvino as ov

        core = ov.Core()
        self.precision = precision
        wanted = (cache_dir or openvino_cache_root()) / precision
        cache: Path | None = wanted
        try:
            wanted.mkdir(parents=True, exist_ok=True)
        except OSError as exc:   # a read-only root: compile without a cache (slower start, same model)
            log.warning("openvino_cache_unwritable", cache=str(wanted), error=str(exc))
            cache = None
        # From the file, not from `read_model`: with a cached blob OpenVINO then skips parsing the ONNX graph
        # (1.8 s -> 0.24 s of the start on a 2-core EPYC). Its cache key is then the path (plus the properties):
        # safe, as the export's directory is named by the weights and adapter it holds (onnx_export.py).
        self.compiled = core.compile_model(str(path), "CPU", openvino_config(precision, threads, cache))
        self.request = self.compiled.create_infer_request()
        self.output = self.compiled.output(0)

    def run(self, output_names: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        result = self.request.infer(feeds)
        return [np.array(result[self.output], dtype=np.float32)]   # a copy: the next infer reuses the buffer

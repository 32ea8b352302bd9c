"""Machine-readable benchmark results: one JSON file per run, attributable to a CPU.

`make bench` and `make bench-e2e` print tables for people and also write their figures here, so that the
capacity plan (`bench/capacity.py`, `make capacity`) and later comparisons read numbers, not scraped text.
Each file carries the machine it ran on (`lscpu`'s model name, core count and the instruction sets that
decide the encoder's speed: AVX2, AVX-512, VNNI, BF16, AMX), since a figure without its CPU is no figure.

Where: `$BENCH_OUT` (a directory; default `.cache/bench/`), as `<kind>-<UTC time>.json` plus a copy named
`<kind>-latest.json`, which `bench.capacity` reads by default.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DIR = REPO / ".cache" / "bench"
SCHEMA = 1

# The instruction sets that decide which runtime and precision is fastest for the encoder, in that order of
# appearance: AVX2 (the floor), AVX-512, VNNI (int8 dot products: the quantised runtimes), BF16, AMX (tiles).
FLAGS_OF_INTEREST = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8",
                     "amx_tile")


def parse_lscpu(text: str) -> dict[str, Any]:
    """Model name, CPU count, threads per core and the flags of interest from `lscpu` (or /proc/cpuinfo) text."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())
    flags = set((fields.get("flags") or "").split())
    cpus = fields.get("cpu(s)")
    tpc = fields.get("thread(s) per core")
    return {
        "model_name": fields.get("model name", "unknown"),
        "cpus": int(cpus) if cpus and cpus.isdigit() else None,
        "threads_per_core": int(tpc) if tpc and tpc.isdigit() else None,
        "flags": {f: f in flags for f in FLAGS_OF_INTEREST},
        "isa": isa_summary(flags),
    }


def isa_summary(flags: set[str]) -> str:
    """One word for the matrix instructions the runtimes can use: amx, avx512-bf16, avx512-vnni, avx512,
    avx2 or baseline (the class of CPU a figure belongs to)."""
    if {"amx_bf16", "amx_int8"} & flags:
        return "amx"
    if "avx512_bf16" in flags:
        return "avx512-bf16"
    if "avx512_vnni" in flags:
        return "avx512-vnni"
    if "avx512f" in flags:
        return "avx512"
    if "avx2" in flags:
        return "avx2"
    return "baseline"


def machine_info() -> dict[str, Any]:
    """This machine's CPU (lscpu, else /proc/cpuinfo), the CPUs this process may use, OS and Python."""
    text = ""
    if shutil.which("lscpu"):
        try:
            text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10,
                                  env={**os.environ, "LC_ALL": "C"}).stdout
        except (OSError, subprocess.SubprocessError):
            text = ""
    if not text:
        try:
            text = Path("/proc/cpuinfo").read_text()
        except OSError:
            text = ""
    info = parse_lscpu(text)
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 1
    info.update({"usable_cpus": usable, "hostname": platform.node(), "os": platform.platform(),
                 "python": platform.python_version()})
    try:
        info["load_average"] = list(os.getloadavg())   # a busy machine's figures are not the machine's
    except OSError:
        pass
    return info


def out_dir() -> Path:
    return Path(os.environ.get("BENCH_OUT") or DEFAULT_DIR)


def _plain(value: Any) -> Any:
    """``value`` with NaN and infinities as null (strict JSON has no NaN; a figure not measured is null)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def write_results(kind: str, figures: dict[str, Any], directory: Path | None = None) -> Path:
    """Write ``figures`` with the machine's description as ``<kind>-<UTC time>.json`` (and ``<kind>-latest.json``)
    under ``directory`` (default `$BENCH_OUT` or `.cache/bench/`); the path of the timestamped file."""
    directory = directory or out_dir()
    directory.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    doc = {"schema": SCHEMA, "kind": kind, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "machine": machine_info(), "figures": _plain(figures)}
    path = directory / f"{kind}-{stamp}.json"
    text = json.dumps(doc, indent=2, ensure_ascii=False, default=str, allow_nan=False) + "\n"
    path.write_text(text)
    latest = directory / f"{kind}-latest.json"
    tmp = latest.with_suffix(".json.tmp")
    tmp.write_text(text)
    tmp.replace(latest)
    return path


def read_results(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text())
    if doc.get("schema") != SCHEMA:
        raise ValueError(f"{path}: schema {doc.get('schema')!r}, expected {SCHEMA}")
    return doc

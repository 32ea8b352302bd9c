"""Benchmark results files: every figure is written with the CPU it was measured on (bench/results.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.results import SCHEMA, isa_summary, parse_lscpu, read_results, write_results

LSCPU = """Architecture:                            x86_64
CPU(s):                                  2
Model name:                              AMD EPYC 9R14
Thread(s) per core:                      1
Flags:                                   fpu sse2 avx2 avx512f avx512_vnni avx512_bf16
"""

CPUINFO = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8488C
flags\t\t: fpu avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8

processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8488C
flags\t\t: fpu avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8
"""


def test_lscpu_gives_the_model_name_and_the_instruction_sets_that_decide_the_runtime() -> None:
    info = parse_lscpu(LSCPU)
    assert info["model_name"] == "AMD EPYC 9R14"
    assert info["cpus"] == 2 and info["threads_per_core"] == 1
    assert info["flags"]["avx512_vnni"] and info["flags"]["avx512_bf16"]
    assert not info["flags"]["amx_int8"]
    assert info["isa"] == "avx512-bf16"


def test_proc_cpuinfo_is_read_when_lscpu_is_missing() -> None:
    info = parse_lscpu(CPUINFO)
    assert info["model_name"] == "Intel(R) Xeon(R) Platinum 8488C"
    assert info["isa"] == "amx"
    assert info["cpus"] is None


@pytest.mark.parametrize(("flags", "isa"), [
    ({"avx2"}, "avx2"), ({"avx2", "avx512f"}, "avx512"), ({"avx512f", "avx512_vnni"}, "avx512-vnni"),
    ({"avx512_vnni", "avx512_bf16"}, "avx512-bf16"), ({"avx512_bf16", "amx_int8"}, "amx"), (set(), "baseline"),
])
def test_the_cpu_class_is_the_best_matrix_instruction_set(flags: set[str], isa: str) -> None:
    assert isa_summary(flags) == isa


def test_a_results_file_carries_the_machine_and_a_latest_copy(tmp_path: Path) -> None:
    path = write_results("classify", {"best_mentions_per_s": 105.0}, tmp_path)
    doc = read_results(path)
    assert doc["kind"] == "classify" and doc["schema"] == SCHEMA
    assert doc["figures"] == {"best_mentions_per_s": 105.0}
    assert doc["machine"]["model_name"] and doc["machine"]["usable_cpus"] >= 1
    assert read_results(tmp_path / "classify-latest.json") == doc


def test_a_figure_not_measured_is_null_not_nan(tmp_path: Path) -> None:
    path = write_results("e2e", {"phases": [{"p99_s": float("nan"), "drained_s": None, "rate": 50.0}]}, tmp_path)
    assert json.loads(path.read_text())["figures"]["phases"] == [{"p99_s": None, "drained_s": None, "rate": 50.0}]


def test_a_results_file_of_another_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"schema": SCHEMA + 1, "figures": {}}))
    with pytest.raises(ValueError, match="schema"):
        read_results(path)

"""Precision choice from CPU flags, without a model: no native bf16 means fp32 without measuring."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.classify.encoder.precision import Precision, choose_precision, cpu_flags, native_bf16


class NeverCalled:
    def __call__(self, *args: object, **kwargs: object) -> None:
        raise AssertionError("auto on a CPU without bf16 must not run the model")


def test_flags_parsed_from_cpuinfo(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16\n")
    assert native_bf16(cpu_flags(info)) == ["avx512_bf16"]
    assert cpu_flags(tmp_path / "missing") == set()


def test_auto_without_native_bf16_is_fp32() -> None:
    p = choose_precision("auto", NeverCalled(), flags={"avx2", "fma"})
    assert p == Precision("fp32", "CPU has no native bf16 (amx_bf16/avx512_bf16)")
    assert p.label == "fp32"


@pytest.mark.parametrize("mode", ["fp32", "bf16-weights", "bf16-autocast", "int8"])
def test_explicit_modes_are_taken_as_configured(mode: str) -> None:
    assert choose_precision(mode, NeverCalled(), flags=set()).mode == mode


def test_unknown_precision_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="precision must be one of"):
        choose_precision("fp8", NeverCalled())


class CountingModel:
    """A stand-in encoder whose forward passes are counted (the measurement's cost)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, **_: object) -> None:
        self.calls += 1

    def to(self, *_: object) -> CountingModel:
        return self


def test_a_measured_choice_is_cached_per_key_and_reused(tmp_path) -> None:
    from services.classify.encoder.precision import PrecisionCache

    cache = PrecisionCache(tmp_path / "choices.json")
    model = CountingModel()
    first = choose_precision("auto", model, flags={"amx_bf16"}, cache=cache, cache_key="k1")
    measured = model.calls
    assert measured > 0 and "ms" in first.reason
    again = choose_precision("auto", model, flags={"amx_bf16"}, cache=cache, cache_key="k1")
    assert model.calls == measured                       # no second measurement
    assert again.mode == first.mode and "ms" in again.reason and "cached" in again.reason
    choose_precision("auto", model, flags={"amx_bf16"}, cache=cache, cache_key="k2")
    assert model.calls == 2 * measured                   # another machine/model/thread count measures


def test_an_unwritable_cache_only_means_measuring_again(tmp_path) -> None:
    from services.classify.encoder.precision import PrecisionCache

    cache = PrecisionCache(tmp_path / "missing-dir" / "choices.json")
    model = CountingModel()
    choose_precision("auto", model, flags={"amx_bf16"}, cache=cache, cache_key="k")
    calls = model.calls
    choose_precision("auto", model, flags={"amx_bf16"}, cache=cache, cache_key="k")
    assert model.calls == 2 * calls

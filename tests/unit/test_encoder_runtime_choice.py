"""Runtime choice (TRIAGE_RUNTIME) from measured trials, without a model: the fastest runtime that passes
parity wins, one that fails any check is refused with the reason, and the candidates follow the CPU."""

from __future__ import annotations

import json

import pytest

from services.classify.encoder.runtime import RuntimeChoices, Trial, candidates, choose, parity_texts


def trial(name: str, seconds: float, agreement: float = 1.0, f1: dict[str, list[float]] | None = None) -> Trial:
    return Trial(name, seconds, agreement, sentiment_agreement=agreement, intent_agreement=agreement,
                 min_cosine=0.999, f1=f1 or {})


def test_the_fastest_runtime_passing_parity_is_chosen() -> None:
    name, reason = choose([trial("torch-fp32", 3.0), trial("onnx-fp32", 2.0), trial("onnx-int8", 1.0)])
    assert name == "onnx-int8"
    assert "onnx-int8 1.00s" in reason and "torch-fp32 3.00s" in reason
    assert "macro-F1 checks not recorded" in reason   # start-up without `triage model parity` says so


def test_a_faster_runtime_below_99_percent_label_agreement_is_refused() -> None:
    name, reason = choose([trial("torch-fp32", 3.0), trial("onnx-int8", 1.0, agreement=0.985)])
    assert name == "torch-fp32"
    assert "onnx-int8 refused: label agreement 98.5% < 99%" in reason


def test_a_macro_f1_off_by_more_than_half_a_point_is_refused_either_way() -> None:
    checks = {"intent_realdev": [60.0, 59.4], "sentiment_umsab_val": [65.0, 65.2]}
    worse = trial("onnx-int8", 1.0, agreement=0.995, f1=checks)
    better = trial("onnx-fp32", 2.0, f1={"sentiment_umsab_val": [65.0, 65.6]})
    ok = trial("torch-bf16", 2.5, f1={"sentiment_umsab_val": [65.0, 64.6]})
    name, reason = choose([trial("torch-fp32", 3.0, f1={"sentiment_umsab_val": [65.0, 65.0]}), worse, better, ok])
    assert name == "torch-bf16"
    assert "onnx-int8 refused: intent_realdev macro-F1 59.40 vs 60.00 (off by 0.60 > 0.5 point)" in reason
    assert "onnx-fp32 refused: sentiment_umsab_val macro-F1 65.60 vs 65.00" in reason
    assert "not recorded" not in reason


def test_no_runtime_passing_is_an_error_not_a_silent_pick() -> None:
    with pytest.raises(RuntimeError, match="no runtime passes parity: onnx-int8 refused"):
        choose([trial("onnx-int8", 1.0, agreement=0.5)])


def test_candidates_follow_the_cpu_and_the_settings() -> None:
    bf16 = {"avx512_bf16", "avx512_vnni"}
    assert candidates("auto", "auto", flags=bf16, openvino=False) == [
        "torch-fp32", "torch-bf16", "onnx-fp32", "onnx-int8", "onnx-int8-static"]
    assert candidates("auto", "auto", flags={"avx2"}, openvino=False) == [
        "torch-fp32", "onnx-fp32", "onnx-int8", "onnx-int8-static"]
    assert candidates("onnx", "auto", flags=bf16, openvino=False) == ["onnx-fp32", "onnx-int8", "onnx-int8-static"]
    assert candidates("auto", "fp32", flags=bf16, openvino=False) == ["torch-fp32", "onnx-fp32"]
    assert candidates("auto", "bf16", flags=set(), openvino=False) == ["torch-fp32"]


def test_openvino_candidates_only_where_installed_and_bf16_only_where_native() -> None:
    bf16 = {"amx_bf16", "avx512_bf16"}
    assert candidates("auto", "auto", flags=bf16, openvino=True)[-2:] == ["openvino-fp32", "openvino-bf16"]
    assert "openvino-bf16" not in candidates("auto", "auto", flags={"avx2"}, openvino=True)
    assert not [n for n in candidates("auto", "auto", flags=bf16, openvino=False) if n.startswith("openvino")]
    assert candidates("openvino", "auto", flags=bf16, openvino=True) == ["openvino-fp32", "openvino-bf16"]
    assert candidates("openvino", "auto", flags={"avx2"}, openvino=True) == ["openvino-fp32"]
    assert candidates("openvino", "bf16", flags={"avx2"}, openvino=True) == ["openvino-fp32"]
    assert candidates("auto", "bf16", flags=bf16, openvino=True) == ["torch-bf16", "openvino-bf16"]
    with pytest.raises(ValueError, match=r"needs the openvino package, one of the model dependencies: install "
                                         r"requirements\.lock"):
        candidates("openvino", "auto", openvino=False)
    with pytest.raises(ValueError, match="OpenVINO runs fp32 or bf16 here, not int8"):
        candidates("openvino", "int8", openvino=True)


@pytest.mark.parametrize(("runtime", "precision", "message"), [
    ("onnx", "bf16-weights", "ONNX Runtime runs fp32, int8 or int8-static"),
    ("auto", "int8", "name the engine"),
    ("auto", "int8-static", "name the engine"),
    ("tensorrt", "auto", "runtime must be one of auto, torch, onnx, openvino"),
])
def test_impossible_settings_are_clear_errors(runtime: str, precision: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        candidates(runtime, precision, openvino=False)


def test_recorded_choices_survive_a_restart_and_a_broken_file_is_empty(tmp_path) -> None:
    path = tmp_path / "runtime-choices.json"
    RuntimeChoices(path).put("choice:k", {"name": "onnx-int8", "reason": "fastest"})
    hit = RuntimeChoices(path).get("choice:k")
    assert hit is not None and hit["name"] == "onnx-int8" and hit["at"]
    path.write_text("{not json")
    assert RuntimeChoices(path).get("choice:k") is None
    RuntimeChoices(tmp_path / "missing" / "x.json").put("k", {"name": "torch-fp32"})   # unwritable: no error


def test_the_parity_set_is_real_multilingual_text() -> None:
    texts = parity_texts()
    assert len(texts) == 300 and len(set(texts)) == 300
    from services.classify.encoder.runtime import PARITY_SET

    langs = {json.loads(line)["lang"] for line in PARITY_SET.read_text(encoding="utf-8").splitlines()}
    assert langs == {"en", "es", "ar", "hi", "fr", "de", "pt", "it"}


@pytest.mark.parametrize(("native", "expected", "reason"), [
    (True, "openvino-bf16", "configured"),
    (False, "openvino-fp32", "configured bf16, but this CPU has no native bf16: fp32"),
])
def test_a_configured_openvino_bf16_runs_fp32_where_the_cpu_has_no_native_bf16(
        monkeypatch: pytest.MonkeyPatch, native: bool, expected: str, reason: str) -> None:
    # The deployment sets TRIAGE_RUNTIME=openvino TRIAGE_PRECISION=bf16 for every node; on a CPU without
    # AVX512_BF16/AMX the pod runs OpenVINO fp32 (emulated bf16 is slower than fp32), and says why.
    from types import SimpleNamespace

    import services.classify.encoder.runtime as runtime

    applied: list[tuple[str, str]] = []
    monkeypatch.setattr(runtime, "native_bf16", lambda flags=None: native)
    monkeypatch.setattr(runtime, "openvino_available", lambda: True)
    monkeypatch.setattr(runtime, "apply", lambda enc, name, variants, why: applied.append((name, why)))
    fp32_torch = SimpleNamespace(engine="torch", precision=SimpleNamespace(mode="fp32"))
    assert runtime.select_runtime(fp32_torch, "openvino", "bf16", None, 2) == expected
    assert applied == [(expected, reason)]

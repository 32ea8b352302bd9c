"""Static int8 of the ONNX export, without a model: what it calibrates on (real posts, never the parity set it
is judged on), the shape of the calibration batches, and which MatMuls stay fp32."""

from __future__ import annotations

import json

import numpy as np

from services.classify.encoder.onnx_export import (
    CALIBRATION_SET,
    calibration_batches,
    calibration_texts,
    static_excluded,
)
from services.classify.encoder.runtime import parity_texts
from services.classify.training.calibration_set import calibration_slice


def test_the_committed_calibration_set_is_real_multilingual_posts_outside_the_parity_set() -> None:
    texts = calibration_texts()
    langs = {json.loads(line)["lang"] for line in CALIBRATION_SET.read_text(encoding="utf-8").splitlines()}
    assert len(texts) == 192 and len(set(texts)) == 192
    assert langs == {"ar", "de", "en", "es", "fr", "hi", "it", "pt"}
    assert not set(texts) & set(parity_texts())


def test_the_slice_skips_excluded_empty_and_repeated_texts_and_caps_each_language() -> None:
    texts = ["a1", "judged", "a1", "", "a2", "a3", "b1"]
    langs = ["en", "en", "en", "en", "en", "en", "fr"]
    assert calibration_slice(texts, langs, {"judged"}, per_language=2) == [
        {"lang": "en", "text": "a1"}, {"lang": "en", "text": "a2"}, {"lang": "fr", "text": "b1"}]


def test_calibration_batches_have_one_shape_and_mask_exactly_the_tokens() -> None:
    ids = [[0, 7, 2], [0, *range(10, 100), 2], [0, 5, 6, 2], [0, 2]]
    assert len(calibration_batches(ids, pad_id=1, width=8, batch=3)) == 1   # a short last batch is dropped
    batches = calibration_batches(ids, pad_id=1, width=8, batch=2)
    assert len(batches) == 2
    for b in batches:
        assert b["input_ids"].shape == b["attention_mask"].shape == (2, 8)
    first = batches[0]   # the two shortest, in order of length
    np.testing.assert_array_equal(first["input_ids"][0], [0, 2, 1, 1, 1, 1, 1, 1])
    np.testing.assert_array_equal(first["attention_mask"].sum(axis=1), [2, 3])
    last = batches[1]    # the long text is truncated to the width
    assert last["attention_mask"][1].sum() == 8 and list(last["input_ids"][1][:3]) == [0, 10, 11]


def test_ffn_outputs_and_the_first_and_last_layer_stay_fp32() -> None:
    names = [f"/inner/encoder/layer.{i}/{part}/MatMul" for i in range(12)
             for part in ("attention/self/query", "attention/output/dense", "intermediate/dense", "output/dense")]
    kept = set(static_excluded(names))
    assert "/inner/encoder/layer.5/output/dense/MatMul" in kept
    assert "/inner/encoder/layer.5/attention/output/dense/MatMul" not in kept
    assert "/inner/encoder/layer.5/intermediate/dense/MatMul" not in kept
    assert {n for n in names if "/layer.0/" in n or "/layer.11/" in n} <= kept
    assert len(kept) == 4 + 4 + 10

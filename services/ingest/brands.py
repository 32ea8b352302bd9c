"""Tracked brands and the matcher that tags mentions with them (pure, no I/O).

A brand is configured by names, handles, hashtags, product names and problem
phrases ("can't log in", "is {brand} down") with language variants. Matching
sets `Mention.brands` and decides which stream events are worth producing.

Only what names the brand tags a mention with it: names, products, handles, hashtags and the problem
phrases written with "{brand}" (which expand to its names). A bare problem phrase ("can't log in",
"no funciona") is reported in `BrandMatch.problems` but tags no brand: every brand's customers write it,
and "@FjordTel can't log in" tagged AcmeBank too, so one brand's outage counted as another's.

Text and patterns go through the same folding so that case, accents, Greek
final sigma, Persian/Arabic letter variants, zero-width joiners and tatweel do
not change the outcome; they are then split into word tokens (letters, digits
and combining marks, so Devanagari vowel signs stay inside their word) and
phrases match as whole token sequences, never as substrings of longer words.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

DEFAULT_BRANDS_FILE = Path(__file__).with_name("brands.default.yaml")

# Characters removed before matching: zero-width space/joiners, word joiner, BOM, Arabic tatweel.
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u0640"), None)
# Arabic-script letters Persian writes differently (Arabic yeh/kaf, alef variants).
_LETTER_VARIANTS = str.maketrans({"ي": "ی", "ى": "ی", "ك": "ک", "ة": "ه", "أ": "ا", "إ": "ا", "آ": "ا"})
# Scripts whose combining marks are accents/diacritics that people often omit.
_STRIP_MARKS_AFTER = ("LATIN", "GREEK", "CYRILLIC", "ARABIC")


def _script(ch: str) -> str:
    return unicodedata.name(ch, "").split(" ", 1)[0]


def fold(text: str) -> str:
    """Case-, accent- and variant-insensitive form of `text` used on both sides of a match."""
    text = text.translate(_INVISIBLE).translate(_LETTER_VARIANTS)
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    out: list[str] = []
    base_script = ""
    for ch in decomposed:
        if unicodedata.category(ch) == "Mn":
            # Drop accents on Latin/Greek/Cyrillic/Arabic bases (é->e, ά->α, й->и, harakat);
            # keep Devanagari and other Indic signs, which change the word.
            if base_script in _STRIP_MARKS_AFTER:
                continue
        else:
            base_script = _script(ch)
        out.append(ch)
    return unicodedata.normalize("NFC", "".join(out))


def _is_word_char(ch: str) -> bool:
    return ch.isalnum() or ch == "_" or unicodedata.category(ch)[0] == "M"


@dataclass(frozen=True)
class Token:
    text: str
    prefix: str  # "#" for hashtags, "@" for handles, "" otherwise


def tokenize(text: str) -> list[Token]:
    """Folded word tokens, remembering a leading '#' or '@' (so #AcmeDown and @acme_help are recognised)."""
    folded = fold(text)
    tokens: list[Token] = []
    i, n = 0, len(folded)
    while i < n:
        ch = folded[i]
        if _is_word_char(ch):
            j = i
            while j < n and _is_word_char(folded[j]):
                j += 1
            prev = folded[i - 1] if i > 0 else ""
            # Full-width ＃/＠ were folded to #/@ by NFKD.
            prefix = prev if prev in "#@" else ""
            tokens.append(Token(folded[i:j], prefix))
            i = j
        else:
            i += 1
    return tokens


class BrandConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    names: list[str] = Field(default_factory=list)
    handles: list[str] = Field(default_factory=list)
    hashtags: list[str] = Field(default_factory=list)
    products: list[str] = Field(default_factory=list)
    # Language tag -> phrases; "{brand}" expands to every name and product.
    problem_phrases: dict[str, list[str]] = Field(default_factory=dict)


class BrandsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    brands: list[BrandConfig] = Field(default_factory=list)


@dataclass
class BrandMatch:
    brands: list[str] = field(default_factory=list)  # brand ids, in configuration order
    # (brand id, kind, matched phrase as configured); kind: name, handle, hashtag, product, problem
    hits: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        return [phrase for _, kind, phrase in self.hits if kind == "problem"]


class BrandMatcher:
    """Finds configured brands in a text; build once, call `match()` per mention."""

    def __init__(self, brands: Iterable[BrandConfig]):
        self.brands = list(brands)
        self._order = {b.id: i for i, b in enumerate(self.brands)}
        # (prefix kind, token tuple) -> [(brand id, kind, phrase)]; prefix kind "" means any prefix.
        self._index: dict[tuple[str, tuple[str, ...]], list[tuple[str, str, str]]] = {}
        self._max_len = 1
        for b in self.brands:
            for name in b.names:
                self._add("", name, b.id, "name")
                self._add_joined(name, b.id, "name")
            for product in b.products:
                self._add("", product, b.id, "product")
                self._add_joined(product, b.id, "product")
            for handle in b.handles:
                self._add("@", handle.lstrip("@"), b.id, "handle")
            for tag in b.hashtags:
                self._add("#", tag.lstrip("#"), b.id, "hashtag")
            for phrases in b.problem_phrases.values():
                for phrase in phrases:
                    if "{brand}" in phrase:
                        for name in b.names + b.products:
                            self._add("", phrase.replace("{brand}", name), b.id, "problem", label=phrase)
                    else:
                        self._add("", phrase, b.id, "problem")

    def _add(self, prefix: str, phrase: str, brand: str, kind: str, label: str | None = None) -> None:
        toks = tuple(t.text for t in tokenize(phrase))
        if not toks:
            return
        self._index.setdefault((prefix, toks), []).append((brand, kind, label or phrase))
        self._max_len = max(self._max_len, len(toks))

    def _add_joined(self, phrase: str, brand: str, kind: str) -> None:
        # "Acme Bank" is also written #AcmeBank or @acmebank.
        joined = "".join(t.text for t in tokenize(phrase))
        if joined:
            self._index.setdefault(("#", (joined,)), []).append((brand, kind, phrase))
            self._index.setdefault(("@", (joined,)), []).append((brand, kind, phrase))

    @classmethod
    def from_yaml(cls, path: Path) -> BrandMatcher:
        return cls(load_brands(path))

    def __bool__(self) -> bool:
        return bool(self.brands)

    def match(self, text: str) -> BrandMatch:
        tokens = tokenize(text)
        found: dict[str, None] = {}
        hits: list[tuple[str, str, str]] = []
        for i in range(len(tokens)):
            for n in range(1, min(self._max_len, len(tokens) - i) + 1):
                words = tuple(t.text for t in tokens[i:i + n])
                keys = [("", words)]
                if n == 1 and tokens[i].prefix:
                    keys.append((tokens[i].prefix, words))
                for key in keys:
                    for hit in self._index.get(key, ()):
                        if hit not in hits:
                            hits.append(hit)
                        if hit[1] != "problem":   # a phrase with {brand} holds a name, which tags it
                            found[hit[0]] = None
        ordered = sorted(found, key=self._order.__getitem__)
        return BrandMatch(brands=ordered, hits=hits)


def load_brands(path: Path) -> list[BrandConfig]:
    """Read a brands YAML file; errors name the file and the offending entry."""
    try:
        data: Any = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"cannot read brands file {path}: {exc}") from None
    try:
        parsed = BrandsFile.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise ValueError(f"{path}: {loc}: {err['msg']}") from None
    ids = [b.id for b in parsed.brands]
    if len(ids) != len(set(ids)):
        raise ValueError(f"{path}: brand ids must be unique, got {ids}")
    return parsed.brands

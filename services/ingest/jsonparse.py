"""A bounded JSON decoder for untrusted bodies (pure, no I/O).

`json.loads` alone turns hostile input into server faults: deep nesting raises RecursionError, an
integer literal of more than 4,300 digits raises ValueError (Python's int-string limit), `NaN` /
`Infinity` / `1e999` become non-finite floats, and `"\\ud800"` decodes to a lone surrogate that
cannot be encoded again. `loads()` rejects each of these with a `JSONLimitError` naming the JSON path
(where known) and the reason, so the caller can answer 400:

- nesting deeper than `MAX_DEPTH` (checked on the text, before any object is built);
- integer literals longer than `MAX_INT_DIGITS` digits;
- `NaN`, `Infinity`, `-Infinity` and floats that overflow to infinity;
- lone surrogates (and U+FFFE/U+FFFF noncharacters) in strings or object keys.
"""

from __future__ import annotations

import json
import math
import re
from itertools import accumulate
from typing import Any

from services.common.errors import TriageError

MAX_DEPTH = 64
MAX_INT_DIGITS = 1000  # far below Python's 4,300 limit; no real id or counter has more than 20

# A JSON string literal (escapes included), so brackets inside strings are not counted.
# Possessive and ending at the end of the text when unterminated, so the scan stays linear.
_STRING = re.compile(r'"(?:[^"\\]|\\.)*+(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_DELTA = {"[": 1, "{": 1, "]": -1, "}": -1}
_BAD_CHARS = re.compile("[\ud800-\udfff\ufffe\uffff]")


class JSONLimitError(TriageError, ValueError):
    """The text is JSON-shaped but outside the limits: `field` is the JSON path ("$" when unknown)."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


def nesting_depth(text: str) -> int:
    """The deepest bracket nesting of `text` outside string literals."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    return max(accumulate(map(_DELTA.__getitem__, brackets)), default=0)


def _parse_int(literal: str) -> int:
    digits = len(literal) - (literal[0] == "-")
    if digits > MAX_INT_DIGITS:
        raise JSONLimitError("$", f"integer literal of {digits} digits exceeds the limit of {MAX_INT_DIGITS}")
    return int(literal)


def _parse_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise JSONLimitError("$", f"number {literal[:40]} is out of range (not a finite double)")
    return value


def _parse_constant(name: str) -> Any:
    raise JSONLimitError("$", f"{name} is not allowed (JSON numbers must be finite)")


def _check_strings(value: Any, path: str) -> None:
    if isinstance(value, str):
        if _BAD_CHARS.search(value):
            raise JSONLimitError(path, "contains a lone surrogate or a noncharacter (invalid Unicode)")
    elif isinstance(value, dict):
        for key, item in value.items():
            if _BAD_CHARS.search(key):
                raise JSONLimitError(path, "an object key contains a lone surrogate or a noncharacter")
            _check_strings(item, f"{key}" if path == "$" else f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_strings(item, f"{path}[{i}]" if path != "$" else f"[{i}]")


def loads(text: str, max_depth: int = MAX_DEPTH, per_item: bool = False) -> Any:
    """Decode `text` within the limits; raises json.JSONDecodeError (malformed) or JSONLimitError.

    `per_item=True` (platform deliveries, whose items are judged one by one): non-finite numbers and
    lone surrogates are let through, for validation to dead-letter only the item that has them
    instead of refusing the whole delivery (which the platform would redeliver forever). Nesting and
    integer size stay bounded either way.
    """
    depth = nesting_depth(text)
    if depth > max_depth:
        raise JSONLimitError("$", f"nesting deeper than {max_depth} levels")
    if per_item:
        return json.loads(text, parse_int=_parse_int)
    value = json.loads(text, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant)
    _check_strings(value, "$")
    return value

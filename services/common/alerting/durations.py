"""Durations as the routing file and the console write them: `30s`, `5m`, `1h30m`, `250ms`, `2d`, `1w` (pure)."""

from __future__ import annotations

import re
from typing import Any

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        total, rest = 0.0, value.strip()
        for part in re.findall(r"\d+(?:\.\d+)?(?:ms|s|m|h|d|w)", rest):
            m = _DURATION.match(part)
            assert m
            total += float(m.group(1)) * _UNITS[m.group(2)]
        if rest and "".join(re.findall(r"\d+(?:\.\d+)?(?:ms|s|m|h|d|w)", rest)) == rest:
            return total
    raise ValueError(f"bad duration {value!r}: use e.g. 30s, 5m, 1h30m, 2d")

"""Named time intervals for routes and SLA clocks, in Alertmanager's `time_intervals` format (pure).

    time_intervals:
      - name: business_hours
        time_intervals:
          - weekdays: ['monday:friday']
            times: [{start_time: '09:00', end_time: '17:00'}]
            location: Europe/Berlin
      - name: holidays
        time_intervals:
          - months: ['december']
            days_of_month: ['24:26']
          - dates: ['2026-01-01']          # our addition: single calendar days

An interval holds at an instant when every field given holds (fields left out
match everything); a named interval holds when any of its entries does. Times
are half-open ([start, end)) in the entry's `location` (IANA zone, default UTC).
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from services.common.errors import TriageError

WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
          "november", "december"]


class IntervalError(TriageError, ValueError):
    """A bad interval field; `key` names it relative to the entry."""

    def __init__(self, key: str, reason: str):
        self.key = key
        super().__init__(reason)


_WHAT = {"weekdays": "weekday", "months": "month", "days_of_month": "day of the month", "years": "year"}


def _ranges(values: Any, key: str, names: list[str] | None, lo: int, hi: int) -> list[tuple[int, int]]:
    """Ranges `a` or `a:b`, refused with Alertmanager's messages (timeinterval.go) plus what is expected."""
    if not isinstance(values, list):
        raise IntervalError(key, "expected a list")
    what = _WHAT.get(key, key)
    hint = f"; expected one of {', '.join(names)}" if names else ""
    out = []
    for v in values:
        parts = str(v).strip().lower().split(":")
        if len(parts) > 2:
            raise IntervalError(key, f"bad range {v!r}")
        nums = []
        for p in parts:
            if names is not None and p in names:
                nums.append(names.index(p) + lo)
            elif key == "weekdays":  # Alertmanager takes weekday names only, no numbers
                raise IntervalError(key, f"{p} is not a valid {what}{hint}")
            else:
                try:
                    nums.append(int(p))
                except ValueError:
                    raise IntervalError(key, f"{p} is not a valid {what}{hint}") from None
        a, b = nums[0], nums[-1]
        for n in (a, b):
            # days_of_month may count from the end (-1 = last day), as in Alertmanager.
            if not (lo <= n <= hi or (key == "days_of_month" and -31 <= n <= -1)):
                span = f"{lo} to {hi}" + (f", or -{hi} to -1 from the end" if key == "days_of_month" else "")
                raise IntervalError(key, f"{n} is not a valid {what}: out of range ({span})")
        _check_order(key, a, b)
        out.append((a, b))
    return out


def _check_order(key: str, a: int, b: int) -> None:
    """Alertmanager's checks (timeinterval.go): a reversed range is an error, not a range that never holds."""
    if key == "weekdays" and a % 7 > b % 7:  # Alertmanager counts sunday = 0: `monday:sunday` is reversed
        raise IntervalError(key, "start day cannot be before end day")
    if key == "months" and a > b:
        raise IntervalError(key, f"end month {MONTHS[b - 1]} is before start month {MONTHS[a - 1]}")
    if key == "years" and a > b:
        raise IntervalError(key, f"end year {b} is before start year {a}")
    if key == "days_of_month":
        if a < 0 < b:
            raise IntervalError(key, "end day must be negative if start day is negative")
        # Like Alertmanager: with negative days only the always-reversed ranges (28-day month) are refused.
        if (28 + a if a < 0 else a) > (28 + b if b < 0 else b):
            raise IntervalError(key, f"end day {b} is always before start day {a}")


def _minutes(text: Any, key: str) -> int:
    bad = IntervalError(key, f"couldn't parse timestamp {text}, invalid format (expected HH:MM, 00:00 to 24:00)")
    try:
        h, m = str(text).split(":")
        hh, mm = int(h), int(m)
    except ValueError:
        raise bad from None
    if not (0 <= hh <= 24 and 0 <= mm < 60) or hh * 60 + mm > 1440:
        raise bad
    return hh * 60 + mm


@dataclass(frozen=True)
class IntervalEntry:
    times: tuple[tuple[int, int], ...] = ()          # minutes of day, [start, end)
    weekdays: tuple[tuple[int, int], ...] = ()       # 0 = monday
    days_of_month: tuple[tuple[int, int], ...] = ()
    months: tuple[tuple[int, int], ...] = ()         # 1..12
    years: tuple[tuple[int, int], ...] = ()
    dates: frozenset[date] = frozenset()
    location: str = "UTC"

    @classmethod
    def parse(cls, spec: Any) -> IntervalEntry:
        if not isinstance(spec, dict):
            raise IntervalError("", "expected a mapping (times, weekdays, days_of_month, months, years, location)")
        allowed = {"times", "weekdays", "days_of_month", "months", "years", "dates", "location"}
        for k in spec:
            if k not in allowed:
                raise IntervalError(str(k), f"unknown field; expected one of {', '.join(sorted(allowed))}")
        times = []
        for t in spec.get("times") or []:
            if not isinstance(t, dict) or "start_time" not in t or "end_time" not in t:
                raise IntervalError("times", "expected {start_time: 'HH:MM', end_time: 'HH:MM'}")
            a, b = _minutes(t["start_time"], "times.start_time"), _minutes(t["end_time"], "times.end_time")
            if b <= a:
                raise IntervalError("times", "start time cannot be equal or greater than end time")
            times.append((a, b))
        loc = str(spec.get("location", "UTC"))
        try:
            ZoneInfo(loc)
        except (ZoneInfoNotFoundError, ValueError):
            raise IntervalError("location", f"unknown time zone {loc!r}") from None
        dates = set()
        for d in spec.get("dates") or []:
            try:
                dates.add(d if isinstance(d, date) else date.fromisoformat(str(d)))
            except ValueError:
                raise IntervalError("dates", f"bad date {d!r}: expected YYYY-MM-DD") from None
        wd = [(a - 1, b - 1) for a, b in _ranges(spec.get("weekdays", []), "weekdays", WEEKDAYS, 1, 7)]
        return cls(tuple(times), tuple(wd), tuple(_ranges(spec.get("days_of_month", []), "days_of_month", None, 1, 31)),
                   tuple(_ranges(spec.get("months", []), "months", MONTHS, 1, 12)),
                   tuple(_ranges(spec.get("years", []), "years", None, 1970, 9999)), frozenset(dates), loc)

    def contains(self, t: float) -> bool:
        dt = datetime.fromtimestamp(t, tz=UTC).astimezone(ZoneInfo(self.location))
        if self.dates and dt.date() not in self.dates:
            return False
        if self.times:
            minute = dt.hour * 60 + dt.minute
            if not any(a <= minute < b for a, b in self.times):
                return False
        if self.weekdays and not any(a <= dt.weekday() <= b for a, b in self.weekdays):
            return False
        if self.days_of_month:
            last = calendar.monthrange(dt.year, dt.month)[1]
            day = dt.day
            ok = False
            for a, b in self.days_of_month:
                a2 = a if a > 0 else last + 1 + a
                b2 = b if b > 0 else last + 1 + b
                ok = ok or a2 <= day <= b2
            if not ok:
                return False
        if self.months and not any(a <= dt.month <= b for a, b in self.months):
            return False
        if self.years and not any(a <= dt.year <= b for a, b in self.years):
            return False
        return True


@dataclass(frozen=True)
class TimeInterval:
    name: str
    entries: tuple[IntervalEntry, ...] = field(default_factory=tuple)

    def contains(self, t: float) -> bool:
        return any(e.contains(t) for e in self.entries)


def add_business_time(start: float, seconds: float, interval: TimeInterval | None, step: float = 60.0,
                      horizon: float = 366 * 86400.0) -> float:
    """The instant `seconds` of time inside `interval` after `start` (plain addition without an interval).

    Walks in `step`-second slices, which is exact to the step and cheap for SLA-sized durations."""
    if interval is None or seconds <= 0:
        return start + seconds
    t, left = start, seconds
    while left > 0:
        if t - start > horizon:
            raise ValueError(f"time interval {interval.name!r} has no time within a year of the start")
        nxt = (t // step + 1) * step  # align slices to the step so boundaries at HH:MM are exact
        if interval.contains(t):
            used = min(nxt - t, left)
            left -= used
            t += used
        else:
            t = nxt
    return t

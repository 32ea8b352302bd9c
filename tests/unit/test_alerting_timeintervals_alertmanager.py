"""Alertmanager's time interval test tables, ported: an interval holds at the instants Alertmanager says it does.

Source: prometheus/alertmanager `timeinterval/timeinterval_test.go` (Apache License 2.0, Copyright 2020
Prometheus Team): `timeIntervalTestCases` (TestContainsTime), `timeStringTestCases` (TestParseTimeString),
`yamlUnmarshalTestCases` (TestYamlUnmarshal), `completeTestCases` (TestTimeIntervalComplete) and the
`TestIntervener_Mutes` table. Times are copied as written (Go's RFC822Z, `02 Jan 06 15:04 -0700`).

Alertmanager builds most TestContainsTime intervals as Go structs; here each is written as the YAML entry that
parses to that struct (Alertmanager counts weekdays from sunday = 0, so its `{1, 5}` is `monday:friday`). The one
struct YAML cannot express (`days_of_month` -31:31, which both parsers refuse) is built as an `IntervalEntry`.
"""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import yaml

from services.common.alerting.timeintervals import IntervalEntry, IntervalError, TimeInterval


def at(text: str) -> float:
    """Go's `time.Parse(time.RFC822Z, text)` as a Unix time (two-digit years 00-68 are 20xx in both)."""
    return datetime.strptime(text, "%d %b %y %H:%M %z").timestamp()


def entry(spec: dict | IntervalEntry) -> IntervalEntry:
    return spec if isinstance(spec, IntervalEntry) else IntervalEntry.parse(spec)


NINE_TO_FIVE = [{"start_time": "09:00", "end_time": "17:00"}]

# timeIntervalTestCases: (interval, times it contains, times it does not contain)
CONTAINS_TIME = [
    ({}, ["02 Jan 06 15:04 +0000", "03 Jan 07 10:04 +0000", "04 Jan 06 09:04 +0000"], []),
    # 9am to 5pm, monday to friday
    ({"times": NINE_TO_FIVE, "weekdays": ["monday:friday"]},
     ["04 May 20 15:04 +0000", "05 May 20 10:04 +0000", "09 Jun 20 09:04 +0000"],
     ["03 May 20 15:04 +0000", "04 May 20 08:59 +0000", "05 May 20 05:00 +0000"]),
    # Easter 2020
    ({"days_of_month": ["4:6"], "months": ["april"], "years": ["2020"]},
     ["04 Apr 20 15:04 +0000", "05 Apr 20 00:00 +0000", "06 Apr 20 23:05 +0000"],
     ["03 May 18 15:04 +0000", "03 Apr 20 23:59 +0000", "04 Jun 20 23:59 +0000", "06 Apr 19 23:59 +0000",
      "07 Apr 20 00:00 +0000"]),
    # Check negative days of month, last 3 days of each month
    ({"days_of_month": ["-3:-1"]},
     ["31 Jan 20 15:04 +0000", "30 Jan 20 15:04 +0000", "29 Jan 20 15:04 +0000", "30 Jun 20 00:00 +0000",
      "29 Feb 20 23:05 +0000"],
     ["03 May 18 15:04 +0000", "27 Jan 20 15:04 +0000", "03 Apr 20 23:59 +0000", "04 Jun 20 23:59 +0000",
      "06 Apr 19 23:59 +0000", "07 Apr 20 00:00 +0000", "01 Mar 20 00:00 +0000"]),
    # Check out of bound days are clamped to month boundaries. (In Go "1 Jul 20 ..." does not parse against the
    # two-digit day of RFC822Z and the test asks about the zero time instead; this asks about 1 July 2020.)
    (IntervalEntry(months=((6, 6),), days_of_month=((-31, 31),)),
     ["30 Jun 20 00:00 +0000", "01 Jun 20 00:00 +0000"],
     ["31 May 20 00:00 +0000", "1 Jul 20 00:00 +0000"]),
    # Check alternative timezones can be used to compare times. AEST 9AM to 5PM, Monday to Friday.
    ({"times": NINE_TO_FIVE, "weekdays": ["monday:friday"], "location": "Australia/Sydney"},
     ["06 Apr 21 13:00 +1000"],
     ["06 Apr 21 13:00 +0000"]),
    # Check an alternative timezone during daylight savings time.
    ({"times": NINE_TO_FIVE, "weekdays": ["monday:friday"], "months": ["november"], "location": "Australia/Sydney"},
     ["01 Nov 21 09:00 +1100", "31 Oct 21 22:00 +0000"],
     ["31 Oct 21 21:00 +0000"]),
]


def _membership(table: list) -> list:
    return [pytest.param(spec, t, want, id=f"{i}-{t}-{'in' if want else 'out'}")
            for i, (spec, inside, outside) in enumerate(table)
            for want, times in ((True, inside), (False, outside)) for t in times]


@pytest.mark.parametrize(("spec", "t", "want"), _membership(CONTAINS_TIME))
def test_contains_time(spec, t: str, want: bool):
    assert entry(spec).contains(at(t)) is want


# timeStringTestCases: ({start_time, end_time}, (start minute, end minute)) or None for an error
TIME_STRINGS = [
    ({"start_time": "00:00", "end_time": "24:00"}, (0, 1440)),
    ({"start_time": "01:35", "end_time": "17:39"}, (95, 1059)),
    ({"start_time": "09:35", "end_time": "09:39"}, (575, 579)),
    ({"start_time": "17:31", "end_time": "17:31"}, None),  # Begin and End times are the same
    ({"start_time": "12:30", "end_time": "24:01"}, None),  # End time out of range
    ({"start_time": "09:30", "end_time": "07:41"}, None),  # Start time greater than End time
    ({"start_time": "24:00", "end_time": "17:41"}, None),  # Start time out of range and greater than End time
    ({"start_time": "14:03"}, None),                       # No range specified
]


@pytest.mark.parametrize(("spec", "want"), TIME_STRINGS)
def test_parse_time_string(spec: dict, want: tuple[int, int] | None):
    if want is None:
        with pytest.raises(IntervalError):
            IntervalEntry.parse({"times": [spec]})
    else:
        assert IntervalEntry.parse({"times": [spec]}).times == (want,)


def parse_list(text: str) -> TimeInterval:
    """A YAML list of entries (what a named interval's `time_intervals` holds), as one interval."""
    return TimeInterval("t", tuple(IntervalEntry.parse(e) for e in yaml.safe_load(text)))


# yamlUnmarshalTestCases that parse: (yaml, contained, excluded)
YAML_OK = [
    # Simple business hours test
    ("""
- weekdays: ['monday:friday']
  times:
    - start_time: '09:00'
      end_time: '17:00'
""", ["08 Jul 20 09:00 +0000", "08 Jul 20 16:59 +0000"], ["08 Jul 20 05:00 +0000", "08 Jul 20 08:59 +0000"]),
    # More advanced test with negative indices and ranges: last week, excluding Saturday, of the first quarter
    # of the year during business hours from 2020 to 2025 and 2030-2035
    ("""
- weekdays: ['monday:friday', 'sunday']
  months: ['january:march']
  days_of_month: ['-7:-1']
  years: ['2020:2025', '2030:2035']
  times:
    - start_time: '09:00'
      end_time: '17:00'
""", ["27 Jan 21 09:00 +0000", "28 Jan 21 16:59 +0000", "29 Jan 21 13:00 +0000", "31 Mar 25 13:00 +0000",
      "31 Mar 25 13:00 +0000", "31 Jan 35 13:00 +0000"],
     ["30 Jan 21 13:00 +0000",    # Saturday
      "01 Apr 21 13:00 +0000",    # 4th month
      "30 Jan 26 13:00 +0000",    # 2026
      "31 Jan 35 17:01 +0000"]),  # After 5pm
    ("""
- weekdays: ['monday:friday']
  times:
    - start_time: '09:00'
      end_time: '17:00'""", ["01 Apr 21 13:00 +0000"], []),
    ("- days_of_month: ['1:-1']\n", [], []),                         # Negative indices should work.
    ("- months: ['January:december']\n", [], []),                    # Months should work regardless of case
    ("- years: ['2020:2022']\n  location: 'Australia/Sydney'\n", [], []),  # Time zones may be specified by location.
]


@pytest.mark.parametrize(("text", "inside", "outside"), YAML_OK)
def test_yaml_unmarshal_contains(text: str, inside: list[str], outside: list[str]):
    interval = parse_list(text)
    assert [t for t in inside if not interval.contains(at(t))] == []
    assert [t for t in outside if interval.contains(at(t))] == []


def test_yaml_unmarshal_ranges():
    """What the parsing cases parse to (Alertmanager's struct, in this project's numbering: monday = 0)."""
    advanced = parse_list(YAML_OK[1][0]).entries[0]
    assert advanced.weekdays == ((0, 4), (6, 6))
    assert advanced.times == ((540, 1020),)
    assert advanced.months == ((1, 3),)
    assert advanced.days_of_month == ((-7, -1),)
    assert advanced.years == ((2020, 2025), (2030, 2035))
    assert parse_list(YAML_OK[3][0]).entries[0].days_of_month == ((1, -1),)
    assert parse_list(YAML_OK[4][0]).entries[0].months == ((1, 12),)
    sydney = parse_list(YAML_OK[5][0]).entries[0]
    assert (sydney.years, sydney.location) == (((2020, 2022),), "Australia/Sydney")


# yamlUnmarshalTestCases that Alertmanager refuses: (yaml, its error)
YAML_ERRORS = [
    ("- times:\n    - start_time: '01:99'\n      end_time: '23:59'", "couldn't parse timestamp 01:99, invalid format"),
    ("- times:\n    - start_time: '00:00'\n      end_time: '99:99'", "couldn't parse timestamp 99:99, invalid format"),
    ("- weekdays: ['friday:monday']", "start day cannot be before end day"),
    ("- weekdays: ['blurgsday:flurgsday']\n", "blurgsday is not a valid weekday"),
    ("- weekdays: ['1:3']\n", "1 is not a valid weekday"),      # Numeric weekdays aren't allowed.
    ("- weekdays: ['-2:-1']\n", "-2 is not a valid weekday"),   # Negative numeric weekdays aren't allowed.
    ("- days_of_month: ['0']\n", "0 is not a valid day of the month: out of range"),
    ("- days_of_month: ['-50:-20']\n", "-50 is not a valid day of the month: out of range"),
    ("- days_of_month: ['1:50']\n", "50 is not a valid day of the month: out of range"),
    ("- days_of_month: ['-15:5']\n", "end day must be negative if start day is negative"),
    ("- days_of_month: ['10:-25']\n", "end day -25 is always before start day 10"),
    ("- months: ['martius:june']\n", "martius is not a valid month"),
    ("- months: ['march:junius']\n", "junius is not a valid month"),
    ("- months: ['december:january']\n", "end month january is before start month december"),
    ("- years: ['2022:2020']\n", "end year 2020 is before start year 2022"),
]


@pytest.mark.parametrize(("text", "error"), YAML_ERRORS)
def test_yaml_unmarshal_errors(text: str, error: str):
    with pytest.raises(IntervalError, match=re.escape(error)):
        parse_list(text)


# completeTestCases: (one entry, contained, excluded)
COMPLETE = [
    ("""
weekdays: ['monday:wednesday', 'saturday', 'sunday']
times:
  - start_time: '13:00'
    end_time: '15:00'
days_of_month: ['1', '10', '20:-1']
years: ['2020:2023']
months: ['january:march']
""", ["10 Jan 21 13:00 +0000", "30 Jan 21 14:24 +0000"],
     ["09 Jan 21 13:00 +0000", "20 Jan 21 12:59 +0000", "02 Feb 21 13:00 +0000"]),
    # Check for broken clamping (clamping begin date after end of month to the end of the month)
    ("""
days_of_month: ['30:31']
years: ['2020:2023']
months: ['february']
""", [], ["28 Feb 21 13:00 +0000"]),
]


@pytest.mark.parametrize(("text", "t", "want"),
                         [pytest.param(text, t, want, id=f"{i}-{t}")
                          for i, (text, inside, outside) in enumerate(COMPLETE)
                          for want, times in ((True, inside), (False, outside)) for t in times])
def test_time_interval_complete(text: str, t: str, want: bool):
    assert IntervalEntry.parse(yaml.safe_load(text)).contains(at(t)) is want


# TestIntervener_Mutes: which of "evenings" and "weekends" (both in Australia/Sydney) hold at an instant
SYDNEY, UTC = ZoneInfo("Australia/Sydney"), ZoneInfo("UTC")
EVENINGS_AND_WEEKENDS = {
    "evenings": TimeInterval("evenings", (IntervalEntry.parse({
        "times": [{"start_time": "00:00", "end_time": "09:00"}, {"start_time": "17:00", "end_time": "24:00"}],
        "location": "Australia/Sydney"}),)),
    "weekends": TimeInterval("weekends", (IntervalEntry.parse({
        "weekdays": ["saturday", "sunday"], "location": "Australia/Sydney"}),)),
}
MUTES = [
    ("Should be muted outside working hours", datetime(2024, 1, 1, 0, 0, tzinfo=SYDNEY), ["evenings"]),
    ("Should not be muted during working hours", datetime(2024, 1, 1, 9, 0, tzinfo=SYDNEY), []),
    ("Should be muted during weekends", datetime(2024, 1, 6, 10, 0, tzinfo=SYDNEY), ["weekends"]),
    ("Should be muted during weekend evenings", datetime(2024, 1, 6, 17, 0, tzinfo=SYDNEY), ["evenings", "weekends"]),
    ("Should be muted at 12pm UTC on a weekday", datetime(2024, 1, 1, 10, 0, tzinfo=UTC), ["evenings"]),
    ("Should be muted at 12pm UTC on a weekend", datetime(2024, 1, 6, 10, 0, tzinfo=UTC), ["evenings", "weekends"]),
]


@pytest.mark.parametrize(("now", "muted_by"), [pytest.param(n, m, id=name) for name, n, m in MUTES])
def test_intervener_mutes(now: datetime, muted_by: list[str]):
    t = now.timestamp()
    assert sorted(name for name, iv in EVENINGS_AND_WEEKENDS.items() if iv.contains(t)) == muted_by

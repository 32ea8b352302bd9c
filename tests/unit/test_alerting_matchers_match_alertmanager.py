"""Alertmanager's matcher match and string tables, ported: a matcher matches the values Alertmanager's does.

Source: prometheus/alertmanager `pkg/labels/matcher_test.go` (Apache License 2.0, Copyright 2017 The Prometheus
Authors): `TestMatcher` (matcher built with `NewMatcher(type, "", value)`, asked `Matches(value)`) and
`TestMatcherString` (`NewMatcher(type, name, value).String()`). Values are copied as written (Go raw strings
in backquotes are Python raw strings here).

`MISSING_LABELS` is not from that file: it pins Alertmanager's rule that a matcher is asked about a missing
label as the empty string (`m.Matches(lset[m.Name])`, e.g. silence and inhibition matching), which
`Matcher.matches` documents.
"""

from __future__ import annotations

import pytest

from services.common.alerting.matchers import Matcher

EQ, NE, RE, NRE = "=", "!=", "=~", "!~"

# TestMatcher: (type, matcher value, label value, matches)
MATCHES = [
    (EQ, "bar", "bar", True),
    (EQ, "bar", "foo-bar", False),
    (NE, "bar", "bar", False),
    (NE, "bar", "foo-bar", True),
    (RE, "bar", "bar", True),
    (RE, "bar", "foo-bar", False),   # regexes are anchored at both ends
    (RE, ".*bar", "foo-bar", True),
    (NRE, "bar", "bar", False),
    (NRE, "bar", "foo-bar", True),
    (NRE, ".*bar", "foo-bar", False),
    (RE, r"foo.bar", "foo-bar", True),
    (RE, r"foo\.bar", "foo-bar", False),
    (RE, r"foo\.bar", "foo.bar", True),
    (EQ, "foo\nbar", "foo\nbar", True),
    (RE, "foo.bar", "foo\nbar", False),  # `.` does not match a newline without (?s)
    (RE, "(?s)foo.bar", "foo\nbar", True),
    (EQ, '~!="', '~!="', True),
]


@pytest.mark.parametrize(("op", "value", "actual", "want"), MATCHES)
def test_matcher_matches(op: str, value: str, actual: str, want: bool):
    assert Matcher.new(op, "", value).matches_value(actual) is want


@pytest.mark.parametrize(("op", "value", "actual", "want"), MATCHES)
def test_matcher_matches_a_label_set(op: str, value: str, actual: str, want: bool):
    """The same table through `matches`, the call routes, silences and inhibitions make."""
    assert Matcher.new(op, "foo", value).matches({"foo": actual, "other": value}) is want


# TestMatcherString: (name, type, value, String())
STRINGS = [
    ("foo", EQ, "bar", 'foo="bar"'),
    ("foo", NE, "bar", 'foo!="bar"'),
    ("foo", RE, "bar", 'foo=~"bar"'),
    ("foo", NRE, "bar", 'foo!~"bar"'),
    ("foo", EQ, r"back\slash", r'foo="back\\slash"'),
    ("foo", EQ, 'double"quote', r'foo="double\"quote"'),
    ("foo", EQ, "new\nline", r'foo="new\nline"'),
    ("foo", EQ, "tab\tstop", 'foo="tab\tstop"'),
    ("foo", EQ, "🙂", 'foo="🙂"'),
    ("foo!", NE, "bar", '"foo!"!="bar"'),
    ("foo🙂", EQ, "bar", 'foo🙂="bar"'),
    ("foo bar", EQ, "baz", '"foo bar"="baz"'),
]


@pytest.mark.parametrize(("name", "op", "value", "want"), STRINGS)
def test_matcher_string(name: str, op: str, value: str, want: str):
    assert str(Matcher.new(op, name, value)) == want


# A missing label is the empty string: (type, value, matches an alert without the label)
MISSING_LABELS = [
    (EQ, "", True),
    (EQ, "bar", False),
    (NE, "", False),
    (NE, "bar", True),
    (RE, ".*", True),
    (RE, ".+", False),
    (RE, "bar|", True),
    (NRE, ".+", True),
    (NRE, ".*", False),
    (NRE, "", False),
]


@pytest.mark.parametrize(("op", "value", "want"), MISSING_LABELS)
def test_missing_label_is_the_empty_string(op: str, value: str, want: bool):
    m = Matcher.new(op, "foo", value)
    assert m.matches({"other": "bar"}) is want
    assert m.matches({"foo": ""}) is want  # the same as a label set to ""

"""Alertmanager's own matcher test tables, ported: parsing and matching give Alertmanager's answers.

Sources (prometheus/alertmanager, Apache License 2.0, Copyright The Prometheus Authors):
- pkg/labels/parse_test.go `TestMatchers` (the classic parser; now matcher/oldparse);
- matcher/parse/parse_test.go `TestMatchers`, `TestMatcher` (the UTF-8 parser);
- matcher/compat/parse_test.go `TestFallbackMatcherParser`, `TestFallbackMatchersParser`,
  `TestIsValidClassicLabelName`, `TestIsValidUTF8LabelName` (the default fallback mode).
Inputs, expected matchers and error texts are copied from the tables; RE2 cases at the end are from
issue 26 (Go's regexp is RE2: `(?i)`, `(?s)`, POSIX classes, ASCII `\\d`, no back-references).
"""

from __future__ import annotations

import pytest

from services.common.alerting.matchers import (
    Matcher,
    MatcherError,
    is_classic_label_name,
    is_valid_label_name,
    parse_classic_matchers,
    parse_matchers,
    parse_utf8_matcher,
    parse_utf8_matchers,
)

EQ, NE, RE, NRE = "=", "!=", "=~", "!~"

# pkg/labels/parse_test.go TestMatchers: (input, [(op, name, value)]) or (input, error)
CLASSIC_OK = [
    ('{foo="bar"}', [(EQ, "foo", "bar")]),
    ('{foo=~"bar.*"}', [(RE, "foo", "bar.*")]),
    ('{foo!="bar"}', [(NE, "foo", "bar")]),
    ('{foo!~"bar.*"}', [(NRE, "foo", "bar.*")]),
    ('{foo="bar", baz!="quux"}', [(EQ, "foo", "bar"), (NE, "baz", "quux")]),
    ('{foo="bar", baz!~"quux.*"}', [(EQ, "foo", "bar"), (NRE, "baz", "quux.*")]),
    ('{foo="bar",baz!~".*quux", derp="wat"}', [(EQ, "foo", "bar"), (NRE, "baz", ".*quux"), (EQ, "derp", "wat")]),
    ('{foo="bar", baz!="quux", derp="wat"}', [(EQ, "foo", "bar"), (NE, "baz", "quux"), (EQ, "derp", "wat")]),
    ('{foo="bar", baz!~".*quux.*", derp="wat"}', [(EQ, "foo", "bar"), (NRE, "baz", ".*quux.*"), (EQ, "derp", "wat")]),
    ('{foo="bar", instance=~"some-api.*"}', [(EQ, "foo", "bar"), (RE, "instance", "some-api.*")]),
    ('{foo=""}', [(EQ, "foo", "")]),
    ('{foo="bar,quux", job="job1"}', [(EQ, "foo", "bar,quux"), (EQ, "job", "job1")]),
    ('{foo = "bar", dings != "bums", }', [(EQ, "foo", "bar"), (NE, "dings", "bums")]),
    ("foo=bar,dings!=bums", [(EQ, "foo", "bar"), (NE, "dings", "bums")]),
    ('{quote="She said: \\"Hi, ladies! That\'s gender-neutral…\\""}',
     [(EQ, "quote", 'She said: "Hi, ladies! That\'s gender-neutral…"')]),
    ('statuscode=~"5.."', [(RE, "statuscode", "5..")]),
    ("tricky=~~~", [(RE, "tricky", "~~")]),
    ('trickier==\\\\=\\=\\"', [(EQ, "trickier", '=\\=\\="')]),
    ('contains_quote != "\\"" , contains_comma !~ "foo,bar" , ',
     [(NE, "contains_quote", '"'), (NRE, "contains_comma", "foo,bar")]),
]
CLASSIC_ERR = [
    ("job=", "matcher value is not present: job="),
    ('job="value', 'matcher value contains unescaped double quote: "value'),
    ('job=value"', 'matcher value contains unescaped double quote: value"'),
    ('trickier==\\\\=\\=\\""', 'matcher value contains unescaped double quote: =\\\\=\\=\\""'),
    ('contains_unescaped_quote = foo"bar', 'matcher value contains unescaped double quote: foo"bar'),
    ('{invalid-name = "valid label"}', 'bad matcher format: invalid-name = "valid label"'),
    ('{foo=~"invalid[regexp"}', "error parsing regexp: missing closing ]: `[regexp)$`"),
    ('"{foo=\\"bar"}', 'bad matcher format: "{foo=\\"bar"'),
    ('"foo=\\"bar"', 'bad matcher format: "foo=\\"bar"'),
    ('"foo=\\"bar\\""', 'bad matcher format: "foo=\\"bar\\""'),
    ('"foo=\\"bar\\"', 'bad matcher format: "foo=\\"bar\\"'),
    ('"{foo=\\"bar\\"}"', 'bad matcher format: "{foo=\\"bar\\"}"'),
    ('"foo="bar""', 'bad matcher format: "foo="bar""'),
]


def _triples(ms: list[Matcher]) -> list[tuple[str, str, str]]:
    return [(m.op, m.name, m.value) for m in ms]


@pytest.mark.parametrize(("text", "want"), CLASSIC_OK)
def test_classic_parser_table(text: str, want: list[tuple[str, str, str]]):
    assert _triples(parse_classic_matchers(text)) == want
    assert _triples(parse_matchers(text)) == want  # the fallback keeps what the classic parser accepts


@pytest.mark.parametrize(("text", "error"), CLASSIC_ERR)
def test_classic_parser_errors(text: str, error: str):
    with pytest.raises(MatcherError) as exc:
        parse_classic_matchers(text)
    if error.startswith("error parsing regexp"):
        # Go prints only the failing part of the pattern; RE2's C++ library words the argument differently.
        assert str(exc.value).startswith("error parsing regexp: missing closing ]: `")
    else:
        assert str(exc.value) == error


# matcher/parse/parse_test.go TestMatchers
UTF8_OK = [
    ("", []), ("{}", []),
    ("{foo=bar}", [(EQ, "foo", "bar")]),
    ("{foo=bar,}", [(EQ, "foo", "bar")]),
    ("{foo!=bar}", [(NE, "foo", "bar")]),
    ("{foo=~[a-z]+}", [(RE, "foo", "[a-z]+")]),
    ("{foo!~[a-z]+}", [(NRE, "foo", "[a-z]+")]),
    ("{foo=🙂}", [(EQ, "foo", "🙂")]),
    ("{foo=🙂bar}", [(EQ, "foo", "🙂bar")]),
    ("foo=bar", [(EQ, "foo", "bar")]),
    ("foo=bar,", [(EQ, "foo", "bar")]),
    ("foo!=bar", [(NE, "foo", "bar")]),
    ("foo=~[a-z]+", [(RE, "foo", "[a-z]+")]),
    ("foo!~[a-z]+", [(NRE, "foo", "[a-z]+")]),
    ('{"foo"="bar"}', [(EQ, "foo", "bar")]),
    ('{"foo"="bar",}', [(EQ, "foo", "bar")]),
    ('{"foo"!="bar"}', [(NE, "foo", "bar")]),
    ('{"foo"=~"[a-z]+"}', [(RE, "foo", "[a-z]+")]),
    ('{"foo"!~"[a-z]+"}', [(NRE, "foo", "[a-z]+")]),
    ('{"foo"="🙂"}', [(EQ, "foo", "🙂")]),
    ('{"foo"="\\xf0\\x9f\\x99\\x82"}', [(EQ, "foo", "🙂")]),
    ('{"foo"="\\U0001f642"}', [(EQ, "foo", "🙂")]),
    ('{"foo"="🙂bar"}', [(EQ, "foo", "🙂bar")]),
    ('{"foo"="bar\\n"}', [(EQ, "foo", "bar\n")]),
    ('{"foo"="bar\\t"}', [(EQ, "foo", "bar\t")]),
    ('{"foo"="\\"bar\\""}', [(EQ, "foo", '"bar"')]),
    ('{"foo"="bar\\\\"}', [(EQ, "foo", "bar\\")]),
    ('"foo"="bar"', [(EQ, "foo", "bar")]),
    ('"foo"="bar",', [(EQ, "foo", "bar")]),
    ("{foo=bar,bar!=baz}", [(EQ, "foo", "bar"), (NE, "bar", "baz")]),
    ('{foo="bar",bar!="baz"}', [(EQ, "foo", "bar"), (NE, "bar", "baz")]),
    ("foo=bar,bar!=baz", [(EQ, "foo", "bar"), (NE, "bar", "baz")]),
    ('foo="bar",bar!="baz"', [(EQ, "foo", "bar"), (NE, "bar", "baz")]),
]
UTF8_ERR = [
    (",", "0:1: unexpected ,: expected label name"),
    ("{,}", "1:2: unexpected ,: expected label name"),
    ("{", "0:1: end of input: expected close brace"),
    ("}", "0:1: }: expected opening brace"),
    ("foo=bar}", "0:8: }: expected opening brace"),
    ("{foo=bar", "0:8: end of input: expected close brace"),
    ('{foo=:"bar"}', '6:11: unexpected "bar": expected a comma or close brace'),
    ('{foo="bar\\w"}', '5:12: "bar\\w": invalid input'),
    ("{foo=bar\\n}", "8:9: \\: invalid input: expected a comma or close brace"),
    ('{"foo"="\\xf0\\x9f"}', '7:17: "\\xf0\\x9f": invalid input'),
]


@pytest.mark.parametrize(("text", "want"), UTF8_OK)
def test_utf8_parser_table(text: str, want: list[tuple[str, str, str]]):
    assert _triples(parse_utf8_matchers(text)) == want


@pytest.mark.parametrize(("text", "error"), UTF8_ERR)
def test_utf8_parser_errors(text: str, error: str):
    with pytest.raises(MatcherError) as exc:
        parse_utf8_matchers(text)
    assert str(exc.value) == error


# matcher/parse/parse_test.go TestMatcher: the single-matcher entry point
@pytest.mark.parametrize(("text", "error"), [
    ("", "no matchers"), ("{}", "no matchers"), ("foo=bar,bar=baz", "expected 1 matcher, found 2"),
    ('foo="\\xf0\\x9f"', '4:14: "\\xf0\\x9f": invalid input'),
])
def test_utf8_single_matcher_errors(text: str, error: str):
    with pytest.raises(MatcherError) as exc:
        parse_utf8_matcher(text)
    assert str(exc.value) == error


@pytest.mark.parametrize(("text", "want"), [(t, w[0]) for t, w in UTF8_OK if len(w) == 1])
def test_utf8_single_matcher_table(text: str, want: tuple[str, str, str]):
    m = parse_utf8_matcher(text)
    assert (m.op, m.name, m.value) == want


# matcher/compat/parse_test.go: the fallback mode Alertmanager runs by default
@pytest.mark.parametrize(("text", "want"), [
    ("foo=bar", (EQ, "foo", "bar")),
    ("foo🙂=bar", (EQ, "foo🙂", "bar")),              # UTF-8 parser only
    ("foo=!bar\\n", (EQ, "foo", "!bar\n")),           # classic parser only
    ('foo="\\xf0\\x9f\\x99\\x82"', (EQ, "foo", "\\xf0\\x9f\\x99\\x82")),  # disagreement: classic wins
])
def test_fallback_matcher(text: str, want: tuple[str, str, str]):
    m = Matcher.parse(text)
    assert (m.op, m.name, m.value) == want


def test_fallback_matcher_refused_by_both_reports_the_classic_error():
    with pytest.raises(MatcherError, match=r"^bad matcher format: foo!bar$"):
        Matcher.parse("foo!bar")
    with pytest.raises(MatcherError, match="unexpected open or close brace"):
        Matcher.parse("{foo=bar}")


@pytest.mark.parametrize(("text", "want"), [
    ("{foo=bar,bar=baz}", [(EQ, "foo", "bar"), (EQ, "bar", "baz")]),
    ("{foo🙂=bar,bar=baz🙂}", [(EQ, "foo🙂", "bar"), (EQ, "bar", "baz🙂")]),
    ("{foo=!bar,bar=$baz\\n}", [(EQ, "foo", "!bar"), (EQ, "bar", "$baz\n")]),
    ('{foo="\\xf0\\x9f\\x99\\x82"}', [(EQ, "foo", "\\xf0\\x9f\\x99\\x82")]),
])
def test_fallback_matchers(text: str, want: list[tuple[str, str, str]]):
    assert _triples(parse_matchers(text)) == want


def test_fallback_matchers_refused_by_both():
    with pytest.raises(MatcherError, match=r"^bad matcher format: foo!bar$"):
        parse_matchers("{foo!bar}")


@pytest.mark.parametrize(("name", "classic", "utf8"), [
    ("foo", True, True), ("_foo1", True, True), ("", False, False), ("0foo", False, True), ("foo🙂", False, True),
])
def test_label_name_rules(name: str, classic: bool, utf8: bool):
    assert is_classic_label_name(name) is classic
    assert is_valid_label_name(name) is utf8


# What an SRE notices: the same value routes the same way.
def test_comma_joined_matchers_are_two_matchers_not_one_value():
    ms = parse_matchers("foo=bar,dings!=bums")
    assert all(m.matches({"foo": "bar", "dings": "x"}) for m in ms)
    assert not all(m.matches({"foo": "bar", "dings": "bums"}) for m in ms)


def test_unescaped_quote_is_refused():
    with pytest.raises(MatcherError, match="unescaped double quote"):
        parse_matchers('job="value')


def test_string_form_is_alertmanagers():
    assert str(Matcher.parse('a="x\\"y\\\\z\\n"')) == 'a="x\\"y\\\\z\\n"'
    assert str(parse_matchers('{"foo bar"="🙂"}')[0]) == '"foo bar"="🙂"'


# RE2 semantics (Go's regexp), anchored as ^(?:...)$
@pytest.mark.parametrize(("regex", "value", "hit"), [
    ("(?i)critical", "CRITICAL", True),
    ("(?i)critical", "not critical", False),              # anchored: the whole value
    ("(?s)a.b", "a\nb", True),
    ("a.b", "a\nb", False),                               # `.` does not match a newline without (?s)
    ("[[:alpha:]]+", "abc", True),
    ("[[:alpha:]]+", "ab1", False),
    ("\\d", "\u0663", False),                             # ARABIC-INDIC DIGIT THREE: \d is ASCII in RE2
    ("\\d", "3", True),
    ("a", "a\n", False),                                  # `$` is the end of the value, not before a final \n
    ("a{,2}", "a{,2}", True),                             # not a repetition in RE2: literal text
    ("a{,2}", "aa", False),
    ("5..", "503", True),
    ("P1|P2", "P2", True),
    ("P1|P2", "P12", False),
])
def test_regex_matchers_are_re2(regex: str, value: str, hit: bool):
    assert Matcher.new("=~", "x", regex).matches({"x": value}) is hit
    assert Matcher.new("!~", "x", regex).matches({"x": value}) is not hit


@pytest.mark.parametrize("regex", ["(a)\\1", "(?<!a)b", "a**", "[z-a]"])
def test_regex_syntax_re2_refuses(regex: str):
    with pytest.raises(MatcherError, match=r"^error parsing regexp"):
        Matcher.new("=~", "x", regex)


def test_missing_label_is_the_empty_value():
    assert Matcher.parse('x=""').matches({})
    assert Matcher.parse("x=~.*").matches({})
    assert not Matcher.parse('x!=""').matches({})

"""Label matchers parsed and matched exactly as Alertmanager does (pure).

    from services.common.alerting.matchers import Matcher, parse_matchers
    parse_matchers('{severity=~"(?i)critical", team="db"}')   # -> [Matcher(...), Matcher(...)]
    parse_matchers("foo=bar,dings!=bums")                     # two matchers, unquoted values
    Matcher.parse('priority="P1"').matches({"priority": "P1"})  # -> True

Two parsers, as in Alertmanager 0.25+ (`matcher/compat`, the default "fallback" mode):

- the classic parser (`pkg/labels/parse.go`): optional `{...}`, matchers split on commas outside
  double quotes, label names `[a-zA-Z_:][a-zA-Z0-9_:]*`, values quoted or not, OpenMetrics escapes
  (`\\"`, `\\n`, `\\\\`; any other backslash is literal), an unescaped `"` inside a value is an error;
- the UTF-8 parser (`matcher/parse/`): tokens, so label names and values may be any UTF-8, quoted with
  Go string escapes (`"\\U0001f642"`, `"\\t"`) or unquoted without reserved characters.

Alertmanager's fallback takes the classic result whenever the classic parser accepts the input (also when
the two disagree) and the UTF-8 result otherwise; when both refuse, the classic error is reported. That is
what `parse_matchers` (a list, as in `matchers:` entries) and `Matcher.parse` (exactly one) do.

Regular expressions are RE2 (the `google-re2` binding; Alertmanager uses Go's `regexp`, which is RE2
syntax and semantics), anchored as `^(?:...)$`: `(?i)critical` and `[[:alpha:]]` work, `\\d` is ASCII
only, `$` is the end of the value, back-references are refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import re2

from services.common.errors import TriageError

OPS = ("=", "!=", "=~", "!~")
# Go's `\s` is ASCII whitespace only; `\Z` because Python's `$` also matches before a final newline.
_CLASSIC = re.compile(r"^[\t\n\f\r ]*([a-zA-Z_:][a-zA-Z0-9_:]*)[\t\n\f\r ]*(=~|=|!=|!~)[\t\n\f\r ]*(.*?)[\t\n\f\r ]*\Z",
                      re.DOTALL)
_CLASSIC_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*\Z")
_RESERVED = set("{}!=~,\\\"'`")

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # the error goes into the exception, not onto stderr


_GO_ERROR_CODES = {"missing ]": "missing closing ]", "missing )": "missing closing )",
                   "bad repetition operator": "invalid nested repetition operator",
                   "invalid perl operator": "invalid or unsupported Perl syntax",
                   "invalid repetition size": "invalid repeat count",
                   "trailing \\": "trailing backslash at end of expression"}


class MatcherError(TriageError, ValueError):
    """A matcher that cannot be parsed; the message is Alertmanager's where it has one."""


def compile_regex(value: str) -> Any:
    """`value` as Alertmanager compiles a regex matcher: RE2, anchored as `^(?:value)$`."""
    pattern = f"^(?:{value})$"
    try:
        return re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as exc:
        raw = exc.args[0] if exc.args else b""
        reason = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
        code, _, arg = reason.partition(": ")
        # RE2's C++ wording -> Go's regexp/syntax wording, as Alertmanager prints it.
        code = _GO_ERROR_CODES.get(code, code)
        detail = f"{code}: `{arg}`" if arg else code
        raise MatcherError(f"error parsing regexp: {detail}") from None


@dataclass(frozen=True)
class Matcher:
    """One label matcher: `name`, `op` (=, !=, =~, !~) and `value` (a regex for =~ and !~)."""

    name: str
    op: str
    value: str
    _regex: Any = field(default=None, compare=False, repr=False)

    @classmethod
    def new(cls, op: str, name: str, value: str) -> Matcher:
        """Alertmanager's `NewMatcher`: compiles the regex of =~ and !~ (MatcherError if it is invalid)."""
        if op not in OPS:
            raise MatcherError(f"unknown match type {op!r}")
        return cls(name, op, value, compile_regex(value) if op in ("=~", "!~") else None)

    @classmethod
    def parse(cls, text: str) -> Matcher:
        """Exactly one matcher (Alertmanager's `compat.Matcher`, fallback mode)."""
        if text.startswith("{") or text.endswith("}"):
            raise MatcherError(f"bad matcher {text!r}: unexpected open or close brace")
        try:
            return parse_classic_matcher(text)
        except MatcherError as classic:
            try:
                found = parse_utf8_matchers(text)
            except MatcherError:
                raise _bad(text, classic) from None
            if len(found) != 1:
                raise _bad(text, classic) from None
            return found[0]

    def matches_value(self, actual: str) -> bool:
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        hit = self._regex.match(actual) is not None
        return hit if self.op == "=~" else not hit

    def matches(self, labels: dict[str, str]) -> bool:
        """A missing label is the empty string, as in Alertmanager."""
        return self.matches_value(labels.get(self.name, ""))

    def __str__(self) -> str:
        """Alertmanager's `Matcher.String()`."""
        if any(c.isspace() or c in _RESERVED for c in self.name):
            return f"{_go_quote(self.name)}{self.op}{_go_quote(self.value)}"
        escaped = self.value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
        return f'{self.name}{self.op}"{escaped}"'


def _bad(text: str, exc: MatcherError) -> MatcherError:
    msg = str(exc)
    if msg.startswith("bad matcher"):
        return exc
    what = "bad regex in matcher" if msg.startswith("error parsing regexp") else "bad matcher"
    return MatcherError(f"{what} {text!r}: {msg}")


def parse_matchers(text: str) -> list[Matcher]:
    """Zero or more matchers, `{a="b", c=~"d"}` or `a=b,c=~d` (Alertmanager's `compat.Matchers`, fallback)."""
    try:
        return parse_classic_matchers(text)
    except MatcherError as classic:
        try:
            return parse_utf8_matchers(text)
        except MatcherError:
            raise _bad(text, classic) from None


# -- the classic parser (pkg/labels/parse.go) ---------------------------------------------------------------


def parse_classic_matchers(text: str) -> list[Matcher]:
    s = text.removeprefix("{").removesuffix("}")
    tokens: list[str] = []
    token: list[str] = []
    inside_quotes = escaped = False
    for r in s:
        if r == "," and not inside_quotes:
            tokens.append("".join(token))
            token = []
            continue
        if r == '"':
            if not escaped:
                inside_quotes = not inside_quotes
            else:
                escaped = False
        elif r == "\\":
            escaped = not escaped
        else:
            escaped = False
        token.append(r)
    last = "".join(token).strip(" \t\n\r\f\v")
    if last:
        tokens.append(last)
    return [parse_classic_matcher(t) for t in tokens]


def parse_classic_matcher(text: str) -> Matcher:
    m = _CLASSIC.match(text)
    if not m:
        raise MatcherError(f"bad matcher format: {text}")
    name, op, raw = m.groups()
    if not raw:
        raise MatcherError(f"matcher value is not present: {text}")
    expect_trailing_quote = raw[0] == '"'
    body = raw[1:] if expect_trailing_quote else raw
    out: list[str] = []
    escaped = False
    for i, r in enumerate(body):
        if escaped:
            escaped = False
            if r == "n":
                out.append("\n")
            elif r in '"\\':
                out.append(r)
            else:  # a spurious escape: the backslash is literal
                out.append("\\" + r)
            continue
        if r == "\\":
            if i < len(body) - 1:
                escaped = True
                continue
            out.append("\\")
        elif r == '"':
            if not expect_trailing_quote or i < len(body) - 1:
                raise MatcherError(f"matcher value contains unescaped double quote: {raw}")
            expect_trailing_quote = False
        else:
            out.append(r)
    if expect_trailing_quote:
        raise MatcherError(f"matcher value contains unescaped double quote: {raw}")
    return Matcher.new(op, name, "".join(out))


# -- the UTF-8 parser (matcher/parse/) ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Token:
    kind: str  # "{", "}", ",", an operator, "quoted", "unquoted", "eof"
    value: str
    start: int
    end: int


class _Lexer:
    def __init__(self, text: str):
        self.text, self.pos, self.consumed_end = text, 0, 0
        self._peeked: _Token | None = None

    def peek(self) -> _Token:
        if self._peeked is None:
            self._peeked = self._scan()
        return self._peeked

    def next(self) -> _Token:
        t = self.peek()
        self._peeked = None
        self.consumed_end = t.end
        return t

    def _scan(self) -> _Token:
        s = self.text
        while self.pos < len(s) and s[self.pos].isspace():
            self.pos += 1
        start = self.pos
        if start >= len(s):
            return _Token("eof", "", start, start)
        c = s[start]
        if c in "{},":
            self.pos += 1
            return _Token(c, c, start, self.pos)
        if c == "=":
            self.pos += 2 if s.startswith("=~", start) else 1
            return _Token(s[start:self.pos], s[start:self.pos], start, self.pos)
        if c == "!":
            if start + 1 < len(s) and s[start + 1] in "=~":
                self.pos += 2
                return _Token(s[start:self.pos], s[start:self.pos], start, self.pos)
            self.pos += 1
            raise MatcherError(f"{start}:{self.pos}: {s[start:self.pos]}: invalid input: expected one of '=~'")
        if c == '"':
            i, escaped = start + 1, False
            while i < len(s):
                if escaped:
                    escaped = False
                elif s[i] == "\\":
                    escaped = True
                elif s[i] == '"':
                    break
                i += 1
            if i >= len(s):
                self.pos = len(s)
                raise MatcherError(f"{start}:{self.pos}: {s[start:]}: missing end \"")
            self.pos = i + 1
            return _Token("quoted", s[start:self.pos], start, self.pos)
        if c in _RESERVED:
            self.pos += 1
            raise MatcherError(f"{start}:{self.pos}: {c}: invalid input")
        i = start
        while i < len(s) and not (s[i].isspace() or s[i] in _RESERVED):
            i += 1
        self.pos = i
        return _Token("unquoted", s[start:i], start, i)


_GO_SIMPLE_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\",
                      '"': '"'}


def _go_unquote(tok: _Token) -> str:
    """Go's strconv.Unquote of a double-quoted token, then a UTF-8 check (the value must be valid UTF-8)."""
    body, out, i = tok.value[1:-1], bytearray(), 0
    bad = MatcherError(f"{tok.start}:{tok.end}: {tok.value}: invalid input")
    while i < len(body):
        c = body[i]
        if c == "\n":
            raise bad
        if c != "\\":
            out += c.encode("utf-8", "surrogatepass")
            i += 1
            continue
        if i + 1 >= len(body):
            raise bad
        e = body[i + 1]
        if e in _GO_SIMPLE_ESCAPES:
            out += _GO_SIMPLE_ESCAPES[e].encode()
            i += 2
        elif e in "xuU":
            n = {"x": 2, "u": 4, "U": 8}[e]
            digits = body[i + 2:i + 2 + n]
            if len(digits) != n or not all(d in "0123456789abcdefABCDEF" for d in digits):
                raise bad
            v = int(digits, 16)
            if e == "x":
                out.append(v)
            else:
                if v > 0x10FFFF or 0xD800 <= v <= 0xDFFF:
                    raise bad
                out += chr(v).encode()
            i += 2 + n
        elif e in "01234567":
            digits = body[i + 1:i + 4]
            if len(digits) != 3 or not all(d in "01234567" for d in digits) or int(digits, 8) > 255:
                raise bad
            out.append(int(digits, 8))
            i += 4
        else:
            raise bad
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        raise bad from None


def _unquote(tok: _Token) -> str:
    return _go_unquote(tok) if tok.kind == "quoted" else tok.value


def parse_utf8_matchers(text: str) -> list[Matcher]:
    lx = _Lexer(text)
    out: list[Matcher] = []

    def unexpected(t: _Token, what: str) -> MatcherError:
        if t.kind == "eof":
            return MatcherError(f"end of input: {what}")
        return MatcherError(f"{t.start}:{t.end}: unexpected {t.value}: {what}")

    def expect(kinds: tuple[str, ...], what: str) -> _Token:
        try:
            t = lx.peek()
        except MatcherError as exc:
            raise MatcherError(f"{exc}: {what}") from None
        if t.kind not in kinds:
            raise unexpected(t, what)
        return lx.next()

    def close(has_open: bool) -> None:
        t = lx.peek()
        if has_open:
            if t.kind != "}":
                reason = "end of input" if t.kind == "eof" else f"unexpected {t.value}"
                raise MatcherError(f"0:{lx.consumed_end}: {reason}: expected close brace")
            lx.next()
        elif t.kind == "}":
            lx.next()
            raise MatcherError(f"0:{lx.consumed_end}: }}: expected opening brace")
        t = lx.peek()
        if t.kind != "eof":
            raise MatcherError(f"{t.start}:{t.end}: {t.value}: expected end of input")

    first = lx.peek()
    if first.kind == "eof":
        return out
    has_open = first.kind == "{"
    if has_open:
        lx.next()
    if lx.peek().kind in ("}", "eof"):
        close(has_open)
        return out
    while True:
        name_tok = expect(("quoted", "unquoted"), "expected label name")
        name = _unquote(name_tok)
        op = expect(OPS, "expected an operator such as '=', '!=', '=~' or '!~'").kind
        value = _unquote(expect(("quoted", "unquoted"), "expected label value"))
        try:
            out.append(Matcher.new(op, name, value))
        except MatcherError as exc:
            raise MatcherError(f"failed to create matcher: {exc}") from None
        try:
            t = lx.peek()
        except MatcherError as exc:
            raise MatcherError(f"{exc}: expected a comma or close brace") from None
        if t.kind == "eof" or t.kind == "}":
            close(has_open)
            return out
        if t.kind != ",":
            raise unexpected(t, "expected a comma or close brace")
        lx.next()
        try:
            t = lx.peek()
        except MatcherError as exc:
            raise MatcherError(f"{exc}: expected a matcher or close brace after comma") from None
        if t.kind in ("eof", "}"):
            close(has_open)
            return out
        if t.kind not in ("quoted", "unquoted"):
            raise unexpected(t, "expected a matcher or close brace after comma")


def parse_utf8_matcher(text: str) -> Matcher:
    found = parse_utf8_matchers(text)
    if len(found) != 1:
        raise MatcherError("no matchers" if not found else f"expected 1 matcher, found {len(found)}")
    return found[0]


def _go_quote(s: str) -> str:
    out = []
    for c in s:
        if c in '"\\':
            out.append("\\" + c)
        elif c == "\n":
            out.append("\\n")
        elif c == "\t":
            out.append("\\t")
        elif not c.isprintable():
            out.append(f"\\x{ord(c):02x}" if ord(c) < 0x80 else f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def is_valid_label_name(name: str) -> bool:
    """Alertmanager 0.28's default (UTF-8) label name rule: any non-empty string."""
    return bool(name)


def is_classic_label_name(name: str) -> bool:
    """Prometheus' classic label name rule `[a-zA-Z_][a-zA-Z0-9_]*`."""
    return bool(_CLASSIC_NAME.match(name))

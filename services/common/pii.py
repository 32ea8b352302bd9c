"""Personal data masked where it leaves the system: pages, chat messages, webhook payloads and logs (pure).

Posts are other people's words, and people write their phone number, e-mail address, card or account
number into a complaint ("my card 4556 7375 8689 9855 was charged twice, call me on +44 7700 900123").
The router masks them in what it sends to PagerDuty, Opsgenie, Slack, Alertmanager and webhooks, and every
service masks them in its log lines, unless `TRIAGE_MASK_PII=false` (or a receiver's override) says not to.
The queue topics and the console keep the original: responders need it to answer.

What is masked, and how it is recognised (checksums keep order numbers and prices untouched):
- phone numbers: Google's libphonenumber (`phonenumbers`): numbers valid for their region in the national
  formats of the regions given (default: a few common ones), and any possible number written with "+" and a
  country code (dates, prices and order numbers are not valid numbers and stay);
- e-mail addresses;
- payment card numbers: 13-19 digits, spaces or dashes between groups, Luhn-checked;
- IBANs: country code, check digits and 11-30 letters/digits (spaces every four allowed), ISO 7064 mod-97.

Example:

    >>> mask_text("card 4556 7375 8689 9855, mail ana@example.com")
    'card [card], mail [email]'
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import phonenumbers

PHONE, EMAIL, CARD, IBAN = "[phone]", "[email]", "[card]", "[iban]"
DEFAULT_REGIONS: tuple[str, ...] = ("US", "GB", "DE", "FR", "ES", "IT", "GR", "IN", "BR")

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_CARD = re.compile(r"(?<![\d])\d(?:[ -]?\d){12,18}(?![\d])")
_DATE = re.compile(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4}")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}")


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum of a string of digits (every payment card number passes it)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(iban: str) -> bool:
    """ISO 13616 check: country + check digits moved to the end, letters as 10-35, the number mod 97 is 1."""
    s = iban.replace(" ", "").upper()
    if not 15 <= len(s) <= 34 or not s[:2].isalpha() or not s[2:4].isdigit() or not s.isalnum():
        return False
    moved = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def _mask_cards(text: str) -> str:
    def repl(m: re.Match[str]) -> str:
        digits = re.sub(r"\D", "", m.group(0))
        return CARD if 13 <= len(digits) <= 19 and luhn_ok(digits) else m.group(0)
    return _CARD.sub(repl, text)


def _mask_ibans(text: str) -> str:
    out, pos = [], 0
    for m in _IBAN.finditer(text):
        if m.start() < pos:
            continue
        cand = m.group(0)
        # The pattern is greedy and may take a following word in capitals: try shorter ends, longest first.
        for end in range(len(cand), 14, -1):
            if cand[end - 1] != " " and iban_ok(cand[:end]):
                out += [text[pos:m.start()], IBAN]
                pos = m.start() + end
                break
    return "".join(out) + text[pos:]


def _mask_phones(text: str, regions: Iterable[str]) -> str:
    spans: list[tuple[int, int]] = []
    for region in regions:
        for match in phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.POSSIBLE):
            # Valid for its region, or written internationally ("+44 ...") and possible: a person writing a
            # plus sign and a country code means a phone number even where the range is unassigned.
            if _DATE.fullmatch(match.raw_string.strip()):
                continue  # 2026-12-01 is a valid number somewhere, and a date here
            if (match.start > 0 and text[match.start - 1].isalnum()) or \
                    (match.end < len(text) and text[match.end].isalnum()):
                continue  # digits inside a word (a hash, an id like "deadbeef0123456789") are not a phone number
            if phonenumbers.is_valid_number(match.number) or (
                    match.raw_string.lstrip().startswith("+") and phonenumbers.is_possible_number(match.number)):
                spans.append((match.start, match.end))
    if not spans:
        return text
    out, pos = [], 0
    for start, end in sorted(spans):
        if start < pos:
            pos = max(pos, end)
            continue
        out += [text[pos:start], PHONE]
        pos = end
    return "".join(out) + text[pos:]


def mask_text(text: str, regions: Iterable[str] = DEFAULT_REGIONS) -> str:
    """`text` with phone numbers, e-mail addresses, card numbers and IBANs replaced by `[phone]`, `[email]`,
    `[card]`, `[iban]`. Idempotent; text without digits or `@` comes back unchanged (and fast)."""
    if not text or (not any(ch.isdigit() for ch in text) and "@" not in text):
        return text
    text = _mask_cards(text)
    text = _mask_ibans(text)
    text = _EMAIL.sub(EMAIL, text)
    return _mask_phones(text, regions) if any(ch.isdigit() for ch in text) else text


def mask_value(value: Any, regions: Iterable[str] = DEFAULT_REGIONS) -> Any:
    """Every string inside `value` (dicts, lists, tuples) masked; keys and other types kept as they are."""
    if isinstance(value, str):
        return mask_text(value, regions)
    if isinstance(value, dict):
        return {k: mask_value(v, regions) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(mask_value(v, regions) for v in value)
    return value

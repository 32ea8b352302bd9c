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
- IBANs: country code, check digits and 11-30 letters/digits (spaces every four allowed), ISO 7064 mod-97;
- national ids, each in the form it is written in and with its own check (so that order ids, dates and
  prices stay): US social security numbers written `AAA-GG-SSSS` (or 9 digits right after "SSN" / "social
  security"), with the SSA's rules (no area 000, 666 or 900-999, no group 00, no serial 0000); Spanish DNI
  (8 digits and the mod-23 control letter) and NIE (X/Y/Z, 7 digits, control letter); Indian Aadhaar
  numbers (12 digits, not starting 0 or 1, Verhoeff check digit) written in groups of four, or as 12 digits
  right after "Aadhaar". python-stdnum validates these too, but finds none in free text: the candidates
  would be these patterns anyway, and the checks are a few lines each.

Example:

    >>> mask_text("card 4556 7375 8689 9855, mail ana@example.com")
    'card [card], mail [email]'
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import phonenumbers

PHONE, EMAIL, CARD, IBAN, NATIONAL_ID = "[phone]", "[email]", "[card]", "[iban]", "[national-id]"
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


# US SSN: dashed, or bare after the words that name it (a bare 9-digit number is as often an order id).
_SSN = re.compile(r"(?<![\w-])(\d{3})-(\d{2})-(\d{4})(?![\w-])"
                  r"|(?i:\bssn|\bsocial security(?: number| no\.?)?)\W{0,3}(\d{3})(\d{2})(\d{4})\b")
# Spanish DNI (8 digits + letter) and NIE (X/Y/Z + 7 digits + letter), an optional dash or space before it.
_DNI = re.compile(r"(?<![\w-])([XYZxyz]?)(\d{7,8})[- ]?([A-Z])(?![\w-])")
_DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"
# Aadhaar: 4-4-4 groups (as printed on the card), or 12 digits after the word.
_AADHAAR = re.compile(r"(?<![\w-])([2-9]\d{3})([ -])(\d{4})\2(\d{4})(?![\w-])"
                      r"|(?i:\baadh?aar|\buidai|आधार)(?:\s*(?:no\.?|number|#))?\W{0,3}([2-9]\d{11})\b")
# Verhoeff's dihedral-group tables (multiplication, permutation).
_VERHOEFF_D = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 2, 3, 4, 0, 6, 7, 8, 9, 5], [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
    [3, 4, 0, 1, 2, 8, 9, 5, 6, 7], [4, 0, 1, 2, 3, 9, 5, 6, 7, 8], [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
    [6, 5, 9, 8, 7, 1, 0, 4, 3, 2], [7, 6, 5, 9, 8, 2, 1, 0, 4, 3], [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
    [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]]
_VERHOEFF_P = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 5, 7, 6, 2, 8, 3, 0, 9, 4], [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
    [8, 9, 1, 6, 0, 4, 3, 5, 2, 7], [9, 4, 5, 3, 1, 2, 6, 8, 7, 0], [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
    [2, 7, 9, 3, 8, 0, 6, 4, 1, 5], [7, 0, 4, 6, 9, 1, 3, 2, 5, 8]]


def verhoeff_ok(digits: str) -> bool:
    """Verhoeff's check (Aadhaar's last digit): catches every single-digit error and adjacent transposition."""
    c = 0
    for i, ch in enumerate(reversed(digits)):
        c = _VERHOEFF_D[c][_VERHOEFF_P[i % 8][ord(ch) - 48]]
    return c == 0


def ssn_ok(area: str, group: str, serial: str) -> bool:
    """The SSA's rules for an issued number (SSNs carry no check digit): no area 000, 666 or 9xx, no group 00,
    no serial 0000."""
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def dni_ok(prefix: str, digits: str, letter: str) -> bool:
    """Spanish DNI (8 digits) or NIE (X/Y/Z standing for 0/1/2, then 7 digits): the letter is the number mod 23."""
    if prefix:
        if len(digits) != 7:
            return False
        digits = str("XYZ".index(prefix.upper())) + digits
    elif len(digits) != 8:
        return False
    return _DNI_LETTERS[int(digits) % 23] == letter


def _mask_national_ids(text: str) -> str:
    def ssn(m: re.Match[str]) -> str:
        area, group, serial = (m.group(1), m.group(2), m.group(3)) if m.group(1) else m.group(4, 5, 6)
        if not ssn_ok(area, group, serial):
            return m.group(0)
        return NATIONAL_ID if m.group(1) else m.group(0)[:m.start(4) - m.start(0)] + NATIONAL_ID

    def dni(m: re.Match[str]) -> str:
        return NATIONAL_ID if dni_ok(m.group(1), m.group(2), m.group(3)) else m.group(0)

    def aadhaar(m: re.Match[str]) -> str:
        digits = m.group(1) + m.group(3) + m.group(4) if m.group(1) else m.group(5)
        if not verhoeff_ok(digits):
            return m.group(0)
        return NATIONAL_ID if m.group(1) else m.group(0)[:m.start(5) - m.start(0)] + NATIONAL_ID

    return _AADHAAR.sub(aadhaar, _DNI.sub(dni, _SSN.sub(ssn, text)))


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
    """`text` with phone numbers, e-mail addresses, card numbers, IBANs and national ids replaced by `[phone]`,
    `[email]`, `[card]`, `[iban]`, `[national-id]`. Idempotent; text without digits or `@` comes back unchanged
    (and fast)."""
    if not text or (not any(ch.isdigit() for ch in text) and "@" not in text):
        return text
    text = _mask_cards(text)
    text = _mask_ibans(text)
    text = _mask_national_ids(text)
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

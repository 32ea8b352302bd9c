"""National ids in posts (services/common/pii.py): US SSN, Spanish DNI/NIE, Indian Aadhaar masked when their
form and check hold; ordinary numbers (order ids, dates, prices, counts) and ids with a wrong check stay."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.pii import NATIONAL_ID, dni_ok, mask_text, ssn_ok, verhoeff_ok

DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"
words = st.text(alphabet=st.characters(categories=["Lu", "Ll", "Zs"], max_codepoint=0x24F), max_size=30)


def verhoeff_complete(body: str) -> str:
    """`body` plus the Verhoeff check digit."""
    [number] = [body + d for d in "0123456789" if verhoeff_ok(body + d)]
    return number


def test_published_examples_pass_their_checks_and_tampered_ones_fail():
    # The DNI/NIE examples of Spain's Ministry of the Interior style guides; Verhoeff's own worked example.
    assert dni_ok("", "12345678", "Z") and not dni_ok("", "12345678", "A")
    assert dni_ok("X", "1234567", "L") and not dni_ok("X", "1234567", "M")
    assert verhoeff_ok("2363") and not verhoeff_ok("2364") and not verhoeff_ok("3263")   # a transposition
    assert ssn_ok("078", "05", "1120")
    assert not ssn_ok("000", "12", "3456") and not ssn_ok("666", "12", "3456") and not ssn_ok("912", "12", "3456")
    assert not ssn_ok("123", "00", "4567") and not ssn_ok("123", "45", "0000")


@pytest.mark.parametrize("text, masked", [
    ("my SSN is 078-05-1120, please delete it", f"my SSN is {NATIONAL_ID}, please delete it"),
    ("ssn: 078051120 was leaked", f"ssn: {NATIONAL_ID} was leaked"),
    ("Social Security number 078051120", f"Social Security number {NATIONAL_ID}"),
    ("mi DNI 12345678Z no funciona", f"mi DNI {NATIONAL_ID} no funciona"),
    ("DNI 12345678-Z", f"DNI {NATIONAL_ID}"),
    ("NIE X1234567L, llamadme", f"NIE {NATIONAL_ID}, llamadme"),
    ("aadhaar 2345 6789 0124 linked", f"aadhaar {NATIONAL_ID} linked"),
    ("Aadhaar no. 234567890124", f"Aadhaar no. {NATIONAL_ID}"),
])
def test_valid_national_ids_are_masked(text, masked):
    assert mask_text(text) == masked


@pytest.mark.parametrize("text", [
    "SSN 000-12-3456 and 666-12-3456 and 912-34-5678 are never issued",
    "DNI 12345678A",                          # wrong control letter
    "NIE X1234567M",
    "aadhaar 2345 6789 0125",                  # wrong Verhoeff digit
    "order 2024-001-2345 shipped on 2026-12-01, invoice 12-05-2026, ref 123-456-7890",
    "ticket 1234-5678-9012 and build 12345678-a",
    "tracking AB12345678Z9, sku 12345678ZZ, 45.99 EUR, 3 kids, since 1985",
])
def test_ordinary_numbers_and_ids_with_a_wrong_check_are_not_masked_as_ids(text):
    assert NATIONAL_ID not in mask_text(text)


def test_an_order_id_written_like_an_id_but_without_its_context_stays():
    # Bare 9 or 12 digits are masked as an SSN or Aadhaar only right after the words that name them.
    for text in ("order 078051120 arrived", "order 234567890124 arrived"):
        assert NATIONAL_ID not in mask_text(text)


@settings(max_examples=200, deadline=None)
@given(n=st.integers(0, 99_999_999), sep=st.sampled_from(["", "-", " "]), before=words, after=words)
def test_any_dni_with_its_letter_is_masked_and_with_another_letter_is_not(n, sep, before, after):
    number = f"{n:08d}"
    right = DNI_LETTERS[n % 23]
    wrong = DNI_LETTERS[(n + 1) % 23]
    out = mask_text(f"{before} {number}{sep}{right} {after}")
    assert number not in out and NATIONAL_ID in out
    assert NATIONAL_ID not in mask_text(f"{before} {number}{sep}{wrong} {after}")


@settings(max_examples=200, deadline=None)
@given(prefix=st.sampled_from("XYZ"), n=st.integers(0, 9_999_999), before=words)
def test_any_nie_with_its_letter_is_masked(prefix, n, before):
    number = f"{n:07d}"
    letter = DNI_LETTERS[int(str("XYZ".index(prefix)) + number) % 23]
    out = mask_text(f"{before} NIE {prefix}{number}{letter} gracias")
    assert f"{prefix}{number}" not in out and NATIONAL_ID in out


@settings(max_examples=200, deadline=None)
@given(body=st.from_regex(r"[2-9][0-9]{10}", fullmatch=True), sep=st.sampled_from([" ", "-"]), before=words)
def test_any_aadhaar_in_groups_of_four_is_masked_and_one_digit_off_is_not(body, sep, before):
    number = verhoeff_complete(body)
    grouped = sep.join(number[i:i + 4] for i in range(0, 12, 4))
    out = mask_text(f"{before} {grouped} thanks")
    assert NATIONAL_ID in out and grouped not in out
    off = number[:-1] + str((int(number[-1]) + 1) % 10)
    assert NATIONAL_ID not in mask_text(f"{before} {sep.join(off[i:i + 4] for i in range(0, 12, 4))} thanks")


@settings(max_examples=200, deadline=None)
@given(area=st.integers(1, 899).filter(lambda a: a != 666), group=st.integers(1, 99), serial=st.integers(1, 9999),
       before=words)
def test_any_issuable_ssn_written_with_dashes_is_masked(area, group, serial, before):
    ssn = f"{area:03d}-{group:02d}-{serial:04d}"
    out = mask_text(f"{before} {ssn} thanks")
    assert ssn not in out and NATIONAL_ID in out


def test_national_ids_leave_log_lines_and_page_payloads_masked():
    from services.common.logging import _mask_pii
    from services.common.pii import mask_value

    event = {"event": "mention_debug", "text": "DNI 12345678Z, aadhaar 2345 6789 0124", "offset": 12345678}
    assert _mask_pii(None, "debug", event) == {**event, "text": f"DNI {NATIONAL_ID}, aadhaar {NATIONAL_ID}"}
    page = {"summary": "P1 acme", "samples": [{"text": "my SSN 078-05-1120 leaked", "mention_id": "x:12345678"}]}
    assert mask_value(page)["samples"] == [{"text": f"my SSN {NATIONAL_ID} leaked", "mention_id": "x:12345678"}]

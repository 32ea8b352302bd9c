"""Personal data masking (services/common/pii.py): examples and properties."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.pii import CARD, EMAIL, IBAN, PHONE, iban_ok, luhn_ok, mask_text, mask_value


def luhn_complete(body: str) -> str:
    """`body` plus the check digit that makes it pass Luhn."""
    for d in "0123456789":
        if luhn_ok(body + d):
            return body + d
    raise AssertionError("unreachable")


def iban_for(country: str, bban: str) -> str:
    moved = bban + country + "00"
    check = 98 - int("".join(str(int(c, 36)) for c in moved)) % 97
    return f"{country}{check:02d}{bban}"


def grouped(number: str, sep: str) -> str:
    return sep.join(number[i:i + 4] for i in range(0, len(number), 4))


words = st.text(alphabet=st.characters(categories=["Lu", "Ll", "Zs"], max_codepoint=0x24F), max_size=40)


def test_the_issue_s_example_loses_card_and_phone_and_keeps_the_complaint():
    text = "my card 4556 7375 8689 9855 was charged twice, call me on +1 415 555 2671 or ana@example.com"
    assert mask_text(text) == f"my card {CARD} was charged twice, call me on {PHONE} or {EMAIL}"


def test_numbers_that_are_not_personal_data_stay():
    text = "order 1234567890123 costs 45.99 on 2026-12-01, ticket #123456 at 10:30, since 1985, 3 kids"
    assert mask_text(text) == text


def test_known_ibans_and_a_broken_checksum():
    assert iban_ok("GB82 WEST 1234 5698 7654 32") and iban_ok("DE89370400440532013000")
    assert not iban_ok("GB82 WEST 1234 5698 7654 33")
    assert mask_text("pay to GB82 WEST 1234 5698 7654 32 TODAY") == f"pay to {IBAN} TODAY"
    assert IBAN not in mask_text("GB82 WEST 1234 5698 7654 33")


@settings(max_examples=200, deadline=None)
@given(body=st.text(alphabet="0123456789", min_size=12, max_size=18), sep=st.sampled_from(["", " ", "-"]),
       before=words, after=words)
def test_any_luhn_valid_card_number_in_any_text_is_masked(body, sep, before, after):
    number = luhn_complete(body)
    out = mask_text(f"{before} {grouped(number, sep)} {after}")
    assert number not in out.replace(" ", "").replace("-", "")
    assert CARD in out


@settings(max_examples=200, deadline=None)
@given(country=st.sampled_from(["DE", "GB", "FR", "GR", "NL", "ES"]),
       bban=st.text(alphabet="0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=12, max_size=26),
       spaced=st.booleans(), before=words)
def test_any_iban_with_a_valid_checksum_is_masked(country, bban, spaced, before):
    iban = iban_for(country, bban)
    assert iban_ok(iban)
    out = mask_text(f"{before} {grouped(iban, ' ') if spaced else iban} thanks")
    assert iban not in out.replace(" ", "")


@settings(max_examples=200, deadline=None)
@given(local=st.from_regex(r"[a-z][a-z0-9._]{0,15}", fullmatch=True),
       domain=st.from_regex(r"[a-z]{2,10}\.(com|org|co\.uk|gr)", fullmatch=True), before=words)
def test_any_email_address_is_masked(local, domain, before):
    out = mask_text(f"{before} write to {local}@{domain} now")
    assert f"{local}@{domain}" not in out and EMAIL in out


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=200))
def test_masking_is_idempotent_and_leaves_text_without_digits_or_at_alone(text):
    once = mask_text(text)
    assert mask_text(once) == once
    if not any(ch.isdigit() for ch in text) and "@" not in text:
        assert once == text


@settings(max_examples=100, deadline=None)
@given(subscriber=st.text(alphabet="0123456789", min_size=7, max_size=7))
def test_international_numbers_are_masked(subscriber):
    out = mask_text(f"call me on +1 415 {subscriber[:3]} {subscriber[3:]} please")
    assert subscriber not in out.replace(" ", "")


def test_mask_value_masks_strings_inside_documents_only():
    doc = {"samples": [{"text": "mail ana@example.com", "mention_id": "x:1"}], "mentions": 3}
    assert mask_value(doc) == {"samples": [{"text": f"mail {EMAIL}", "mention_id": "x:1"}], "mentions": 3}


def test_log_events_are_masked_field_by_field():
    from services.common.logging import _mask_pii

    event = {"event": "mention_debug", "text": "call me on +1 415 555 2671", "offset": 123456789,
             "timestamp": "2026-12-06T01:00:00Z"}
    assert _mask_pii(None, "debug", event) == {**event, "text": "call me on [phone]"}

"""Brand tracking: names, handles, hashtags, products and problem phrases in many scripts."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.ingest.brands import DEFAULT_BRANDS_FILE, BrandConfig, BrandMatcher, fold, load_brands

MATCHER = BrandMatcher(load_brands(DEFAULT_BRANDS_FILE))


@pytest.mark.parametrize(
    ("text", "brands"),
    [
        ("ACME BANK app is broken", ["acmebank"]),  # case
        ("Ácme Bánk cobra comisiones", ["acmebank"]),  # accents
        ("#AcmeDown again", ["acmebank"]),  # configured hashtag
        ("#AcmeBank why", ["acmebank"]),  # a name written as a hashtag
        ("@AcmeBank_Help are you there", ["acmebank"]),  # handle
        ("Το ΆΚΜΕ έπεσε", ["acmebank"]),  # Greek, upper case with tonos
        ("Акме не работает", ["acmebank"]),  # Cyrillic
        ("آكمه قطع است", ["acmebank"]),  # Persian written with the Arabic kaf
        ("एक्मे बंद है", ["acmebank"]),  # Devanagari
        ("Acme\u200bBank", ["acmebank"]),  # zero-width space removed: "AcmeBank" is a configured name
        ("AcmeNet and Acme Pay both down", ["acmebank", "acmenet"]),  # product + name, config order
        ("acmebanker", []),  # never a substring of a longer word
        ("nothing to see", []),
    ],
)
def test_brands_are_found_across_case_accents_and_scripts(text, brands):
    assert MATCHER.match(text).brands == brands


def test_zero_width_characters_and_tatweel_do_not_hide_a_brand():
    assert MATCHER.match("Acme\u200d Bank").brands == ["acmebank"]
    assert MATCHER.match("آکـــمه قطع است").brands == ["acmebank"]


def test_problem_phrases_with_language_variants_and_brand_placeholder():
    assert MATCHER.match("slow internet tonight").problems == ["slow internet"]
    assert MATCHER.match("Is AcmeNet down?").problems == ["is {brand} down"]
    assert MATCHER.match("I can’t log in").problems == ["can't log in"]  # typographic apostrophe
    assert MATCHER.match("लॉगिन नहीं हो रहा").problems == ["लॉगिन नहीं हो रहा"]
    assert MATCHER.match("नमस्ते").problems == []


@pytest.mark.parametrize("text", [
    "@FjordTel app is down, can't log in at all",          # another brand's outage, in AcmeBank's own phrases
    "@FjordTel la app no funciona, no puedo entrar",
    "@FjordTel приложение не работает, не могу войти",
    "@FjordTel ऐप काम नहीं कर रहा, लॉगिन नहीं हो रहा",
    "I can't log in to my email since this morning",        # and nobody's
])
def test_a_bare_problem_phrase_tags_no_brand(text):
    # Every brand's customers write "can't log in": a phrase without the brand's name is recorded as a problem
    # hit, never as the brand (it tagged these AcmeBank, so FjordTel's outage counted as AcmeBank's too).
    match = MATCHER.match(text)
    assert match.problems and match.brands == []


def test_a_problem_phrase_with_the_brand_tags_it():
    assert MATCHER.match("¿Acme Bank está caído?").brands == ["acmebank"]
    assert MATCHER.match("Acme Bank: can't log in").brands == ["acmebank"]   # by its name, the phrase beside it


def test_devanagari_vowel_signs_stay_part_of_the_word():
    matcher = BrandMatcher([BrandConfig(id="ram", names=["राम"])])
    assert matcher.match("राम आया").brands == ["ram"]
    assert matcher.match("रामा आया").brands == []  # a different word, not "राम" + a stray sign


def test_fold_is_case_and_accent_insensitive_but_keeps_scripts_apart():
    assert fold("ΆΚΜΕ") == fold("ακμε")
    assert fold("Ёлка") == fold("елка")
    assert fold("acme") != fold("асме")  # Cyrillic homoglyphs are different letters


def test_bad_brands_file_names_the_problem(tmp_path: Path):
    p = tmp_path / "brands.yaml"
    p.write_text("brands:\n  - id: Bad Id\n")
    with pytest.raises(ValueError, match=r"brands\.0\.id"):
        load_brands(p)
    p.write_text("brands:\n  - id: a\n  - id: a\n")
    with pytest.raises(ValueError, match="unique"):
        load_brands(p)


@given(st.text(max_size=300))
def test_matching_never_crashes(text):
    result = MATCHER.match(text)
    assert set(result.brands) <= {"acmebank", "acmenet"}

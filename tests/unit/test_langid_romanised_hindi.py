"""Romanised Hindi: a small char n-gram model overrides lingua's Latin-script answer."""

from __future__ import annotations

from pathlib import Path

from services.classify.langid import LanguageDetector, RomanisedHindi

HINGLISH = ["yaar ye app phir se band ho gaya, kya bakwas hai", "bhai mera paisa kab wapas aayega",
            "kal se net nahi chal raha hai ghar pe", "aap log kuch karte kyun nahi ho", "mujhe refund chahiye abhi"]
ENGLISH = ["the app is down again and I cannot log in", "when will my refund arrive",
           "my internet has not worked since yesterday", "why does nobody answer the phone", "I want my money back now"]


def test_fit_save_load_and_override(tmp_path: Path) -> None:
    model = RomanisedHindi.fit(HINGLISH * 4 + ENGLISH * 4, [1] * 20 + [0] * 20)
    model.threshold = 0.5
    path = tmp_path / "hi_latn.npz"
    model.save(path)
    loaded = RomanisedHindi.load(path)
    assert loaded is not None and loaded.threshold == 0.5
    det = LanguageDetector(("en", "es", "hi"), romanised_hindi=loaded)
    got = det.detect(["yaar mera net phir se band ho gaya hai", "my internet is down again today"])
    assert got[0][0] == "hi"
    assert got[1][0] == "en"
    assert RomanisedHindi.load(tmp_path / "missing.npz") is None

"""Offline language identification (lingua) restricted to the languages brands see, plus romanised Hindi.

Restricting the candidate set makes lingua faster and more accurate on short
posts; the list is configurable. Returns ISO 639-1 codes, "und" when unsure.

lingua has no model for Hindi written in Latin script (and Hinglish), so it calls such posts
English or another Latin-script language. `RomanisedHindi` is a small character n-gram logistic
regression (hashed features, weights in `artifacts/hi_latn.npz`, trained by `triage train` on UMSAB's
romanised Hindi vs the other Latin-script UMSAB languages and the written Hinglish examples); where
lingua answers a Latin-script language and this model says Hindi, the answer is "hi" (the
`script` is then "Latn").
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from lingua import IsoCode639_1, Language, LanguageDetectorBuilder

HI_LATN_PATH = Path(__file__).resolve().parent / "artifacts" / "hi_latn.npz"
LATIN_LANGUAGES = frozenset({"en", "es", "pt", "fr", "de", "it", "nl", "id", "tr", "pl"})
N_FEATURES = 2**16
_URL_OR_HANDLE = re.compile(r"https?://\S+|www\.\S+|@\w+|#")


def _vectorizer():  # type: ignore[no-untyped-def]
    from sklearn.feature_extraction.text import HashingVectorizer

    return HashingVectorizer(analyzer="char_wb", ngram_range=(1, 4), n_features=N_FEATURES, lowercase=True,
                             alternate_sign=False, norm="l2",
                             preprocessor=lambda t: _URL_OR_HANDLE.sub(" ", t).lower())


class RomanisedHindi:
    """P(romanised Hindi) for Latin-script texts, from hashed character 1-4-grams."""

    def __init__(self, coef: np.ndarray, intercept: float, threshold: float = 0.5):
        self.coef = coef.astype(np.float32)
        self.intercept = float(intercept)
        self.threshold = threshold
        self._vec = _vectorizer()

    def proba(self, texts: Sequence[str]) -> np.ndarray:
        x = self._vec.transform(list(texts))
        return 1.0 / (1.0 + np.exp(-(x @ self.coef + self.intercept)))

    def save(self, path: Path = HI_LATN_PATH) -> None:
        np.savez_compressed(path, coef=self.coef, intercept=np.array([self.intercept], dtype=np.float32),
                            threshold=np.array([self.threshold], dtype=np.float32))

    @classmethod
    def load(cls, path: Path = HI_LATN_PATH) -> RomanisedHindi | None:
        if not path.exists():
            return None
        with np.load(path) as d:
            return cls(d["coef"], float(d["intercept"][0]), float(d["threshold"][0]))

    @classmethod
    def fit(cls, texts: Sequence[str], is_hindi: Sequence[int], c: float = 4.0) -> RomanisedHindi:
        from sklearn.linear_model import LogisticRegression

        x = _vectorizer().transform(list(texts))
        lr = LogisticRegression(C=c, max_iter=2000, class_weight="balanced").fit(x, np.asarray(is_hindi))
        return cls(lr.coef_[0], float(lr.intercept_[0]))

DEFAULT_LANGUAGES: tuple[str, ...] = (
    "en", "es", "pt", "fr", "de", "it", "nl", "ar", "fa", "ur", "hi", "el", "ru", "uk",
    "tr", "pl", "ja", "zh", "ko", "id",
)


class LanguageDetector:
    def __init__(self, languages: Sequence[str] = DEFAULT_LANGUAGES, min_confidence: float = 0.3,
                 low_accuracy: bool = False, romanised_hindi: RomanisedHindi | None = None):
        langs = []
        for code in languages:
            try:
                langs.append(Language.from_iso_code_639_1(getattr(IsoCode639_1, code.upper())))
            except AttributeError:
                raise ValueError(f"unknown language code {code!r}") from None
        builder = LanguageDetectorBuilder.from_languages(*langs).with_preloaded_language_models()
        if low_accuracy:
            builder = builder.with_low_accuracy_mode()
        self._detector = builder.build()
        self.min_confidence = min_confidence
        self.romanised_hindi = romanised_hindi if romanised_hindi is not None else (
            RomanisedHindi.load() if "hi" in languages else None)

    def detect(self, texts: Sequence[str]) -> list[tuple[str, float]]:
        """(iso code, confidence) per text; ("und", conf) below `min_confidence`."""
        out: list[tuple[str, float]] = []
        results = self._detector.compute_language_confidence_values_in_parallel(list(texts))
        for values in results:
            if not values:
                out.append(("und", 0.0))
                continue
            top = values[0]
            code = top.language.iso_code_639_1.name.lower()
            out.append((code if top.value >= self.min_confidence else "und", float(top.value)))
        if self.romanised_hindi is not None:
            latin = [i for i, (code, _) in enumerate(out) if code in LATIN_LANGUAGES or code == "und"]
            if latin:
                p = self.romanised_hindi.proba([texts[i] for i in latin])
                for i, prob in zip(latin, p, strict=True):
                    if prob >= self.romanised_hindi.threshold:
                        out[i] = ("hi", float(prob))
        return out

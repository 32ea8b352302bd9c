"""Offline language identification (lingua) restricted to the languages brands see.

Restricting the candidate set makes lingua faster and more accurate on short
posts; the list is configurable. Returns ISO 639-1 codes, "und" when unsure.
"""

from __future__ import annotations

from collections.abc import Sequence

from lingua import IsoCode639_1, Language, LanguageDetectorBuilder

DEFAULT_LANGUAGES: tuple[str, ...] = (
    "en", "es", "pt", "fr", "de", "it", "nl", "ar", "fa", "ur", "hi", "el", "ru", "uk",
    "tr", "pl", "ja", "zh", "ko", "id",
)


class LanguageDetector:
    def __init__(self, languages: Sequence[str] = DEFAULT_LANGUAGES, min_confidence: float = 0.3,
                 low_accuracy: bool = False):
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
        return out

"""Builds the Scorer from settings: the one place model files are located and loaded."""

from __future__ import annotations

from pathlib import Path

from services.classify.config import ClassifySettings
from services.classify.encoder.adapter import resolve_adapter
from services.classify.encoder.runtime import head_labels
from services.classify.heads import ARTIFACTS_DIR, HeadSet
from services.classify.langid import DEFAULT_LANGUAGES, LanguageDetector
from services.classify.scorer import Scorer


def build_scorer(settings: ClassifySettings) -> Scorer:
    from services.classify.encoder.loader import ensure_default_model, load_encoder

    model = settings.model or str(ensure_default_model())
    heads = HeadSet.load(Path(settings.heads_dir) if settings.heads_dir else ARTIFACTS_DIR)
    encoder = load_encoder(model, torch_threads=settings.torch_threads or None, precision=settings.precision,
                           adapter=resolve_adapter(settings.adapter_dir), runtime=settings.runtime,
                           parity=head_labels(heads))
    languages = tuple(c.strip() for c in settings.languages.split(",") if c.strip()) or DEFAULT_LANGUAGES
    return Scorer(encoder, heads, LanguageDetector(languages), max_length=settings.max_tokens,
                  batch_size=settings.max_batch)

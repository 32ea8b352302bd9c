"""The classifier: encoder + heads + language ID + priority policy, in two stages per batch.

`prepare` (tokens, length buckets, language ID) and `score_prepared` (encoder, heads, priority) are the one
code path: the Faust worker overlaps them over its stream (`pipeline.StagedBatches`), and `triage score`,
`triage backtest` and `make eval` overlap them the same way over files (`stream_texts`, `stream_mentions`,
`offline.run_staged`), so what is measured is what runs.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from services.classify.batching import length_buckets
from services.classify.crisis.emerging import sketch
from services.classify.heads import HeadSet
from services.classify.langid import LanguageDetector
from services.classify.offline import DEFAULT_MAX_BATCH, run_staged
from services.classify.priority import PriorityPolicy, Signals, decide
from services.common.codec import pb
from services.common.timeutil import now_ts

SENTIMENT_ENUM = {"negative": pb.NEGATIVE, "neutral": pb.NEUTRAL, "positive": pb.POSITIVE}
EMBED_PREFIX = "query: "


@dataclass
class TextScore:
    """Scores for one text, before they are attached to a Mention."""

    language: str
    language_confidence: float
    sentiment: dict[str, float]
    intents: dict[str, float]
    urgency: float
    priority: int
    reasons: list[str]
    sketch: bytes = b""   # the embedding's int8 sketch (crisis/emerging.sketch): `triage score --sketch`

    @property
    def sentiment_label(self) -> str:
        return max(self.sentiment, key=lambda k: self.sentiment[k])

    def as_json(self, model_version: str, with_sketch: bool = False) -> dict[str, Any]:
        out = {
            "language": self.language,
            "sentiment": {"label": self.sentiment_label,
                          **{k: round(v, 4) for k, v in self.sentiment.items()}},
            "intents": {k: round(v, 4) for k, v in self.intents.items()},
            "urgency": self.urgency,
            "priority": f"P{self.priority}",
            "reasons": self.reasons,
            "model_version": model_version,
        }
        if with_sketch:   # what `triage backtest --scores` needs for emerging issues (512 base64 characters)
            out["sketch"] = base64.b64encode(self.sketch).decode()
        return out


@dataclass
class PreparedBatch:
    """Mentions decoded, tokenised and language-tagged, ready for the model (`Scorer.prepare`).

    Preparing needs only the texts, so the worker prepares the next batch in one thread while the model
    runs the current one in another (see `services/classify/pipeline.py`).
    """

    mentions: list[pb.Mention]
    signals: list[Signals]
    token_ids: list[list[int]]
    chunks: list[list[int]]          # row indices per forward pass (`batching.length_buckets`)
    languages: list[tuple[str, float]]
    incident_ids: list[str]
    prepare_seconds: float = 0.0

    def __len__(self) -> int:
        return len(self.mentions)


class Scorer:
    """Scores texts: encoder embeddings -> sentiment and intent heads, language ID, priority and reasons.

    The worker, `triage score`, `triage backtest` and `make eval` build it with ``build_scorer``.

    Example:

        from services.classify.config import ClassifySettings
        from services.classify.factory import build_scorer

        scorer = build_scorer(ClassifySettings())          # loads the encoder, heads and language ID
        [score] = scorer.score_texts(["@AcmeBank app down again, can't log in"])
        score.language, score.intents["outage_report"], score.priority, score.reasons
        # ('en', 0.93, 2, ['outage report 0.93', ...])
        scorer.model_version                               # 'e5s-<weights>+heads-<heads>'
    """

    def __init__(self, encoder: Any, heads: HeadSet, langid: LanguageDetector,
                 policy: PriorityPolicy | None = None, max_length: int = 128, batch_size: int = 32):
        self.encoder = encoder
        self.heads = heads
        self.langid = langid
        self.policy = policy or PriorityPolicy()
        self.max_length = max_length
        self.batch_size = batch_size

    @property
    def model_version(self) -> str:
        return f"e5s-{self.encoder.version}+heads-{self.heads.version}"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.encoder.embed(list(texts), prefix=EMBED_PREFIX, max_length=self.max_length,
                                             batch_size=self.batch_size), dtype=np.float32)

    def score_texts(self, texts: Sequence[str], signals: Sequence[Signals] | None = None) -> list[TextScore]:
        """One batch, in the calling thread, through the same two stages as the worker (`prepare_texts`,
        `score_prepared_texts`); `stream_texts` overlaps them over many batches."""
        if not texts:
            return []
        signals = signals or [Signals()] * len(texts)
        return self.score_prepared_texts(self.prepare_texts(list(zip(texts, signals, strict=True))))

    def stream_texts(self, items: Iterable[tuple[str, Signals]],
                     max_batch: int = DEFAULT_MAX_BATCH) -> Iterator[TextScore]:
        """Scores of (text, signals) pairs in input order, through the worker's staged pipeline
        (`offline.run_staged`): what `triage score` and `make eval` use."""
        return run_staged(items, self.prepare_texts, self.score_prepared_texts, max_batch)

    def stream_mentions(self, mentions: Iterable[pb.Mention],
                        max_batch: int = DEFAULT_MAX_BATCH) -> Iterator[pb.ScoredMention]:
        """ScoredMentions in input order, through the worker's staged pipeline (`triage backtest`)."""
        return run_staged(mentions, self.prepare, self.score_prepared, max_batch)

    def _text_scores(self, emb: np.ndarray, langs: Sequence[tuple[str, float]],
                     signals: Sequence[Signals]) -> list[TextScore]:
        sent = self.heads.sentiment.predict_proba(emb)
        intents = self.heads.intents.predict_proba(emb)
        out = []
        for i in range(len(emb)):
            s = {label: float(sent[i, j]) for j, label in enumerate(self.heads.sentiment.labels)}
            it = {label: float(intents[i, j]) for j, label in enumerate(self.heads.intents.labels)}
            v = decide(s.get("negative", 0.0), s.get("positive", 0.0), it, signals[i], self.policy)
            out.append(TextScore(langs[i][0], langs[i][1], s, it, v.urgency, v.priority, v.reasons,
                                 sketch(emb[i])))
        return out

    # ------------------------------------------------------------------ the worker's two stages
    def prepare(self, mentions: Sequence[pb.Mention], incident_ids: Sequence[str] | None = None,
                signals: Sequence[Signals] | None = None) -> PreparedBatch:
        """Everything that needs only the texts: signals (from the mentions unless given), token ids, length
        buckets, language ID."""
        started = time.perf_counter()
        mentions = list(mentions)
        ids = list(incident_ids) if incident_ids else [""] * len(mentions)
        texts = [m.text for m in mentions]
        tokens = self.encoder.tokenize(texts, prefix=EMBED_PREFIX, max_length=self.max_length) if texts else []
        return PreparedBatch(
            mentions=mentions,
            signals=list(signals) if signals is not None else
            [Signals.from_mention(m, ids[i]) for i, m in enumerate(mentions)],
            token_ids=tokens,
            chunks=length_buckets([len(t) for t in tokens], max(1, self.batch_size)),
            languages=self.langid.detect(texts) if texts else [],
            incident_ids=ids,
            prepare_seconds=time.perf_counter() - started,
        )

    def prepare_texts(self, items: Sequence[tuple[str, Signals]]) -> PreparedBatch:
        """`prepare` for plain texts with their signals (`triage score`)."""
        return self.prepare([pb.Mention(text=t) for t, _ in items], signals=[sig for _, sig in items])

    def score_prepared_texts(self, batch: PreparedBatch) -> list[TextScore]:
        """The model on a prepared batch (encoder, heads, priority): one TextScore per text, in order."""
        if not batch.mentions:
            return []
        emb = np.asarray(self.encoder.embed_ids(batch.token_ids, chunks=batch.chunks), dtype=np.float32)
        return self._text_scores(emb, batch.languages, batch.signals)

    def score_prepared(self, batch: PreparedBatch) -> list[pb.ScoredMention]:
        """The model on a prepared batch (encoder, heads, priority): one ScoredMention per mention, in order."""
        if not batch.mentions:
            return []
        started = time.perf_counter()
        scores = self.score_prepared_texts(batch)
        elapsed = time.perf_counter() - started
        classified_at = now_ts()
        out = []
        for m, sc, incident_id in zip(batch.mentions, scores, batch.incident_ids, strict=True):
            sm = pb.ScoredMention(
                language=sc.language, language_confidence=sc.language_confidence,
                urgency=sc.urgency, priority=sc.priority,  # type: ignore[arg-type]
                reasons=sc.reasons, model_version=self.model_version,
                incident_id=incident_id,
                # For crisis detection's emerging-issue clusters only; cleared before `mentions.scored`.
                embedding_sketch=sc.sketch,
            )
            sm.mention.CopyFrom(m)
            sm.sentiment.label = SENTIMENT_ENUM[sc.sentiment_label]
            sm.sentiment.negative = sc.sentiment.get("negative", 0.0)
            sm.sentiment.neutral = sc.sentiment.get("neutral", 0.0)
            sm.sentiment.positive = sc.sentiment.get("positive", 0.0)
            for name, prob in sc.intents.items():
                sm.intents[name] = prob
            sm.timings.classified_at.CopyFrom(classified_at)
            sm.timings.inference_seconds = elapsed
            sm.timings.batch_size = len(batch.mentions)
            out.append(sm)
        return out

    def score_mentions(self, mentions: Sequence[pb.Mention],
                       incident_ids: Sequence[str] | None = None) -> list[pb.ScoredMention]:
        """`prepare` then `score_prepared`, in the calling thread."""
        return self.score_prepared(self.prepare(mentions, incident_ids))

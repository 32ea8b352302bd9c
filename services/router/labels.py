"""Routing labels of a scored mention: what matchers in the routing tree can see (pure)."""

from __future__ import annotations

from services.common.codec import pb
from services.common.vocabulary import INTENT_THRESHOLD, Priority, reach_tier


def labels_of(sm: pb.ScoredMention, intent_threshold: float = INTENT_THRESHOLD) -> dict[str, str]:
    """Labels: priority, intents (comma-joined, sorted), intent (top), sentiment, language, brand,
    brands, source, incident, author_verified, reach."""
    present = sorted(k for k, v in sm.intents.items() if v >= intent_threshold)
    top = max(sm.intents.items(), key=lambda kv: kv[1])[0] if sm.intents else ""
    m = sm.mention
    return {
        "priority": str(Priority.of(int(sm.priority))),
        "intents": ",".join(present),
        "intent": top if top in present else "none",
        "sentiment": pb.Sentiment.Name(sm.sentiment.label).lower() if sm.sentiment.label else "neutral",
        "language": sm.language or "und",
        "brand": m.brands[0] if m.brands else "",
        "brands": ",".join(m.brands),
        "source": pb.Source.Name(m.source).removeprefix("SOURCE_").lower(),
        "incident": sm.incident_id,
        "author_verified": "true" if m.author.verified else "false",
        "reach": reach_tier(m.author.follower_count),
    }

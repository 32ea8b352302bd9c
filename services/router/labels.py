"""Routing labels of a scored mention: what matchers in the routing tree can see (pure)."""

from __future__ import annotations

from services.common.codec import pb
from services.common.vocabulary import INTENT_THRESHOLD, Priority, reach_tier


def labels_of(scored: pb.ScoredMention, intent_threshold: float = INTENT_THRESHOLD) -> dict[str, str]:
    """Labels: priority, intents (comma-joined, sorted), intent (top), sentiment, language, brand,
    brands, source, incident, author_verified, reach."""
    present = sorted(k for k, v in scored.intents.items() if v >= intent_threshold)
    top = max(scored.intents.items(), key=lambda kv: kv[1])[0] if scored.intents else ""
    m = scored.mention
    return {
        "priority": str(Priority.of(int(scored.priority))),
        "intents": ",".join(present),
        "intent": top if top in present else "none",
        "sentiment": pb.Sentiment.Name(scored.sentiment.label).lower() if scored.sentiment.label else "neutral",
        "language": scored.language or "und",
        "brand": m.brands[0] if m.brands else "",
        "brands": ",".join(m.brands),
        "source": pb.Source.Name(m.source).removeprefix("SOURCE_").lower(),
        "incident": scored.incident_id,
        "author_verified": "true" if m.author.verified else "false",
        "reach": reach_tier(m.author.follower_count),
    }

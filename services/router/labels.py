"""Routing labels of a scored mention, and of an incident record: what matchers in the routing tree can see (pure)."""

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


# The incident kinds whose mentions the classifier tags (P1, "part of open incident"): a mention tagged with one
# pages its incident, and so does the incident record itself. A complaint surge tags none (its mentions keep
# their own priority): it is evidence on the console, not a page.
PAGED_INCIDENT_INTENTS: dict[int, str] = {pb.OUTAGE_CLUSTER: "outage_report", pb.VIRAL_COMPLAINT: "complaint",
                                          pb.VOLUME_SPIKE: "none", pb.SAFETY_OR_LEGAL: "safety_or_legal_threat"}


def _most_common(counts: dict[str, int]) -> str:
    return min(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0] if counts else ""


def incident_routing_labels(inc: pb.Incident) -> dict[str, str] | None:
    """The labels a mention tagged with this open incident would carry (priority P1, its brand, the kind's
    intent, the incident's most common language and source) plus `kind`; None when the record pages nobody:
    resolved, a kind whose mentions are never tagged, or no mention counted (nothing to page about).

    Example:

        labels = incident_routing_labels(incident)   # {"priority": "P1", "brand": "acme", "incident": ...}
        routes = tree.match(labels, now) if labels is not None else []
    """
    intent = PAGED_INCIDENT_INTENTS.get(int(inc.kind))
    if intent is None or inc.state == pb.RESOLVED or inc.mention_count <= 0:
        return None
    return {
        "priority": "P1",
        "intents": "" if intent == "none" else intent,
        "intent": intent,
        "sentiment": "negative",
        "language": _most_common(dict(inc.evidence.languages)) or "und",
        "brand": inc.brand,
        "brands": inc.brand,
        "source": _most_common(dict(inc.evidence.sources)),
        "incident": inc.id,
        "kind": pb.IncidentKind.Name(inc.kind).lower(),
    }

"""Urgency, priority P1..P4 and human-readable reasons from model scores and signals (pure).

The model says *what* a post is (sentiment, intents); this policy says *how
soon* a human must look at it, using who posted it and how far it spreads.
Every number here is a documented default of `PriorityPolicy` (pass another policy to
`decide`/`Scorer` to change it); the intent threshold and the reach tiers are shared with the
router's labels (`services/common/vocabulary.py`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from services.common.vocabulary import INTENT_THRESHOLD, LARGE_REACH, MEDIUM_REACH

INTENTS: tuple[str, ...] = ("complaint", "question", "outage_report", "safety_or_legal_threat", "praise", "spam")


@dataclass(frozen=True)
class Signals:
    """What is known about a mention besides its text."""

    followers: int = 0
    verified: bool = False
    likes: int = 0
    reposts: int = 0
    replies: int = 0
    quotes: int = 0
    incident_id: str = ""

    @classmethod
    def from_mention(cls, mention: Any, incident_id: str = "") -> Signals:
        """The signals of a `pb.Mention`: author reach and engagement counters."""
        a, e = mention.author, mention.engagement
        return cls(followers=a.follower_count, verified=a.verified, likes=e.likes, reposts=e.reposts,
                   replies=e.replies, quotes=e.quotes, incident_id=incident_id)


@dataclass(frozen=True)
class PriorityPolicy:
    intent_threshold: float = INTENT_THRESHOLD  # an intent "is present" at or above this probability
    safety_page_threshold: float = 0.6     # safety/legal threat this likely pages (P1)
    negative_threshold: float = 0.5
    high_reach_followers: int = LARGE_REACH     # author reach that turns a negative post into P1
    notable_reach_followers: int = MEDIUM_REACH  # reach that raises a complaint to P2
    viral_engagement: int = 1_000          # reposts+quotes+replies+likes/10 that makes a post viral
    p1_urgency: float = 0.85
    p2_urgency: float = 0.55
    p3_urgency: float = 0.2
    respond_intents: tuple[str, ...] = field(
        default=("complaint", "question", "outage_report", "safety_or_legal_threat", "praise")
    )


@dataclass(frozen=True)
class PriorityVerdict:
    """What `decide` concludes for one mention (crisis detection has its own `crisis.windows.Verdict`)."""

    urgency: float
    priority: int  # 1..4
    reasons: list[str]


def _reach_label(followers: int) -> str:
    if followers >= 1_000_000:
        return f"{followers / 1_000_000:.1f}M"
    if followers >= 1_000:
        return f"{followers / 1_000:.0f}k"
    return str(followers)


def engagement_score(s: Signals) -> float:
    """Weighted engagement: a repost or quote spreads a post further than a like."""
    return s.reposts + s.quotes + 0.5 * s.replies + 0.1 * s.likes


def decide(
    negative: float,
    positive: float,
    intents: dict[str, float],
    signals: Signals,
    policy: PriorityPolicy = PriorityPolicy(),
) -> PriorityVerdict:
    """Combine model probabilities and signals into urgency (0..1), priority and reasons."""
    p = {name: float(intents.get(name, 0.0)) for name in INTENTS}
    present = {k for k, v in p.items() if v >= policy.intent_threshold}
    reasons: list[str] = []

    # Base urgency: the most urgent thing the post says, scaled by how sure the model is.
    base = max(
        p["safety_or_legal_threat"] * 0.95,
        p["outage_report"] * 0.75,
        p["complaint"] * (0.35 + 0.35 * negative),
        p["question"] * 0.35,
        p["praise"] * 0.25,
        negative * 0.3,
    )
    for name in ("safety_or_legal_threat", "outage_report", "complaint", "question", "praise"):
        if name in present:
            reasons.append(f"{name.replace('_', ' ')} {p[name]:.2f}")
    if negative >= policy.negative_threshold:
        reasons.append(f"negative sentiment {negative:.2f}")

    # Amplifiers: reach and spread make a negative post matter more.
    reach = min(1.0, math.log10(1 + signals.followers) / 6.0)  # 1M followers -> 1.0
    eng = engagement_score(signals)
    spread = min(1.0, math.log10(1 + eng) / math.log10(1 + policy.viral_engagement))
    amplifier = 0.25 * reach + 0.25 * spread + (0.05 if signals.verified else 0.0)
    concerning = negative >= policy.negative_threshold or bool(
        present & {"complaint", "outage_report", "safety_or_legal_threat"}
    )
    urgency = base + (amplifier * (1 - base) if concerning else 0.0)
    if signals.followers >= policy.notable_reach_followers:
        reasons.append(f"author reach {_reach_label(signals.followers)}" + (" (verified)" if signals.verified else ""))
    if eng >= policy.viral_engagement / 10:
        reasons.append(f"engagement {int(eng)}")

    # Spam only wins when it is the model's strongest reading: a post that is more likely a
    # question or praise than spam still deserves an answer.
    spam = (p["spam"] >= policy.intent_threshold
            and p["spam"] >= max(p[k] for k in ("complaint", "question", "praise"))
            and not present & {"complaint", "outage_report", "safety_or_legal_threat"})
    if spam:
        urgency *= 0.2
        reasons.insert(0, f"spam {p['spam']:.2f}")

    # An outage report (calibrated: "present" is more likely than not, with at most 5% of ordinary complaints
    # passing it) is someone who cannot use the service: it is answered within the hour (at least P2), however
    # small the account. The blend alone needed p >= 0.73 for that, and a clear report that the model reads
    # at 0.65 (a Greek "the app doesn't work, I can't log in") sat in the normal queue. (Never spam: spam
    # requires that no outage report is present.)
    if "outage_report" in present:
        urgency = max(urgency, policy.p2_urgency)

    # Hard P1 rules: these page whatever the blended score says.
    if signals.incident_id:
        urgency = max(urgency, 0.9)
        reasons.insert(0, f"part of open incident {signals.incident_id}")
    if p["safety_or_legal_threat"] >= policy.safety_page_threshold:
        urgency = max(urgency, 0.9)
    if concerning and negative >= policy.negative_threshold and (
        signals.followers >= policy.high_reach_followers or eng >= policy.viral_engagement
    ):
        urgency = max(urgency, 0.88)
        reasons.append("negative post with high reach or spread")

    urgency = min(1.0, max(0.0, urgency))
    if urgency >= policy.p1_urgency:
        priority = 1
    elif urgency >= policy.p2_urgency:
        priority = 2
    elif urgency >= policy.p3_urgency and (present & set(policy.respond_intents)) and not spam:
        priority = 3
    else:
        priority = 4
    if priority == 4 and not reasons:
        reasons.append("no response needed")
    return PriorityVerdict(urgency=round(urgency, 4), priority=priority, reasons=reasons[:6])

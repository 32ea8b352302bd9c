"""The console's view model: incidents, queues, pages and feedback folded from Kafka records.

Everything here is plain data and functions over decoded protobuf messages, so it is tested without
a broker. Folding is idempotent: the console re-reads every topic from the beginning on start, and a
record seen twice (a rebalance, a local apply followed by the consumed copy) changes nothing.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Generic, TypeVar

from google.protobuf.message import Message

from services.common import codec, topics
from services.common.alerting.silence_feed import SilenceFeed
from services.common.alerting.silences import Silence
from services.common.codec import pb
from services.common.deletions import author_keys, is_deletion
from services.common.timeutil import epoch
from services.common.vocabulary import INTENT_THRESHOLD, reach_tier
from services.console.claims import ClaimBook
from services.console.presence import PresenceBoard

PRIORITY_RANK = {"P1": 1, "P2": 2, "P3": 3, "P4": 4}
RESPONSE_STATES = {pb.RESPONDED: "responded", pb.RESOLVED_NO_REPLY: "resolved_no_reply"}
SENTIMENTS = ("negative", "neutral", "positive")
T = TypeVar("T")


@dataclass
class QueueItem:
    """One mention in an inbox queue, as an agent sees it."""

    mention_id: str
    queue: str
    priority: str
    intent: str
    intents: dict[str, float]
    language: str
    sentiment: str
    reach: int
    author: str
    text: str
    url: str
    reasons: list[str]
    brand: str
    incident_id: str
    model_version: str
    created_at: float
    routed_at: float
    respond_by: float  # 0 = no deadline (P4)
    state: str = "open"  # open | responded | resolved_no_reply
    responder: str = ""
    responded_at: float = 0.0
    author_id: str = ""

    def breached(self, now: float) -> bool:
        return self.state == "open" and self.respond_by > 0 and now > self.respond_by

    def to_json(self, now: float) -> dict[str, Any]:
        out = asdict(self)
        out["breached"] = self.breached(now)
        out["seconds_left"] = round(self.respond_by - now, 1) if self.respond_by else None
        return out


@dataclass
class PageView:
    incident_id: str
    receiver: str
    action: str
    delivered: bool
    detail: str
    at: float
    state: str = ""   # delivered / retrying / dead_lettered (the router's delivery state of this attempt)

    @property
    def status(self) -> str:
        return (self.state or ("delivered" if self.delivered else "failed")).replace("_", "-")


@dataclass
class IncidentView:
    id: str
    brand: str
    kind: str
    state: str
    severity: float
    opened_at: float
    updated_at: float
    resolved_at: float
    mention_count: int
    top_terms: list[str]
    languages: dict[str, int]
    sources: dict[str, int]
    sample_mention_ids: list[str]
    sample_urls: list[str]
    reasons: list[str]
    # (updated_at, mention_count) of every version of the incident the console saw.
    history: list[tuple[float, int]] = field(default_factory=list)

    @property
    def is_open(self) -> bool:
        return self.state != "RESOLVED"

    def age(self, now: float) -> float:
        return max(0.0, (self.resolved_at or now) - self.opened_at) if self.opened_at else 0.0


def _top_intent(intents: dict[str, float]) -> str:
    return max(intents.items(), key=lambda kv: (kv[1], kv[0]))[0] if intents else ""


def _sentiment(score: Any) -> str:
    if score.label == pb.SENTIMENT_UNSPECIFIED:
        return "neutral"
    return str(pb.Sentiment.Name(score.label)).lower()


def incident_labels(inc: IncidentView) -> dict[str, str]:
    """The routing labels (services/router/labels.py) every mention of the incident carries."""
    return {"brand": inc.brand, "incident": inc.id}


def queue_item(routed: Any, queue: str) -> QueueItem:
    scored = routed.scored
    m = scored.mention
    intents = {k: round(float(v), 3) for k, v in scored.intents.items()}
    return QueueItem(
        mention_id=m.mention_id or codec.mention_id(m.source, m.external_id),
        queue=queue,
        priority=pb.Priority.Name(scored.priority) if scored.priority else "P4",
        intent=_top_intent(intents),
        intents=intents,
        language=scored.language or m.language_hint,
        sentiment=_sentiment(scored.sentiment),
        reach=int(m.author.follower_count),
        author=m.author.handle,
        author_id=m.author.id,
        text=m.text,
        url=m.url,
        reasons=list(scored.reasons),
        brand=m.brands[0] if m.brands else "",
        incident_id=scored.incident_id,
        model_version=scored.model_version,
        created_at=epoch(m.created_at) or epoch(m.received_at) or epoch(routed.routed_at),
        routed_at=epoch(routed.routed_at),
        respond_by=epoch(routed.respond_by),
    )


def incident_view(inc: Any) -> IncidentView:
    ev = inc.evidence
    return IncidentView(
        id=inc.id, brand=inc.brand, kind=pb.IncidentKind.Name(inc.kind), state=pb.IncidentState.Name(inc.state),
        severity=round(float(inc.severity), 3), opened_at=epoch(inc.opened_at), updated_at=epoch(inc.updated_at),
        resolved_at=epoch(inc.resolved_at), mention_count=int(inc.mention_count), top_terms=list(ev.top_terms),
        languages=dict(ev.languages), sources=dict(ev.sources), sample_mention_ids=list(ev.sample_mention_ids),
        sample_urls=list(ev.sample_urls), reasons=list(inc.reasons),
    )


def _drop_samples(inc: IncidentView, mention_ids: set[str]) -> None:
    """Deleted posts out of an incident's samples (and their URLs: the post id is the last path segment)."""
    shown = [m for m in inc.sample_mention_ids if m in mention_ids]
    if not shown:
        return
    posts = {m.split(":", 1)[-1] for m in shown}
    inc.sample_mention_ids = [m for m in inc.sample_mention_ids if m not in mention_ids]
    inc.sample_urls = [u for u in inc.sample_urls if u.rstrip("/").rsplit("/", 1)[-1] not in posts]


TRIAGE_ACTION = "triage"  # PageRecord.action of the router's records about a hold (router/triage_stage.py)
TRIAGE_DONE = ("paged_now", "dismissed", "timed_out", "resolved")  # what a hold ends as (PageRecord.state)


@dataclass
class TriageEntry:
    """An incident group of a `triage: true` route, as the router's "triage" records on `pages` tell it (held,
    then paged_now / dismissed / timed_out / resolved), with the latest decision a person made on the
    console (`triage.decisions`) that the router may not have answered yet."""

    group_key: str
    incident_id: str          # the group's id: the classifier's incident id, or the router's own for the group
    receiver: str
    labels: dict[str, str]
    held_at: float
    hold_until: float         # when it pages by itself unless decided
    detail: str
    state: str = "held"       # the router's latest: held, paged_now, dismissed, timed_out, resolved
    updated_at: float = 0.0
    decision: str = ""        # page_now / dismissed, from the decisions topic (or this console, at once)
    decided_by: str = ""
    decided_at: float = 0.0

    @property
    def pending(self) -> bool:
        """Waiting for a person: held, and nobody decided yet."""
        return self.state == "held" and not self.decision

    @property
    def dismissed(self) -> bool:
        return self.state == "dismissed" or (self.state == "held" and self.decision == "dismissed")

    @property
    def status(self) -> str:
        if self.state == "held" and self.decision:
            return f"{self.decision.replace('_', ' ')} by {self.decided_by}, waiting for the router"
        by = f" by {self.decided_by}" if self.decided_by else ""
        return {"held": "held", "paged_now": f"paged: page now{by}", "dismissed": f"dismissed{by}",
                "timed_out": "paged by itself (not handled in time)",
                "resolved": "incident ended while held"}.get(self.state, self.state)

    def to_json(self, now: float) -> dict[str, Any]:
        out = asdict(self)
        out["pending"], out["status"] = self.pending, self.status
        out["seconds_left"] = round(self.hold_until - now, 1) if self.state == "held" else None
        return out


class ConsoleView:
    """The console's whole state, rebuilt from the topics on every start."""

    def __init__(self, claim_ttl: float = 15 * 60.0, presence_expiry: float = 30.0) -> None:
        self.incidents: dict[str, IncidentView] = {}
        self.queues: dict[str, dict[str, QueueItem]] = {}
        self.pages: dict[str, list[PageView]] = defaultdict(list)
        self._page_keys: set[tuple[str, str, str, float]] = set()
        # Responses may be read before the item they answer (different topics): keep them all.
        self.responses: dict[tuple[str, str], tuple[str, str, float]] = {}
        self.feedback: dict[str, dict[str, Any]] = {}  # mention id -> latest correction
        self.page_feedback: dict[str, dict[str, Any]] = {}  # incident id -> latest "wrong page" mark
        self.excluded: set[tuple[str, str]] = set()  # (incident id, mention id) a responder said do not belong
        self.silences = SilenceFeed()  # the router's own store of the `silences` topic
        self.claims = ClaimBook(claim_ttl)  # who is on which item (the `claims` topic)
        self.presence = PresenceBoard(presence_expiry)  # who looks at what now (`triage.console.presence`)
        self.triage: dict[str, TriageEntry] = {}  # group key -> the router's view of a triage hold
        # group key -> (decision, by, at): the latest of `triage.decisions`, read maybe before its hold's record
        self.triage_decisions: dict[str, tuple[str, str, float]] = {}
        # Deleted mention ids, and deleted authors' keys (services/common/deletions.py) -> when: what no view
        # may show again, whatever order the topics are read in.
        self.deleted_ids: set[str] = set()
        self.deleted_authors: dict[str, float] = {}
        self.records = 0

    # ---- folding -----------------------------------------------------------------------------------------
    def apply_record(self, topic: str, key: bytes | None, value: bytes | None,
                     headers: Iterable[tuple[str, bytes]] | None = None) -> None:
        """Fold one consumed record; a tombstone on `incidents` removes that incident, a `MentionDeleted` notice
        on a queue topic removes the mention (or its author's mentions) from every view."""
        self.records += 1
        if value is not None and is_deletion(headers):
            self.apply_deletion(codec.decode(value, pb.MentionDeleted))
            return
        if topic == topics.SILENCES:  # tombstones included; a bad record raises ValueError with the reason
            self.silences.apply_record(key, value)
            return
        if value is None:
            if topic == topics.INCIDENTS and key:
                self.incidents.pop(key.decode(errors="replace"), None)
            elif topic == topics.CLAIMS and key:
                self.claims.forget(key.decode(errors="replace"))
            return
        msg: Message = codec.decode(value, codec.type_for_topic(topic))
        if topic == topics.INCIDENTS:
            self.apply_incident(msg)
        elif topic.startswith(topics.QUEUE_PREFIX):
            self.apply_routed(msg, topic.removeprefix(topics.QUEUE_PREFIX))
        elif topic == topics.PAGES:
            self.apply_page(msg)
        elif topic == topics.RESPONSES:
            self.apply_response(msg)
        elif topic == topics.FEEDBACK:
            self.apply_feedback(msg)
        elif topic == topics.CLAIMS:
            self.apply_claim(msg)
        elif topic == topics.PRESENCE:
            self.presence.apply(msg)
        elif topic == topics.TRIAGE_DECISIONS:
            self.apply_triage_decision(msg)

    def _deleted(self, item: QueueItem) -> bool:
        if item.mention_id in self.deleted_ids:
            return True
        source_name = item.mention_id.split(":", 1)[0]
        source = pb.Source.Value(f"SOURCE_{source_name.upper()}") if f"SOURCE_{source_name.upper()}" \
            in pb.Source.keys() else pb.SOURCE_UNSPECIFIED
        return any(self.deleted_authors.get(k, -1.0) >= item.routed_at
                   for k in author_keys(source, item.author, item.author_id))

    def apply_deletion(self, deleted: Any) -> None:
        """A deleted post (or every post of a deleted author) leaves the queues, the incidents' samples and
        the corrections shown; remembered, so a copy read later (another topic) is not shown either."""
        if deleted.mention_id:
            self.deleted_ids.add(deleted.mention_id)
        else:
            at = epoch(deleted.received_at) or float("inf")
            for k in author_keys(deleted.source, deleted.author_handle, deleted.author_id):
                self.deleted_authors[k] = max(at, self.deleted_authors.get(k, 0.0))
        gone: set[str] = set()
        for items in self.queues.values():
            for mention_id in [k for k, item in items.items() if self._deleted(item)]:
                gone.add(mention_id)
                del items[mention_id]
        self.deleted_ids |= gone  # an author's posts, by id: their corrections read later stay hidden too
        gone = set(self.deleted_ids)
        for inc in self.incidents.values():
            _drop_samples(inc, gone)
        for mention_id in gone:
            self.feedback.pop(mention_id, None)

    def apply_incident(self, inc: Any) -> None:
        view = incident_view(inc)
        _drop_samples(view, self.deleted_ids)
        old = self.incidents.get(inc.id)
        history = old.history if old else []
        point = (view.updated_at or view.opened_at, view.mention_count)
        if point not in history:
            history.append(point)
            history.sort()
        view.history = history
        if old and (old.resolved_at, old.updated_at) > (view.resolved_at, view.updated_at):
            old.history = history  # an older version read late (another partition order): keep the newer state
            return
        self.incidents[inc.id] = view

    def apply_routed(self, routed: Any, queue: str | None = None) -> None:
        name = queue or routed.queue
        item = queue_item(routed, name)
        if self._deleted(item):
            return
        items = self.queues.setdefault(name, {})
        old = items.get(item.mention_id)
        if old is not None and old.state != "open":
            item.state, item.responder, item.responded_at = old.state, old.responder, old.responded_at
        if (item.incident_id, item.mention_id) in self.excluded:
            item.incident_id = ""
        done = self.responses.get((name, item.mention_id)) or self.responses.get(("", item.mention_id))
        if done:
            item.state, item.responder, item.responded_at = done
        items[item.mention_id] = item

    def apply_page(self, page: Any) -> None:
        at = epoch(page.at)
        key = (page.incident_id, page.receiver, page.action, at)
        if key in self._page_keys:
            return
        self._page_keys.add(key)
        if page.action == TRIAGE_ACTION and page.group_key:
            self._apply_triage_record(page, at)
        self.pages[page.incident_id].append(PageView(page.incident_id, page.receiver, page.action,
                                                     bool(page.delivered), page.detail, at, page.state))
        self.pages[page.incident_id].sort(key=lambda p: p.at)

    def apply_response(self, ev: Any) -> None:
        state = RESPONSE_STATES.get(ev.kind)
        if state is None:
            return
        done = (state, ev.responder, epoch(ev.at))
        self.responses[(ev.queue, ev.mention_id)] = done
        queues = [ev.queue] if ev.queue else list(self.queues)
        for name in queues:
            item = self.queues.get(name, {}).get(ev.mention_id)
            if item is not None:
                item.state, item.responder, item.responded_at = done

    def apply_feedback(self, fb: Any) -> None:
        if fb.mention_id in self.deleted_ids:
            return  # a correction of a deleted post, read after its deletion (another topic): not shown
        if not fb.mention_id:  # about an incident's page, not one mention (actions.page_feedback)
            if fb.incident_id:
                self.page_feedback[fb.incident_id] = {
                    "incident_id": fb.incident_id, "brand": fb.brand, "responder": fb.responder,
                    "corrected_priority": pb.Priority.Name(fb.corrected_priority) if fb.corrected_priority else "",
                    "comment": fb.comment, "at": epoch(fb.at)}
            return
        if fb.not_in_incident:
            self.excluded.add((fb.not_in_incident, fb.mention_id))
            for items in self.queues.values():
                item = items.get(fb.mention_id)
                if item is not None and item.incident_id == fb.not_in_incident:
                    item.incident_id = ""
            if not fb.corrected_priority and not fb.corrected_intent:
                return  # not a correction of the classifier: not "marked wrong"
        self.feedback[fb.mention_id] = {
            "mention_id": fb.mention_id, "queue": fb.queue, "brand": fb.brand,
            "original_priority": pb.Priority.Name(fb.original_priority) if fb.original_priority else "",
            "corrected_priority": pb.Priority.Name(fb.corrected_priority) if fb.corrected_priority else "",
            "original_intent": fb.original_intent, "corrected_intent": fb.corrected_intent,
            "responder": fb.responder, "comment": fb.comment, "at": epoch(fb.at),
        }

    def apply_claim(self, msg: Any) -> None:
        self.claims.apply(msg)

    def _apply_triage_record(self, page: Any, at: float) -> None:
        entry = self.triage.get(page.group_key)
        if entry is None:
            entry = self.triage[page.group_key] = TriageEntry(
                group_key=page.group_key, incident_id=page.incident_id, receiver=page.receiver,
                labels=dict(page.labels), held_at=at, hold_until=epoch(page.hold_until), detail=page.detail,
                state=page.state, updated_at=at)
        elif page.state in TRIAGE_DONE or entry.state not in TRIAGE_DONE:
            entry.state, entry.updated_at = page.state, max(entry.updated_at, at)
            if page.state == "held":
                entry.held_at, entry.detail = at, page.detail
        decided = self.triage_decisions.get(page.group_key)
        if decided is not None:
            entry.decision, entry.decided_by, entry.decided_at = decided

    def apply_triage_decision(self, msg: Any) -> None:
        """A page now / dismiss from a console (this one at once, any replica's from `triage.decisions`)."""
        decided = (str(msg.decision), str(msg.responder), epoch(msg.at))
        self.triage_decisions[msg.group_key] = decided
        entry = self.triage.get(msg.group_key)
        if entry is not None:
            entry.decision, entry.decided_by, entry.decided_at = decided

    def triage_list(self, now: float, recent_seconds: float = 24 * 3600.0) -> tuple[list[TriageEntry],
                                                                                   list[TriageEntry]]:
        """(groups waiting for a person, the soonest to page by itself first; the others of the last
        `recent_seconds`, newest first)."""
        pending = sorted((e for e in self.triage.values() if e.pending), key=lambda e: (e.hold_until, e.group_key))
        recent = sorted((e for e in self.triage.values()
                         if not e.pending and now - max(e.updated_at, e.decided_at) <= recent_seconds),
                        key=lambda e: -max(e.updated_at, e.decided_at))
        return pending, recent

    def apply_silence(self, msg: Any) -> Silence:
        return self.silences.apply(msg)

    # ---- reading -----------------------------------------------------------------------------------------
    def silences_for(self, inc: IncidentView, now: float) -> list[Silence]:
        """Active and pending silences that mute this incident's pages: those made from its page, and
        those whose matchers name only its brand and id labels and hold for them. (A silence on other
        labels, e.g. intent, mutes some of its mentions: /api/silences lists every one.)"""
        labels = incident_labels(inc)
        out = [s for s in self.silences.silences.values() if s.state(now) != "expired"
               and (s.incident_id == inc.id
                    or (all(m.name in labels for m in s.matchers) and all(m.matches(labels) for m in s.matchers)))]
        return sorted(out, key=lambda s: (s.ends_at, s.id))

    def find_item(self, queue: str, mention_id: str) -> QueueItem | None:
        return self.queues.get(queue, {}).get(mention_id)

    def find_mention(self, mention_id: str) -> QueueItem | None:
        """The item of a mention in whichever queue holds it (evidence samples name mentions, not queues)."""
        for items in self.queues.values():
            if mention_id in items:
                return items[mention_id]
        return None

    def incident_list(self, now: float, recent_seconds: float) -> list[IncidentView]:
        """Open incidents (most severe first), then those resolved within `recent_seconds` (newest first)."""
        open_ = sorted((i for i in self.incidents.values() if i.is_open), key=lambda i: (-i.severity, -i.opened_at))
        done = sorted((i for i in self.incidents.values() if not i.is_open and now - i.resolved_at <= recent_seconds),
                      key=lambda i: -i.resolved_at)
        return open_ + done

    def queue_items(self, queue: str, include_done: bool = False, limit: int | None = None) -> list[QueueItem]:
        """Open items by priority, then the nearest deadline first (no deadline last), then oldest first."""
        items = [i for i in self.queues.get(queue, {}).values() if include_done or i.state == "open"]
        items.sort(key=lambda i: (i.state != "open", PRIORITY_RANK.get(i.priority, 9),
                                  i.respond_by or math.inf, i.routed_at))
        return items[:limit] if limit else items

    def incident_items(self, incident_id: str) -> list[QueueItem]:
        seen: dict[str, QueueItem] = {}
        for items in self.queues.values():
            for item in items.values():
                if item.incident_id == incident_id:
                    seen.setdefault(item.mention_id, item)
        return sorted(seen.values(), key=lambda i: i.created_at)

    def mentions_per_minute(self, incident_id: str) -> list[tuple[float, dict[str, int]]]:
        """Mentions of an incident per minute of posting, by sentiment, with empty minutes filled in."""
        counts: dict[float, Counter[str]] = defaultdict(Counter)
        for item in self.incident_items(incident_id):
            counts[math.floor(item.created_at / 60) * 60][item.sentiment] += 1
        if not counts:
            return []
        first, last = min(counts), max(counts)
        minutes = [first + 60 * k for k in range(int((last - first) // 60) + 1)][-240:]
        return [(m, {s: counts[m][s] for s in SENTIMENTS}) if m in counts else (m, dict.fromkeys(SENTIMENTS, 0))
                for m in minutes]

    def open_counts(self) -> dict[str, int]:
        return {q: sum(1 for i in items.values() if i.state == "open") for q, items in self.queues.items()}

    def paged(self, incident_id: str) -> bool:
        """Whether a page about the incident reached a receiver."""
        return any(p.delivered and p.action == "trigger" for p in self.pages.get(incident_id, []))

    def pages_marked_wrong(self) -> dict[str, tuple[int, int]]:
        """Per brand: (paged incidents responders marked as a wrong page, paged incidents seen). An incident
        dismissed in triage counts as a page, a wrong one: the page it would have been was wrong."""
        seen: dict[str, set[str]] = defaultdict(set)
        for inc in self.incidents.values():
            if self.paged(inc.id):
                seen[inc.brand].add(inc.id)
        dismissed = set()
        for e in self.triage.values():
            if e.dismissed:
                held = self.incidents.get(e.incident_id)
                seen[held.brand if held is not None else e.labels.get("brand", "")].add(e.incident_id)
                dismissed.add(e.incident_id)
        return {brand: (sum(1 for i in ids if i in self.page_feedback or i in dismissed), len(ids))
                for brand, ids in seen.items()}

    def marked_wrong(self) -> dict[str, tuple[int, int]]:
        """Per brand: (P1/P2 items marked wrong, P1/P2 items seen), the console's live precision."""
        seen: dict[str, set[str]] = defaultdict(set)
        for items in self.queues.values():
            for item in items.values():
                if item.priority in ("P1", "P2"):
                    seen[item.brand].add(item.mention_id)
        out: dict[str, tuple[int, int]] = {}
        for brand, ids in seen.items():
            wrong = sum(1 for mid in ids if mid in self.feedback)
            out[brand] = (wrong, len(ids))
        return out


# ---- working a long queue: filters, search, counts per filter, paging, incident groups -------------------------
FACETS = ("brand", "language", "priority", "intent", "incident")


def _facet_value(item: QueueItem, facet: str) -> str:
    return item.incident_id if facet == "incident" else str(getattr(item, facet))


@dataclass(frozen=True)
class QueueFilter:
    """What a responder narrowed a queue to: exact facet values, breached only, and a free-text search
    (case-insensitive, in the text, the author's handle and the mention id). Empty fields match all."""

    brand: str = ""
    language: str = ""
    priority: str = ""
    intent: str = ""
    incident: str = ""
    breached: bool = False
    search: str = ""

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> QueueFilter:
        """From a page's or the API's query string (`q` is the search); a bad value raises ValueError."""
        values = {f: query.get(f, "").strip()[:200] for f in FACETS}
        if values["priority"] and values["priority"] not in PRIORITY_RANK:
            raise ValueError(f"priority must be one of {sorted(PRIORITY_RANK)}, not {values['priority']!r}")
        breached = query.get("breached", "").strip().lower()
        if breached not in ("", "0", "1", "true", "false", "on"):
            raise ValueError(f"breached must be 1 or 0, not {breached!r}")
        return cls(**values, breached=breached in ("1", "true", "on"), search=query.get("q", "").strip()[:200])

    @property
    def active(self) -> bool:
        return self != QueueFilter()

    def matches(self, item: QueueItem, now: float, ignore: str = "") -> bool:
        """Whether the item passes every filter but `ignore` (a facet: its counts are of the other filters)."""
        for facet in FACETS:
            wanted = getattr(self, facet)
            if wanted and facet != ignore and _facet_value(item, facet) != wanted:
                return False
        if self.breached and ignore != "breached" and not item.breached(now):
            return False
        if self.search:
            needle = self.search.casefold()
            if not any(needle in s.casefold() for s in (item.text, item.author, item.mention_id)):
                return False
        return True

    def params(self, **changes: str | bool) -> dict[str, str]:
        """The query parameters of this filter with `changes` applied (a facet set to "" is dropped)."""
        values: dict[str, str | bool] = {f: getattr(self, f) for f in FACETS}
        values.update(breached=self.breached, q=self.search)
        values.update(changes)
        return {k: ("1" if v is True else str(v)) for k, v in values.items() if v}


def filter_items(items: Iterable[QueueItem], flt: QueueFilter, now: float) -> list[QueueItem]:
    return [i for i in items if flt.matches(i, now)]


def facet_counts(items: Iterable[QueueItem], flt: QueueFilter, now: float) -> dict[str, dict[str, int]]:
    """Per facet, how many items each value would leave under the other filters (a faceted search's
    counts: choosing a value shows exactly that many), most first; `breached` counts the breached ones."""
    items = list(items)
    out: dict[str, dict[str, int]] = {}
    for facet in FACETS:
        counts = Counter(_facet_value(i, facet) for i in items if flt.matches(i, now, ignore=facet))
        counts.pop("", None)
        out[facet] = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    out["breached"] = {"1": sum(1 for i in items if i.breached(now) and flt.matches(i, now, ignore="breached"))}
    return out


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a longer list: `entries` are those of page `number` (1-based) of `pages`."""

    entries: list[T]
    number: int
    pages: int
    total: int
    per_page: int

    @property
    def has_previous(self) -> bool:
        return self.number > 1

    @property
    def has_next(self) -> bool:
        return self.number < self.pages


def paginate(entries: Sequence[T], number: int, per_page: int) -> Page[T]:
    """Page `number` of `entries`; a number past the end gives the last page, below 1 the first."""
    per_page = max(1, per_page)
    pages = max(1, math.ceil(len(entries) / per_page))
    number = min(max(1, number), pages)
    start = (number - 1) * per_page
    return Page(list(entries[start:start + per_page]), number, pages, len(entries), per_page)


def page_number(query: Mapping[str, str], name: str = "page", default: int = 1) -> int:
    raw = query.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{name} must be a whole number from 1, not {raw!r}")
    return int(raw)


@dataclass(frozen=True)
class IncidentGroup:
    """The open items of one incident in a list, worked as one: how many, in which languages, the newest."""

    incident_id: str
    items: list[QueueItem]

    @property
    def count(self) -> int:
        return len(self.items)

    @property
    def brand(self) -> str:
        return self.items[0].brand if self.items else ""

    @property
    def languages(self) -> dict[str, int]:
        counts = Counter(i.language or "?" for i in self.items)
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def newest(self, n: int = 3) -> list[QueueItem]:
        return sorted(self.items, key=lambda i: (-i.created_at, i.mention_id))[:n]

    def to_json(self) -> dict[str, Any]:
        return {"incident_id": self.incident_id, "brand": self.brand, "count": self.count,
                "languages": self.languages, "newest": [i.mention_id for i in self.newest()],
                "mention_ids": [i.mention_id for i in self.items]}


def group_by_incident(items: Sequence[QueueItem], min_size: int = 2) -> list[QueueItem | IncidentGroup]:
    """The items in their order, with those of one incident (at least `min_size` of them) folded into one
    IncidentGroup where the incident's first item stood."""
    by_incident: dict[str, list[QueueItem]] = defaultdict(list)
    for item in items:
        if item.incident_id:
            by_incident[item.incident_id].append(item)
    out: list[QueueItem | IncidentGroup] = []
    placed: set[str] = set()
    for item in items:
        group = by_incident.get(item.incident_id) if item.incident_id else None
        if group is None or len(group) < min_size:
            out.append(item)
        elif item.incident_id not in placed:
            placed.add(item.incident_id)
            out.append(IncidentGroup(item.incident_id, group))
    return out


# ---- the Silences page: every silence, and what it mutes now --------------------------------------------------
SILENCE_STATES = ("active", "pending", "expired")
# The routing labels (services/router/labels.py) the console can rebuild from a queue item; a silence on
# another label (author_verified, brands) cannot be evaluated here.
ITEM_LABELS = frozenset({"priority", "intent", "intents", "sentiment", "language", "brand", "source", "incident",
                         "reach"})


def item_labels(item: QueueItem) -> dict[str, str]:
    """The routing labels of a queue item, as the router gave them to its mention."""
    present = sorted(k for k, v in item.intents.items() if v >= INTENT_THRESHOLD)
    return {"priority": item.priority, "intents": ",".join(present),
            "intent": item.intent if item.intent in present else "none", "sentiment": item.sentiment,
            "language": item.language or "und", "brand": item.brand, "source": item.mention_id.partition(":")[0],
            "incident": item.incident_id, "reach": reach_tier(item.reach)}


@dataclass(frozen=True)
class SilenceReach:
    """What a silence mutes now: the open incidents whose pages it holds back and the open items it matches
    (None when its matchers name a label the console does not know)."""

    silence: Silence
    state: str
    incidents: list[str]
    items: int | None


def silences_overview(view: ConsoleView, now: float, state: str = "") -> list[SilenceReach]:
    """Every silence (or those in `state`): active first (soonest end first), then pending, then expired
    (most recently ended first), each with what it mutes now (nothing, unless active)."""
    open_items = [i for items in view.queues.values() for i in items.values() if i.state == "open"]
    out = []
    for s in view.silences.silences.values():
        st = s.state(now)
        if state and st != state:
            continue
        incidents: list[str] = []
        items: int | None = 0
        if st == "active":
            incidents = sorted(i.id for i in view.incidents.values() if i.is_open and (
                s.incident_id == i.id or all(m.name in ("brand", "incident") and m.matches(incident_labels(i))
                                             for m in s.matchers)))
            known = all(m.name in ITEM_LABELS for m in s.matchers)
            items = sum(1 for i in open_items if s.silences(item_labels(i), now)) if known else None
        out.append(SilenceReach(s, st, incidents, items))
    order = {st: k for k, st in enumerate(SILENCE_STATES)}
    return sorted(out, key=lambda r: (order[r.state], -r.silence.ends_at if r.state == "expired"
                                      else r.silence.ends_at, r.silence.id))

"""Grouping P1 mentions into incidents and deciding when to page (pure, clock injected).

One `Group` per (receiver, incident): the classifier's incident id when the
mention carries one, else the route's `group_by` labels. The grouper decides,
from the mentions added and the time, which notification is due:

- trigger: once, `group_wait` after the group's first mention;
- update:  at most every `group_interval` while new mentions arrive (count, top
  reasons, sample posts, languages), or after `repeat_interval` of silence while
  the incident is still open;
- resolve: once, when the classifier resolves the incident (RESOLVED on
  `incidents`), or for a group without a classifier incident after
  `quiet_period` without new mentions.

Triage: a group of a route with `triage: true` is *held* from its first mention: no trigger until a
person decides on the console's Triage page (`decide`: "page now" triggers at once, "dismiss" ends
the group without a page), or until `triage_timeout` passes undecided, when it triggers on its own so
nothing is lost:

    held --page now--> trigger (at once)
     |  --dismiss---> resolved, never paged ("the page was wrong")
     +--triage_timeout undecided--> trigger

500 outage posts therefore make 1 trigger, a few updates and 1 resolve. The
state is plain JSON so the worker can persist it and a restart neither
re-pages nor forgets an open incident. A mention reaches its group as a
`PageRequest` (the `triage.router.page-requests` topic carries them, JSON, to
the replica that owns the group).

Delivery is part of the state: a page is only *sent* (`mark_sent`) when the
receiver accepted it. A failed attempt (`mark_failed`) leaves the page due and
records it in the group's `outbox` (action, first failure, attempts, next
attempt time, the reason it failed), so the next attempt waits for its backoff
and a restart resumes it. While a group backs off, updates coalesce (the next attempt carries the
current count) and a wanted resolve replaces a pending update. `give_up`
dead-letters a page only when the incident resolved before its trigger was
ever delivered, or when the page stayed undelivered for the whole budget:

    due --attempt--> delivered (2xx)
     |
     +--failed--> retrying --(backoff; still due)--> attempt again ...
                     |
                     +--(resolved untriggered | budget spent | 4xx)--> dead-lettered
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import Any

from services.common.codec import pb
from services.common.vocabulary import more_urgent
from services.router.sla import SlaItem

MAX_SAMPLES = 5
RESOLVED_RETENTION = 24 * 3600.0  # keep resolved incident groups so late mentions do not re-page
PAGE_TYPE = "triage.router.Page+json"  # DeadLetter.original_type of a failed page (JSON, see page_doc)
TRIAGE_PAGE_NOW, TRIAGE_DISMISS = "page_now", "dismissed"  # Group.triage_decision


@dataclass
class Sample:
    mention_id: str
    text: str
    url: str
    language: str


INCIDENT_SAMPLE = "incident"  # Group.samples entries with {"from": "incident"}: the incident record's (no text)


@dataclass(frozen=True)
class IncidentSummary:
    """What a page request made from the classifier's incident record itself carries (grouping_stage.py
    `incident_requests`): its mention count, reasons, languages and sample posts (ids and URLs: the incident
    record holds no post text). Such a request opens the incident's group when no mention tagged with the
    incident did: a backlog scored before the incident opened tags none of its mentions (issue 24)."""

    mentions: int
    reasons: list[str]
    languages: dict[str, int]
    samples: list[Sample]


@dataclass
class Group:
    key: str
    id: str                       # dedup key / alias / thread id at the receiver
    receiver: str
    route: str
    incident_id: str
    labels: dict[str, str]
    priority: str
    group_wait: float
    group_interval: float
    repeat_interval: float
    quiet_period: float
    first_at: float
    last_at: float
    count: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    languages: dict[str, int] = field(default_factory=dict)
    samples: list[dict[str, str]] = field(default_factory=list)
    triggered_at: float = 0.0
    last_sent_at: float = 0.0
    sent_count: int = 0
    updates_sent: int = 0
    closing: bool = False
    resolved_at: float = 0.0
    thread_ref: str = ""          # receiver-side handle, e.g. the Slack thread's ts
    # The page being delivered after a failed attempt: {"action", "since", "attempts", "next_at", "error"};
    # empty when nothing is pending. `abandoned`: its trigger was dead-lettered, the group pages no more.
    outbox: dict[str, Any] = field(default_factory=dict)
    abandoned: bool = False
    failure_reason: str = ""      # why the last attempt failed (a DeliveryReason); "" once a page got through
    # Triage (module doc): held until `triage_until` (0: not a triage route) unless a person decided first:
    # `triage_decision` is "" (undecided), "page_now" or "dismissed", made by `triage_by`.
    triage_until: float = 0.0
    triage_decision: str = ""
    triage_by: str = ""
    triage_decided_at: float = 0.0
    # What the router last recorded about the hold on `pages` (`triage_transition`: held, paged_now, dismissed,
    # timed_out, resolved), and the chat notice: the Slack receiver it goes to (the route's `triage_notify`),
    # when it was delivered and the attempts so far.
    triage_recorded: str = ""
    triage_notify: str = ""
    triage_noticed_at: float = 0.0
    triage_notice_attempts: int = 0
    # The classifier's own view of its incident (the latest incident record, IncidentSummary): how many mentions
    # it counts and why. `count` is the mentions routed here tagged with the incident, which misses those scored
    # before it opened; a page shows the larger (`mentions`) and, with no mention reasons, the incident's.
    incident_mentions: int = 0
    incident_reasons: list[str] = field(default_factory=list)
    sent_incident_mentions: int = 0  # incident_mentions at the last page sent (as sent_count is count)

    @property
    def mentions(self) -> int:
        """The mentions a page reports: the routed ones, or the classifier's count of its incident if larger."""
        return max(self.count, self.incident_mentions)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Group:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    @classmethod
    def for_sla_breach(cls, item: SlaItem, scored: pb.ScoredMention) -> Group:
        """A one-mention group that pages `item.escalate_to` about a missed first-response deadline (sent once,
        outside the grouper: no group_wait, no updates).

        Example:

            page = Page(PageAction.TRIGGER, Group.for_sla_breach(item, scored), now)
        """
        mention = scored.mention
        return cls(key=f"sla|{item.mention_id}", id=f"sla-{item.mention_id}", receiver=item.escalate_to,
                   route=item.route, incident_id="", labels={"brand": mention.brands[0] if mention.brands else ""},
                   priority=item.priority, group_wait=0, group_interval=0, repeat_interval=0, quiet_period=0,
                   first_at=item.routed_at, last_at=item.routed_at, count=1,
                   reasons={f"no first response within the {item.priority} SLA": 1,
                            **{r: 1 for r in scored.reasons}},
                   samples=[{"mention_id": mention.mention_id, "text": mention.text[:500], "url": mention.url,
                             "language": scored.language}])

    @property
    def delivery_state(self) -> str:
        """pending (never attempted) / retrying / delivered / dead_lettered, for the page in flight."""
        if self.outbox:
            return "retrying"
        if self.abandoned:
            return "dead_lettered"
        return "delivered" if self.triggered_at else "pending"

    def triage_state(self, now: float) -> str:
        """"" (not held for triage), held, paged_now, dismissed or timed_out."""
        if not self.triage_until:
            return ""
        if self.triage_decision:
            return {TRIAGE_PAGE_NOW: "paged_now", TRIAGE_DISMISS: "dismissed"}.get(self.triage_decision, "")
        return "held" if now < self.triage_until else "timed_out"

    def top_reasons(self, n: int = 5) -> list[tuple[str, int]]:
        """The mentions' most frequent reasons; the incident record's reasons while no mention was counted."""
        if not self.reasons and self.incident_reasons:
            return [(r, self.incident_mentions) for r in self.incident_reasons[:n]]
        return Counter(self.reasons).most_common(n)


class PageAction(StrEnum):
    TRIGGER = "trigger"
    UPDATE = "update"
    RESOLVE = "resolve"
    ACKNOWLEDGE = "acknowledge"  # PagerDuty only; never produced by the grouper


ACTION_ORDER = {PageAction.TRIGGER: 0, PageAction.RESOLVE: 1, PageAction.UPDATE: 2}  # triggers go first


@dataclass(frozen=True)
class Page:
    """One notification about a group: what a receiver renders."""

    action: str                   # a PageAction: trigger / update / resolve
    group: Group
    at: float


def grouping_labels(group_by: list[str], labels: dict[str, str]) -> list[str]:
    """The labels a group is keyed by: `group_by`, every label for Alertmanager's `['...']`, default `brand`."""
    if group_by == ["..."]:
        return sorted(labels)
    return list(group_by) or ["brand"]


def group_key(receiver: str, route: str, incident_id: str, group_by: list[str], labels: dict[str, str]) -> str:
    if incident_id:
        return f"{receiver}|incident:{incident_id}"
    names = grouping_labels(group_by, labels) if group_by else []
    parts = ",".join(f"{k}={labels.get(k, '')}" for k in sorted(names))
    return f"{receiver}|{route}|{parts}"


@dataclass(frozen=True)
class PageRequest:
    """One mention to count into a paging receiver's group: what the `triage.router.page-requests` topic carries
    (JSON, keyed by `key`, so it reaches the replica that owns the group), with the route's timing.

    Example:

        request = PageRequest.decode(record)      # ValueError / KeyError / TypeError: not a page request
        group = grouper.add_request(request)
        producer.send(topics.ROUTER_PAGE_REQUESTS, request.encode(), key=request.key.encode())
    """

    key: str                      # group_key(...): the partition key, the group's identity
    receiver: str
    route: str
    incident_id: str
    group_by: list[str]
    labels: dict[str, str]
    priority: str
    reasons: list[str]
    sample: Sample
    now: float
    group_wait: float
    group_interval: float
    repeat_interval: float
    quiet_period: float
    triage_timeout: float = 0.0   # the route's triage_timeout when it has `triage: true`, else 0 (no hold)
    triage_notify: str = ""       # the Slack receiver of the route's triage notice ("" for none)
    # Set on a request made from the incident record itself (not a mention): it opens or refreshes the group,
    # never counts as a mention (`IncidentGrouper.add_incident`).
    incident: IncidentSummary | None = None

    def encode(self) -> bytes:
        d = asdict(self)
        if not self.triage_timeout:
            del d["triage_timeout"]  # a request of a route without triage reads as before to any version
        if not self.triage_notify:
            del d["triage_notify"]
        if self.incident is None:
            del d["incident"]  # a mention's request reads as before to any version
        return json.dumps(d, ensure_ascii=False, sort_keys=True).encode()

    @classmethod
    def decode(cls, data: bytes) -> PageRequest:
        d = json.loads(data)
        if not isinstance(d, dict):
            raise TypeError(f"a page request is a JSON object, not {type(d).__name__}")
        return cls(key=str(d["key"]), receiver=str(d["receiver"]), route=str(d["route"]),
                   incident_id=str(d["incident_id"]), group_by=[str(k) for k in d["group_by"]],
                   labels={str(k): str(v) for k, v in dict(d["labels"]).items()}, priority=str(d["priority"]),
                   reasons=[str(r) for r in d["reasons"]], sample=Sample(**d["sample"]), now=float(d["now"]),
                   group_wait=float(d["group_wait"]), group_interval=float(d["group_interval"]),
                   repeat_interval=float(d["repeat_interval"]), quiet_period=float(d["quiet_period"]),
                   triage_timeout=float(d.get("triage_timeout", 0.0)),
                   triage_notify=str(d.get("triage_notify", "")), incident=_incident_summary(d.get("incident")))


def _incident_summary(d: Any) -> IncidentSummary | None:
    if d is None:
        return None
    return IncidentSummary(mentions=int(d["mentions"]), reasons=[str(r) for r in d["reasons"]],
                           languages={str(k): int(v) for k, v in dict(d["languages"]).items()},
                           samples=[Sample(**smp) for smp in d["samples"]])


class IncidentGrouper:
    """The grouping state machine; `add`, `close_incident`, `due` and `mark_sent` take the time explicitly."""

    def __init__(self) -> None:
        self.groups: dict[str, Group] = {}

    def drop_samples_of(self, mention_id: str) -> list[Group]:
        """A deleted post leaves the samples of the groups that show it (their next page no longer carries its
        text); the groups changed, to persist. Counts stay: they are not the post."""
        changed = []
        for g in self.groups.values():
            kept = [smp for smp in g.samples if smp.get("mention_id") != mention_id]
            if len(kept) != len(g.samples):
                g.samples = kept
                changed.append(g)
        return changed

    def add(self, *, receiver: str, route: str, incident_id: str, group_by: list[str], labels: dict[str, str],
            priority: str, reasons: list[str], sample: Sample, now: float, group_wait: float, group_interval: float,
            repeat_interval: float, quiet_period: float, triage_timeout: float = 0.0,
            triage_notify: str = "") -> Group | None:
        """Count a mention into its group (creating it); None when its incident was already resolved. A group
        created with a `triage_timeout` is held for triage that long (and noticed to `triage_notify`)."""
        key = group_key(receiver, route, incident_id, group_by, labels)
        g = self.groups.get(key)
        if g is not None and g.resolved_at:
            if incident_id:
                return None  # a straggler of a resolved incident: its queue delivery is enough
            del self.groups[key]
            g = None
        if g is None:
            gid = incident_id or "grp-" + hashlib.sha256(f"{key}|{now:.3f}".encode()).hexdigest()[:16]
            g = Group(key=key, id=gid, receiver=receiver, route=route, incident_id=incident_id,
                      labels={k: labels.get(k, "") for k in grouping_labels(group_by, labels)}, priority=priority,
                      group_wait=group_wait, group_interval=group_interval, repeat_interval=repeat_interval,
                      quiet_period=quiet_period, first_at=now, last_at=now,
                      triage_until=now + triage_timeout if triage_timeout > 0 else 0.0,
                      triage_notify=triage_notify if triage_timeout > 0 else "")
            self.groups[key] = g
        if not g.count:
            g.languages = {}  # (a group opened by its incident record held the incident's languages until now)
        g.count += 1
        g.last_at = max(g.last_at, now)
        g.priority = more_urgent(priority, g.priority)
        for r in reasons:
            g.reasons[r] = g.reasons.get(r, 0) + 1
        g.languages[sample.language] = g.languages.get(sample.language, 0) + 1
        own = [smp for smp in g.samples if smp.get("from") != INCIDENT_SAMPLE]
        if len(own) < MAX_SAMPLES:
            # A mention's sample (with its text) goes before the incident record's, and replaces its own entry.
            record = [smp for smp in g.samples
                      if smp.get("from") == INCIDENT_SAMPLE and smp.get("mention_id") != sample.mention_id]
            g.samples = [*own, asdict(sample), *record][:MAX_SAMPLES]
        return g

    def add_request(self, request: PageRequest) -> Group | None:
        """`add` for a page request (the mention's route and labels, as its router replica sent them); a request
        made from an incident record goes to `add_incident`."""
        if request.incident is not None:
            return self.add_incident(request, request.incident)
        return self.add(receiver=request.receiver, route=request.route, incident_id=request.incident_id,
                        group_by=list(request.group_by), labels=dict(request.labels), priority=request.priority,
                        reasons=list(request.reasons), sample=request.sample, now=request.now,
                        group_wait=request.group_wait, group_interval=request.group_interval,
                        repeat_interval=request.repeat_interval, quiet_period=request.quiet_period,
                        triage_timeout=request.triage_timeout, triage_notify=request.triage_notify)

    def add_incident(self, request: PageRequest, incident: IncidentSummary) -> Group | None:
        """The incident record itself, for a paging route: open the incident's group if no mention did (all of
        its mentions may have been scored before it opened, so none is tagged), or refresh the classifier's
        count, reasons and samples on it. Idempotent (a record read twice, by two replicas or after a restart,
        changes nothing more), never a mention in `count`. The group changed, or None (unchanged, or the group
        was resolved: a resolved incident never opens a new one)."""
        g = self.groups.get(request.key)
        if g is not None and g.resolved_at:
            return None
        created = g is None
        if g is None:
            g = Group(key=request.key, id=request.incident_id, receiver=request.receiver, route=request.route,
                      incident_id=request.incident_id,
                      labels={k: request.labels.get(k, "") for k in grouping_labels(request.group_by,
                                                                                   request.labels)},
                      priority=request.priority, group_wait=request.group_wait,
                      group_interval=request.group_interval, repeat_interval=request.repeat_interval,
                      quiet_period=request.quiet_period, first_at=request.now, last_at=request.now,
                      triage_until=request.now + request.triage_timeout if request.triage_timeout > 0 else 0.0,
                      triage_notify=request.triage_notify if request.triage_timeout > 0 else "")
            self.groups[request.key] = g
        before = (g.incident_mentions, g.incident_reasons, g.priority, g.samples, g.languages)
        g.incident_mentions = max(g.incident_mentions, incident.mentions)
        g.incident_reasons = list(incident.reasons)
        g.priority = more_urgent(request.priority, g.priority)
        # The record's samples follow its latest state (a deleted post leaves them); the mentions' stay first.
        own = [smp for smp in g.samples if smp.get("from") != INCIDENT_SAMPLE]
        ids = {smp.get("mention_id") for smp in own}
        extra = [{**asdict(smp), "from": INCIDENT_SAMPLE} for smp in incident.samples if smp.mention_id not in ids]
        g.samples = own + extra[:max(0, MAX_SAMPLES - len(own))]
        if not g.count:
            g.languages = dict(incident.languages)  # no mention counted yet: the incident's languages
        changed = created or before != (g.incident_mentions, g.incident_reasons, g.priority, g.samples, g.languages)
        return g if changed else None

    def restore(self, group: Group) -> None:
        """Put back a group read from the state topic."""
        self.groups[group.key] = group

    def forget(self, owned_elsewhere: Callable[[str], bool]) -> None:
        """Drop the groups whose key `owned_elsewhere` (another replica's now; durable on the state topic)."""
        for key in [k for k in self.groups if owned_elsewhere(k)]:
            del self.groups[key]

    def close_incident(self, incident_id: str, now: float) -> list[Group]:
        closed = []
        for g in self.groups.values():
            if g.incident_id == incident_id and not g.closing and not g.resolved_at:
                g.closing = True
                closed.append(g)
        return closed

    def wanted(self, g: Group, now: float) -> str | None:
        """The notification the group's state calls for now (ignoring backoff), or None."""
        if not g.triggered_at:
            if g.closing or g.triage_decision == TRIAGE_DISMISS:
                return None  # nothing to trigger; a failed trigger is dead-lettered by give_up
            if g.triage_decision == TRIAGE_PAGE_NOW:
                return PageAction.TRIGGER
            start = max(g.first_at + g.group_wait, g.triage_until)  # held for triage until triage_until
            return PageAction.TRIGGER if now >= start else None
        quiet = not g.incident_id and now - g.last_at >= g.quiet_period
        if g.closing or quiet:
            return PageAction.RESOLVE
        grew = g.count > g.sent_count or g.incident_mentions > g.sent_incident_mentions
        if grew and now >= g.last_sent_at + g.group_interval:
            return PageAction.UPDATE
        if now >= g.last_sent_at + g.repeat_interval:
            return PageAction.UPDATE
        return None

    def due(self, now: float) -> list[Page]:
        """Pages to attempt now, triggers first; a group backing off after a failure waits for `next_at`."""
        pages: list[Page] = []
        for key, g in list(self.groups.items()):
            if g.resolved_at:
                if now - g.resolved_at > RESOLVED_RETENTION:
                    del self.groups[key]
                continue
            if not g.triggered_at and g.closing and not g.outbox:
                g.resolved_at = now  # resolved before anyone was paged: nothing to trigger or resolve
                continue
            action = self.wanted(g, now)
            if action is None or (g.outbox and now < float(g.outbox["next_at"])):
                continue
            pages.append(Page(action, g, now))
        pages.sort(key=lambda p: ACTION_ORDER.get(PageAction(p.action), 9))
        return pages

    def mark_sent(self, page: Page, count_at_send: int, thread_ref: str = "",
                  incident_mentions_at_send: int | None = None) -> None:
        """The receiver accepted the page (sent when the group had `count_at_send` mentions and the incident
        record said `incident_mentions_at_send`, default: what it says now)."""
        g = page.group
        if page.action == PageAction.TRIGGER:
            g.triggered_at = page.at
        elif page.action == PageAction.UPDATE:
            g.updates_sent += 1
        elif page.action == PageAction.RESOLVE:
            g.resolved_at = page.at
        g.last_sent_at = page.at
        g.sent_count = count_at_send
        g.sent_incident_mentions = (g.incident_mentions if incident_mentions_at_send is None
                                    else incident_mentions_at_send)
        g.outbox = {}
        g.failure_reason = ""
        if thread_ref and not g.thread_ref:
            g.thread_ref = thread_ref

    def mark_failed(self, page: Page, now: float, error: str, retry_in: float, reason: str = "") -> None:
        """An attempt failed (for `reason`, a DeliveryReason): the page stays due and is attempted again after
        `retry_in` seconds."""
        g = page.group
        g.failure_reason = reason
        ob = g.outbox
        g.outbox = {"action": str(page.action), "since": float(ob.get("since", now)),
                    "attempts": int(ob.get("attempts", 0)) + 1, "next_at": now + max(0.0, retry_in),
                    "error": error[:300]}

    def give_up(self, now: float, budget: float) -> list[tuple[Page, str, int]]:
        """Pending pages dead-lettered now, with the reason and attempts; the groups move on (module doc)."""
        out: list[tuple[Page, str, int]] = []
        for g in self.groups.values():
            ob = g.outbox
            if not ob or g.resolved_at:
                continue
            if not g.triggered_at and g.closing:
                reason = "incident resolved before its trigger was delivered"
            elif now - float(ob["since"]) >= budget:
                reason = f"undelivered for the whole {budget:.0f} s retry budget"
            else:
                continue
            out.append((Page(ob["action"], g, now), f"{reason} ({ob['attempts']} attempts; last: {ob['error']})",
                        int(ob["attempts"])))
            self.abandon(g, str(ob["action"]), now)
        return out

    def abandon(self, g: Group, action: str, now: float, reason: str = "") -> None:
        """Stop delivering the group's pending page (rejected for `reason`, or given up): a lost update is
        coalesced into the next one; a lost trigger or resolve ends the group (its incident is in the DLQ for
        `triage dlq replay`)."""
        g.outbox = {}
        g.failure_reason = reason or g.failure_reason
        if action == PageAction.UPDATE:
            g.last_sent_at, g.sent_count, g.sent_incident_mentions = now, g.count, g.incident_mentions
            return
        g.resolved_at = now
        g.abandoned = g.abandoned or action == PageAction.TRIGGER

    def decide(self, key: str, decision: str, by: str, now: float) -> tuple[Group | None, str]:
        """A person's triage decision on a held group: "page_now" (it triggers on the next tick) or "dismissed"
        (it ends without a page). Returns the group and what happened: decided, or why not (unknown group,
        not held for triage, already paged, already decided, already resolved); a decision is idempotent."""
        if decision not in (TRIAGE_PAGE_NOW, TRIAGE_DISMISS):
            raise ValueError(f"a triage decision is {TRIAGE_PAGE_NOW!r} or {TRIAGE_DISMISS!r}, not {decision!r}")
        g = self.groups.get(key)
        if g is None:
            return None, "unknown group"
        if not g.triage_until:
            return g, "not held for triage"
        if g.triage_decision:
            return g, f"already decided: {g.triage_decision}"
        if g.triggered_at or g.outbox:
            return g, "already paged"
        if g.resolved_at or g.closing:
            return g, "already resolved"
        g.triage_decision, g.triage_by, g.triage_decided_at = decision, by, now
        if decision == TRIAGE_DISMISS:
            g.resolved_at = now
        return g, "decided"

    def held(self, now: float) -> list[Group]:
        """Groups held for triage now (undecided, before their triage_timeout), the oldest first."""
        return sorted((g for g in self.groups.values() if not g.resolved_at and not g.closing and not g.triggered_at
                       and g.triage_state(now) == "held"), key=lambda g: g.first_at)

    def triage_groups(self) -> list[Group]:
        """Every group of a triage route still kept (held, decided, paged or resolved)."""
        return [g for g in self.groups.values() if g.triage_until]

    def open_groups(self) -> list[Group]:
        return [g for g in self.groups.values() if not g.resolved_at]

    def retrying(self) -> Counter[tuple[str, str]]:
        """Pages waiting for another attempt, by (receiver, action)."""
        return Counter((g.receiver, str(g.outbox["action"])) for g in self.open_groups() if g.outbox)


# -- triage records (what the router tells the console about a hold, on `pages`; TriageStage sends them) ---------
TRIAGE_RECORD_ACTION = "triage"  # PageRecord.action of the records below; PageRecord.state is the transition


def triage_transition(g: Group, now: float) -> tuple[str, float] | None:
    """The next thing to record about a triage group's hold, with its time, or None: held (once, when the
    group is first seen held), then exactly one of paged_now / dismissed (a person's decision), timed_out (its
    trigger went out undecided after `triage_timeout`) or resolved (the incident ended while held). The times
    are the transition's own, so a record sent twice across a crash is the same record (the console folds
    pages by incident, receiver, action and time)."""
    if not g.triage_until or g.triage_recorded not in ("", "held"):
        return None
    if g.triage_decision:
        state = {TRIAGE_PAGE_NOW: "paged_now", TRIAGE_DISMISS: "dismissed"}[g.triage_decision]
        return state, g.triage_decided_at or now
    if g.triggered_at:
        return "timed_out", g.triggered_at
    if g.resolved_at or g.closing:
        return "resolved", g.resolved_at or g.last_at
    if not g.triage_recorded:
        return "held", g.first_at
    return None


def triage_notice_due(g: Group, now: float, max_attempts: int = 5) -> bool:
    """Whether the group's chat notice (Slack, "page now / dismiss?") should be attempted now: it is held,
    has a notice receiver, and the notice was neither delivered nor given up after `max_attempts`."""
    return bool(g.triage_notify and not g.triage_noticed_at and g.triage_notice_attempts < max_attempts
                and not g.resolved_at and not g.closing and not g.triggered_at and not g.outbox
                and g.triage_state(now) == "held")


# -- page persistence (a failed page is dead-lettered as this JSON and replayed by `triage dlq replay`) ----------


def page_doc(page: Page, receiver: str) -> bytes:
    return json.dumps({"receiver": receiver, "action": page.action, "at": page.at, "group": page.group.to_json()},
                      ensure_ascii=False, sort_keys=True).encode()


def page_from_doc(data: bytes) -> tuple[str, Page]:
    d = json.loads(data)
    return d["receiver"], Page(d["action"], Group.from_json(d["group"]), float(d["at"]))

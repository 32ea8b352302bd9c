"""Incident life cycle per brand and kind: open with hysteresis, update with evidence, resolve when quiet.

An incident opens when a detector *fires* (open threshold + persistence) and the brand+kind is not in
its cooldown after a previous resolve. It stays open while the detector is *active* (a lower close
threshold) and resolves once it has been inactive for `quiet_seconds` and open for at least
`min_duration_seconds`: separate thresholds plus both timers stop flapping. One incident per brand and kind,
except emerging issues: one per emerging-issue cluster (each distinct problem its own incident, page and
samples; the cooldown is the cluster's). Ids are deterministic (brand + kind + opened_at, and the cluster id
for an emerging issue: two problems opening in one second differ), so a replay after a crash re-derives the
same id and the router's dedup key holds. Evidence: top terms (simple tokenisation, multilingual
stopwords), languages, sources, sample mention ids and urls.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from services.classify.crisis.config import IncidentConfig
from services.classify.crisis.windows import Verdict
from services.common.codec import pb
from services.common.timeutil import ts_from_epoch

KIND_SLUG: dict[int, str] = {pb.VOLUME_SPIKE: "spike", pb.OUTAGE_CLUSTER: "outage", pb.VIRAL_COMPLAINT: "viral",
             pb.SAFETY_OR_LEGAL: "safety", pb.COMPLAINT_SURGE: "surge", pb.EMERGING_ISSUE: "emerging"}

_TOKEN = re.compile(r"[^\W\d_][\w'’-]*", re.UNICODE)
_NOISE = re.compile(r"https?://\S+|www\.\S+|[@#]\w+", re.UNICODE)
# Function words of the languages the pipeline sees most; terms are evidence, not a language model.
STOPWORDS = frozenset("""
a an and are as at be been but by can cannot can't could did do does doing don't for from had has have how i i'm
if in into is isn't it it's its just me my no not now of on or our out so still than that the their them then
there these they this to too up us very was we were what when where which who why will with won't would you
your again any all also again get got im dont cant wont thanks thank please why really
he him his she her hers i've i'll i'd you're you've we're we've they're they've he's she's that's there's what's
let's some more most other such only own same both each few here because while about through during before
after should shall might must may been being am ive youre thats whats lol
el la los las de del y que en un una es por con para no se lo al mi me ya muy pero como más mas esta está
le les des et est une pour pas avec sur ce qui ne je il elle au aux du mon ma mes vous nous sont ça
der die das und ist nicht ein eine mit den dem zu von auf für es ich sie wir ihr mein kann noch schon
o os as um uma com não nao para por do da dos das em meu minha é e que
il lo la gli le di da con non per una che è mio mia ancora
""".split())
MAX_TERMS_KEPT = 300


def terms_of(text: str, exclude: frozenset[str] = frozenset()) -> list[str]:
    """Lower-cased word tokens of 3+ letters, without urls, handles, hashtags marks and stopwords."""
    text = _NOISE.sub(" ", text.lower())
    return [w for w in _TOKEN.findall(text) if len(w) >= 3 and w not in STOPWORDS and w not in exclude]


def incident_id(brand: str, kind: int, opened_at: float, cluster: int | None = None) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", brand.lower()).strip("-") or "brand"
    base = f"inc-{slug}-{KIND_SLUG.get(kind, 'other')}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(opened_at))}"
    return base if cluster is None else f"{base}-c{cluster}"


@dataclass
class MentionSummary:
    """What an incident keeps of a mention (small, serialisable)."""

    mention_id: str
    t: float
    url: str = ""
    language: str = ""
    source: str = ""
    terms: list[str] = field(default_factory=list)
    outage: bool = False
    thread_ids: list[str] = field(default_factory=list)   # reply_to / conversation ids (viral grouping)
    complaint: bool = False
    negative: bool = False

    def to_list(self) -> list[Any]:
        return [self.mention_id, self.t, self.url, self.language, self.source, self.terms, self.outage,
                self.thread_ids, self.complaint, self.negative]

    @classmethod
    def from_list(cls, v: list[Any]) -> MentionSummary:
        return cls(str(v[0]), float(v[1]), str(v[2]), str(v[3]), str(v[4]), list(v[5]), bool(v[6]), list(v[7]),
                   bool(v[8]) if len(v) > 8 else False, bool(v[9]) if len(v) > 9 else False)


@dataclass
class OpenIncident:
    id: str
    brand: str
    kind: int
    opened_at: float
    updated_at: float
    last_active: float
    severity: float = 0.0
    reasons: list[str] = field(default_factory=list)
    mention_count: int = 0
    members: set[str] = field(default_factory=set)
    terms: Counter[str] = field(default_factory=Counter)
    languages: Counter[str] = field(default_factory=Counter)
    sources: Counter[str] = field(default_factory=Counter)
    sample_ids: list[str] = field(default_factory=list)
    sample_urls: list[str] = field(default_factory=list)
    posts: list[str] = field(default_factory=list)   # viral: the fast posts this incident is about
    flags: Counter[str] = field(default_factory=Counter)   # members flagged outage / complaint (evidence)
    last_emitted: float = 0.0
    emitted_count: int = -1
    emitted_severity: float = -1.0
    cluster: int | None = None   # an emerging issue: the cluster it follows (EmergingDetector.followed)

    def add(self, s: MentionSummary, cfg: IncidentConfig) -> None:
        if s.mention_id in self.members:
            return   # an engagement update of a post already counted
        if len(self.members) < 5000:
            self.members.add(s.mention_id)
        self.mention_count += 1
        self.flags.update([k for k, on in (("outage_report", s.outage), ("complaint", s.complaint)) if on])
        # each term once, in the post's order (not a set's hash order): tied terms rank alike in every process
        self.terms.update(list(dict.fromkeys(s.terms)))
        if len(self.terms) > 2 * MAX_TERMS_KEPT:
            self.terms = Counter(dict(self.terms.most_common(MAX_TERMS_KEPT)))
        if s.language:
            self.languages[s.language] += 1
        if s.source:
            self.sources[s.source] += 1
        if len(self.sample_ids) < cfg.max_samples:
            self.sample_ids.append(s.mention_id)
            if s.url:
                self.sample_urls.append(s.url)

    def forget(self, mention_id: str) -> bool:
        """Drops a deleted post from the samples (and its URL: the post id is its last path segment); True
        when the incident showed it, and must be re-published without it. Counts stay: they are not the post."""
        if mention_id not in self.sample_ids:
            return False
        self.sample_ids.remove(mention_id)
        post_id = mention_id.split(":", 1)[-1]
        self.sample_urls = [u for u in self.sample_urls if u.rstrip("/").rsplit("/", 1)[-1] != post_id]
        self.posts = [p for p in self.posts if p != mention_id]
        return True

    def to_pb(self, state: int, cfg: IncidentConfig, resolved_at: float = 0.0) -> pb.Incident:
        inc = pb.Incident(id=self.id, brand=self.brand, kind=self.kind, state=state,  # type: ignore[arg-type]
                          severity=self.severity, mention_count=self.mention_count, reasons=self.reasons[:6])
        inc.opened_at.CopyFrom(ts_from_epoch(self.opened_at))
        inc.updated_at.CopyFrom(ts_from_epoch(self.updated_at))
        if resolved_at:
            inc.resolved_at.CopyFrom(ts_from_epoch(resolved_at))
        ev = inc.evidence
        ev.top_terms.extend(t for t, _ in self.terms.most_common(cfg.top_terms))
        for k, v in self.languages.items():
            ev.languages[k] = v
        for k, v in self.sources.items():
            ev.sources[k] = v
        ev.sample_mention_ids.extend(self.sample_ids)
        ev.sample_urls.extend(self.sample_urls)
        return inc

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "brand": self.brand, "kind": self.kind, "opened_at": self.opened_at,
                "updated_at": self.updated_at, "last_active": self.last_active, "severity": self.severity,
                "reasons": self.reasons, "count": self.mention_count, "members": sorted(self.members),
                "terms": dict(self.terms), "languages": dict(self.languages), "sources": dict(self.sources),
                "sample_ids": self.sample_ids, "sample_urls": self.sample_urls, "posts": self.posts,
                "last_emitted": self.last_emitted, "emitted_count": self.emitted_count,
                "emitted_severity": self.emitted_severity, "flags": dict(self.flags), "cluster": self.cluster}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> OpenIncident:
        return cls(id=d["id"], brand=d["brand"], kind=int(d["kind"]), opened_at=d["opened_at"],
                   updated_at=d["updated_at"], last_active=d["last_active"], severity=d["severity"],
                   reasons=list(d["reasons"]), mention_count=int(d["count"]), members=set(d["members"]),
                   terms=Counter(d["terms"]), languages=Counter(d["languages"]), sources=Counter(d["sources"]),
                   sample_ids=list(d["sample_ids"]), sample_urls=list(d["sample_urls"]), posts=list(d["posts"]),
                   last_emitted=d["last_emitted"], emitted_count=int(d["emitted_count"]),
                   emitted_severity=float(d["emitted_severity"]), flags=Counter(d.get("flags", {})),
                   cluster=None if d.get("cluster") is None else int(d["cluster"]))


class IncidentTracker:
    """Open incidents of one brand (at most one per kind; emerging issues one per cluster) and the cooldown
    after each resolve."""

    def __init__(self, brand: str, config: IncidentConfig | None = None):
        self.brand = brand
        self.cfg = config or IncidentConfig()
        self.open: dict[int, OpenIncident] = {}        # by kind
        self.clusters: dict[int, OpenIncident] = {}    # emerging issues, by the cluster each follows
        self.cooldown_until: dict[int, float] = {}     # by kind
        self.cluster_cooldown: dict[int, float] = {}   # by emerging-issue cluster
        self.resolved_ids: list[str] = []   # the last few, so a restart never re-emits them as open

    def incidents(self) -> list[OpenIncident]:
        """Every open incident of the brand."""
        return [*self.open.values(), *self.clusters.values()]

    def find(self, incident_id: str) -> OpenIncident | None:
        return next((inc for inc in self.incidents() if inc.id == incident_id), None)

    def consider(self, kind: int, verdict: Verdict, now: float, seed: list[MentionSummary],
                 posts: list[str] | None = None, cluster: int | None = None) -> pb.Incident | None:
        """Apply one detector verdict; returns an OPEN or UPDATED incident to publish, if any. `cluster`: the
        verdict is that emerging-issue cluster's, and the incident is the one that follows it."""
        inc = self.open.get(kind) if cluster is None else self.clusters.get(cluster)
        if inc is None:
            until = self.cooldown_until.get(kind, 0.0)   # for a cluster: a kind-wide one is an old checkpoint's
            if cluster is not None:
                until = max(until, self.cluster_cooldown.get(cluster, 0.0))
            if not verdict.firing or now < until:
                return None
            inc = OpenIncident(id=incident_id(self.brand, kind, now, cluster), brand=self.brand, kind=kind,
                               opened_at=now, updated_at=now, last_active=now, severity=verdict.severity,
                               reasons=list(verdict.reasons), posts=list(posts or []), cluster=cluster)
            if inc.id in self.resolved_ids:   # same second as a resolved one (only in odd replays)
                return None
            for s in seed:
                inc.add(s, self.cfg)
            if cluster is None:
                self.open[kind] = inc
            else:
                self.clusters[cluster] = inc
            return self._emit(inc, pb.OPEN, now)
        if verdict.active:
            inc.last_active = now
            inc.severity = max(inc.severity, verdict.severity)
            if verdict.reasons:
                inc.reasons = list(verdict.reasons)
            for p in posts or []:
                if p not in inc.posts and len(inc.posts) < 20:
                    inc.posts.append(p)
        changed = inc.mention_count != inc.emitted_count or round(inc.severity, 2) != round(inc.emitted_severity, 2)
        if changed and now - inc.last_emitted >= self.cfg.update_interval_seconds:
            inc.updated_at = now
            return self._emit(inc, pb.UPDATED, now)
        return None

    def _emit(self, inc: OpenIncident, state: int, now: float) -> pb.Incident:
        inc.last_emitted, inc.emitted_count, inc.emitted_severity = now, inc.mention_count, inc.severity
        return inc.to_pb(state, self.cfg)

    def expire(self, now: float) -> list[pb.Incident]:
        """Resolve incidents that were quiet long enough (and open long enough)."""
        out = []
        for inc in self.incidents():
            if (now - inc.last_active >= self.cfg.quiet_seconds
                    and now - inc.opened_at >= self.cfg.min_duration_seconds):
                inc.updated_at = now
                out.append(inc.to_pb(pb.RESOLVED, self.cfg, resolved_at=now))
                if inc.cluster is None:
                    del self.open[inc.kind]
                    self.cooldown_until[inc.kind] = now + self.cfg.cooldown_seconds
                else:
                    del self.clusters[inc.cluster]
                    self.cluster_cooldown[inc.cluster] = now + self.cfg.cooldown_seconds
                self.resolved_ids = [*self.resolved_ids[-19:], inc.id]
        if self.cluster_cooldown:   # bounded: a cooldown that ended is forgotten
            self.cluster_cooldown = {k: v for k, v in self.cluster_cooldown.items() if v > now}
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"open": [inc.to_dict() for inc in self.incidents()],
                "cooldown": {str(k): v for k, v in self.cooldown_until.items()}, "resolved": self.resolved_ids,
                "cluster_cooldown": {str(k): v for k, v in self.cluster_cooldown.items()}}

    @classmethod
    def from_dict(cls, brand: str, d: dict[str, Any], config: IncidentConfig | None = None) -> IncidentTracker:
        tr = cls(brand, config)
        for item in d.get("open", []):
            inc = OpenIncident.from_dict(item)
            if inc.cluster is None:
                tr.open[inc.kind] = inc   # an old checkpoint's emerging issue too: the engine moves it
            else:
                tr.clusters[inc.cluster] = inc
        tr.cooldown_until = {int(k): float(v) for k, v in d.get("cooldown", {}).items()}
        tr.cluster_cooldown = {int(k): float(v) for k, v in d.get("cluster_cooldown", {}).items()}
        tr.resolved_ids = list(d.get("resolved", []))
        return tr

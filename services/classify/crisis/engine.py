"""CrisisEngine: feeds scored mentions to the per-brand detectors and the incident tracker.

Event time is the mention's `received_at` (when ingest accepted it), falling back to `created_at`:
- engagement updates of a post carry the post's original `created_at`; the time of the *observation*
  is when it was received, and velocity must be measured between observations;
- `created_at` can be hours old for backfills and slow platforms, which would put a mention into windows
  that were already judged; `received_at` is monotone with arrival (ingest's clock) and is seconds
  behind the classify worker, so "within a minute" is measured on the clock responders live by.
The engine's clock is max(event times seen, `now` passed in); `tick(now)` advances it on a quiet stream
so windows empty and incidents resolve. Pass scenario time as `now` to replay a day in seconds.

`CrisisConfig.event_time = "created_at"` is event-time processing for a replay of history through the
pipeline (`triage replay --event-time`, where ingest's `received_at` is the replay's wall clock): a new
post's event time is its `created_at`; an engagement update of a post already seen is observed at the
engine clock (the watermark's leading edge), since history has no time of observation. The clock is the
largest event time seen and the watermark is clock - `lateness_seconds` (Flink's bounded out-of-orderness):
posts up to that far behind still count in their own windows; older ones are late (below).

Volume counts a post once: a later sighting of a mention id still in the brand's memory (the
`max_seen` least recently seen ids) or of a post created more than `seen_ttl_seconds` ago is an engagement
update and only feeds the viral detector. Real feeds need more (issue 16), so volume (the
spike windows and the outage detector's "other" traffic) also skips:
- exact and near-duplicate texts (same text after dropping urls, handles, "RT", case and punctuation) seen
  within `seen_ttl_seconds`, if at least `duplicate_min_chars` long (short texts repeat naturally);
- mentions stamped on one identical `created_at` instant beyond max(`pile_up_min`, `pile_up_per_expected`
  x the brand's expected mentions per minute): a 23:59:59 backfill or whole-minute stamps do not open an
  incident by themselves (the pile-up rule applies to outage reports too);
- late events, older than the engine clock minus `lateness_seconds`: counted in `late`, kept out of the
  windows, so they never open or re-open an incident (the windows they belong to were judged already).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter, deque
from typing import Any

from services.classify.crisis.config import CrisisConfig
from services.classify.crisis.emerging import EmergingDetector, unsketch
from services.classify.crisis.incidents import IncidentTracker, MentionSummary, OpenIncident, terms_of
from services.classify.crisis.outage import OutageDetector
from services.classify.crisis.spike import SpikeDetector
from services.classify.crisis.stats import betabinom_sf
from services.classify.crisis.surge import SurgeDetector
from services.classify.crisis.viral import ViralDetector, weighted_engagement
from services.classify.crisis.windows import Verdict
from services.common.codec import pb
from services.common.timeutil import epoch

# Which open incident a mention joins when several are open for its brand: the most specific first.
_MATCH_ORDER = (pb.OUTAGE_CLUSTER, pb.VIRAL_COMPLAINT, pb.EMERGING_ISSUE, pb.VOLUME_SPIKE)
_BASE_DOCS, _BASE_TERMS = 4000, 600   # evidence baseline: decay period (documents) and terms kept
_DUP_NOISE = re.compile(r"https?://\S+|www\.\S+|@\w+|^\s*rt\b", re.UNICODE)
_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


def text_key(text: str) -> str:
    """Near-duplicate key: lower case without urls, handles, a leading RT, punctuation and spacing."""
    return _NON_WORD.sub("", _DUP_NOISE.sub(" ", text.lower()))[:200]


def _digest(key: str) -> str:
    return hashlib.blake2b(key.encode(), digest_size=8).hexdigest()   # checkpoints keep 16 chars per text


def _combine(verdicts: list[Verdict]) -> Verdict:
    """Several clusters' verdicts as one (for the one outage incident they join): the most severe one's reasons."""
    if not verdicts:
        return Verdict()
    top = max(verdicts, key=lambda v: (v.firing or v.active, v.severity))
    return Verdict(firing=any(v.firing for v in verdicts), active=any(v.active for v in verdicts),
                   severity=top.severity, reasons=list(top.reasons))


def event_time(scored: pb.ScoredMention) -> float:
    """received_at, else created_at, else 0 (see the module docstring for why)."""
    m = scored.mention
    return epoch(m.received_at) or epoch(m.created_at)


def _source_name(source: int) -> str:
    try:
        return str(pb.Source.Name(source)).removeprefix("SOURCE_").lower()
    except ValueError:
        return "unknown"


class BrandState:
    """Everything crisis detection knows about one brand; serialisable to a plain dict (JSON)."""

    def __init__(self, brand: str, cfg: CrisisConfig):
        self.brand = brand
        self.cfg = cfg
        self.spike = SpikeDetector(cfg.spike)
        self.outage = OutageDetector(cfg.outage)
        self.viral = ViralDetector(cfg.viral)
        self.surge = SurgeDetector(cfg.surge)
        self.emerging = EmergingDetector(cfg.emerging)
        self.tracker = IncidentTracker(brand, cfg.incident)
        self.recent: deque[MentionSummary] = deque(maxlen=cfg.incident.recent_mentions)
        self.seen: dict[str, float] = {}
        self.texts: dict[str, float] = {}        # near-duplicate key -> last seen (event time)
        self.instants: dict[float, int] = {}     # created_at instant -> mentions stamped on it
        self.late = 0                            # events beyond the lateness bound (counted, not judged)
        self.skipped = 0                         # duplicates and pile-ups kept out of volume
        self.base_terms: Counter[str] = Counter()   # documents per term over the brand's traffic (decayed)
        self.base_flags: Counter[str] = Counter()   # outage_report / complaint flagged documents (same decay)
        self.base_docs = 0.0
        self.spike_held = False                  # this spike episode was held as incoherent (counted once)
        self.held: list[tuple[str, str]] = []    # (reason, detail) of held spikes, for the monitor to count

    def learn_baseline(self, s: MentionSummary) -> None:
        """The brand's usual words and intents, so an incident's evidence says what is unusual about it."""
        self.base_terms.update(set(s.terms))
        self.base_flags.update([k for k, on in (("outage_report", s.outage), ("complaint", s.complaint),
                                                ("negative", s.negative)) if on])
        self.base_docs += 1
        if self.base_docs >= _BASE_DOCS:   # decay: halve everything, forget rare terms
            self.base_docs /= 2
            self.base_terms = Counter({k: v / 2 for k, v in self.base_terms.most_common(_BASE_TERMS) if v >= 2})
            self.base_flags = Counter({k: v / 2 for k, v in self.base_flags.items()})

    def about(self, inc: OpenIncident) -> str:
        """'about: cancelled 60% (usual 2%), ...; complaint 80% (usual 20%)': what sets the incident apart."""
        n = max(1, inc.mention_count)
        docs = max(1.0, self.base_docs)
        lifted = []
        for term, c in inc.terms.most_common(60):
            share, usual = c / n, (self.base_terms.get(term, 0.0) + 0.5) / (docs + 1)
            if c >= 3 and share >= 2 * usual:
                lifted.append((share * math.log(share / usual), term, share, usual))
        parts = [f"{t} {sh:.0%} (usual {u:.0%})" for _, t, sh, u in sorted(lifted, reverse=True)[:3]]
        flags = [f"{k} {inc.flags[k] / n:.0%} (usual {self.base_flags.get(k, 0.0) / docs:.0%})"
                 for k in ("complaint", "outage_report") if inc.flags.get(k, 0) / n >= 0.3]
        if not parts and not flags:
            return ""
        return "about: " + ", ".join(parts) + ("; " if parts and flags else "") + ", ".join(flags)

    def coherence(self, now: float) -> str:
        """What the posts of the spike's window share beyond the brand's usual ("" when nothing: incoherent).

        The window's posts (the last `recent_mentions` within the long window) against the brand's usual
        shares (the decayed baseline, minus the window's own posts, shrunk towards pooled priors worth
        `coherence_prior_posts` posts so a new brand has a usual too): a flag (negative, complaint,
        outage_report) or a term is shared when it is in >= coherence_min_posts and >= coherence_min_share
        of the posts and its beta-binomial tail is <= coherence_p_value (terms: / the number of distinct terms
        in the posts, Bonferroni: with a few posts, some word is in three of them by chance)."""
        c = self.cfg.spike
        window = [s for s in self.recent if s.t > now - c.long_window_seconds]
        n = len(window)
        if n < c.coherence_min_posts:
            return ""
        docs = max(0.0, self.base_docs - n)
        m = c.coherence_prior_posts
        need = max(c.coherence_min_posts, c.coherence_min_share * n)

        def share_tail(k: int, base: float, prior: float) -> tuple[float, float]:
            base = min(max(0.0, base), docs)
            a, b = base + prior * m, docs - base + (1 - prior) * m
            return betabinom_sf(k, n, a, b), a / (a + b)

        found = []
        for flag, prior in c.coherence_flag_priors:
            k = sum(1 for s in window if getattr(s, "outage" if flag == "outage_report" else flag))
            if k >= need:
                p, usual = share_tail(k, self.base_flags.get(flag, 0.0) - k, prior)
                if p <= c.coherence_p_value:
                    found.append(f"{flag} {k / n:.0%} (usual {usual:.0%})")
        counts: Counter[str] = Counter(t for s in window for t in set(s.terms))
        terms = []
        for term, k in sorted(counts.items(), key=lambda x: (-x[1], x[0])):   # ties by term: replayable
            if k < need:
                break
            p, usual = share_tail(k, self.base_terms.get(term, 0.0) - k, c.coherence_term_prior)
            if p <= c.coherence_p_value / len(counts):   # Bonferroni over every term the posts hold
                terms.append(f"{term} {k / n:.0%} (usual {usual:.0%})")
        if terms:
            found.insert(0, "shared topic: " + ", ".join(terms[:3]))
        return "; ".join(found)

    def judge_spike(self, v: Verdict, now: float) -> Verdict:
        """A firing spike opens only if coherent (its reason says what is shared); else held and counted once."""
        if not v.active:
            self.spike_held = False
        if not (v.firing and self.cfg.spike.coherence) or pb.VOLUME_SPIKE in self.tracker.open:
            return v
        why = self.coherence(now)
        if why:
            v.reasons.append(why)
            return v
        if not self.spike_held:
            self.spike_held = True
            self.held.append(("incoherent", "; ".join(v.reasons)))
        return Verdict(firing=False, active=v.active, severity=v.severity, reasons=v.reasons)

    def counts_for_volume(self, text: str, t: float, created: float, now: float) -> tuple[bool, bool]:
        """(counts for volume, counts for the outage windows): duplicates and pile-ups do not."""
        inc = self.cfg.incident
        piled = False
        if created:
            key = round(created, 3)
            n = self.instants.get(key, 0) + 1
            self.instants[key] = n
            if len(self.instants) > 4 * inc.max_seen:
                cutoff = now - inc.seen_ttl_seconds
                self.instants = {k: v for k, v in self.instants.items() if k >= cutoff}
            cap = max(inc.pile_up_min, inc.pile_up_per_expected * self.spike.expected_per_minute(t))
            piled = n > cap
        dup = False
        k = text_key(text)
        if len(k) >= inc.duplicate_min_chars:
            k = _digest(k)
            last = self.texts.get(k)
            dup = last is not None and t - last <= inc.seen_ttl_seconds
            self.texts[k] = t
            if len(self.texts) > inc.max_seen:
                cutoff = t - inc.seen_ttl_seconds
                self.texts = {x: v for x, v in self.texts.items() if v >= cutoff}
                while len(self.texts) > inc.max_seen:
                    self.texts.pop(next(iter(self.texts)))
        if piled or dup:
            self.skipped += 1
        return not (piled or dup), not piled

    def is_new_post(self, mention_id: str, t: float, created_at: float) -> bool:
        """First sighting of a post id (volume counts a post once; later sightings are engagement updates).

        The memory is least-recently-seen first out, one id at a time: it used to be wiped down to its last
        `seen_ttl_seconds` whenever it held `max_seen` ids, so how long a post was remembered cycled with
        the brand's traffic (every max_seen / new posts a day: 145 days for ~34 a day), and a day-end
        re-collection of the day's posts counted as new volume on the day of each wipe (issue 24)."""
        ttl = self.cfg.incident.seen_ttl_seconds
        if mention_id in self.seen:
            del self.seen[mention_id]   # move to the end: dicts keep insertion order
            self.seen[mention_id] = t
            return False
        while len(self.seen) >= self.cfg.incident.max_seen:   # forget the least recently seen
            self.seen.pop(next(iter(self.seen)))
        self.seen[mention_id] = t
        # A post we have not seen but that is older than our memory is an update of an old post.
        return not (created_at and t - created_at > ttl)

    def evaluate(self, now: float) -> list[pb.Incident]:
        """Every detector's verdict through the tracker; each update's reasons end with what it is about."""
        out = self._evaluate(now)
        for inc in out:
            open_inc = self.tracker.find(inc.id)
            why = self.about(open_inc) if open_inc is not None else ""
            if why:
                if len(inc.reasons) >= 6:
                    del inc.reasons[5:]
                inc.reasons.append(why)
        return out

    def _evaluate(self, now: float) -> list[pb.Incident]:
        out = []
        tr = self.tracker

        def opening(kind: int, firing: bool) -> bool:   # seeds (recent evidence) are only needed to open
            return firing and kind not in tr.open

        # Emerging issues: every cluster on its own (each distinct problem its own incident). A followed cluster
        # whose incident resolved is free again (it may reopen after its cooldown if it is still significant).
        em = self.emerging
        for cid, kind in list(em.followed.items()):
            if (pb.OUTAGE_CLUSTER not in tr.open) if kind == pb.OUTAGE_CLUSTER else (cid not in tr.clusters):
                em.unfollow(cid)
        if self.cfg.emerging.enabled:
            em.evaluate(now)
        else:
            em.verdicts, em.firing = {}, []
        # A cluster whose posts read as outage reports is the outage kind's, not an incident of its own (a
        # followed cluster keeps the kind it was followed with).
        as_outage = [cand for cand in em.firing if em.reads_as_outage(cand, now)]
        new_emerging = [cand for cand in em.firing if cand not in as_outage]
        ev = _combine([em.verdicts.get(cid, Verdict()) for cid, kind in em.followed.items()
                       if kind == pb.OUTAGE_CLUSTER] + [em.verdicts[cand.cluster.id] for cand in as_outage])
        v = outage_v = self.outage.evaluate(now)
        if ev.firing or ev.active:
            v = outage_v = Verdict(firing=v.firing or ev.firing, active=v.active or ev.active,
                                   severity=max(v.severity, ev.severity),
                                   reasons=v.reasons if (v.firing or v.active) and v.reasons else ev.reasons)
        seed = []
        if opening(pb.OUTAGE_CLUSTER, v.firing):
            seed = [s for s in self.recent if s.outage]
            if as_outage:
                seed = [*em.representatives(as_outage[0].cluster.id), *seed]
        if (inc := tr.consider(pb.OUTAGE_CLUSTER, v, now, seed)) is not None:
            out.append(inc)
        if pb.OUTAGE_CLUSTER in tr.open:
            for cand in as_outage:
                em.follow(cand.cluster.id, pb.OUTAGE_CLUSTER)
        for cid, kind in list(em.followed.items()):   # the open emerging issues: kept open while active
            if kind != pb.OUTAGE_CLUSTER and (inc := tr.consider(pb.EMERGING_ISSUE, em.verdicts.get(cid, Verdict()),
                                                                 now, [], cluster=cid)) is not None:
                out.append(inc)
        for cand in new_emerging:   # a new problem: its own incident, its own samples
            cid = cand.cluster.id
            inc = tr.consider(pb.EMERGING_ISSUE, em.verdicts[cid], now, em.representatives(cid), cluster=cid)
            if inc is None:
                continue   # in its cooldown
            em.follow(cid, pb.EMERGING_ISSUE)
            # Its languages are the whole cluster's, not only its representatives'.
            tr.clusters[cid].languages = Counter(cand.cluster.languages)
            inc.evidence.languages.clear()
            inc.evidence.languages.update(dict(cand.cluster.languages))
            out.append(inc)
        v = viral_v = self.viral.evaluate(now)
        hot = self.viral.hot_posts(now) if v.active else []
        seed = []
        if opening(pb.VIRAL_COMPLAINT, v.firing):
            ext = {h.split(":", 1)[-1] for h in hot}
            seed = [s for s in self.recent if s.mention_id in hot or set(s.thread_ids) & ext]
        if (inc := tr.consider(pb.VIRAL_COMPLAINT, v, now, seed, posts=hot)) is not None:
            out.append(inc)
        v = self.surge.evaluate(now)
        seed = [s for s in self.recent if s.complaint] if opening(pb.COMPLAINT_SURGE, v.firing) else []
        if (inc := tr.consider(pb.COMPLAINT_SURGE, v, now, seed)) is not None:
            out.append(inc)
        v = self.judge_spike(self.spike.evaluate(now), now)
        cause = (tr.open.get(pb.OUTAGE_CLUSTER) or tr.open.get(pb.VIRAL_COMPLAINT)
                 or max(tr.clusters.values(), key=lambda x: (x.last_active, x.opened_at, x.id), default=None))
        # An outage (or viral post) just resolved and back within its cooldown explains the volume as well.
        back = any(verdict.active and now < tr.cooldown_until.get(kind, 0.0)
                   for kind, verdict in ((pb.OUTAGE_CLUSTER, outage_v), (pb.VIRAL_COMPLAINT, viral_v)))
        if (cause is not None or back) and pb.VOLUME_SPIKE not in tr.open:
            # The extra volume is that incident's own: one page, with the spike as a reason on the open one.
            if cause is not None and v.active and v.reasons:
                cause.reasons = [*[r for r in cause.reasons if "normal volume" not in r], *v.reasons][:6]
                cause.last_active = now
            return out
        seed = list(self.recent) if opening(pb.VOLUME_SPIKE, v.firing) else []
        if (inc := tr.consider(pb.VOLUME_SPIKE, v, now, seed)) is not None:
            out.append(inc)
        return out

    def idle(self, now: float) -> bool:
        """No open incident and no detector that could fire or change state before the brand's next mention:
        ticks until then only learn the quiet minutes (which the next evaluation does anyway)."""
        if self.tracker.incidents() or not (self.spike.idle(now) and self.outage.idle(now) and self.surge.idle(now)
                                     and self.viral.idle(now) and self.emerging.idle(now)):
            return False
        self.spike_held = False   # what the next evaluation would do: the held spike is over
        return True

    def match(self, s: MentionSummary, cluster: int | None = None) -> str:
        """The open incident this mention belongs to ("" if none); adds it to that incident's evidence.
        `cluster`: the emerging-issue cluster the mention joined (None: not clustered)."""
        for kind in _MATCH_ORDER:
            if kind == pb.EMERGING_ISSUE:   # the incident that follows the cluster the mention joined
                inc = self.tracker.clusters.get(cluster) if cluster is not None else None
            else:
                inc = self.tracker.open.get(kind)
            if inc is None:
                continue
            if kind == pb.OUTAGE_CLUSTER and not s.outage:
                continue
            if kind == pb.VIRAL_COMPLAINT:
                ext = {p.split(":", 1)[-1] for p in inc.posts}
                if s.mention_id not in inc.posts and not (set(s.thread_ids) & ext):
                    continue
            inc.add(s, self.cfg.incident)
            return inc.id
        surge = self.tracker.open.get(pb.COMPLAINT_SURGE)
        if surge is not None and s.complaint:
            surge.add(s, self.cfg.incident)   # evidence only: a surge's mentions keep their own priority
        return ""

    def to_dict(self) -> dict[str, Any]:
        return {"brand": self.brand, "spike": self.spike.to_dict(), "outage": self.outage.to_dict(),
                "viral": self.viral.to_dict(), "surge": self.surge.to_dict(), "emerging": self.emerging.to_dict(),
                "base": [self.base_docs, dict(self.base_terms), dict(self.base_flags)],
                "tracker": self.tracker.to_dict(),
                "recent": [s.to_list() for s in self.recent], "seen": self.seen, "texts": self.texts,
                "late": self.late, "skipped": self.skipped, "spike_held": self.spike_held}

    @classmethod
    def from_dict(cls, d: dict[str, Any], cfg: CrisisConfig) -> BrandState:
        st = cls(d["brand"], cfg)
        st.spike = SpikeDetector.from_dict(d["spike"], cfg.spike)
        st.outage = OutageDetector.from_dict(d["outage"], cfg.outage)
        st.viral = ViralDetector.from_dict(d["viral"], cfg.viral)
        if d.get("base"):
            st.base_docs = float(d["base"][0])
            st.base_terms, st.base_flags = Counter(d["base"][1]), Counter(d["base"][2])
        if d.get("surge"):
            st.surge = SurgeDetector.from_dict(d["surge"], cfg.surge)
        if d.get("emerging"):
            st.emerging = EmergingDetector.from_dict(d["emerging"], cfg.emerging)
        st.tracker = IncidentTracker.from_dict(st.brand, d["tracker"], cfg.incident)
        legacy = st.tracker.open.pop(pb.EMERGING_ISSUE, None)
        if legacy is not None:
            # A checkpoint from when a brand had one emerging issue (by kind): it is the one of the cluster the
            # detector followed (0, no cluster, if none: nothing keeps it active, so it resolves when quiet).
            cid = next((c for c, k in st.emerging.followed.items() if k != pb.OUTAGE_CLUSTER), 0)
            legacy.cluster = cid
            st.tracker.clusters[cid] = legacy
        st.recent.extend(MentionSummary.from_list(v) for v in d["recent"])
        st.seen = {str(k): float(v) for k, v in d["seen"].items()}
        st.texts = {str(k): float(v) for k, v in d.get("texts", {}).items()}
        st.late, st.skipped = int(d.get("late", 0)), int(d.get("skipped", 0))
        st.spike_held = bool(d.get("spike_held", False))
        return st


class CrisisEngine:
    def __init__(self, config: CrisisConfig | None = None):
        self.cfg = config or CrisisConfig()
        self.brands: dict[str, BrandState] = {}
        self.clock = 0.0
        self.late = 0                  # events behind the watermark since start (all brands; a metric)
        self.unclustered = 0           # negative posts without an embedding sketch (not clustered; a metric)
        self.dirty: set[str] = set()   # brands whose state changed since the last `take_dirty()`
        self.pooled_share = self.cfg.outage.prior_share   # outage reports per mention over all brands
        self._pooled_at = -math.inf
        self.pooled_emerging = self.cfg.emerging.prior_share   # see pool_emerging

    def pool(self) -> float:
        """Empirical-Bayes prior of the outage detectors: the share of outage reports among all brands'
        mentions over their memories (each brand's learned rates x its effective history, `memory`), blended
        with `outage.prior_share` worth `outage.prior_mentions` mentions; recomputed at most once a minute of
        event time, on mentions only (so a replay that skips quiet ticks pools exactly as one that ticks),
        with every brand's detector brought up to the clock first. Each brand's prior is pooled over the
        other brands (leave-one-out): its own reports are already its evidence, and counted in its prior too
        a brand alone on a worker would be shrunk towards itself. `pooled_share` (all brands) is a new brand's.

        Counts, not rates: with rates (the prior worth one mention a minute) a young worker's first minute
        was the pool, and 4 outage reports among 6 mentions of one brand made the pooled share 0.57, so a
        new brand's first hundred outage reports were "explained" by it and opened nothing."""
        if self.clock - self._pooled_at >= 60.0:
            self._pooled_at = self.clock
            own: dict[str, tuple[float, float]] = {}
            for name, st in self.brands.items():
                st.outage.advance(self.clock)
                h = st.outage.memory()
                own[name] = (st.outage.rate * h, (st.outage.rate + st.outage.other_rate) * h)
            reports = sum(r for r, _ in own.values())
            volume = sum(v for _, v in own.values())
            k = self.cfg.outage.prior_mentions
            prior = self.cfg.outage.prior_share * k
            self.pooled_share = (reports + prior) / (volume + k)
            for name, st in self.brands.items():
                r, v = own[name]
                st.outage.pooled_share = max(0.0, reports - r + prior) / (max(0.0, volume - v) + k)
            self.pool_emerging()
        return self.pooled_share

    def pool_emerging(self) -> float:
        """Empirical-Bayes prior of the emerging-issue clusters: a cluster's usual share of its brand's negative
        posts (EmergingDetector.typical_share), over all brands weighted by their negative posts, blended with
        `emerging.prior_share` worth `emerging.prior_posts` posts."""
        c = self.cfg.emerging
        weighted = total = 0.0
        for st in self.brands.values():
            share, n = st.emerging.typical_share()
            weighted += share * n
            total += n
        self.pooled_emerging = (weighted + c.prior_share * c.prior_posts) / (total + c.prior_posts)
        for st in self.brands.values():
            st.emerging.pooled_share = self.pooled_emerging
        return self.pooled_emerging

    def brand(self, name: str) -> BrandState:
        st = self.brands.get(name)
        if st is None:
            st = self.brands[name] = BrandState(name, self.cfg)
            st.outage.pooled_share = self.pooled_share
            st.emerging.pooled_share = self.pooled_emerging
        return st

    def event_time_of(self, scored: pb.ScoredMention) -> float:
        """The mention's event time under `cfg.event_time` (0 when it has none)."""
        if self.cfg.event_time != "created_at":
            return event_time(scored)
        m = scored.mention
        created = epoch(m.created_at)
        seen = any(m.mention_id in st.seen for b in m.brands if (st := self.brands.get(b)) is not None)
        if created and not seen:
            return created
        return self.clock or epoch(m.received_at)

    def observe(self, scored: pb.ScoredMention, now: float | None = None,
                brands: list[str] | None = None) -> tuple[str, list[pb.Incident]]:
        """Feed one scored mention; returns (id of the open incident it belongs to or "", incident updates).
        `brands`: the brands to count it for (default: every brand it names; a scaled-out worker passes the
        one brand its partition owns)."""
        t = self.event_time_of(scored) or (now if now is not None else self.clock)
        self.clock = max(self.clock, t, now if now is not None else 0.0)
        m = scored.mention
        if not m.brands:
            return "", []
        intents = dict(scored.intents)
        created = epoch(m.created_at)
        eng = weighted_engagement(m.engagement.likes, m.engagement.reposts, m.engagement.replies,
                                  m.engagement.quotes)
        updates: list[pb.Incident] = []
        found = ""
        vector = unsketch(scored.embedding_sketch) if self.cfg.emerging.enabled else None
        # "My data was leaked" reads as a safety/legal matter more than as negative: it is clustered too.
        safety = float(intents.get(self.cfg.viral.safety_intent, 0.0)) >= self.cfg.viral.safety_threshold
        for brand in dict.fromkeys(m.brands if brands is None else brands):
            st = self.brand(brand)
            self.dirty.add(brand)
            summary = MentionSummary(
                mention_id=m.mention_id, t=t, url=m.url, language=scored.language or m.language_hint,
                source=_source_name(m.source), terms=terms_of(m.text, frozenset(b.lower() for b in m.brands))[:30],
                outage=st.outage.is_outage_report(intents), complaint=st.surge.is_complaint(intents),
                negative=scored.sentiment.negative >= self.cfg.viral.negative_threshold,
                thread_ids=[x for x in (m.reply_to_id, m.conversation_id) if x])
            cluster = None
            if st.is_new_post(m.mention_id, t, created):
                if t < self.clock - self.cfg.incident.lateness_seconds:
                    st.late += 1          # too late to judge: counted, not in the windows
                    self.late += 1
                else:
                    volume, outage_ok = st.counts_for_volume(m.text, t, created, self.clock)
                    if volume:
                        st.spike.add(t)
                        # An outage report is the outage detector's: an outage is not also a complaint surge.
                        st.surge.add(t, summary.complaint and not summary.outage)
                        st.learn_baseline(summary)
                        if summary.negative or summary.complaint or summary.outage or safety:
                            if vector is not None:
                                cluster = st.emerging.add(vector, t, summary)
                            else:
                                self.unclustered += 1
                    if summary.outage and outage_ok:
                        st.outage.add(t)
                    elif volume and not summary.outage:
                        st.outage.add_other(t)
                    st.recent.append(summary)
            self.pool()
            st.viral.observe(m.mention_id, t, eng, m.author.follower_count,
                             st.viral.eligible(scored.sentiment.negative, intents), created, m.url)
            updates += st.evaluate(self.clock)
            iid = st.match(summary, cluster)
            found = found or iid
        return found, updates

    def tick(self, now: float) -> list[pb.Incident]:
        """Advance the clock: evaluate every brand (windows empty on a quiet stream) and resolve quiet incidents."""
        self.clock = max(self.clock, now)
        out: list[pb.Incident] = []
        for name, st in self.brands.items():
            before = len(out)
            out += st.evaluate(self.clock)
            out += st.tracker.expire(self.clock)
            if len(out) > before:
                self.dirty.add(name)
        return out

    def take_held(self) -> list[tuple[str, str, str]]:
        """(brand, reason, detail) of the volume spikes held back since the last call (incoherent jumps)."""
        out = []
        for name, st in self.brands.items():
            out += [(name, reason, detail) for reason, detail in st.held]
            st.held.clear()
        return out

    def idle(self) -> bool:
        """Every brand idle at the clock (see BrandState.idle): a replay may jump to the next mention, with a
        tick at least every `max_idle_seconds` so no brand's baseline sees a gap beyond its max_gap."""
        return all(st.idle(self.clock) for st in self.brands.values())

    def forget(self, mention_ids: list[str]) -> list[pb.Incident]:
        """Deleted posts leave the samples of the open incidents that show them: those incidents, re-published."""
        out = []
        for name, st in self.brands.items():
            for inc in st.tracker.incidents():
                if any([inc.forget(mid) for mid in mention_ids]):
                    self.dirty.add(name)   # the checkpoint (crisis-state changelog) must lose it too
                    out.append(inc.to_pb(pb.UPDATED, st.tracker.cfg))
        return out

    def open_incidents(self) -> list[str]:
        return [inc.id for st in self.brands.values() for inc in st.tracker.incidents()]

    def take_dirty(self) -> set[str]:
        dirty, self.dirty = self.dirty, set()
        return dirty

    def drop_brand(self, brand: str) -> None:
        """Forget a brand (another worker owns it now; its checkpoint is in the store)."""
        self.brands.pop(brand, None)
        self.dirty.discard(brand)

    def brand_state(self, brand: str) -> dict[str, Any]:
        return self.brand(brand).to_dict()

    def load_brand_state(self, d: dict[str, Any]) -> None:
        st = BrandState.from_dict(d, self.cfg)
        st.outage.pooled_share = self.pooled_share
        st.emerging.pooled_share = self.pooled_emerging
        self.brands[st.brand] = st

    def to_dict(self) -> dict[str, Any]:
        return {"clock": self.clock, "brands": [st.to_dict() for st in self.brands.values()]}

    @classmethod
    def from_dict(cls, d: dict[str, Any], config: CrisisConfig | None = None) -> CrisisEngine:
        eng = cls(config)
        eng.clock = float(d.get("clock", 0.0))
        for b in d.get("brands", []):
            eng.load_brand_state(b)
        return eng

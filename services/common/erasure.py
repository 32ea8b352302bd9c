"""Erasure on request (GDPR article 17): who is to be forgotten, where their posts are, what can be removed
and when the rest expires, and the audit record without the personal data (pure, no Kafka).

`triage forget` (services/common/forget_cli.py) reads the topics, asks `Subject.matches` of each record,
and hands what it found (`Finding`s) to `plan`, which says per place what is done:
- the pipeline is told: one `MentionDeleted` (reason ERASURE) per mention found, plus one for the author,
  so classify, the router, the queue topics' consumers and the console drop them (services/common/deletions.py);
- compacted topics where the mention is the key get a tombstone (the router's state `sla:<mention id>`);
- the compacted `incidents` topic is keyed by incident id: its records that show the mention are
  re-published without it;
- every other topic is append-only: its copies expire with its retention (`topics.py`), and the plan says
  when (the newest copy's time + the retention).
The audit record names the subject by a digest (blake2b of "<source>:@handle" or the mention id): the same
request can be matched to its record later, the record itself holds no handle, text or id.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from services.common import topics
from services.common.codec import pb
from services.common.deletions import author_keys
from services.common.timeutil import ts_from_epoch


@dataclass(frozen=True)
class Subject:
    """An author on a source (`--author HANDLE --source x`) or one mention (`--mention x:1850`)."""

    source: int = pb.SOURCE_UNSPECIFIED
    handle: str = ""
    mention_id: str = ""

    @classmethod
    def author(cls, source_name: str, handle: str) -> Subject:
        name = source_name.lower()
        if name == "twitter":
            name = "x"
        key = f"SOURCE_{name.upper()}"
        if key not in pb.Source.keys():
            raise ValueError(f"unknown source {source_name!r}")
        handle = handle.strip().lstrip("@")
        if not handle:
            raise ValueError("an author handle is required")
        return cls(source=pb.Source.Value(key), handle=handle)

    @classmethod
    def mention(cls, mention_id: str) -> Subject:
        if ":" not in mention_id:
            raise ValueError(f"a mention id is <source>:<external id>, not {mention_id!r}")
        return cls(mention_id=mention_id.strip())

    def matches(self, mention: Any) -> bool:
        """Whether a `pb.Mention` is the subject's (its author's, or the mention itself)."""
        if self.mention_id:
            return bool(mention.mention_id == self.mention_id)
        theirs = set(author_keys(mention.source, mention.author.handle, ""))
        return mention.source == self.source and bool(set(author_keys(self.source, self.handle, "")) & theirs)

    def digest(self) -> str:
        what = self.mention_id or f"{pb.Source.Name(self.source)}:@{self.handle.lower()}"
        return hashlib.blake2b(what.encode(), digest_size=16).hexdigest()

    def deletion(self, requested_by: str, now: float) -> pb.MentionDeleted | None:
        """The author's own deletion (reason ERASURE), so copies still in flight are dropped too."""
        if self.mention_id:
            return None
        return deletion_for(source=self.source, handle=self.handle, requested_by=requested_by, now=now)


def deletion_for(*, requested_by: str, now: float, mention_id: str = "", source: int = 0,
                 handle: str = "") -> pb.MentionDeleted:
    d = pb.MentionDeleted(reason=pb.ERASURE, requested_by=requested_by, author_handle=handle,
                          source=source)  # type: ignore[arg-type]
    if mention_id:
        name, _, ext = mention_id.partition(":")
        d.mention_id, d.external_id = mention_id, ext
        key = f"SOURCE_{name.upper()}"
        d.source = pb.Source.Value(key) if key in pb.Source.keys() else pb.SOURCE_UNSPECIFIED  # type: ignore[assignment]
    d.deleted_at.CopyFrom(ts_from_epoch(now))
    d.received_at.CopyFrom(ts_from_epoch(now))
    return d


@dataclass
class Finding:
    """Copies of the subject's posts in one place: a topic, with the mention ids and the newest record's time."""

    place: str
    mention_ids: set[str] = field(default_factory=set)
    newest_at: float = 0.0

    def add(self, mention_id: str, at: float) -> None:
        self.mention_ids.add(mention_id)
        self.newest_at = max(self.newest_at, at)


def retention_seconds(topic: str) -> float | None:
    """A topic's retention (None: compacted, or kept forever)."""
    specs = {s.name: s for s in topics.all_topic_specs()}
    spec = specs.get(topic)
    if spec is None and topic.startswith(topics.QUEUE_PREFIX):
        spec = next(s for s in specs.values() if s.name.startswith(topics.QUEUE_PREFIX))
    if spec is None or spec.configs.get("cleanup.policy") == "compact":
        return None
    ms = int(spec.configs.get("retention.ms", str(7 * 24 * 3600 * 1000)))
    return None if ms < 0 else ms / 1000.0


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, tz=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def plan(subject: Subject, findings: Iterable[Finding], requested_by: str, now: float,
         notices: int, tombstones: dict[str, int], republished: int) -> pb.ErasureRecord:
    """The audit record of an erasure: what was done where, what expires when; no personal data in it."""
    record = pb.ErasureRecord(id=uuid.uuid4().hex, subject_digest=subject.digest(), requested_by=requested_by)
    record.at.CopyFrom(ts_from_epoch(now))
    found = [f for f in findings if f.mention_ids]
    record.mentions_found = len(set().union(*(f.mention_ids for f in found)) if found else set())
    record.actions.append(f"{topics.MENTIONS_RAW}: {notices} MentionDeleted (reason erasure): classify, the "
                          "router, the queue topics' consumers and the console drop them")
    for place, n in sorted(tombstones.items()):
        record.actions.append(f"{place}: {n} tombstone(s)")
    if republished:
        record.actions.append(f"{topics.INCIDENTS}: {republished} incident(s) re-published without the samples")
    for f in sorted(found, key=lambda f: f.place):
        keep = retention_seconds(f.place)
        if keep is not None:
            record.expiring.append(f"{f.place}: {len(f.mention_ids)} mention(s), the last copy expires by "
                                   f"retention at {_iso(f.newest_at + keep)}")
    return record


def without_samples(incident: pb.Incident, mention_ids: set[str]) -> pb.Incident | None:
    """The incident re-published without the erased samples (None: it showed none of them)."""
    ev = incident.evidence
    shown = [m for m in ev.sample_mention_ids if m in mention_ids]
    if not shown:
        return None
    out = pb.Incident()
    out.CopyFrom(incident)
    posts = {m.split(":", 1)[-1] for m in shown}
    del out.evidence.sample_mention_ids[:]
    out.evidence.sample_mention_ids.extend(m for m in ev.sample_mention_ids if m not in mention_ids)
    del out.evidence.sample_urls[:]
    out.evidence.sample_urls.extend(u for u in ev.sample_urls if u.rstrip("/").rsplit("/", 1)[-1] not in posts)
    return out

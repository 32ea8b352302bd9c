"""Silences created and expired from the console, as read from the compacted `silences` topic (pure).

Each record is a `Silence` keyed by its id; the latest record of an id replaces the earlier ones, an
expired silence is republished with `ends_at` = the moment someone expired it, and a tombstone (empty
value) forgets the id. `SilenceFeed.match` has the routing file's semantics (silences.py): a silence
mutes pages for mentions whose routing labels (labels.py) match all its matchers while
starts_at <= now < ends_at; queue and webhook deliveries are never muted.

A record that cannot be used (undecodable, no id, a bad matcher, no matcher that needs a non-empty
label, which would mute everything, as Alertmanager refuses too) raises ValueError with the reason and
leaves the feed unchanged.
"""

from __future__ import annotations

from google.protobuf.message import DecodeError

from services.common import codec
from services.common.alerting.matchers import Matcher
from services.common.alerting.silences import Silence
from services.common.codec import pb
from services.common.timeutil import epoch


def parse_matchers(texts: list[str]) -> tuple[Matcher, ...]:
    """Matchers in routing-file syntax; at least one of them must need a non-empty label value."""
    matchers = tuple(Matcher.parse(t) for t in texts if t.strip())
    if not matchers:
        raise ValueError("a silence needs at least one matcher")
    if all(m.matches({}) for m in matchers):
        raise ValueError("a silence needs a matcher that does not match an empty label value "
                         "(it would silence every page)")
    return matchers


def from_record(msg: pb.Silence) -> Silence:
    if not msg.id:
        raise ValueError("silence has no id")
    return Silence(matchers=parse_matchers(list(msg.matchers)), starts_at=epoch(msg.starts_at),
                       ends_at=epoch(msg.ends_at), comment=msg.comment, created_by=msg.created_by, id=msg.id,
                       incident_id=msg.incident_id, created_at=epoch(msg.created_at), expired_by=msg.expired_by)


class SilenceFeed:
    """The latest version of every silence on the topic, and which one (if any) mutes a page now."""

    def __init__(self) -> None:
        self.silences: dict[str, Silence] = {}
        self.skipped = 0  # records `fold` could not use

    def apply(self, msg: pb.Silence) -> Silence:
        silence = from_record(msg)
        self.silences[silence.id] = silence
        return silence

    def remove(self, silence_id: str) -> None:
        self.silences.pop(silence_id, None)

    def apply_record(self, key: bytes | None, value: bytes | None) -> Silence | None:
        """Fold one consumed record: a tombstone removes its key's silence (returns None)."""
        if not value:
            if key:
                self.remove(key.decode(errors="replace"))
            return None
        try:
            msg = codec.decode(value, pb.Silence)
        except DecodeError as exc:
            raise ValueError(str(exc)) from exc
        return self.apply(msg)

    def fold(self, key: bytes | None, value: bytes | None) -> str:
        """`apply_record` for a topic follower (services/common/follower.py): "" when folded, else the reason
        the record was skipped (counted in `skipped`); it never raises, so one bad record stops nothing."""
        try:
            self.apply_record(key, value)
        except ValueError as exc:
            self.skipped += 1
            return str(exc) or type(exc).__name__
        return ""

    def match(self, labels: dict[str, str], now: float) -> Silence | None:
        """The active silence that mutes a page for these labels at `now` (the oldest first), or None."""
        ordered = sorted(self.silences.values(), key=lambda s: (s.starts_at, s.id))
        return next((s for s in ordered if s.silences(labels, now)), None)  # = silences.active_silence

    def active(self, now: float) -> list[Silence]:
        return sorted((s for s in self.silences.values() if s.active(now)), key=lambda s: (s.ends_at, s.id))

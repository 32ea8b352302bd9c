"""Classify's side of "deleted means deleted": which records of a batch are deletions, which mentions of it
were deleted before they were scored (pure, no Kafka).

`mentions.raw` carries mentions and, with the header `triage-type: triage.v1.MentionDeleted`, their
deletions (services/common/deletions.py). A batch is judged whole: a mention whose deletion is anywhere in
the same batch, or was seen within the dedupe window (a replay of `mentions.raw`, a copy that arrived late),
is dropped without being scored, so it never reaches `mentions.scored` nor a queue. The deletions go on to
`mentions.scored` for the router (the mention may have been scored in an earlier batch).

Example:

    gate = DeletionGate(window_seconds=3600)
    kept = gate.admit([(mention_bytes, False), (deletion_bytes, True)])
    kept.mentions   # [] when the deletion is the mention's
    kept.deletions  # [pb.MentionDeleted], to forward
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from services.common import codec
from services.common.codec import pb
from services.common.deletions import DeletionMemory


@dataclass
class Admitted:
    """What a batch holds after the gate: mentions to score, deletions to forward, and what was dropped."""

    mentions: list[pb.Mention] = field(default_factory=list)
    deletions: list[pb.MentionDeleted] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)          # mention ids not scored: deleted
    undecodable: list[tuple[bytes, Exception]] = field(default_factory=list)


class DeletionGate:
    """Remembers deletions for `window_seconds` and keeps deleted mentions out of scoring."""

    def __init__(self, window_seconds: float, max_entries: int = 1_000_000,
                 clock: Callable[[], float] = time.monotonic):
        self.memory = DeletionMemory(window_seconds, max_entries, clock)

    def admit(self, records: list[tuple[bytes, bool]]) -> Admitted:
        """`records`: (value, is a deletion) in partition order."""
        out = Admitted()
        mentions: list[pb.Mention] = []
        for raw, deletion in records:
            try:
                if deletion:
                    d = codec.decode(raw, pb.MentionDeleted)
                    self.memory.remember(d)
                    out.deletions.append(d)
                else:
                    mentions.append(codec.decode(raw, pb.Mention))
            except Exception as exc:
                out.undecodable.append((raw, exc))
        for mention in mentions:
            if self.memory.covers(mention):
                out.dropped.append(mention.mention_id)
            else:
                out.mentions.append(mention)
        return out

"""Deleted means deleted: how a `MentionDeleted` travels, and what a stage remembers of it (pure, no Kafka).

A deletion travels on the topics its mention travels on, not on a topic of its own: `mentions.raw`,
`mentions.scored` and the queue topics, keyed by the mention id like the mention, with the header
`triage-type: triage.v1.MentionDeleted`. Kafka orders a partition, so a stage reading the mention's
partition sees the mention and its deletion in the order ingest accepted them; a separate
`mentions.deletions` topic would be read at its own pace and could overtake, or trail, the mention.
An author's deletion (account deactivated, erasure of a person) has no mention id: it is written to
every partition of the topic, so whichever replica owns an author's posts sees it, ordered with them.

Classify and the router keep a `DeletionMemory` for the dedupe window: a deletion that arrives before its
mention (reordering through the crisis stage, a replay of `mentions.raw`) still stops that mention. The
memory is checkpointed on a compacted topic (deletion_log.py) and restored before a restarted worker, or the
replica a partition moved to, judges that partition's first record.

Consumers of the queue topics (inbox apps, the console) must check the header before decoding: a record
with `triage-type: triage.v1.MentionDeleted` carries a `MentionDeleted`, and the item with that mention id
(or every item of that author) must be removed from what they show. Records without the header are
`RoutedMention`s, as before.

Example:

    memory = DeletionMemory(window_seconds=3600)
    memory.remember(deleted)              # a pb.MentionDeleted
    memory.covers(mention)                # True: drop it, never route it
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from services.common.codec import pb

TYPE_HEADER = "triage-type"
DELETION_TYPE = b"triage.v1.MentionDeleted"


def deletion_headers() -> list[tuple[str, bytes]]:
    return [(TYPE_HEADER, DELETION_TYPE)]


def is_deletion(headers: Iterable[tuple[str, bytes]] | None) -> bool:
    """True when a record's headers say it carries a `MentionDeleted` (not the topic's usual type)."""
    for name, value in headers or ():
        if name == TYPE_HEADER:
            return bytes(value) == DELETION_TYPE
    return False


def _source_name(source: int) -> str:
    return pb.Source.Name(source).removeprefix("SOURCE_").lower() if source else "unspecified"


def author_keys(source: int, handle: str, author_id: str) -> list[str]:
    """The keys an author is remembered under: handles compare without case or a leading @."""
    name = _source_name(source)
    keys = []
    if handle.strip().lstrip("@"):
        keys.append(f"{name}:@{handle.strip().lstrip('@').lower()}")
    if author_id.strip():
        keys.append(f"{name}:#{author_id.strip()}")
    return keys


def deletion_key(deleted: Any) -> str:
    """The Kafka key of a deletion: the mention id, or `author:<source>:@handle` for an author."""
    if deleted.mention_id:
        return str(deleted.mention_id)
    keys = author_keys(deleted.source, deleted.author_handle, deleted.author_id)
    return "author:" + (keys[0] if keys else _source_name(deleted.source))


def is_author_deletion(deleted: Any) -> bool:
    return not deleted.mention_id


def covers(deleted: Any, mention: Any) -> bool:
    """Whether one deletion removes `mention` (a pb.Mention)."""
    if deleted.mention_id:
        return bool(deleted.mention_id == mention.mention_id)
    if deleted.source != mention.source:
        return False
    return bool(set(author_keys(deleted.source, deleted.author_handle, deleted.author_id))
                & set(author_keys(mention.source, mention.author.handle, mention.author.id)))


def memory_keys(deleted: Any) -> list[str]:
    """The keys a deletion is remembered under: `id:<mention id>`, or `author:<source>:@handle` / `:#id`."""
    if deleted.mention_id:
        return [f"id:{deleted.mention_id}"]
    return [f"author:{k}" for k in author_keys(deleted.source, deleted.author_handle, deleted.author_id)]


def key_owner(key: str) -> str | None:
    """The mention id a memory key belongs to (its partition's owner), or None for an author's key: an author's
    posts are spread over every partition, so an author's key is kept on every partition."""
    return key[3:] if key.startswith("id:") else None


class DeletionMemory:
    """Mention ids and authors deleted within the last `window_seconds` (bounded to `max_entries`).

    The clock is injected (wall-clock seconds by default: what is remembered is checkpointed with the time it
    was deleted, services/common/deletion_log.py, and must expire across restarts) so the window is
    unit-tested without sleeping. `remember` and `covers` may run in one thread while the event loop
    restores or checkpoints (`restore`, `take_expired`): a lock guards the keys.
    """

    def __init__(self, window_seconds: float, max_entries: int = 1_000_000,
                 clock: Callable[[], float] = time.time):
        self.window = window_seconds
        self.max_entries = max_entries
        self.clock = clock
        self._keys: OrderedDict[str, float] = OrderedDict()
        self._expired: list[str] = []   # evicted since the last `take_expired`: their checkpoints get tombstones
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._keys)

    def _expire(self, now: float) -> None:
        while self._keys:
            key, at = next(iter(self._keys.items()))
            if now - at <= self.window and len(self._keys) <= self.max_entries:
                break
            self._keys.popitem(last=False)
            if len(self._expired) < self.max_entries:
                self._expired.append(key)

    def remember(self, deleted: Any) -> list[tuple[str, float]]:
        """Remember a deletion; returns its (key, when) pairs, what a checkpoint stores."""
        with self._lock:
            now = self.clock()
            keys = memory_keys(deleted)
            for key in keys:
                self._keys[key] = now
                self._keys.move_to_end(key)
            self._expire(now)
            return [(key, now) for key in keys if key in self._keys]

    def restore(self, entries: Iterable[tuple[str, float]]) -> int:
        """Put back checkpointed (key, deleted at) pairs (wall clock) still within the window; returns the keys held."""
        with self._lock:
            now = self.clock()
            merged = dict(self._keys)
            for key, at in entries:
                if now - at > self.window:
                    self._expired.append(key)   # a checkpoint nobody expired (the worker was down): tombstone it
                elif merged.get(key, -1.0) < at:
                    merged[key] = at
            # Oldest first, so expiry stays a scan from the front.
            self._keys = OrderedDict(sorted(merged.items(), key=lambda kv: kv[1]))
            self._expire(now)
            return len(self._keys)

    def take_expired(self) -> list[str]:
        """The keys that left the memory (expired or evicted) since the last call."""
        with self._lock:
            self._expire(self.clock())
            # A key remembered again since it expired keeps its (newer) checkpoint.
            out = [key for key in dict.fromkeys(self._expired) if key not in self._keys]
            self._expired = []
            return out

    def covers(self, mention: Any) -> bool:
        """True when `mention` (a pb.Mention) was deleted, itself or its author, within the window."""
        with self._lock:
            self._expire(self.clock())
            if f"id:{mention.mention_id}" in self._keys:
                return True
            return any(f"author:{k}" in self._keys
                       for k in author_keys(mention.source, mention.author.handle, mention.author.id))

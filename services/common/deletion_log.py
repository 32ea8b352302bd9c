"""The deletions a worker remembers, checkpointed so that a restart or a rebalance does not forget them.

A deletion that arrives before its mention (reordering, a replay) must stop that mention for the dedupe window
(services/common/deletions.py, `DeletionMemory`). The memory is in the process; this module writes each key it
learns to a compacted, partitioned `StateLog` (`deleted:<key>` -> `{"at": <epoch seconds>}`) and reads them
back when the worker starts or is assigned partitions:

- a mention's key (`id:<mention id>`) goes to the partition of its mention id, co-partitioned with the input
  the mention arrives on, so the replica a partition moves to loads exactly the deletions it needs;
- an author's key goes to every partition (the author's posts are spread over all of them);
- keys that leave the memory (past the window, or evicted by the size bound) are tombstoned, so the log
  stays as small as the memory; keys older than the window are not restored.

The checkpoint is written before the batch that carried the deletion is committed (the caller awaits the
futures), so a crash between the two replays the deletion rather than losing it.

Example:

    log = DeletionLog(DeletionMemory(3600))
    log.attach(state_log)                       # a StateLog (services/common/state_log.py)
    log.restore(await state_log.load([0, 3]))   # the partitions this replica owns
    pending = await log.record(deleted)         # remember + checkpoint; await before committing
    pending = await log.tombstone_expired()     # from a timer
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from services.common.deletions import DeletionMemory, key_owner, memory_keys
from services.common.logging import get_logger
from services.common.state_log import StateLog

log = get_logger("deletions")

PREFIX = "deleted:"


class DeletionLog:
    """A `DeletionMemory` and its checkpoints on a `StateLog` (attached once the worker's producer runs)."""

    def __init__(self, memory: DeletionMemory):
        self.memory = memory
        self.state: StateLog | None = None

    def attach(self, state: StateLog) -> None:
        self.state = state

    async def _put(self, key: str, value: dict[str, Any] | None) -> list[Any]:
        assert self.state is not None, "DeletionLog.attach(state) first"
        owner = key_owner(key)
        if owner is not None:
            return [await self.state.put(PREFIX + key, value, owner)]
        return [await self.state.put(PREFIX + key, value, key, partition=p) for p in range(self.state.partitions)]

    async def record(self, deleted: Any) -> list[Any]:
        """Remember `deleted` (a pb.MentionDeleted) and checkpoint it; returns the futures to await before the
        batch that carried it is committed."""
        return await self.checkpoint(self.memory.remember(deleted))

    async def checkpoint_deletions(self, deletions: Iterable[Any]) -> list[Any]:
        """Checkpoint deletions the memory already holds (remembered in another thread, classify's gate)."""
        now = self.memory.clock()
        return await self.checkpoint([(key, now) for d in deletions for key in memory_keys(d)])

    async def checkpoint(self, entries: Iterable[tuple[str, float]]) -> list[Any]:
        pending: list[Any] = []
        for key, at in entries:
            pending += await self._put(key, {"at": at})
        return pending

    def restore(self, data: Mapping[str, Mapping[str, Any]]) -> int:
        """Put back the `deleted:` keys of a loaded state (other keys are ignored); returns the keys held."""
        entries = []
        for key, value in data.items():
            if key.startswith(PREFIX) and isinstance(value, Mapping):
                try:
                    entries.append((key[len(PREFIX):], float(value["at"])))
                except (KeyError, TypeError, ValueError):
                    log.warning("deletion_checkpoint_unreadable", key=key[:80])
        held = self.memory.restore(entries)
        if entries:
            log.info("deletions_restored", read=len(entries), held=held)
        return held

    async def tombstone_expired(self) -> list[Any]:
        """Tombstones for the keys that left the memory since the last call (none before `attach`)."""
        if self.state is None:
            return []
        pending: list[Any] = []
        for key in self.memory.take_expired():
            pending += await self._put(key, None)
        return pending

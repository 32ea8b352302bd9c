"""Partition ownership on a router replica (scale-out, docs/scaling.md): which groups and SLA clocks are its own.

`mentions.scored`, `responses`, the page requests and the router's state topic are co-partitioned:
partition p of each belongs to one replica at a time. A mention id or a group key is owned by the
replica that owns its partition (`owns`). When Faust assigns partitions (`assign`) their state is
loaded before their first message is judged; messages of a partition still loading wait for it,
never skipped as "not owned". Revoked partitions (`revoke`) are forgotten here (their state is
durable on the state topic) under the tick lock, so no page of theirs is in flight or sent after.
Without Faust (one process, the in-process tests) `owned` is None: everything is this replica's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

from services.common import topics
from services.common.deletion_log import DeletionLog
from services.common.logging import get_logger
from services.common.topics import partition_for
from services.router import metrics as router_metrics
from services.router.grouping import Group, IncidentGrouper
from services.router.sla import SlaItem, SlaTracker

log = get_logger("router")


class StateSource(Protocol):
    """Where a partition's state is read from (state.StateLog)."""

    async def load(self, partitions: Iterable[int] | None = None) -> dict[str, dict[str, Any]]: ...


class PartitionOwnership:
    """The state partitions this replica owns, and the groups and SLA clocks that go with them.

    Example:

        ownership = PartitionOwnership(grouper, sla, tick_lock)
        ownership.restore(await state.load())           # one process: owns everything
        if await ownership.owns(scored.mention.mention_id):
            ...                                         # route it; else it is another replica's
    """

    def __init__(self, grouper: IncidentGrouper, sla: SlaTracker, lock: asyncio.Lock,
                 partitions: int = topics.DEFAULT_PARTITIONS, deletions: DeletionLog | None = None):
        self.grouper = grouper
        self.sla = sla
        self.deletions = deletions  # the deletions remembered (`deleted:` keys), restored with the rest
        self.lock = lock  # the worker's tick lock: no page is sent while ownership changes
        self.partitions = partitions  # settings.router_partitions: the state topic's count (checked at start)
        # None: all partitions (no Faust); under Faust, create_app sets an empty set and the assignments fill it.
        self.owned: set[int] | None = None
        self._loading: set[int] = set()  # assigned, state still loading: their messages wait for it
        self._loaded = asyncio.Event()
        self._loaded.set()

    def partition(self, owner: str) -> int:
        return partition_for(owner, self.partitions)

    async def owns(self, owner: str) -> bool:
        """Whether this replica owns `owner`'s partition (a mention id, a group key). A message of a partition
        whose state is still loading waits for it; one of a partition revoked a moment ago is left to the new
        owner (its offset is not this replica's to commit any more), counted as `not_owned`."""
        if self.owned is None:
            return True
        p = self.partition(owner)
        while p in self._loading:
            await self._loaded.wait()
        if p in self.owned:
            return True
        router_metrics.NOT_OWNED.inc()
        return False

    def restore(self, data: dict[str, dict[str, Any]]) -> None:
        """Put back the groups, SLA clocks and remembered deletions read from the state topic (keys
        `group:<key>`, `sla:<mention>`, `deleted:<key>`)."""
        for key, value in data.items():
            kind, _, _ident = key.partition(":")
            if kind == "group":
                self.grouper.restore(Group.from_json(value))
            elif kind == "sla":
                self.sla.restore(SlaItem.from_json(value))
            # (`incident:` records of older versions are ignored: every replica follows the incidents topic)
        if self.deletions is not None:
            self.deletions.restore(data)
        log.info("state_restored", groups=len(self.grouper.open_groups()), sla_items=len(self.sla.items),
                 pages_retrying=sum(self.grouper.retrying().values()))

    def drop(self, partitions: set[int]) -> None:
        """Forget the groups and SLA clocks of `partitions` (their state is durable on the state topic)."""
        if not partitions:
            return
        self.grouper.forget(lambda key: self.partition(key) in partitions)
        self.sla.forget(lambda mention_id: self.partition(mention_id) in partitions)
        if self.owned is not None:
            self.owned -= partitions
        log.info("partitions_dropped", partitions=sorted(partitions), groups=len(self.grouper.groups),
                 sla_items=len(self.sla.items))

    async def revoke(self, partitions: set[int]) -> None:
        """Another replica may take these over: under the tick lock, so no page of theirs is in flight or sent
        after this returns."""
        async with self.lock:
            if self.owned is not None:
                self.drop(partitions & self.owned)

    async def assign(self, partitions: set[int], ready: Callable[[], Awaitable[StateSource]],
                     reread_ledger: Callable[[], Awaitable[None]]) -> None:
        """Load the state of newly assigned partitions before their first message (Faust awaits this during
        the rebalance), and re-read the queue topics' recent versions (`reread_ledger`): the previous owner
        may have routed mentions of them after this replica's ledger was loaded. `ready` starts the worker
        and gives its state log."""
        if self.owned is None:
            self.owned = set()
        # Messages of the new partitions wait (not skip) until their state is here, from now on: Faust may
        # resume the flow before this returns, and when the start or the load fails (a broker restarting) the
        # caller retries while they keep waiting. None is processed without its state, none is skipped as
        # "not owned" and committed (chaos run 2026-12-03: 280 mentions lost that way after a broker restart).
        self._loading = set(partitions) - self.owned
        self._loaded.clear()
        state = await ready()
        async with self.lock:
            self.drop(self.owned - partitions)
            new = partitions - self.owned
            self._loading = set(new)
            if new:
                self.restore(await state.load(new))
                await reread_ledger()
            self.owned = set(partitions)
            self._loading = set()
            self._loaded.set()
            log.info("partitions_assigned", partitions=sorted(partitions), new=sorted(new),
                     groups=len(self.grouper.groups), sla_items=len(self.sla.items))

"""Partition assignment on a router replica: messages of a newly assigned partition wait for its state.

Faust can resume the flow before its `on_partitions_assigned` signal handler returns, and the handler
fails and is retried while the broker restarts. A message of such a partition must wait for the state,
never be judged "not owned" (skipped, and its offset committed: the mention would never be routed).
"""

from __future__ import annotations

import asyncio

import pytest

from services.router import metrics as router_metrics
from services.router import routing_file
from services.router.app import RouterWorker
from services.router.config import DEFAULT_ROUTES, RouterSettings


class FakeState:
    async def load(self, partitions):
        return {}


def test_a_message_of_a_partition_whose_assignment_is_being_retried_waits_and_is_not_skipped():
    async def scenario() -> tuple[bool, bool, float]:
        worker = RouterWorker(RouterSettings(kafka_bootstrap="127.0.0.1:1"), routing_file.load(DEFAULT_ROUTES))
        worker.ownership.owned = set()   # as create_app sets it under Faust
        starts = 0

        async def start() -> None:
            nonlocal starts
            starts += 1
            if starts == 1:
                raise ConnectionError("broker restarting")
            worker.state = FakeState()

        async def load_ledger(*_a, **_k) -> None:
            return None

        worker.start = start               # type: ignore[method-assign]
        worker.ledger.load = load_ledger   # type: ignore[method-assign]
        not_owned = router_metrics.NOT_OWNED._value.get()
        everything = set(range(worker.ownership.partitions))
        with pytest.raises(ConnectionError):
            await worker.on_partitions_assigned(everything)    # the first try fails ...
        owns = asyncio.create_task(worker.ownership.owns("x:12345"))   # ... while Faust already hands out messages
        await asyncio.sleep(0.05)
        waited = not owns.done()
        await worker.on_partitions_assigned(everything)        # the caller's retry succeeds
        return waited, await asyncio.wait_for(owns, 1), router_metrics.NOT_OWNED._value.get() - not_owned

    waited, owned, skipped = asyncio.run(scenario())
    assert waited, "the message was judged before the partition's state was loaded"
    assert owned and skipped == 0

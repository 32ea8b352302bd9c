"""Follow a whole (small, usually compacted) topic without a consumer group: every replica sees every record.

What replicas of a worker must all know, whichever partitions they own, is read this way: the router's
open incidents (inhibition, closing the groups it owns) and silences. `start` returns once everything the
topic held at that moment is folded in (so the first decision already knows it); then a task follows new
records until `stop`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer

from services.common.logging import get_logger

log = get_logger("follower")

OnRecord = Callable[[bytes | None, bytes | None], Any]


class TopicFollower:
    def __init__(self, bootstrap: str, topic: str, on_record: OnRecord, *, client_id: str,
                 client_options: Mapping[str, Any] | None = None) -> None:
        self.bootstrap, self.topic, self.on_record, self.client_id = bootstrap, topic, on_record, client_id
        self.client_options = dict(client_options or {})
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    async def _fold(self, key: bytes | None, value: bytes | None) -> None:
        result = self.on_record(key, value)
        if asyncio.iscoroutine(result):
            await result

    async def start(self, timeout: float = 60.0) -> None:
        consumer = AIOKafkaConsumer(self.topic, bootstrap_servers=self.bootstrap, client_id=self.client_id,
                                    group_id=None, enable_auto_commit=False, auto_offset_reset="earliest",
                                    **self.client_options)
        await consumer.start()
        try:
            await asyncio.wait_for(self._catch_up(consumer), timeout)
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer
        self._task = asyncio.create_task(self._follow(consumer), name=f"follow-{self.topic}")

    async def _catch_up(self, consumer: AIOKafkaConsumer) -> None:
        for _ in range(600):  # the assignment of a group-less subscription follows the first metadata (~ms)
            if consumer.assignment():
                break
            await asyncio.sleep(0.05)
        tps = sorted(consumer.assignment())
        for tp in tps:
            await consumer.seek_to_beginning(tp)
        ends = await consumer.end_offsets(tps)
        todo = {tp for tp in tps if ends[tp] > 0}
        while todo:
            batch = await consumer.getmany(timeout_ms=500, max_records=2000)
            for recs in batch.values():
                for r in recs:
                    await self._fold(r.key, r.value)
            todo = {tp for tp in todo if await consumer.position(tp) < ends[tp]}

    async def _follow(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            try:
                batch = await consumer.getmany(timeout_ms=500, max_records=500)
                for recs in batch.values():
                    for r in recs:
                        await self._fold(r.key, r.value)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep following; the record's handler logs its own problems
                log.warning("follow_failed", topic=self.topic, error=type(exc).__name__, detail=str(exc)[:200])
                await asyncio.sleep(1.0)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

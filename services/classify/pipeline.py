"""The classify worker's staged batch loop: intake -> prepare (thread) -> model (thread) -> emit (event loop).

No Kafka in here: the worker (`app.py`) passes the three stage functions, so the staging is unit-tested
with plain callables (tests/unit/test_classify_batching.py).

- intake: items (Faust events) queue up, bounded (`put` waits when full: back-pressure on the stream);
- prepare: a batch cut by `BatchPolicy` is decoded and tokenised in the "prepare" thread, while the model
  runs the previous batch in the "inference" thread, so the cores never wait for tokenisation or protobuf
  decoding (prefetch depth 1: the next batch is cut only once the model took the one prepared before it,
  so it keeps growing while the model is busy);
- model: one batch at a time, in order;
- emit: on the event loop, in order, one batch at a time (produce, wait for Kafka's acks, then ack the
  batch's input). A failed prepare or model step reaches `emit` as the exception, which decides what to
  do with the batch (the worker dead-letters it); nothing is dropped silently.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, TypeVar

from services.classify.batching import BatchPolicy

P = TypeVar("P")   # a prepared batch
R = TypeVar("R")   # the model's result for it


class StagedBatches(Generic[P, R]):
    """Runs prepare / model / emit as overlapping stages over batches cut from an intake queue."""

    def __init__(self, policy: BatchPolicy, prepare: Callable[[list[Any]], P], infer: Callable[[P], R],
                 emit: Callable[[list[Any], P | None, R | BaseException], Awaitable[None]],
                 intake_limit: int | None = None, clock: Callable[[], float] = time.monotonic,
                 prepare_pool: ThreadPoolExecutor | None = None, infer_pool: ThreadPoolExecutor | None = None):
        self.policy = policy
        self._prepare = prepare
        self._infer = infer
        self._emit = emit
        self.intake_limit = intake_limit or 4 * policy.max_batch
        self.clock = clock
        self.prepare_pool = prepare_pool or ThreadPoolExecutor(1, thread_name_prefix="prepare")
        self.infer_pool = infer_pool or ThreadPoolExecutor(1, thread_name_prefix="inference")
        self._intake: collections.deque[Any] = collections.deque()
        self._changed = asyncio.Event()     # intake grew or the model went idle: re-plan the cut
        self._space = asyncio.Event()       # the intake has room again
        self._ready: asyncio.Queue[tuple[list[Any], P | None, BaseException | None]] = asyncio.Queue(maxsize=1)
        self._done: asyncio.Queue[tuple[list[Any], P | None, R | BaseException]] = asyncio.Queue(maxsize=2)
        self._busy: tuple[float, int] | None = None   # (started, size) of the batch in the model
        self.batches = 0

    # ------------------------------------------------------------------ intake
    @property
    def queued(self) -> int:
        return len(self._intake)

    async def put(self, item: Any) -> None:
        """Queue one item; waits while the intake holds `intake_limit` items."""
        while len(self._intake) >= self.intake_limit:
            self._space.clear()
            await self._space.wait()
        self._intake.append(item)
        self._changed.set()

    # ------------------------------------------------------------------ running
    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[StagedBatches[P, R]]:
        """The three stages as tasks for the duration of the block; a stage that dies ends the block."""
        tasks = [asyncio.create_task(c, name=f"classify-{n}") for n, c in
                 (("cut", self._cut_loop()), ("model", self._model_loop()), ("emit", self._emit_loop()))]
        body = asyncio.current_task()

        def stage_died(t: asyncio.Task[None]) -> None:
            if not t.cancelled() and t.exception() is not None and body is not None:
                body.cancel()

        for t in tasks:
            t.add_done_callback(stage_died)
        try:
            yield self
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for t in tasks:
                if not t.cancelled() and t.exception() is not None:
                    raise t.exception()  # type: ignore[misc]

    def _wait_before_cut(self) -> float:
        if self._busy is None:
            return self.policy.wait_before_cut(len(self._intake), None)
        started, n = self._busy
        return self.policy.wait_before_cut(len(self._intake), n, self.clock() - started)

    async def _cut_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._ready.join()          # the model took the batch prepared before: cut the next one
            while True:
                wait = self._wait_before_cut()
                if self._intake and wait <= 0:
                    break
                self._changed.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), timeout=wait if self._intake else None)
            items = [self._intake.popleft() for _ in range(self.policy.batch_size(len(self._intake)))]
            self._space.set()
            started = time.perf_counter()
            try:
                prepared: P | None = await loop.run_in_executor(self.prepare_pool, self._prepare, items)
                failure: BaseException | None = None
            except Exception as exc:   # reaches emit, which dead-letters the batch
                prepared, failure = None, exc
            self.policy.observe_prepare(len(items), time.perf_counter() - started)
            await self._ready.put((items, prepared, failure))

    async def _model_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items, prepared, failure = await self._ready.get()
            self._ready.task_done()
            result: R | BaseException
            if failure is not None or prepared is None:
                result = failure or RuntimeError("batch was not prepared")
            else:
                self._busy = (self.clock(), len(items))
                started = time.perf_counter()
                try:
                    result = await loop.run_in_executor(self.infer_pool, self._infer, prepared)
                    self.policy.observe_inference(len(items), time.perf_counter() - started)
                except Exception as exc:
                    result = exc
                finally:
                    self._busy = None
                    self._changed.set()
            await self._done.put((items, prepared, result))

    async def _emit_loop(self) -> None:
        while True:
            items, prepared, result = await self._done.get()
            await self._emit(items, prepared, result)
            self.batches += 1

    def shutdown(self) -> None:
        self.prepare_pool.shutdown(wait=False)
        self.infer_pool.shutdown(wait=False)

"""Offline scoring through the worker's staged pipeline (issue 27: one scoring path).

`triage score`, `triage backtest` and `make eval` score files, not a Kafka stream, but they run the same
stages as the worker (`pipeline.StagedBatches`): batches cut by `BatchPolicy`, decoding, tokenisation and
language ID in the "prepare" thread overlapped with the model in the "inference" thread, length buckets in
every forward pass. So a user's offline scoring is as fast as the worker, and what it measures (batch
sizes, the encoder's runtime and precision) is what the worker does.

`run_staged` drives the stages from a plain iterable in a private event loop (a background thread) and
yields results in input order, holding at most a few batches in memory, so a file of millions of lines
streams through. A failure in a stage is raised in the caller, never swallowed.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from services.classify.batching import BatchPolicy
from services.classify.pipeline import StagedBatches

T = TypeVar("T")
P = TypeVar("P")
R = TypeVar("R")

DEFAULT_MAX_BATCH = 128   # the worker's default `max_batch`
_END = object()


def run_staged(items: Iterable[T], prepare: Callable[[list[T]], P], infer: Callable[[P], Sequence[R]],
               max_batch: int = DEFAULT_MAX_BATCH, max_wait: float = 0.05, buffered_batches: int = 4) -> Iterator[R]:
    """``infer(prepare(batch))`` over batches of ``items``, overlapped like the worker; one result per item,
    in input order. ``infer`` must return one result per item of its batch."""
    out: queue.Queue[Any] = queue.Queue(maxsize=buffered_batches)
    stop = threading.Event()

    async def drive() -> None:
        policy = BatchPolicy(max_batch, max_wait)
        emitted = asyncio.Event()
        counts = {"put": 0, "done": 0}

        async def emit(batch: list[T], _prepared: P | None, result: Sequence[R] | BaseException) -> None:
            if isinstance(result, BaseException):
                raise result
            if len(result) != len(batch):
                raise RuntimeError(f"the model returned {len(result)} results for a batch of {len(batch)}")
            while not stop.is_set():   # bounded hand-over: wait while the reader is behind
                try:
                    out.put(list(result), timeout=0.1)
                    break
                except queue.Full:
                    await asyncio.sleep(0.01)
            counts["done"] += len(batch)
            emitted.set()

        staged: StagedBatches[P, Sequence[R]] = StagedBatches(policy, prepare, infer, emit)
        try:
            async with staged.running():
                for item in items:
                    if stop.is_set():
                        return
                    await staged.put(item)
                    counts["put"] += 1
                while counts["done"] < counts["put"] and not stop.is_set():
                    emitted.clear()
                    await emitted.wait()
        finally:
            staged.shutdown()

    def hand_over(last: object) -> None:
        while not stop.is_set():
            try:
                out.put(last, timeout=0.1)
                return
            except queue.Full:
                continue

    def run() -> None:
        try:
            asyncio.run(drive())
        except BaseException as exc:   # handed to the reader, raised there
            hand_over(exc)
            return
        hand_over(_END)

    thread = threading.Thread(target=run, name="offline-staged", daemon=True)
    thread.start()
    try:
        while True:
            got = out.get()
            if got is _END:
                return
            if isinstance(got, BaseException):
                raise got
            yield from got
    finally:
        stop.set()
        thread.join(timeout=5)


def embed_texts(encoder: Any, texts: Sequence[str], prefix: str, max_length: int, batch_size: int,
                max_batch: int = DEFAULT_MAX_BATCH) -> Any:
    """Embeddings of ``texts`` (float32 [n, dim], in order) with tokenisation overlapped with the encoder
    (`make eval`, `make train`): ``encoder.tokenize`` then ``encoder.embed_ids`` (length buckets of at most
    ``batch_size`` rows), staged like the worker."""
    import numpy as np

    rows = run_staged(list(texts), lambda batch: encoder.tokenize(batch, prefix=prefix, max_length=max_length),
                      lambda ids: list(encoder.embed_ids(ids, batch_size)), max_batch)
    out = np.asarray(list(rows), dtype=np.float32)
    return out if len(out) else np.zeros((0, encoder.dim), dtype=np.float32)

"""How the classify worker forms and runs batches: length buckets, the adaptive cut, the overlapped stages."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.classify.batching import BatchPolicy, length_buckets, padded_tokens
from services.classify.pipeline import StagedBatches

# ------------------------------------------------------------------------------------ length buckets


@given(st.lists(st.integers(1, 128), max_size=80), st.integers(1, 40))
def test_every_text_is_in_exactly_one_chunk_of_at_most_max_rows(lengths, max_rows):
    chunks = length_buckets(lengths, max_rows)
    flat = [i for c in chunks for i in c]
    assert sorted(flat) == list(range(len(lengths)))
    assert all(1 <= len(c) <= max_rows for c in chunks)
    # longest first, across and within chunks: a chunk pads to its first row
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)


def _brute_force_cost(lengths, max_rows, overhead):
    widths = sorted(lengths, reverse=True)
    n = len(widths)
    best = float("inf")
    for cuts in itertools.product([False, True], repeat=max(0, n - 1)):
        bounds = [0] + [i + 1 for i, c in enumerate(cuts) if c] + [n]
        parts = list(itertools.pairwise(bounds))
        if any(b - a > max_rows for a, b in parts):
            continue
        best = min(best, sum(overhead + (b - a) * widths[a] for a, b in parts))
    return best


@settings(max_examples=60)
@given(st.lists(st.integers(1, 128), min_size=1, max_size=9), st.integers(1, 9), st.integers(0, 300))
def test_chunking_is_the_cheapest_possible(lengths, max_rows, overhead):
    chunks = length_buckets(lengths, max_rows, overhead_tokens=overhead)
    cost = len(chunks) * overhead + padded_tokens(lengths, chunks)
    assert cost == _brute_force_cost(lengths, max_rows, overhead)


def test_short_posts_are_not_padded_to_a_long_one():
    lengths = [120] * 4 + [18] * 28          # four long posts among short tweets
    chunks = length_buckets(lengths, max_rows=32)
    assert len(chunks) == 2
    assert sorted(len(c) for c in chunks) == [4, 28]
    assert padded_tokens(lengths, chunks) == 4 * 120 + 28 * 18
    assert padded_tokens(lengths, [list(range(32))]) == 32 * 120   # what one padded batch would compute


def test_similar_lengths_stay_in_full_batches():
    lengths = [30, 31, 29, 30, 32, 28, 30, 31] * 8   # 64 tweets of about the same length
    chunks = length_buckets(lengths, max_rows=32)
    assert [len(c) for c in chunks] == [32, 32]


def test_max_rows_must_be_positive():
    with pytest.raises(ValueError):
        length_buckets([3, 4], 0)


# ------------------------------------------------------------------------------------ the cut policy


def test_an_idle_model_gets_whatever_is_queued_at_once():
    policy = BatchPolicy(max_batch=32, max_wait=0.2)
    assert policy.wait_before_cut(queued=1, running=None) == 0.0
    assert policy.batch_size(1) == 1


def test_a_full_batch_is_cut_at_once_even_when_the_model_is_busy():
    policy = BatchPolicy(max_batch=32, max_wait=0.2)
    assert policy.wait_before_cut(queued=40, running=32, running_for=0.0) == 0.0
    assert policy.batch_size(40) == 32


def test_while_the_model_is_busy_the_batch_grows_until_just_before_it_is_needed():
    policy = BatchPolicy(max_batch=32, max_wait=10.0)
    assert policy.wait_before_cut(queued=5, running=8) == 10.0           # nothing measured: grow, bounded
    policy.observe_prepare(32, 0.032)        # 1 ms per mention to prepare -> 32 ms for a full batch
    policy.observe_inference(32, 0.320)      # 10 ms per mention in the model
    assert policy.expected_inference(32) == pytest.approx(0.32)
    # a 32-mention batch 70 ms in has 250 ms to go: cut 32 ms before it ends
    assert policy.wait_before_cut(queued=5, running=32, running_for=0.07) == pytest.approx(0.25 - 0.032)
    assert policy.wait_before_cut(queued=5, running=32, running_for=0.30) == 0.0   # nearly done: cut
    assert policy.wait_before_cut(queued=5, running=32, running_for=1.00) == 0.0   # overdue: cut
    capped = BatchPolicy(max_batch=32, max_wait=0.05)
    capped.observe_inference(32, 3.2)
    assert capped.wait_before_cut(queued=5, running=32) == 0.05   # never held longer than max_wait


def test_estimates_follow_what_was_measured():
    policy = BatchPolicy(max_batch=8, max_wait=0.2, alpha=0.5)
    assert policy.expected_inference(8) == 0.0           # nothing measured yet: plan for no wait
    policy.observe_inference(8, 0.8)
    policy.observe_inference(8, 1.6)
    assert policy.expected_inference(8) == pytest.approx(1.2)


# ------------------------------------------------------------------------------------ the staged loop


class Recorder:
    """Stage functions that log what ran when, with a slow model."""

    def __init__(self, model_seconds: float = 0.0, fail_on: int | None = None, wait_for_prepare: float = 0.0):
        self.model_seconds = model_seconds
        self.fail_on = fail_on
        # > 0: the model call on batch k waits (at most this long) until batch k+1's prepare has begun, so
        # whether the loop prepares during the model does not depend on how busy the machine is
        self.wait_for_prepare = wait_for_prepare
        self.log: list[tuple[str, int, float]] = []
        self.emitted: list[tuple[list[int], object]] = []
        self.lock = threading.Condition()
        self.prepare_starts: list[float] = []   # when each batch's prepare began, in cut order
        self.model_ends: list[float] = []       # when each batch's model call returned, in the same order

    def prepare(self, items):
        with self.lock:
            self.prepare_starts.append(time.monotonic())
            self.log.append(("prepare", len(items), time.monotonic()))
            self.lock.notify_all()
        return [x * 10 for x in items]

    @property
    def prepared_while_model_ran(self) -> int:
        """Batches whose prepare began before the model had finished the batch before them."""
        with self.lock:
            return sum(1 for k in range(1, min(len(self.prepare_starts), len(self.model_ends) + 1))
                       if self.prepare_starts[k] < self.model_ends[k - 1])

    def infer(self, prepared):
        with self.lock:
            k = len(self.model_ends)
            if self.wait_for_prepare:
                self.lock.wait_for(lambda: len(self.prepare_starts) >= k + 2, self.wait_for_prepare)
        try:
            if self.fail_on is not None and self.fail_on in [p // 10 for p in prepared]:
                raise RuntimeError("model broke")
            time.sleep(self.model_seconds)
            return [p + 1 for p in prepared]
        finally:
            with self.lock:
                self.model_ends.append(time.monotonic())

    async def emit(self, items, prepared, result):
        self.emitted.append((list(items), result))
        self.changed.set()

    @property
    def changed(self) -> asyncio.Event:
        if not hasattr(self, "_changed"):
            self._changed = asyncio.Event()
        return self._changed

    async def wait_emitted(self, n: int, timeout: float) -> None:
        """Until ``n`` items were emitted (or ``timeout`` passed)."""
        with contextlib.suppress(asyncio.TimeoutError):
            async with asyncio.timeout(timeout):
                while sum(len(i) for i, _ in self.emitted) < n:
                    self.changed.clear()
                    await self.changed.wait()


async def _run(rec: Recorder, policy: BatchPolicy, items: list[int], gap: float = 0.0, settle: float = 5.0):
    staged = StagedBatches(policy, rec.prepare, rec.infer, rec.emit, intake_limit=64)
    async with staged.running():
        for x in items:
            await staged.put(x)
            if gap:
                await asyncio.sleep(gap)
        await rec.wait_emitted(len(items), settle)
    staged.shutdown()
    return staged


def test_every_item_is_emitted_once_in_order_with_its_result():
    rec = Recorder(model_seconds=0.01)
    asyncio.run(_run(rec, BatchPolicy(max_batch=8, max_wait=0.05), list(range(100))))
    flat = [i for items, _ in rec.emitted for i in items]
    assert flat == list(range(100))
    for items, result in rec.emitted:
        assert result == [i * 10 + 1 for i in items]


def test_light_traffic_is_scored_in_small_batches_without_waiting():
    rec = Recorder(model_seconds=0.001)
    asyncio.run(_run(rec, BatchPolicy(max_batch=32, max_wait=1.0), list(range(6)), gap=0.1))
    assert [len(items) for items, _ in rec.emitted] == [1] * 6


def test_under_load_batches_grow_to_the_maximum_and_the_next_one_is_prepared_during_the_model():
    # The model holds each batch until the next one's prepare has begun (at most 2 s): a loop that prepares
    # during the model does so for every batch but the last, however loaded the machine; one that prepares
    # only after the model returns never does (each batch then waits out the 2 s).
    rec = Recorder(model_seconds=0.05, wait_for_prepare=2.0)
    asyncio.run(_run(rec, BatchPolicy(max_batch=16, max_wait=1.0), list(range(160)), settle=30.0))
    sizes = [len(items) for items, _ in rec.emitted]
    assert sum(sizes) == 160 and max(sizes) == 16 and sizes.count(16) >= len(sizes) - 2
    assert rec.prepared_while_model_ran >= len(sizes) - 1, (rec.prepared_while_model_ran, len(sizes))


def test_a_failing_batch_reaches_emit_as_the_exception_and_the_rest_go_on():
    rec = Recorder(model_seconds=0.0, fail_on=3)
    asyncio.run(_run(rec, BatchPolicy(max_batch=1, max_wait=0.05), list(range(6))))
    results = {items[0]: result for items, result in rec.emitted}
    assert isinstance(results[3], RuntimeError)
    assert [results[i] for i in (0, 1, 2, 4, 5)] == [[1], [11], [21], [41], [51]]


def test_the_intake_pushes_back_when_full():
    async def scenario() -> tuple[int, int, list[int]]:
        release = threading.Event()

        def stuck_model(prepared):
            release.wait(5)
            return prepared

        rec = Recorder()
        staged = StagedBatches(BatchPolicy(max_batch=4, max_wait=0.05), rec.prepare, stuck_model, rec.emit,
                               intake_limit=8)
        async with staged.running():
            n = 0
            while n < 100:   # one batch in the model, one prepared, then the intake fills and put() waits
                put = asyncio.create_task(staged.put(n))
                await asyncio.sleep(0.1)
                if not put.done():
                    break
                n += 1
            held, queued = n, staged.queued
            release.set()
            await asyncio.wait_for(put, 5)
            await rec.wait_emitted(n + 1, 5)
        staged.shutdown()
        return held, queued, [i for items, _ in rec.emitted for i in items]

    held, queued, emitted = asyncio.run(scenario())
    assert queued == 8 and held <= 8 + 2 * 4
    assert emitted == list(range(held + 1))


def test_a_stage_that_dies_ends_the_block_with_its_error():
    async def scenario() -> None:
        async def broken_emit(items, prepared, result):
            raise ValueError("emit broke")

        staged = StagedBatches(BatchPolicy(max_batch=4, max_wait=0.05), list, list, broken_emit)
        async with staged.running():
            await staged.put(1)
            await asyncio.sleep(5)

    with pytest.raises(ValueError, match="emit broke"):
        asyncio.run(scenario())

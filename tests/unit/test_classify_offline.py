"""`offline.run_staged`: the worker's staged batches driven from a plain iterable (issue 27, one scoring path)."""

from __future__ import annotations

import itertools
import threading

import pytest

from services.classify.offline import run_staged


def test_every_item_once_in_input_order_across_many_batches():
    batches: list[int] = []

    def infer(batch: list[int]) -> list[int]:
        batches.append(len(batch))
        return [x * 10 for x in batch]

    assert list(run_staged(range(1000), list, infer, max_batch=64)) == [x * 10 for x in range(1000)]
    assert sum(batches) == 1000 and max(batches) <= 64
    assert len(batches) < 1000 / 8, "items are batched, not scored one at a time"


def test_prepare_and_model_run_in_their_own_threads_like_the_worker():
    seen: dict[str, set[str]] = {"prepare": set(), "infer": set()}

    def prepare(batch: list[int]) -> list[int]:
        seen["prepare"].add(threading.current_thread().name)
        return batch

    def infer(batch: list[int]) -> list[int]:
        seen["infer"].add(threading.current_thread().name)
        return batch

    assert list(run_staged(range(300), prepare, infer, max_batch=32)) == list(range(300))
    assert all(n.startswith("prepare") for n in seen["prepare"])
    assert all(n.startswith("inference") for n in seen["infer"])


def test_the_source_is_read_lazily_so_a_huge_file_streams():
    read = itertools.count()

    def source():
        for i in itertools.count():
            next(read)
            yield i

    out = run_staged(source(), list, list, max_batch=16)
    first = list(itertools.islice(out, 40))
    out.close()
    assert first == list(range(40))
    assert next(read) < 40 + 16 * 12, "only a few batches were read ahead"


def test_a_failing_model_step_is_raised_to_the_caller():
    def infer(batch: list[int]) -> list[int]:
        if 500 in batch:
            raise RuntimeError("model exploded")
        return batch

    with pytest.raises(RuntimeError, match="model exploded"):
        list(run_staged(range(1000), list, infer, max_batch=32))


def test_a_model_that_returns_the_wrong_count_is_an_error_not_a_shifted_file():
    with pytest.raises(RuntimeError, match="returned 1 results for a batch of"):
        list(run_staged(range(100), list, lambda batch: batch[:1], max_batch=8))


def test_a_failing_source_is_raised_too():
    def source():
        yield from range(10)
        raise ValueError("bad line 11")

    with pytest.raises(ValueError, match="bad line 11"):
        list(run_staged(source(), list, list, max_batch=4))


def test_empty_input_gives_nothing():
    assert list(run_staged([], list, list)) == []

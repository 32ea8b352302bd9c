"""The ingest dedupe window."""

from __future__ import annotations

from services.ingest.dedupe import DedupeWindow


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_second_delivery_within_window_is_a_duplicate():
    c = Clock()
    d = DedupeWindow(60, 100, clock=c)
    assert d.reserve("a")
    d.commit("a")
    c.t = 59
    assert not d.reserve("a")
    c.t = 61
    assert d.reserve("a")


def test_in_flight_key_blocks_a_concurrent_request_and_release_allows_retry():
    d = DedupeWindow(60, 100, clock=Clock())
    assert d.reserve("a")
    assert not d.reserve("a")  # concurrent request for the same post
    d.release("a")             # produce failed: the client's retry must pass
    assert d.reserve("a")


def test_memory_is_bounded_oldest_first():
    c = Clock()
    d = DedupeWindow(3600, 3, clock=c)
    for k in "abcd":
        assert d.reserve(k)
        d.commit(k)
    assert len(d) == 3
    assert d.reserve("a")  # evicted
    assert not d.reserve("d")


def test_in_flight_until_committed_or_released():
    d = DedupeWindow(60, 100, clock=Clock())
    assert d.reserve("a") and d.in_flight("a")
    d.commit("a")
    assert not d.in_flight("a") and not d.reserve("a")  # stored: a duplicate now, no longer in flight
    assert d.reserve("b")
    d.release("b")
    assert not d.in_flight("b")


def test_bytes_return_to_zero_once_the_window_expires():
    c = Clock()
    d = DedupeWindow(10, 1000, clock=c)
    for i in range(500):
        assert d.reserve(f"x:{i}:0:0")
        d.commit(f"x:{i}:0:0")
    assert len(d) == 500 and d.size_bytes() > 500 * 100
    c.t = 11
    assert d.prune() == 0 and d.size_bytes() == 0

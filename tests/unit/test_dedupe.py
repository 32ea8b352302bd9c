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

"""A bounded, time-windowed set of recently accepted keys (pure, no I/O).

Keys are *reserved* while a produce is in flight so two concurrent requests for
the same post cannot both pass, then *committed* once Kafka acknowledged, or
*released* if the produce failed (so the client's retry is not called a dup).
"""

from __future__ import annotations

import sys
import time
from collections import OrderedDict
from collections.abc import Callable

# Per entry beyond the key string: the OrderedDict's hash slot and linked-list node, and the float
# (calibrated: 300,000 keys of ~30 characters take ~150 B each in RSS).
ENTRY_OVERHEAD_BYTES = 56 + sys.getsizeof(0.0)


class DedupeWindow:
    def __init__(self, window_seconds: float, max_entries: int, clock: Callable[[], float] = time.monotonic):
        if window_seconds <= 0 or max_entries <= 0:
            raise ValueError("window_seconds and max_entries must be positive")
        self.window = window_seconds
        self.max_entries = max_entries
        self._clock = clock
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._pending: set[str] = set()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._seen)

    def size_bytes(self) -> int:
        """Approximate memory held by the committed keys (key strings plus per-entry overhead)."""
        return self._bytes

    def prune(self) -> int:
        """Drops the expired entries now (also done on every reserve/commit); returns the entries left."""
        self._expire(self._clock())
        return len(self._seen)

    def _expire(self, now: float) -> None:
        while self._seen:
            key, at = next(iter(self._seen.items()))
            if now - at < self.window and len(self._seen) <= self.max_entries:
                break
            self._seen.popitem(last=False)
            self._bytes -= sys.getsizeof(key) + ENTRY_OVERHEAD_BYTES

    def reserve(self, key: str) -> bool:
        """True if `key` is new (and now reserved); False if seen or in flight."""
        now = self._clock()
        self._expire(now)
        if key in self._pending:
            return False
        at = self._seen.get(key)
        if at is not None and now - at < self.window:
            return False
        self._pending.add(key)
        return True

    def commit(self, key: str) -> None:
        self._pending.discard(key)
        if key not in self._seen:
            self._bytes += sys.getsizeof(key) + ENTRY_OVERHEAD_BYTES
        self._seen[key] = self._clock()
        self._seen.move_to_end(key)
        self._expire(self._clock())

    def release(self, key: str) -> None:
        self._pending.discard(key)

    def in_flight(self, key: str) -> bool:
        """True while `key` is reserved and neither committed nor released (its produce not settled)."""
        return key in self._pending

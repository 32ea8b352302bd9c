"""Conversions between protobuf Timestamps and epoch seconds."""

from __future__ import annotations

import math

from google.protobuf.timestamp_pb2 import Timestamp


def now_ts() -> Timestamp:
    ts = Timestamp()
    ts.GetCurrentTime()
    return ts


# google.protobuf.Timestamp's range: 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59Z.
MIN_EPOCH_SECONDS = -62_135_596_800
MAX_EPOCH_SECONDS = 253_402_300_799


def ts_from_epoch(seconds: float) -> Timestamp:
    """Raises ValueError (never OverflowError) for NaN, infinities and times outside Timestamp's range."""
    if not math.isfinite(seconds) or not MIN_EPOCH_SECONDS <= seconds <= MAX_EPOCH_SECONDS:
        raise ValueError(f"epoch seconds {seconds!r} outside the Timestamp range")
    ts = Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def epoch(ts: Timestamp) -> float:
    """Seconds since the epoch; 0.0 for an unset timestamp."""
    return ts.seconds + ts.nanos / 1e9

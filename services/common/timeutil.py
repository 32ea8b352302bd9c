"""Conversions between protobuf Timestamps and epoch seconds."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp


def now_ts() -> Timestamp:
    ts = Timestamp()
    ts.GetCurrentTime()
    return ts


def ts_from_epoch(seconds: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def epoch(ts: Timestamp) -> float:
    """Seconds since the epoch; 0.0 for an unset timestamp."""
    return ts.seconds + ts.nanos / 1e9

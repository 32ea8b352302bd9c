"""Conversions between protobuf Timestamps, datetimes and epoch seconds."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp


def now_ts() -> Timestamp:
    ts = Timestamp()
    ts.GetCurrentTime()
    return ts


def ts_from_epoch(seconds: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def ts_from_datetime(dt: datetime) -> Timestamp:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    ts = Timestamp()
    ts.FromDatetime(dt.astimezone(UTC))
    return ts


def epoch(ts: Timestamp) -> float:
    """Seconds since the epoch; 0.0 for an unset timestamp."""
    return ts.seconds + ts.nanos / 1e9


def iso(ts: Timestamp) -> str:
    if ts.seconds == 0 and ts.nanos == 0:
        return ""
    return datetime.fromtimestamp(epoch(ts), tz=UTC).isoformat().replace("+00:00", "Z")


def wall_time() -> float:
    return time.time()

"""Building DeadLetter records: what failed, where, and why, with the original bytes."""

from __future__ import annotations

from services.common.codec import pb
from services.common.metrics import DEAD_LETTERS
from services.common.timeutil import now_ts


def dead_letter(
    original: bytes,
    stage: str,
    reason: str,
    *,
    source_topic: str = "",
    receiver: str = "",
    attempts: int = 0,
    original_type: str = "",
    service: str = "",
) -> pb.DeadLetter:
    DEAD_LETTERS.labels(service or stage, stage).inc()
    return pb.DeadLetter(
        original=original,
        stage=stage,
        reason=reason[:2000],
        source_topic=source_topic,
        receiver=receiver,
        attempts=attempts,
        failed_at=now_ts(),
        original_type=original_type,
    )

"""Building DeadLetter records: what failed, where, and why, with the original bytes."""

from __future__ import annotations

from typing import Any, TypeVar

from google.protobuf.message import Message

from services.common import codec, topics
from services.common.codec import pb
from services.common.metrics import DEAD_LETTERS, MESSAGES_FAILED
from services.common.timeutil import now_ts

M = TypeVar("M", bound=Message)


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


async def decode_or_dead_letter(raw: bytes, message_type: type[M], producer: Any, *, service: str,
                                source_topic: str) -> tuple[M | None, Any]:
    """Decode one consumed record, or dead-letter it: (message, None) or (None, the DLQ send future).

    Every topic a worker consumes goes through this, so an undecodable record is counted and kept
    (original bytes + reason on mentions.dlq) instead of being dropped; await the future before commit.
    """
    try:
        return codec.decode(raw, message_type), None
    except Exception as exc:
        MESSAGES_FAILED.labels(service, "decode", type(exc).__name__).inc()
        dl = dead_letter(raw, service, f"undecodable {message_type.__name__}: {exc}", source_topic=source_topic,
                         original_type=message_type.DESCRIPTOR.full_name, service=service)
        return None, await producer.send(topics.MENTIONS_DLQ, codec.encode(dl))

"""Protobuf encoding and decoding for the pipeline's topics.

Faust has no protobuf codec of its own. Rather than register one, the workers
consume raw bytes (`value_serializer="raw"`) and call `decode` here, so a bad
record raises in our code, where it is dead-lettered with its reason, instead
of being logged and skipped inside Faust.

Example:

    from services.common import codec, topics
    from services.common.codec import pb

    raw = codec.encode(pb.Mention(source=pb.SOURCE_X, external_id="1850", text="app down again"))
    mention = codec.decode(raw, codec.type_for_topic(topics.MENTIONS_RAW))   # -> pb.Mention
    codec.mention_id(mention.source, mention.external_id)                     # 'x:1850'
    codec.to_json(mention)     # '{"external_id": "1850", "source": "SOURCE_X", "text": "app down again"}'
    codec.decode(b"\x0a\xff", pb.Mention)   # raises DecodeError: the caller dead-letters it with the reason
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import DecodeError, Message

try:
    from services.common.pb.triage.v1 import triage_pb2 as pb
except ImportError as exc:  # pragma: no cover - only when the build step was skipped
    raise ImportError(
        "generated protobuf code is missing: run `make proto` (python -m services.devtools.protobuild)"
    ) from exc

from services.common import topics

M = TypeVar("M", bound=Message)

# Which message type each topic carries (queue topics carry RoutedMention).
TOPIC_TYPES: dict[str, type[Message]] = {
    topics.MENTIONS_RAW: pb.Mention,
    topics.MENTIONS_SCORED: pb.ScoredMention,
    topics.INCIDENTS: pb.Incident,
    topics.RESPONSES: pb.ResponseEvent,
    topics.PAGES: pb.PageRecord,
    topics.FEEDBACK: pb.LabelFeedback,
    topics.SILENCES: pb.Silence,
    topics.CLAIMS: pb.Claim,
    topics.PRESENCE: pb.Presence,
    topics.TRIAGE_DECISIONS: pb.TriageDecision,
    topics.MENTIONS_DLQ: pb.DeadLetter,
    topics.ERASURES: pb.ErasureRecord,
}


def type_for_topic(topic: str) -> type[Message]:
    if topic.startswith(topics.QUEUE_PREFIX):
        return pb.RoutedMention
    try:
        return TOPIC_TYPES[topic]
    except KeyError:
        raise KeyError(f"unknown topic {topic!r}; known: {sorted(TOPIC_TYPES)} and triage.queue.*") from None


def encode(msg: Message) -> bytes:
    return msg.SerializeToString(deterministic=True)


def decode(data: bytes, cls: type[M]) -> M:
    """Parse `data` as `cls`; raises DecodeError with the type name on bad bytes."""
    msg = cls()
    try:
        msg.ParseFromString(data)
    except DecodeError as exc:
        raise DecodeError(f"not a valid {cls.DESCRIPTOR.full_name}: {exc}") from exc
    return msg


def to_dict(msg: Message) -> dict[str, Any]:
    """JSON-friendly dict (raw payload bytes are shown base64-encoded, as protobuf JSON does)."""
    return MessageToDict(msg, preserving_proto_field_name=True, always_print_fields_with_no_presence=False)


def to_json(msg: Message) -> str:
    return json.dumps(to_dict(msg), ensure_ascii=False, sort_keys=True)


def mention_id(source: int, external_id: str) -> str:
    """Stable id of a mention across the pipeline: `<source>:<external id>`."""
    name = pb.Source.Name(source).removeprefix("SOURCE_").lower()
    return f"{name}:{external_id}"

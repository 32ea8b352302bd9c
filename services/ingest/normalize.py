"""Validation and normalisation of incoming mentions into `pb.Mention` (pure, no I/O).

The accepted JSON shape (one object per mention; unknown keys are kept only in
the raw payload):

    {"source": "x", "external_id": "1850", "text": "app down again",
     "url": "https://x.com/a/status/1850", "created_at": "2026-11-23T10:00:00Z",
     "author": {"handle": "ana", "followers": 1200, "verified": false},
     "lang": "es", "engagement": {"likes": 3, "reposts": 1, "replies": 0, "quotes": 0},
     "reply_to_id": null, "conversation_id": null, "brands": ["acme"]}
"""

from __future__ import annotations

import json
import math
import re
import time
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from services.common.codec import mention_id, pb
from services.common.errors import TriageError
from services.common.timeutil import ts_from_epoch
from services.ingest import jsonparse

SOURCES: dict[str, int] = {
    "x": pb.SOURCE_X,
    "twitter": pb.SOURCE_X,
    "reddit": pb.SOURCE_REDDIT,
    "mastodon": pb.SOURCE_MASTODON,
    "bluesky": pb.SOURCE_BLUESKY,
    "facebook": pb.SOURCE_FACEBOOK,
    "instagram": pb.SOURCE_INSTAGRAM,
    "app_store": pb.SOURCE_APP_STORE,
    "forum": pb.SOURCE_FORUM,
    "webhook": pb.SOURCE_WEBHOOK,
    "replay": pb.SOURCE_REPLAY,
}
# Counters beyond this are clamped: they fit int64 and no real post has more.
MAX_COUNTER = 10**15
# 2006-03-21: the first tweet. Anything older is a broken clock or a unit mistake.
EARLIEST_CREATED_AT = 1142899200.0
# A created_at number beyond this (epoch milliseconds of year ~5000) is not a time at all.
MAX_CREATED_AT_NUMBER = 10**17
_DECIMAL = re.compile(r"\s*\+?\d+\s*")


class MentionError(TriageError, ValueError):
    """A mention that cannot be accepted: `field` is the JSON path, `reason` says why."""

    def __init__(self, field: str, reason: str, line: int | None = None) -> None:
        self.field = field
        self.reason = reason
        self.line = line
        where = f"line {line}: " if line is not None else ""
        super().__init__(f"{where}{field}: {reason}")

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"field": self.field, "reason": self.reason}
        if self.line is not None:
            d["line"] = self.line
        return d


class _Author(BaseModel):
    model_config = ConfigDict(extra="ignore")
    handle: str = Field("", max_length=256)
    display_name: str = Field("", max_length=512)
    id: str = Field("", max_length=256)
    followers: int = Field(0, ge=0)
    verified: bool = False

    @field_validator("followers", mode="before")
    @classmethod
    def _clamp(cls, v: Any) -> Any:
        return _clamp_counter(v)


class _Engagement(BaseModel):
    model_config = ConfigDict(extra="ignore")
    likes: int = Field(0, ge=0)
    reposts: int = Field(0, ge=0)
    replies: int = Field(0, ge=0)
    quotes: int = Field(0, ge=0)

    @field_validator("likes", "reposts", "replies", "quotes", mode="before")
    @classmethod
    def _clamp(cls, v: Any) -> Any:
        return _clamp_counter(v)


class _MentionIn(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=False)
    source: str
    external_id: str = Field(min_length=1, max_length=256)
    text: str
    url: str = Field("", max_length=2048)
    created_at: datetime | float | None = None
    author: _Author = Field(default_factory=_Author)
    lang: str = Field("", max_length=35)
    engagement: _Engagement = Field(default_factory=_Engagement)
    reply_to_id: str | None = Field(None, max_length=256)
    conversation_id: str | None = Field(None, max_length=256)
    brands: list[str] = Field(default_factory=list, max_length=64)

    @field_validator("external_id", mode="before")
    @classmethod
    def _id_as_str(cls, v: Any) -> Any:
        # Numeric ids (X, Reddit) arrive as numbers from some clients.
        if isinstance(v, int) and not isinstance(v, bool):
            if v < 0 or v > 10**40:
                raise ValueError("a numeric id must be a non-negative integer of at most 40 digits")
            return str(v)
        return v

    @field_validator("created_at", mode="before")
    @classmethod
    def _finite_time(cls, v: Any) -> Any:
        if isinstance(v, bool):
            raise ValueError("must be an ISO 8601 string or epoch seconds/milliseconds, not a boolean")
        if isinstance(v, int):
            if abs(v) > MAX_CREATED_AT_NUMBER:
                raise ValueError("epoch number is out of range")
            return float(v)
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError("must be a finite number")
        if isinstance(v, str):
            try:
                number = float(v)
            except (ValueError, OverflowError):
                return v  # a date string: pydantic parses it or names the problem
            if not math.isfinite(number) or abs(number) > MAX_CREATED_AT_NUMBER:
                raise ValueError("must be a finite epoch number within range")
        return v

    @field_validator("source")
    @classmethod
    def _known_source(cls, v: str) -> str:
        key = v.strip().lower()
        if key not in SOURCES:
            raise ValueError(f"unknown source {v!r}; expected one of {sorted(SOURCES)}")
        return key


def _clamp_counter(v: Any) -> Any:
    if isinstance(v, bool) or v is None:
        return 0 if v is None else v
    if isinstance(v, str) and _DECIMAL.fullmatch(v):
        # A counter sent as a decimal string: clamp it like a number (pydantic would parse it unclamped).
        digits = v.strip().lstrip("+").lstrip("0")
        v = MAX_COUNTER if len(digits) > 16 else int(digits or "0")
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ValueError("must be a finite number")
        v = int(v)
    if isinstance(v, int) and v > MAX_COUNTER:
        return MAX_COUNTER
    return v


def clean_text(text: str) -> str:
    """Drops control characters (keeps newlines/tabs and zero-width joiners used by emoji/scripts)."""
    out = []
    for ch in text:
        cat = unicodedata.category(ch)
        if cat == "Cc" and ch not in "\n\t":
            continue
        if cat == "Cs":  # lone surrogates cannot be encoded
            continue
        out.append(ch)
    return "".join(out).strip()


def clean_id(value: str) -> str:
    """Ids, handles, brands, urls, language tags: every control (Cc), surrogate (Cs), format (Cf) and
    unassigned (Cn) character removed, and the ends trimmed. These values end up in Kafka keys, dedupe
    keys, URLs and log lines, where an invisible character only does harm."""
    if value.isascii() and value.isprintable():
        return value.strip()
    return "".join(ch for ch in value if unicodedata.category(ch) not in ("Cc", "Cs", "Cf", "Cn")).strip()


@dataclass(frozen=True)
class Limits:
    max_text_chars: int = 10_000
    max_raw_payload_bytes: int = 64 * 1024
    future_skew_seconds: float = 300.0


def _first_problem(exc: ValidationError) -> tuple[str, str]:
    """(field, reason) of the first validation error, as plain strings."""
    err = exc.errors(include_url=False, include_context=False, include_input=False)[0]
    parts = [str(p) for p in err["loc"]]
    if parts[:1] == ["created_at"]:
        parts = parts[:1]  # not "created_at.datetime": which union member failed says nothing
    return ".".join(parts) or "$", err["msg"].removeprefix("Value error, ")


def normalize(obj: Any, raw: bytes, limits: Limits, now: float | None = None) -> pb.Mention:
    """Validate one decoded JSON value and build the `pb.Mention`; raises MentionError."""
    if not isinstance(obj, dict):
        raise MentionError("$", f"expected a JSON object, got {type(obj).__name__}")
    problem: tuple[str, str] | None = None
    try:
        m = _MentionIn.model_validate(obj)
    except ValidationError as exc:
        problem = _first_problem(exc)
    if problem is not None:
        # Raised outside the except block: inside it the ValidationError becomes the MentionError's
        # __context__ (`from None` only hides it), and the caller keeping the MentionError (build's list)
        # closes a cycle through pydantic-core's object, which the garbage collector cannot traverse:
        # every refused mention stayed in memory, ~1 KiB each (found by the fuzz run's RSS).
        raise MentionError(*problem)

    now = time.time() if now is None else now
    text = clean_text(m.text)
    if not text:
        raise MentionError("text", "empty after removing control characters and whitespace")
    truncated = len(text) > limits.max_text_chars
    if truncated:
        text = text[: limits.max_text_chars]

    external_id = clean_id(m.external_id)
    if not external_id:
        raise MentionError("external_id", "empty after removing control characters and whitespace")
    brands = [clean_id(b).lower() for b in m.brands]
    created = _created_epoch(m.created_at, now, limits)
    msg = pb.Mention(
        source=SOURCES[m.source],  # type: ignore[arg-type]
        external_id=external_id,
        url=clean_id(m.url),
        text=text,
        language_hint=clean_id(m.lang),
        reply_to_id=clean_id(m.reply_to_id or ""),
        conversation_id=clean_id(m.conversation_id or ""),
        brands=[b for b in brands if b],
        text_truncated=truncated,
        raw_payload=raw[: limits.max_raw_payload_bytes],
        raw_content_type="application/json",
    )
    msg.author.handle = clean_id(m.author.handle)
    msg.author.display_name = clean_text(m.author.display_name).replace("\n", " ").replace("\t", " ")
    msg.author.id = clean_id(m.author.id)
    msg.author.follower_count = m.author.followers
    msg.author.verified = m.author.verified
    msg.engagement.likes = m.engagement.likes
    msg.engagement.reposts = m.engagement.reposts
    msg.engagement.replies = m.engagement.replies
    msg.engagement.quotes = m.engagement.quotes
    if created is not None:
        msg.created_at.CopyFrom(ts_from_epoch(created))
    msg.received_at.CopyFrom(ts_from_epoch(now))
    msg.mention_id = mention_id(msg.source, msg.external_id)
    return msg


def _created_epoch(value: datetime | float | None, now: float, limits: Limits) -> float | None:
    """The post's own time; None when the sender gave none. It is not filled with the receipt time: a batch
    would then share one instant, which crisis detection reads as a collection pile-up (see
    `BrandState.counts_for_volume`), and "when the author posted it" would be a guess (`received_at` is ours)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        try:
            ts = value.timestamp()
        except (OverflowError, ValueError, OSError):
            raise MentionError("created_at", "date is out of range") from None
    else:
        ts = float(value)
        if not math.isfinite(ts):
            raise MentionError("created_at", "must be a finite number")
        if ts > 1e11:  # epoch milliseconds
            ts /= 1000.0
    if ts > now + limits.future_skew_seconds:
        raise MentionError("created_at", f"is {ts - now:.0f}s in the future (clock skew limit "
                           f"{limits.future_skew_seconds:.0f}s)")
    if ts < EARLIEST_CREATED_AT:
        raise MentionError("created_at", "is before 2006 (a unit or clock error)")
    return ts


def dedupe_key(m: pb.Mention) -> str:
    """Same post with the same engagement counters = a redelivery; new counters = an update."""
    e = m.engagement
    return f"{m.mention_id}|{e.likes}|{e.reposts}|{e.replies}|{e.quotes}"


def _loads(text: str, line: int | None) -> Any:
    try:
        return jsonparse.loads(text)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}" if line is None else f"column {exc.colno}"
        raise MentionError("$", f"malformed JSON: {exc.msg} at {where}", line=line) from None
    except jsonparse.JSONLimitError as exc:
        raise MentionError(exc.field, exc.reason, line=line) from None


def parse_body(body: bytes, content_type: str) -> list[tuple[Any, bytes, int]]:
    """Split a request body into (json value, raw bytes, line number) items.

    `application/json`: one object or an array of objects; `application/x-ndjson`
    (or `application/jsonl`): one object per line, blank lines ignored; `application/json-seq`
    (RFC 7464): records each introduced by RS (0x1E), numbered from 1. Raises MentionError for
    malformed JSON or JSON outside the decoder's limits (`jsonparse`: nesting, integer size,
    non-finite numbers, invalid Unicode), naming the line and, where known, the field.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MentionError("$", f"body is not valid UTF-8 (byte {exc.start})") from None
    if content_type == "application/json":
        value = _loads(text, None)
        if isinstance(value, list):
            return [(v, json.dumps(v, ensure_ascii=False).encode(), i + 1) for i, v in enumerate(value)]
        return [(value, body, 1)]
    if content_type == "application/json-seq":
        records = text.split("\x1e")
        if records[0].strip():
            raise MentionError("$", "a JSON text sequence must start with the RS (0x1E) character", line=1)
        numbered = enumerate(records[1:], start=1)
    else:
        numbered = enumerate(text.split("\n"), start=1)
    items = []
    for lineno, line in numbered:
        if not line.strip():
            continue
        items.append((_loads(line, lineno), line.strip().encode(), lineno))
    return items

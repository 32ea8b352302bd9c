"""Deletions from the platforms and the API into `pb.MentionDeleted` (pure, no I/O).

Shapes, from the platforms' documentation:
- X Account Activity API: {"for_user_id": "...", "tweet_delete_events": [{"status": {"id": "6014...",
  "user_id": "3198..."}, "timestamp_ms": "1432228155593"}]}; account deletions as a `user_event`
  ({"user_event": {"user_delete": {"user": {"id": "..."}, "event_at": "..."}}}, the compliance stream's
  `user_delete` shape). A `revoke` user event (the user took back our app's access) deletes nothing
  they posted publicly and is ignored.
- Meta Graph webhooks: a `feed` change (Facebook) or a `comments` change (Instagram) whose value has
  {"verb": "remove", "item": "comment"|"post"|"status", "comment_id"|"post_id"|"id": ...}.
- `POST /v1/deletions`: {"source": "x", "external_id": "1850"} or {"source": "x", "author": {"handle":
  "ana"}} (also "author_handle", "author_id"), optional "reason" (platform_delete, user_deactivated,
  erasure) and "deleted_at" (epoch seconds); one object or a JSON array of them.

The mention id is built as ingest builds a mention's (`codec.mention_id` of the cleaned id), so a
deletion is keyed exactly like the post it deletes.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from services.common.codec import mention_id, pb
from services.common.timeutil import ts_from_epoch
from services.ingest.normalize import SOURCES, MentionError, clean_id

REASONS: dict[str, int] = {
    "platform_delete": pb.PLATFORM_DELETE,
    "user_deactivated": pb.USER_DEACTIVATED,
    "erasure": pb.ERASURE,
}
MAX_ID_CHARS = 256


def _str(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return ""
    return clean_id(str(value))[:MAX_ID_CHARS] if isinstance(value, str | int) else ""


def _epoch(value: Any, divisor: float = 1.0) -> float | None:
    try:
        if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 16:
            return int(value) / divisor
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value) / divisor
        if isinstance(value, str):
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except (ValueError, OverflowError):
        return None
    return None


def build(source: int, external_id: str = "", author_handle: str = "", author_id: str = "",
          reason: int = pb.PLATFORM_DELETE, deleted_at: float | None = None, now: float | None = None,
          requested_by: str = "") -> pb.MentionDeleted:
    """One deletion; raises MentionError when it names neither a post nor an author."""
    now = time.time() if now is None else now
    external_id, author_handle, author_id = _str(external_id), _str(author_handle).lstrip("@"), _str(author_id)
    if not external_id and not author_handle and not author_id:
        raise MentionError("external_id", "a deletion names a post (external_id) or an author (handle or id)")
    msg = pb.MentionDeleted(source=source, external_id=external_id, author_handle=author_handle,  # type: ignore[arg-type]
                            author_id=author_id, reason=reason, requested_by=requested_by)  # type: ignore[arg-type]
    if external_id:
        msg.mention_id = mention_id(source, external_id)
    try:
        msg.deleted_at.CopyFrom(ts_from_epoch(deleted_at if deleted_at is not None else now))
    except ValueError:
        msg.deleted_at.CopyFrom(ts_from_epoch(now))
    msg.received_at.CopyFrom(ts_from_epoch(now))
    return msg


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def x_deletions(payload: Any, now: float | None = None) -> list[pb.MentionDeleted]:
    """The deletions in an X Account Activity delivery (none for a delivery of posts only)."""
    out = []
    payload = _dict(payload)
    for event in _list(payload.get("tweet_delete_events")):
        status = _dict(_dict(event).get("status"))
        tid = _str(status.get("id_str")) or _str(status.get("id"))
        if tid:
            out.append(build(pb.SOURCE_X, external_id=tid, author_id=_str(status.get("user_id")),
                             deleted_at=_epoch(_dict(event).get("timestamp_ms"), 1000.0), now=now))
    user_event = _dict(payload.get("user_event"))
    for kind in ("user_delete", "user_deactivate"):
        event = _dict(user_event.get(kind))
        user = _dict(event.get("user")) or _dict(event.get("source"))
        uid = _str(user.get("id_str")) or _str(user.get("id")) or _str(user.get("user_id"))
        handle = _str(user.get("screen_name")) or _str(user.get("username"))
        if uid or handle:
            out.append(build(pb.SOURCE_X, author_handle=handle, author_id=uid, reason=pb.USER_DEACTIVATED,
                             deleted_at=_epoch(event.get("event_at") or event.get("date_time")), now=now))
    return out


def is_x_deletion_delivery(payload: Any) -> bool:
    """A delivery that carries only deletions/user events may lack `for_user_id` (user events do)."""
    return isinstance(payload, dict) and ("tweet_delete_events" in payload or "user_event" in payload)


def meta_deletions(payload: Any, now: float | None = None) -> list[pb.MentionDeleted]:
    """The `remove` changes of a Meta delivery (Facebook feed, Instagram comments)."""
    payload = _dict(payload)
    source = {"page": pb.SOURCE_FACEBOOK, "instagram": pb.SOURCE_INSTAGRAM}.get(payload.get("object"))  # type: ignore[arg-type]
    if source is None:
        return []
    out = []
    for entry in _list(payload.get("entry")):
        entry = _dict(entry)
        for change in _list(entry.get("changes")):
            change = _dict(change)
            value = _dict(change.get("value"))
            if change.get("field") not in ("feed", "comments", "live_comments") or value.get("verb") != "remove":
                continue
            item = value.get("item")
            if item == "comment" or change.get("field") != "feed":
                ext = _str(value.get("comment_id")) or _str(value.get("id"))
            else:
                ext = _str(value.get("post_id")) or _str(value.get("id"))
            if ext:
                out.append(build(source, external_id=ext, author_id=_str(_dict(value.get("from")).get("id")),
                                 deleted_at=_epoch(value.get("created_time", entry.get("time"))), now=now))
    return out


def from_api(obj: Any, line: int | None = None, now: float | None = None) -> pb.MentionDeleted:
    """One object of a `POST /v1/deletions` body; MentionError names the field and the reason."""
    if not isinstance(obj, dict):
        raise MentionError("$", "expected a JSON object", line)
    source = obj.get("source")
    if not isinstance(source, str) or source.lower() not in SOURCES:
        raise MentionError("source", f"expected one of {sorted(SOURCES)}", line)
    author = _dict(obj.get("author"))
    handle = _str(obj.get("author_handle")) or _str(author.get("handle"))
    author_id = _str(obj.get("author_id")) or _str(author.get("id"))
    external_id = _str(obj.get("external_id"))
    reason_name = obj.get("reason") or ("platform_delete" if external_id else "user_deactivated")
    if reason_name not in REASONS:
        raise MentionError("reason", f"expected one of {sorted(REASONS)}", line)
    deleted_at = obj.get("deleted_at")
    at = _epoch(deleted_at) if deleted_at is not None else None
    if deleted_at is not None and at is None:
        raise MentionError("deleted_at", "expected epoch seconds or ISO 8601", line)
    try:
        return build(SOURCES[source.lower()], external_id=external_id, author_handle=handle, author_id=author_id,
                     reason=REASONS[reason_name], deleted_at=at, now=now)
    except MentionError as exc:
        raise MentionError(exc.field, exc.reason, line) from None

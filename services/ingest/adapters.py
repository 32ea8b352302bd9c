"""Adapters from each platform's documented payload shape to ingest's mention JSON (pure, no I/O).

Every adapter yields `Candidate(obj, raw)` where `obj` is the dict that
`normalize.normalize()` validates (so all sources share one validation path)
and `raw` is the platform's original item kept for audit. Events that are not
posts (likes, follows, deletes, identity/account events) yield nothing (deletions are read by
`deletions.py`); a
payload whose envelope is not the platform's shape raises `PayloadError`.

Shapes, from the platforms' public API documentation:
- X Account Activity API: {"for_user_id": "...", "tweet_create_events": [<v1.1 Tweet>]}
- Meta Graph webhooks: {"object": "page"|"instagram", "entry": [{"id", "time", "changes": [{"field", "value"}],
  "messaging": [{"sender", "recipient", "timestamp", "message": {"mid", "text"}}]}]}
- Bluesky Jetstream: {"did", "time_us", "kind": "commit", "commit": {"operation", "collection", "rkey",
  "record": {"text", "createdAt", "langs"}}}
- Mastodon: the Status entity (id, uri, url, created_at, content HTML, account, language, *_count)
- Reddit listings: {"kind": "Listing", "data": {"children": [{"kind": "t3"|"t1", "data": {...}}], "after"}}
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from html.parser import HTMLParser
from typing import Any

from services.common.errors import TriageError


class PayloadError(TriageError, ValueError):
    """The payload is not in the platform's documented envelope shape."""


@dataclass(frozen=True)
class Candidate:
    """`error`, when set, is why the adapter could not map this item (it is dead-lettered, not normalised)."""

    obj: dict[str, Any]
    raw: bytes
    error: str | None = None


def _raw(item: Any) -> bytes:
    try:
        return json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")
    except (ValueError, TypeError, RecursionError):
        return repr(item)[:65536].encode("utf-8", "replace")


def _item(build: Callable[[dict[str, Any]], dict[str, Any]], item: dict[str, Any]) -> Candidate:
    """One platform item as a Candidate; an item the adapter cannot map becomes an error candidate, so
    one bad item is dead-lettered instead of failing the platform's whole delivery."""
    try:
        return Candidate(build(item), _raw(item))
    except (ValueError, TypeError, OverflowError, KeyError, AttributeError, RecursionError) as exc:
        return Candidate({}, _raw(item), error=f"unmappable item ({type(exc).__name__})")


def _epoch(value: Any, divisor: float = 1.0) -> Any:
    """A platform's epoch number scaled to seconds; anything else (or out of float range) passed on as is,
    for normalize() to reject with the field and the reason."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    try:
        return float(value) / divisor
    except OverflowError:
        return value


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _str(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return ""
    return str(value) if isinstance(value, str | int) else ""


# --- X (Twitter) Account Activity API -----------------------------------------------------------

def _x_created_at(tweet: dict[str, Any]) -> Any:
    ms = tweet.get("timestamp_ms")
    if isinstance(ms, str) and ms.isascii() and ms.isdigit() and len(ms) <= 16:
        return int(ms) / 1000.0
    if isinstance(ms, str | int | float) and not isinstance(ms, bool) and ms != "":
        return _epoch(ms, 1000.0) if not isinstance(ms, str) else ms  # normalize() names the problem
    value = tweet.get("created_at")
    if isinstance(value, str):
        try:
            return datetime.strptime(value, "%a %b %d %H:%M:%S %z %Y").timestamp()
        except ValueError:
            return value  # normalize() names the field and the reason
    return value


def x_tweet(tweet: dict[str, Any]) -> dict[str, Any]:
    user = _dict(tweet.get("user"))
    extended = _dict(tweet.get("extended_tweet"))
    text = extended.get("full_text") or tweet.get("full_text") or tweet.get("text") or ""
    tid = _str(tweet.get("id_str")) or _str(tweet.get("id"))
    handle = _str(user.get("screen_name"))
    return {
        "source": "x",
        "external_id": tid,
        "text": text,
        "url": f"https://x.com/{handle or 'i'}/status/{tid}" if tid else "",
        "created_at": _x_created_at(tweet),
        "author": {"handle": handle, "display_name": _str(user.get("name")), "id": _str(user.get("id_str")),
                   "followers": user.get("followers_count") or 0, "verified": bool(user.get("verified"))},
        "lang": _str(tweet.get("lang")) if tweet.get("lang") != "und" else "",
        "engagement": {"likes": tweet.get("favorite_count") or 0, "reposts": tweet.get("retweet_count") or 0,
                       "replies": tweet.get("reply_count") or 0, "quotes": tweet.get("quote_count") or 0},
        "reply_to_id": _str(tweet.get("in_reply_to_status_id_str")) or None,
    }


def x_account_activity(payload: Any) -> Iterator[Candidate]:
    if not isinstance(payload, dict) or ("for_user_id" not in payload and "user_event" not in payload):
        raise PayloadError("expected an Account Activity event with for_user_id")
    for tweet in _list(payload.get("tweet_create_events")):
        if isinstance(tweet, dict):
            yield _item(x_tweet, tweet)
    # tweet_delete_events, user_event: deletions (services/ingest/deletions.py). favorite_events,
    # follow_events, direct_message_events...: not mentions to triage.


# --- Meta Graph webhooks (Facebook Pages, Instagram) ---------------------------------------------

def meta_webhook(payload: Any) -> Iterator[Candidate]:
    if not isinstance(payload, dict) or payload.get("object") not in ("page", "instagram") \
            or not isinstance(payload.get("entry"), list):
        raise PayloadError("expected {object: page|instagram, entry: [...]}")
    source = "facebook" if payload["object"] == "page" else "instagram"
    for entry in payload["entry"]:
        entry = _dict(entry)
        entry_time = entry.get("time")
        for change in _list(entry.get("changes")):
            change = _dict(change)
            try:
                obj = _meta_change(source, _str(change.get("field")), _dict(change.get("value")), entry_time)
            except (ValueError, TypeError, OverflowError, KeyError, AttributeError) as exc:
                yield Candidate({}, _raw(change), error=f"unmappable item ({type(exc).__name__})")
                continue
            if obj is not None:
                yield Candidate(obj, _raw(change))
        for event in _list(entry.get("messaging")):
            event = _dict(event)
            message = _dict(event.get("message"))
            if not message.get("text") or message.get("is_echo"):
                continue  # attachments-only, reads, deliveries, our own echoes
            yield _item(_meta_message_for(source), event)


def _meta_message_for(source: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def build(event: dict[str, Any]) -> dict[str, Any]:
        message, sender = _dict(event.get("message")), _dict(event.get("sender"))
        ts = event.get("timestamp")
        return {
            "source": source,
            "external_id": _str(message.get("mid")),
            "text": message["text"],
            "created_at": _epoch(ts, 1000.0) if isinstance(ts, int | float) and not isinstance(ts, bool) else None,
            "author": {"id": _str(sender.get("id"))},
            "conversation_id": _str(sender.get("id")) or None,
        }
    return build


def _meta_change(source: str, field: str, value: dict[str, Any], entry_time: Any) -> dict[str, Any] | None:
    sender = _dict(value.get("from"))
    if source == "facebook" and field == "feed":
        if value.get("verb") not in ("add", "edited") or value.get("item") not in ("comment", "post", "status"):
            return None  # reactions, likes, removals, shares
        ext = _str(value.get("comment_id")) if value.get("item") == "comment" else _str(value.get("post_id"))
        created = value.get("created_time", entry_time)
        return {
            "source": source, "external_id": ext, "text": value.get("message") or "",
            "url": _str(value.get("link")) if value.get("item") != "comment" else "",
            "created_at": created if isinstance(created, int | float) and not isinstance(created, bool) else None,
            "author": {"id": _str(sender.get("id")), "display_name": _str(sender.get("name"))},
            "reply_to_id": _str(value.get("parent_id")) or None,
            "conversation_id": _str(value.get("post_id")) or None,
        }
    if source == "instagram" and field in ("comments", "live_comments"):
        media = _dict(value.get("media"))
        return {
            "source": source, "external_id": _str(value.get("id")), "text": value.get("text") or "",
            "created_at": entry_time if isinstance(entry_time, int | float) and not isinstance(entry_time, bool)
            else None,
            "author": {"id": _str(sender.get("id")), "handle": _str(sender.get("username"))},
            "reply_to_id": _str(value.get("parent_id")) or None,
            "conversation_id": _str(media.get("id")) or None,
        }
    # Instagram "mentions" carries only ids (the text needs a Graph API call); others are not posts.
    return None


# --- Bluesky Jetstream ---------------------------------------------------------------------------

BSKY_POST = "app.bsky.feed.post"


def jetstream_event(event: Any) -> Candidate | None:
    """A Jetstream commit creating a post -> candidate; other events (identity, account, deletes) -> None."""
    if not isinstance(event, dict) or event.get("kind") != "commit":
        return None
    commit = _dict(event.get("commit"))
    if commit.get("collection") != BSKY_POST or commit.get("operation") not in ("create", "update"):
        return None
    record = _dict(commit.get("record"))
    did, rkey = _str(event.get("did")), _str(commit.get("rkey"))
    langs = [lang for lang in _list(record.get("langs")) if isinstance(lang, str)]
    parent = _dict(_dict(record.get("reply")).get("parent"))
    root = _dict(_dict(record.get("reply")).get("root"))
    return Candidate({
        "source": "bluesky",
        "external_id": f"at://{did}/{BSKY_POST}/{rkey}" if did and rkey else "",
        "text": record.get("text") if isinstance(record.get("text"), str) else "",
        "url": f"https://bsky.app/profile/{did}/post/{rkey}" if did and rkey else "",
        "created_at": record.get("createdAt"),
        "author": {"id": did},
        "lang": langs[0] if langs else "",
        "reply_to_id": _str(parent.get("uri")) or None,
        "conversation_id": _str(root.get("uri")) or None,
    }, _raw(event))


# --- Mastodon ------------------------------------------------------------------------------------

class _HtmlText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("br", "p") and self.parts:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def html_to_text(html: str) -> str:
    parser = _HtmlText()
    parser.feed(html)
    parser.close()
    return "".join(parser.parts).strip()


def mastodon_status(status: Any) -> Candidate | None:
    if not isinstance(status, dict):
        return None
    original: dict[str, Any] = status["reblog"] if isinstance(status.get("reblog"), dict) else status
    account = _dict(original.get("account"))
    content = str(original["content"]) if isinstance(original.get("content"), str) else ""
    spoiler = str(original["spoiler_text"]) if isinstance(original.get("spoiler_text"), str) else ""
    text = html_to_text(content)
    return Candidate({
        "source": "mastodon",
        # Status ids are per instance; the ActivityPub URI is global.
        "external_id": _str(original.get("uri")) or _str(original.get("id")),
        "text": f"{spoiler}\n{text}".strip() if spoiler else text,
        "url": _str(original.get("url")),
        "created_at": original.get("created_at"),
        "author": {"handle": _str(account.get("acct")), "display_name": _str(account.get("display_name")),
                   "id": _str(account.get("id")), "followers": account.get("followers_count") or 0},
        "lang": _str(original.get("language")),
        "engagement": {"likes": original.get("favourites_count") or 0, "reposts": original.get("reblogs_count") or 0,
                       "replies": original.get("replies_count") or 0},
        "reply_to_id": _str(original.get("in_reply_to_id")) or None,
    }, _raw(status))


# --- Reddit --------------------------------------------------------------------------------------

def reddit_listing(payload: Any) -> tuple[list[Candidate], str | None]:
    """(candidates, `after` cursor) of a search/new listing of posts (t3) and comments (t1)."""
    if not isinstance(payload, dict) or payload.get("kind") != "Listing":
        raise PayloadError("expected a Reddit Listing")
    data = _dict(payload.get("data"))
    out = []
    for child in _list(data.get("children")):
        child = _dict(child)
        thing = _dict(child.get("data"))
        if child.get("kind") == "t3":
            title = thing.get("title") if isinstance(thing.get("title"), str) else ""
            body = thing.get("selftext") if isinstance(thing.get("selftext"), str) else ""
            text = f"{title}\n\n{body}".strip()
        elif child.get("kind") == "t1":
            text = str(thing["body"]) if isinstance(thing.get("body"), str) else ""
        else:
            continue
        score = thing.get("score")
        out.append(Candidate({
            "source": "reddit",
            "external_id": _str(thing.get("name")) or _str(thing.get("id")),
            "text": text,
            "url": "https://www.reddit.com" + _str(thing.get("permalink")) if thing.get("permalink") else "",
            "created_at": thing.get("created_utc"),
            "author": {"handle": _str(thing.get("author"))},
            "engagement": {"likes": max(score, 0) if isinstance(score, int) and not isinstance(score, bool) else 0,
                           "replies": thing.get("num_comments") or 0},
            "reply_to_id": _str(thing.get("parent_id")) or None if child.get("kind") == "t1" else None,
            "conversation_id": _str(thing.get("link_id")) or None,
        }, _raw(child)))
    after = data.get("after")
    return out, after if isinstance(after, str) else None

"""Platform deletions and POST /v1/deletions become MentionDeleted records keyed like the mention (no broker:
the producer stand-in records what would have been produced, headers and partitions included)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from services.common import codec, topics
from services.common.codec import pb
from services.common.deletions import DELETION_TYPE, TYPE_HEADER
from services.ingest import deletions
from services.ingest import signatures as sig
from services.ingest.app import build_app
from services.ingest.brands import BrandMatcher
from services.ingest.config import IngestSettings

X_SECRET, META_SECRET = "x-consumer-secret", "meta-app-secret"

X_DELETE = {"for_user_id": "930524282358325248", "tweet_delete_events": [
    {"status": {"id": "1850", "user_id": "3198576760"}, "timestamp_ms": "1432228155593"}]}
X_USER_DELETE = {"user_event": {"user_delete": {"user": {"id": "3198576760"}, "event_at": "2026-12-01T10:00:00Z"}}}
X_REVOKE = {"user_event": {"revoke": {"date_time": "2026-12-01T10:00:00+00:00", "target": {"app_id": "1"},
                                      "source": {"user_id": "3198576760"}}}}
META_REMOVE = {"object": "page", "entry": [{"id": "1", "time": 1764583200, "changes": [
    {"field": "feed", "value": {"item": "comment", "verb": "remove", "comment_id": "44_55", "post_id": "44",
                                "from": {"id": "77"}}},
    {"field": "feed", "value": {"item": "comment", "verb": "add", "comment_id": "44_56", "post_id": "44",
                                "message": "hello", "from": {"id": "78"}}}]}]}


class RecordingProducer:
    """A started producer's stand-in: acknowledges at once and keeps (topic, key, value, headers, partition)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None, Any, Any]] = []

    async def send(self, topic: str, value: bytes | None = None, key: bytes | None = None,
                   headers: Any = None, partition: Any = None) -> Any:
        self.sent.append((topic, key, value, headers, partition))
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(6))


def _deleted(producer: RecordingProducer) -> list[tuple[bytes | None, pb.MentionDeleted, Any]]:
    return [(key, codec.decode(value or b"", pb.MentionDeleted), partition)
            for topic, key, value, headers, partition in producer.sent
            if topic == topics.MENTIONS_RAW and (TYPE_HEADER, DELETION_TYPE) in (headers or [])]


async def _client(producer: RecordingProducer, **kw: Any) -> TestClient:
    settings = IngestSettings(x_consumer_secret=X_SECRET, meta_app_secret=META_SECRET, meta_verify_token="verify-me",
                              **kw)
    client = TestClient(TestServer(build_app(settings, producer=producer, matcher=BrandMatcher([]))))  # type: ignore[arg-type]
    await client.start_server()
    return client


def test_x_delete_event_is_keyed_like_the_mention():
    [d] = deletions.x_deletions(X_DELETE, now=1_800_000_000)
    assert d.mention_id == codec.mention_id(pb.SOURCE_X, "1850") == "x:1850"
    assert d.reason == pb.PLATFORM_DELETE and d.author_id == "3198576760"
    assert d.deleted_at.seconds == 1432228155


def test_x_user_delete_deletes_the_author_and_revoke_deletes_nothing():
    [d] = deletions.x_deletions(X_USER_DELETE)
    assert d.mention_id == "" and d.author_id == "3198576760" and d.reason == pb.USER_DEACTIVATED
    assert deletions.x_deletions(X_REVOKE) == []


def test_meta_remove_change_is_a_deletion_and_add_is_not():
    [d] = deletions.meta_deletions(META_REMOVE)
    assert d.mention_id == "facebook:44_55" and d.source == pb.SOURCE_FACEBOOK


def test_api_deletion_needs_a_post_or_an_author():
    try:
        deletions.from_api({"source": "x"})
    except ValueError as exc:
        assert "external_id" in str(exc)
    else:
        raise AssertionError("a deletion naming nothing was accepted")
    assert deletions.from_api({"source": "x", "author": {"handle": "@Ana"}}).author_handle == "Ana"


async def test_signed_x_delete_delivery_produces_a_typed_record_keyed_by_mention_id():
    producer = RecordingProducer()
    client = await _client(producer)
    try:
        body = json.dumps(X_DELETE).encode()
        r = await client.post("/webhooks/x", data=body,
                              headers={"x-twitter-webhooks-signature": sig.x_signature(X_SECRET, body)})
        assert r.status == 200 and (await r.json())["deleted"] == ["x:1850"]
        [(key, d, partition)] = _deleted(producer)
        assert key == b"x:1850" and d.mention_id == "x:1850" and partition is None
        unsigned = await client.post("/webhooks/x", data=body,
                                     headers={"x-twitter-webhooks-signature": "sha256=" + "A" * 43 + "="})
        assert unsigned.status == 401 and len(_deleted(producer)) == 1
    finally:
        await client.close()


async def test_signed_x_user_delete_goes_to_every_partition():
    producer = RecordingProducer()
    client = await _client(producer)
    try:
        body = json.dumps(X_USER_DELETE).encode()
        r = await client.post("/webhooks/x", data=body,
                              headers={"x-twitter-webhooks-signature": sig.x_signature(X_SECRET, body)})
        assert r.status == 200
        assert sorted(p for _k, _d, p in _deleted(producer)) == list(range(6))
    finally:
        await client.close()


async def test_signed_meta_remove_is_produced_and_the_add_is_a_mention():
    producer = RecordingProducer()
    client = await _client(producer)
    try:
        body = json.dumps(META_REMOVE).encode()
        r = await client.post("/webhooks/meta", data=body,
                              headers={"X-Hub-Signature-256": sig.meta_signature(META_SECRET, body)})
        assert r.status == 200
        assert [k for k, _d, _p in _deleted(producer)] == [b"facebook:44_55"]
        assert (await r.json())["accepted"] == ["facebook:44_56"]
    finally:
        await client.close()


async def test_api_deletions_need_the_bearer_token_like_mentions():
    producer = RecordingProducer()
    client = await _client(producer, api_tokens=["api-t0ken-0123456789"], insecure_dev=False)
    try:
        body = {"source": "x", "external_id": "1850"}
        assert (await client.post("/v1/deletions", json=body)).status == 401
        bad = await client.post("/v1/deletions", json=[{"source": "nowhere", "external_id": "1"}],
                                headers={"Authorization": "Bearer api-t0ken-0123456789"})
        assert bad.status == 422 and (await bad.json())["errors"][0]["field"] == "source"
        assert _deleted(producer) == []
        ok = await client.post("/v1/deletions", json=body, headers={"Authorization": "Bearer api-t0ken-0123456789"})
        assert ok.status == 202 and (await ok.json()) == {"deleted": ["x:1850"]}
        assert [k for k, _d, _p in _deleted(producer)] == [b"x:1850"]
    finally:
        await client.close()

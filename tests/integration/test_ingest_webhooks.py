"""Signed webhooks against the real broker: X, Meta and generic; bad signatures are 401 and never produced."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import pytest
from support import consume, running_app

from services.common import codec, topics
from services.common.codec import pb
from services.common.kafka import ensure_topics
from services.common.topics import all_topic_specs
from services.ingest import signatures as sig
from services.ingest.app import build_app
from services.ingest.config import IngestSettings

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ingest"
X_SECRET, META_SECRET, META_VERIFY, GENERIC = "x-consumer-secret", "meta-app-secret", "verify-me", "generic-s3cret"


@pytest.fixture
async def ingest(kafka_bootstrap):
    await ensure_topics(kafka_bootstrap, all_topic_specs())
    settings = IngestSettings(kafka_bootstrap=kafka_bootstrap, x_consumer_secret=X_SECRET,
                              meta_app_secret=META_SECRET, meta_verify_token=META_VERIFY, webhook_secret=GENERIC,
                              api_tokens=["api-t0ken"])
    async with running_app(build_app(settings)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            yield client


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


async def produced(bootstrap: str, ids: set[str], topic: str = topics.MENTIONS_RAW) -> dict[str, pb.Mention]:
    records = await consume(bootstrap, [topic], idle=1.0, timeout=20)
    out = {}
    for _, _, value in records:
        if topic == topics.MENTIONS_RAW:
            mn = codec.decode(value, pb.Mention)
            if mn.mention_id in ids:
                out[mn.mention_id] = mn
    return out


async def test_x_crc_challenge(ingest):
    r = await ingest.get("/webhooks/x", params={"crc_token": "9b4507b3-9040-4669-9ca3-6b94edb50553"})
    assert r.status_code == 200
    assert r.json() == {"response_token": sig.x_crc_response_token(X_SECRET, "9b4507b3-9040-4669-9ca3-6b94edb50553")}
    assert (await ingest.get("/webhooks/x")).status_code == 400


async def test_x_crc_cannot_be_used_to_sign_a_forged_delivery(ingest, kafka_bootstrap):
    # Issue 25: the CRC answer for T is the delivery signature of a body equal to T.
    tweet = json.loads(fixture("x_tweet_create_events.json"))
    tweet["tweet_create_events"][0]["id_str"] = "crc-forged"
    tweet["tweet_create_events"][0]["user"].update(followers_count=9_000_000, verified=True)
    body = json.dumps(tweet, separators=(",", ":"))
    crc = await ingest.get("/webhooks/x", params={"crc_token": body})
    assert crc.status_code == 400 and "response_token" not in crc.json()
    guessed = await ingest.post("/webhooks/x", content=body.encode(),
                                headers={"x-twitter-webhooks-signature": "sha256=" + "A" * 43 + "="})
    assert guessed.status_code == 401
    assert await produced(kafka_bootstrap, {"x:crc-forged"}) == {}


async def test_x_signed_delivery_is_produced_with_brands_and_replay_is_a_duplicate(ingest, kafka_bootstrap):
    body = fixture("x_tweet_create_events.json")
    headers = {"x-twitter-webhooks-signature": sig.x_signature(X_SECRET, body), "Content-Type": "application/json"}
    r = await ingest.post("/webhooks/x", content=body, headers=headers)
    assert r.status_code == 200, r.text
    ids = ["x:1050118621198921728", "x:1050118776358895616"]
    assert r.json() == {"accepted": ids, "duplicates": [], "stored": len(ids), "dead_lettered": 0}
    replayed = await ingest.post("/webhooks/x", content=body, headers=headers)  # X redelivers the same bytes
    assert replayed.json()["duplicates"] == ids
    got = await produced(kafka_bootstrap, set(ids))
    assert set(got) == set(ids)
    assert got[ids[0]].brands == ["acmebank"]  # "@AcmeBank_help is Acme Bank down?"
    assert got[ids[0]].raw_payload and json.loads(got[ids[0]].raw_payload)["id_str"] == "1050118621198921728"


@pytest.mark.parametrize("header", [None, "sha256=AAAA", "wrong-secret"])
async def test_x_unsigned_or_wrongly_signed_is_401_and_never_produced(ingest, kafka_bootstrap, header):
    tweet = json.loads(fixture("x_tweet_create_events.json"))
    tweet["tweet_create_events"][0]["id_str"] = "forged-" + str(header)
    body = json.dumps(tweet).encode()
    headers = {"Content-Type": "application/json"}
    if header == "wrong-secret":
        headers["x-twitter-webhooks-signature"] = sig.x_signature("not-the-secret", body)
    elif header:
        headers["x-twitter-webhooks-signature"] = header
    r = await ingest.post("/webhooks/x", content=body, headers=headers)
    assert r.status_code == 401
    metrics = (await ingest.get("/metrics")).text
    reason = "missing" if header is None else "invalid"
    assert f'triage_ingest_auth_rejected_total{{endpoint="/webhooks/x",reason="{reason}"}}' in metrics
    assert await produced(kafka_bootstrap, {f"x:forged-{header}"}) == {}


async def test_meta_verification_challenge(ingest):
    ok = await ingest.get("/webhooks/meta", params={"hub.mode": "subscribe", "hub.verify_token": META_VERIFY,
                                                    "hub.challenge": "1158201444"})
    assert ok.status_code == 200 and ok.text == "1158201444"
    bad = await ingest.get("/webhooks/meta", params={"hub.mode": "subscribe", "hub.verify_token": "guess",
                                                     "hub.challenge": "1158201444"})
    assert bad.status_code == 401


@pytest.mark.parametrize("name", ["meta_page_feed.json", "meta_instagram_comments.json", "meta_messenger.json"])
async def test_meta_signed_deliveries(ingest, name):
    body = fixture(name)
    r = await ingest.post("/webhooks/meta", content=body,
                          headers={"X-Hub-Signature-256": sig.meta_signature(META_SECRET, body)})
    assert r.status_code == 200, r.text
    assert len(r.json()["accepted"]) + len(r.json()["duplicates"]) == 1
    bad = await ingest.post("/webhooks/meta", content=body,
                            headers={"X-Hub-Signature-256": sig.meta_signature("nope", body)})
    assert bad.status_code == 401


async def test_signed_item_that_fails_validation_goes_to_the_dlq_not_lost(ingest, kafka_bootstrap):
    payload = json.loads(fixture("x_tweet_create_events.json"))
    tweet = payload["tweet_create_events"][0]
    tweet.update(id_str="dlq-future-1", created_at="Wed Oct 10 20:19:24 +0000 2091", timestamp_ms=None)
    body = json.dumps({"for_user_id": "1", "tweet_create_events": [tweet]}).encode()
    r = await ingest.post("/webhooks/x", content=body,
                          headers={"x-twitter-webhooks-signature": sig.x_signature(X_SECRET, body)})
    assert r.status_code == 200 and r.json()["dead_lettered"] == 1
    records = await consume(kafka_bootstrap, [topics.MENTIONS_DLQ], idle=1.0, timeout=20)
    letters = [codec.decode(v, pb.DeadLetter) for _, _, v in records]
    assert any(b"dlq-future-1" in d.original and "created_at" in d.reason for d in letters)


def generic_headers(body: bytes, ts: int | None = None, secret: str = GENERIC) -> dict[str, str]:
    stamp = str(int(time.time()) if ts is None else ts)
    return {"X-Triage-Timestamp": stamp, "X-Triage-Signature": sig.generic_signature(secret, stamp, body),
            "Content-Type": "application/json"}


async def test_generic_webhook_valid_invalid_missing_stale_replayed(ingest, kafka_bootstrap):
    body = json.dumps({"external_id": "gen-1", "text": "AcmeNet: slow internet again"}).encode()
    headers = generic_headers(body)
    ok = await ingest.post("/webhooks/generic", content=body, headers=headers)
    assert ok.status_code == 202, ok.text
    assert ok.json()["accepted"] == ["webhook:gen-1"]
    replay = await ingest.post("/webhooks/generic", content=body, headers=headers)
    assert replay.status_code == 401 and "replayed" in replay.json()["error"]
    stale = await ingest.post("/webhooks/generic", content=body, headers=generic_headers(body, int(time.time()) - 3600))
    assert stale.status_code == 401 and "stale" in stale.json()["error"]
    forged = await ingest.post("/webhooks/generic", content=body, headers=generic_headers(body, secret="x"))
    assert forged.status_code == 401
    missing = await ingest.post("/webhooks/generic", content=body, headers={"Content-Type": "application/json"})
    assert missing.status_code == 401
    got = await produced(kafka_bootstrap, {"webhook:gen-1"})
    assert got["webhook:gen-1"].brands == ["acmenet"]


async def test_api_bearer_token_when_configured(ingest):
    m = {"source": "forum", "external_id": "auth-1", "text": "hello"}
    assert (await ingest.post("/v1/mentions", json=m)).status_code == 401
    assert (await ingest.post("/v1/mentions", json=m, headers={"Authorization": "Bearer nope"})).status_code == 401
    r = await ingest.post("/v1/mentions", json=m, headers={"Authorization": "Bearer api-t0ken"})
    assert r.status_code == 202


async def test_rate_limit_answers_429_with_retry_after(kafka_bootstrap):
    settings = IngestSettings(kafka_bootstrap=kafka_bootstrap, rate_limit_per_second=0.5, rate_limit_burst=2)
    async with running_app(build_app(settings)) as url, httpx.AsyncClient(base_url=url) as client:
        codes = [(await client.post("/v1/mentions", json={"source": "forum", "external_id": f"rl-{i}",
                                                           "text": "hi"})).status_code for i in range(3)]
        assert codes == [202, 202, 429]
        r = await client.post("/v1/mentions", json={})
        assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
        assert (await client.get("/readyz")).status_code == 200  # probes are never limited


async def test_a_client_that_stalls_mid_body_gets_408(kafka_bootstrap):
    settings = IngestSettings(kafka_bootstrap=kafka_bootstrap, request_timeout_seconds=0.5)
    async with running_app(build_app(settings)) as url:
        host, port = url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"POST /v1/mentions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 500\r\n\r\n{\"source\": \"x\"")  # then nothing more
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), timeout=10)
        writer.close()
        assert b" 408 " in status_line


async def test_a_body_arriving_in_pieces_is_read_whole(kafka_bootstrap):
    body = json.dumps({"source": "forum", "external_id": "pieces-1", "text": "Acme Bank " * 50}).encode()
    async with running_app(build_app(IngestSettings(kafka_bootstrap=kafka_bootstrap))) as url:
        host, port = url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"POST /v1/mentions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body))
        for i in range(0, len(body), 100):  # a slow mobile client
            writer.write(body[i:i + 100])
            await writer.drain()
            await asyncio.sleep(0.05)
        status_line = await asyncio.wait_for(reader.readline(), timeout=10)
        writer.close()
        assert b" 202 " in status_line

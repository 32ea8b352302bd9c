"""Attacks on ingest, each run against the aiohttp app and asserted to fail (no broker: the producer
stand-in records what would have been produced, so "nothing produced" is checked directly)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from test_ingest_faults import AckingProducer

from services.ingest import signatures as sig
from services.ingest.app import build_app
from services.ingest.brands import BrandMatcher
from services.ingest.config import IngestSettings

X_SECRET = "x-consumer-secret"

# The forgery from issue 25: a tweet_create_events delivery (verified author, 9M followers, outage text)
# sent as the CRC token, so that the CRC answer is a valid x-twitter-webhooks-signature for it.
FORGED_DELIVERY = json.dumps({"for_user_id": "1", "tweet_create_events": [{
    "id_str": "1", "text": "AcmeBank is down, all accounts emptied, outage everywhere",
    "user": {"id_str": "9", "screen_name": "news", "followers_count": 9000000, "verified": True}}]},
    separators=(",", ":"))


async def _client(settings: IngestSettings, producer: AckingProducer) -> TestClient:
    client = TestClient(TestServer(build_app(settings, producer=producer, matcher=BrandMatcher([]))))
    await client.start_server()
    return client


async def test_x_crc_forgery_gets_no_signature_and_produces_nothing():
    producer = AckingProducer()
    client = await _client(IngestSettings(x_consumer_secret=X_SECRET), producer)
    try:
        crc = await client.get("/webhooks/x", params={"crc_token": FORGED_DELIVERY})
        assert crc.status == 400
        answer: dict[str, Any] = await crc.json()
        assert "response_token" not in answer and answer["errors"][0]["field"] == "crc_token"
        # Without the CRC answer the attacker has only guesses; a guessed signature is refused.
        post = await client.post("/webhooks/x", data=FORGED_DELIVERY.encode(),
                                 headers={"x-twitter-webhooks-signature": "sha256=" + "A" * 43 + "="})
        assert post.status == 401
        assert producer.sent == []
    finally:
        await client.close()


@pytest.mark.parametrize("token", [
    FORGED_DELIVERY, '"quoted"', "[1]", "has space", "tab\there", "new\nline", "a" * 129, "{}", "ä-token",
])
async def test_x_crc_refuses_tokens_outside_xs_alphabet(token):
    client = await _client(IngestSettings(x_consumer_secret=X_SECRET), AckingProducer())
    try:
        r = await client.get("/webhooks/x", params={"crc_token": token})
        assert r.status == 400 and "response_token" not in await r.json()
    finally:
        await client.close()


@pytest.mark.parametrize("token", [
    "9b4507b3-9040-4669-9ca3-6b94edb50553", "NDc1ODI3MTk0OTE3NDIyMTk2MQ", "ab+/cd==", "a" * 128, "x_y-z",
])
async def test_x_crc_still_answers_xs_real_tokens(token):
    client = await _client(IngestSettings(x_consumer_secret=X_SECRET), AckingProducer())
    try:
        r = await client.get("/webhooks/x", params={"crc_token": token})
        assert r.status == 200
        assert await r.json() == {"response_token": sig.x_crc_response_token(X_SECRET, token)}
    finally:
        await client.close()


def test_crc_signer_itself_refuses_a_delivery_body():
    with pytest.raises(ValueError):
        sig.x_crc_response_token(X_SECRET, FORGED_DELIVERY)


@pytest.mark.parametrize("challenge", ["<script>alert(1)</script>", "a b", "x" * 129, '{"a":1}'])
async def test_meta_challenge_echo_reflects_only_a_short_token(challenge):
    settings = IngestSettings(meta_verify_token="verify-me")
    client = await _client(settings, AckingProducer())
    try:
        params = {"hub.mode": "subscribe", "hub.verify_token": "verify-me"}
        bad = await client.get("/webhooks/meta", params={**params, "hub.challenge": challenge})
        assert bad.status == 400 and challenge not in await bad.text()
        ok = await client.get("/webhooks/meta", params={**params, "hub.challenge": "1158201444"})
        assert ok.status == 200 and await ok.text() == "1158201444"
    finally:
        await client.close()

"""Attacks on ingest, each run against the aiohttp app and asserted to fail (no broker: the producer
stand-in records what would have been produced, so "nothing produced" is checked directly)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from ipaddress import ip_network
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import ValidationError
from support import REPO_ROOT
from test_ingest_faults import AckingProducer

from services.common.exposure import client_address, start_refusal
from services.ingest import signatures as sig
from services.ingest.app import build_app
from services.ingest.brands import BrandMatcher
from services.ingest.config import IngestSettings
from services.ingest.connections import ConnectionLimiter

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
    client = await _client(IngestSettings(x_consumer_secret=X_SECRET, insecure_dev=False), producer)
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
    client = await _client(IngestSettings(x_consumer_secret=X_SECRET, insecure_dev=False), AckingProducer())
    try:
        r = await client.get("/webhooks/x", params={"crc_token": token})
        assert r.status == 400 and "response_token" not in await r.json()
    finally:
        await client.close()


@pytest.mark.parametrize("token", [
    "9b4507b3-9040-4669-9ca3-6b94edb50553", "NDc1ODI3MTk0OTE3NDIyMTk2MQ", "ab+/cd==", "a" * 128, "x_y-z",
])
async def test_x_crc_still_answers_xs_real_tokens(token):
    client = await _client(IngestSettings(x_consumer_secret=X_SECRET, insecure_dev=False), AckingProducer())
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
    settings = IngestSettings(meta_verify_token="verify-me", meta_app_secret="meta-secret", insecure_dev=False)
    client = await _client(settings, AckingProducer())
    try:
        params = {"hub.mode": "subscribe", "hub.verify_token": "verify-me"}
        bad = await client.get("/webhooks/meta", params={**params, "hub.challenge": challenge})
        assert bad.status == 400 and challenge not in await bad.text()
        ok = await client.get("/webhooks/meta", params={**params, "hub.challenge": "1158201444"})
        assert ok.status == 200 and await ok.text() == "1158201444"
    finally:
        await client.close()


async def test_mentions_api_without_configured_tokens_is_401_and_produces_nothing():
    producer = AckingProducer()
    client = await _client(IngestSettings(insecure_dev=False), producer)
    try:
        m = {"source": "forum", "external_id": "open-door", "text": "AcmeBank outage"}
        r = await client.post("/v1/mentions", json=m)
        assert r.status == 401 and "TRIAGE_API_TOKENS" in (await r.json())["error"]
        r = await client.post("/v1/mentions", json=m, headers={"Authorization": "Bearer anything"})
        assert r.status == 401 and producer.sent == []
        metrics = await (await client.get("/metrics")).text()
        assert 'triage_ingest_auth_rejected_total{endpoint="/v1/mentions",reason="not_configured"}' in metrics
    finally:
        await client.close()


async def test_mentions_api_is_open_only_in_explicit_dev_mode():
    producer = AckingProducer()
    client = await _client(IngestSettings(insecure_dev=True), producer)
    try:
        r = await client.post("/v1/mentions", json={"source": "forum", "external_id": "dev-1", "text": "hi"})
        assert r.status == 202 and len(producer.sent) == 1
    finally:
        await client.close()


def test_a_meta_webhook_with_one_of_its_two_secrets_is_refused_at_start():
    with pytest.raises(ValidationError, match="TRIAGE_META_VERIFY_TOKEN"):
        IngestSettings(meta_app_secret="only-half")


@pytest.mark.parametrize(("service", "env", "missing"), [
    ("ingest", {"TRIAGE_INGEST_HOST": "0.0.0.0"}, "TRIAGE_API_TOKENS"),
    ("console", {"TRIAGE_CONSOLE_HOST": "0.0.0.0"}, "TRIAGE_CONSOLE_TOKENS"),
    ("console", {"TRIAGE_CONSOLE_HOST": "::"}, "TRIAGE_CONSOLE_TOKENS"),
])
def test_a_service_reachable_from_other_hosts_refuses_to_start_without_credentials(service, env, missing):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_")}
    proc = subprocess.run([sys.executable, "-m", "services.cli", service], env={
        **clean, **env, "TRIAGE_INSECURE_DEV": "0", "TRIAGE_KAFKA_BOOTSTRAP": "127.0.0.1:1"},
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    refusal = [line for line in proc.stderr.splitlines() if "refused_to_start" in line]
    assert len(refusal) == 1 and missing in refusal[0] and "TRIAGE_INSECURE_DEV=1" in refusal[0]


@pytest.mark.parametrize(("host", "open_"), [("127.0.0.1", True), ("::1", True), ("localhost", True),
                                             ("0.0.0.0", False), ("::", False), ("10.1.2.3", False),
                                             ("ingest.internal", False)])
def test_only_loopback_binds_may_start_without_credentials(host, open_):
    assert (start_refusal("ingest", host, ["TRIAGE_API_TOKENS"], insecure_dev=False) is None) is open_
    assert start_refusal("ingest", host, ["TRIAGE_API_TOKENS"], insecure_dev=True) is None
    assert start_refusal("ingest", host, [], insecure_dev=False) is None


async def test_a_new_authorization_header_per_request_does_not_escape_the_rate_limit():
    producer = AckingProducer()
    settings = IngestSettings(insecure_dev=False, api_tokens=["api-t0ken"], rate_limit_per_second=0.01,
                              rate_limit_burst=2)
    client = await _client(settings, producer)
    try:
        codes = [(await client.post("/v1/mentions", json={}, headers={"Authorization": f"Bearer guess-{i}"})).status
                 for i in range(4)]
        assert codes == [401, 401, 429, 429]  # one bucket for the address, whatever the header says
        # The same rotation behind X-Forwarded-For from an untrusted peer is the same address.
        r = await client.post("/v1/mentions", json={}, headers={"Authorization": "Bearer x",
                                                                "X-Forwarded-For": "198.51.100.9"})
        assert r.status == 429
        # An authenticated client has its own bucket, keyed on its token, not on where it comes from.
        ok = await client.post("/v1/mentions", json={"source": "forum", "external_id": "rl-ok", "text": "hi"},
                               headers={"Authorization": "Bearer api-t0ken"})
        assert ok.status == 202 and len(producer.sent) == 1
    finally:
        await client.close()


async def test_forwarded_for_from_a_trusted_proxy_separates_the_clients_behind_it():
    settings = IngestSettings(insecure_dev=True, rate_limit_per_second=0.01, rate_limit_burst=1,
                              trusted_proxies=["127.0.0.0/8"])
    client = await _client(settings, AckingProducer())
    try:
        def post(xff: str, i: int) -> Any:
            return client.post("/v1/mentions", json={"source": "forum", "external_id": f"xff-{i}", "text": "hi"},
                               headers={"X-Forwarded-For": xff})
        assert (await post("198.51.100.1", 1)).status == 202
        assert (await post("198.51.100.1", 2)).status == 429
        assert (await post("198.51.100.2", 3)).status == 202  # another client behind the same proxy
        # A client cannot pick its bucket by writing the header itself: the proxy appends the real address.
        assert (await post("203.0.113.5, 198.51.100.1", 4)).status == 429
    finally:
        await client.close()


def test_a_trusted_proxy_gets_the_proxy_connection_cap_and_others_the_per_client_one():
    limiter = ConnectionLimiter(2, trusted_proxies=[ip_network("10.1.0.0/16")], proxy_limit=5)
    assert [limiter.open("10.1.2.3") for _ in range(6)] == [True] * 5 + [False]
    assert [limiter.open("203.0.113.7") for _ in range(3)] == [True, True, False]


@pytest.mark.parametrize(("remote", "xff", "client"), [
    ("10.1.2.3", "198.51.100.1", "198.51.100.1"),                 # trusted proxy: its last hop
    ("10.1.2.3", "1.1.1.1, 198.51.100.1", "198.51.100.1"),        # what the client wrote is left of it
    ("10.1.2.3", "198.51.100.1, 10.1.9.9", "198.51.100.1"),       # two trusted proxies in a row
    ("203.0.113.7", "198.51.100.1", "203.0.113.7"),               # untrusted peer: header ignored
    ("10.1.2.3", "not-an-ip", "10.1.2.3"),
    ("10.1.2.3", None, "10.1.2.3"),
])
def test_client_address_believes_forwarded_for_only_from_trusted_proxies(remote, xff, client):
    assert client_address(remote, xff, [ip_network("10.1.0.0/16")]) == client

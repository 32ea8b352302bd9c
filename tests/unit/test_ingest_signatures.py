"""Webhook signature schemes (X CRC/signature, Meta, generic with replay window) and API access control."""

from __future__ import annotations

import base64
import hashlib
import hmac

from services.ingest import access
from services.ingest import signatures as sig


def test_x_crc_response_token_is_base64_hmac_of_the_token():
    # docs.x.com "Securing webhooks": base64(HMAC-SHA256(consumer secret, crc_token)) prefixed "sha256=".
    secret, crc = "z3ZX4v7mAAUGykl3EcmkqbartmuW8VFOOzCloLx9Q45P0hLrFu", "9b4507b3-9040-4669-9ca3-6b94edb50553"
    expected = base64.b64encode(hmac.new(secret.encode(), crc.encode(), hashlib.sha256).digest()).decode()
    assert sig.x_crc_response_token(secret, crc) == "sha256=" + expected


def test_x_signature_valid_invalid_missing():
    body = b'{"for_user_id":"1","tweet_create_events":[]}'
    good = sig.x_signature("secret", body)
    assert sig.verify_x_signature("secret", body, good)
    assert not sig.verify_x_signature("secret", body + b" ", good)
    assert not sig.verify_x_signature("other", body, good)
    assert not sig.verify_x_signature("secret", body, None)
    assert not sig.verify_x_signature("", body, sig.x_signature("", body))  # unconfigured never verifies


def test_meta_signature_is_lowercase_hex_sha256():
    body = b'{"object":"page","entry":[]}'
    header = sig.meta_signature("appsecret", body)
    assert header.startswith("sha256=") and len(header) == 7 + 64
    assert sig.verify_meta_signature("appsecret", body, header.upper().replace("SHA256=", "sha256="))
    assert not sig.verify_meta_signature("appsecret", body, "sha1=" + header[7:])
    assert not sig.verify_meta_signature("appsecret", body, "")


def test_generic_signature_timestamp_window_and_replay():
    body, now = b'{"text":"x"}', 1_800_000_000.0
    ts = str(int(now))
    good = sig.generic_signature("s3cret", ts, body)
    guard = sig.ReplayGuard(300)
    check = sig.check_generic_signature
    assert check("s3cret", body, ts, good, 300, guard, now=now) is None
    assert check("s3cret", body, ts, "v1=" + "0" * 64, 300, guard, now=now) == "invalid"
    assert check("s3cret", body, None, good, 300, guard, now=now) == "missing"
    assert check("s3cret", body, ts, None, 300, guard, now=now) == "missing"
    assert check("s3cret", body, "yesterday", good, 300, guard, now=now) == "invalid"
    assert check("s3cret", body, ts, good, 300, guard, now=now + 301) == "stale"
    assert check("s3cret", body, ts, f"v1=old, {good}", 300, guard, now=now) is None  # secret rotation
    guard.remember(good, now)
    assert check("s3cret", body, ts, good, 300, guard, now=now + 10) == "replayed"


def test_replay_guard_memory_is_bounded():
    guard = sig.ReplayGuard(300, max_entries=10)
    for i in range(100):
        guard.remember(f"s{i}", 1000.0)
    assert len(guard._seen) == 10 and guard.seen("s99", 1000.0) and not guard.seen("s0", 1000.0)


def test_bearer_tokens():
    assert access.bearer_ok("Bearer t0k3n", ["other", "t0k3n"])
    assert access.bearer_ok("bearer t0k3n", ["t0k3n"])
    assert not access.bearer_ok("Bearer t0k3", ["t0k3n"])
    assert not access.bearer_ok("Basic dXNlcjpwdw==", ["t0k3n"])
    assert not access.bearer_ok(None, ["t0k3n"])
    assert not access.bearer_ok("Bearer ", [""])


def test_client_key_never_contains_the_token():
    key = access.client_key(access.principal("Bearer t0k3n", ["other", "t0k3n"]), "10.0.0.1")
    assert key.startswith("t:") and "t0k3n" not in key
    assert access.client_key(None, "10.0.0.1") == "a:10.0.0.1"


def test_rate_limiter_bursts_then_waits_then_refills():
    now = [0.0]
    rl = access.RateLimiter(rate=2.0, burst=3, clock=lambda: now[0])
    assert [rl.acquire("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = rl.acquire("a")
    assert 0.4 < wait <= 0.5 and access.retry_after(wait) == "1"
    assert rl.acquire("b") == 0.0  # per client
    now[0] += 1.0
    assert rl.acquire("a") == 0.0
    assert access.RateLimiter(0, 1).acquire("a") == 0.0  # off by default


def test_rate_limiter_memory_is_bounded():
    rl = access.RateLimiter(rate=1.0, burst=1, max_clients=5)
    for i in range(50):
        rl.acquire(f"c{i}")
    assert len(rl._buckets) == 5

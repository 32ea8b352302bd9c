"""Transport helpers shared by every HTTP receiver: signing, verifying, status classification, secrets.

A receiver's `deliver`/`notify` either succeeds or raises `DeliveryError`; whether the error
is worth retrying (timeouts, 5xx, 408/425/429) or not (other 4xx: the request itself is wrong)
is its `retryable` flag (`classify_http`). Retries and the DLQ live in `delivery.py`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from typing import Any

import httpx

USER_AGENT = "social-triage-router/0.1"


# Every secret handed to a receiver (secret_from). Delivery errors are logged and stored on the pages
# topic, and some receivers echo the request (its routing key, a token) in their error answers.
_SECRETS: set[str] = set()


def redact(text: str) -> str:
    """`text` with every receiver secret replaced by `[redacted]`."""
    for secret in sorted(_SECRETS, key=len, reverse=True):
        text = text.replace(secret, "[redacted]")
    return text


class DeliveryError(Exception):
    def __init__(self, message: str, retryable: bool = True, retry_after: float | None = None):
        super().__init__(redact(message))
        self.retryable = retryable
        self.retry_after = retry_after


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """HMAC-SHA256 over `<timestamp>.<body>`, hex, as sent in X-Triage-Signature (sha256=...)."""
    return hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def verify(secret: bytes, timestamp: str, body: bytes, signature: str, tolerance: float = 300.0,
           now: float | None = None) -> bool:
    """What a webhook consumer does to trust a delivery (constant-time, with a replay window)."""
    try:
        ts = float(timestamp)
    except ValueError:
        return False
    if abs((now or time.time()) - ts) > tolerance:
        return False
    expected = "sha256=" + sign(secret, timestamp, body)
    return hmac.compare_digest(expected, signature)


def classify_http(resp: httpx.Response, what: str) -> None:
    """Raises DeliveryError for a non-2xx answer, retryable for 5xx/408/425/429, with its Retry-After."""
    if resp.status_code < 300:
        return
    retry_after = None
    if "retry-after" in resp.headers:
        try:
            retry_after = float(resp.headers["retry-after"])
        except ValueError:
            retry_after = None
    retryable = resp.status_code >= 500 or resp.status_code in (408, 425, 429)
    raise DeliveryError(f"{what} answered HTTP {resp.status_code}: {resp.text[:200]}", retryable, retry_after)


def secret_from(opts: dict[str, Any], key: str = "secret_env") -> bytes | None:
    """Secrets are never in the routing file: it names the env var that holds them."""
    env = opts.get(key)
    if not env:
        return None
    value = os.environ.get(str(env))
    if value is None:
        raise ValueError(f"environment variable {env} (named by {key}) is not set")
    if len(value) >= 4:  # shorter is no secret, and would mangle every message
        _SECRETS.add(value)
    return value.encode()


def required_secret(opts: dict[str, Any], key: str, what: str) -> str:
    value = secret_from(opts, key)
    if value is None:
        raise ValueError(f"{what}: `{key}` must name the environment variable holding the secret")
    return value.decode()

"""Transport helpers shared by every receiver: signing, verifying, failure reasons, secrets.

A receiver's `deliver`/`notify` either succeeds or raises `DeliveryError` (services/common/errors.py)
with the reason it failed: `classify_http` turns an HTTP answer into one (401/403 auth_error,
408 timeout, 425/429 rate_limited, other 4xx client_error, 5xx server_error), `transport_failure`
a request that got no answer (timeout, network). Whether it is worth another attempt follows from
the reason (`DeliveryError.retriable`): a rejected request (client_error, auth_error) is not.
Retries and the DLQ live in `delivery.py`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from pathlib import Path
from typing import Any

import httpx

from services.common.errors import DeliveryError, DeliveryReason

USER_AGENT = "social-triage-router/0.1"


# Every secret handed to a receiver (secret_from). Delivery errors are logged and stored on the pages
# topic, and some receivers echo the request (its routing key, a token) in their error answers.
_SECRETS: set[str] = set()


def redact(text: str) -> str:
    """`text` with every receiver secret replaced by `[redacted]`."""
    for secret in sorted(_SECRETS, key=len, reverse=True):
        text = text.replace(secret, "[redacted]")
    return text


def delivery_error(message: str, reason: DeliveryReason, retry_after: float | None = None) -> DeliveryError:
    """The error a receiver raises: its message with every receiver secret redacted (never raise a bare one)."""
    return DeliveryError(redact(message), reason, retry_after)


def reason_of_status(status: int) -> DeliveryReason:
    """Why a non-2xx answer failed: 401/403 auth_error, 408 timeout, 425/429 rate_limited (the receiver asks
    for a later attempt), other 4xx (and 3xx: no redirect is followed) client_error, 5xx server_error."""
    if status in (401, 403):
        return DeliveryReason.AUTH_ERROR
    if status == 408:
        return DeliveryReason.TIMEOUT
    if status in (425, 429):
        return DeliveryReason.RATE_LIMITED
    if status >= 500:
        return DeliveryReason.SERVER_ERROR
    return DeliveryReason.CLIENT_ERROR


def transport_failure(exc: httpx.HTTPError, what: str) -> DeliveryError:
    """An HTTP request that got no answer: timeout, or network for anything else on the way (connect, TLS,
    a broken connection)."""
    reason = DeliveryReason.TIMEOUT if isinstance(exc, httpx.TimeoutException) else DeliveryReason.NETWORK
    return delivery_error(f"{what}: {type(exc).__name__}: {exc}", reason)


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
    """Raises DeliveryError for a non-2xx answer, with its reason (`reason_of_status`) and Retry-After."""
    if resp.status_code < 300:
        return
    retry_after = None
    if "retry-after" in resp.headers:
        try:
            retry_after = float(resp.headers["retry-after"])
        except ValueError:
            retry_after = None
    raise delivery_error(f"{what} answered HTTP {resp.status_code}: {resp.text[:200]}",
                         reason_of_status(resp.status_code), retry_after)


def secret_from(opts: dict[str, Any], key: str = "secret_env") -> bytes | None:
    """The project's files name the env var that holds a secret (`routing_key_env`); a receiver mapped from
    Alertmanager's configuration (am_receivers.py) carries it inline (`routing_key`) or in a file
    (`routing_key_file`), as Alertmanager does."""
    env = opts.get(key)
    base = key.removesuffix("_env")
    if not env and base != key and (opts.get(base) or opts.get(f"{base}_file")):
        if opts.get(base):
            inline = str(opts[base])
        else:
            try:
                inline = Path(str(opts[f"{base}_file"])).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ValueError(f"cannot read {opts[f'{base}_file']} (named by {base}_file): {exc.strerror}") from None
        if len(inline) >= 4:
            _SECRETS.add(inline)
        return inline.encode()
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

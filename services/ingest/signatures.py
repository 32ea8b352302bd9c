"""Webhook signature schemes: X (Twitter) CRC + signature, Meta X-Hub-Signature-256, generic HMAC.

All comparisons are constant-time (`hmac.compare_digest`); the functions are
pure so each scheme is unit-tested against the platform's documented examples.

- X Account Activity API: GET ?crc_token=T is answered {"response_token": "sha256=" +
  base64(HMAC-SHA256(consumer_secret, T))}; each POST carries
  `x-twitter-webhooks-signature: sha256=<base64 HMAC-SHA256(consumer_secret, body)>`. Both are the same
  MAC under the same key, so a CRC answer for T *is* a valid delivery signature for a body equal to T:
  only a token that looks like X's (`is_x_crc_token`: a short URL-safe/base64 string, never JSON) is
  signed, or anyone could have a forged delivery signed for them.
- Meta Graph webhooks: GET hub.mode=subscribe&hub.verify_token=V&hub.challenge=C echoes C
  when V is ours; each POST carries `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app_secret, body)>`.
- Generic: `X-Triage-Timestamp: <unix seconds>` and `X-Triage-Signature: v1=<hex HMAC-SHA256(secret,
  "<timestamp>.<body>")>`; the timestamp must be within the tolerance, and a signature already
  accepted within that window is a replay.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections import OrderedDict


def _ascii(header: str | None, max_len: int = 1024) -> str | None:
    """The header trimmed if it is printable ASCII within `max_len`, else None.

    aiohttp decodes header bytes as UTF-8 with surrogateescape, so a non-ASCII byte arrives as a lone
    surrogate that `.encode()` refuses: headers are validated here, before any crypto touches them.
    """
    if not header:
        return None
    header = header.strip()
    if not header or len(header) > max_len or not header.isascii() or not header.isprintable():
        return None
    return header


def _mac(secret: str, message: bytes) -> bytes:
    return hmac.new(secret.encode(), message, hashlib.sha256).digest()


# X sends a random token (a UUID or URL-safe base64, 20-50 characters in practice). Anything signed here is
# also a valid delivery signature for a body equal to it, so only this alphabet passes: no `{`, `[`, quote,
# space or control character can appear, hence never a JSON document. 128 leaves room for longer tokens.
X_CRC_TOKEN_MAX_CHARS = 128
_X_CRC_TOKEN = re.compile(rf"[A-Za-z0-9_\-+/=]{{1,{X_CRC_TOKEN_MAX_CHARS}}}")


def is_x_crc_token(token: str) -> bool:
    """True when `token` is in X's CRC token alphabet and length (URL-safe or standard base64, UUIDs)."""
    return _X_CRC_TOKEN.fullmatch(token) is not None


def x_crc_response_token(consumer_secret: str, crc_token: str) -> str:
    """The CRC answer for a token; refuses (ValueError) anything `is_x_crc_token` rejects."""
    if not is_x_crc_token(crc_token):
        raise ValueError("not an X CRC token: signing it could forge a delivery signature")
    return "sha256=" + base64.b64encode(_mac(consumer_secret, crc_token.encode())).decode()


def x_signature(consumer_secret: str, body: bytes) -> str:
    return "sha256=" + base64.b64encode(_mac(consumer_secret, body)).decode()


def verify_x_signature(consumer_secret: str, body: bytes, header: str | None) -> bool:
    header = _ascii(header)
    if not header or not consumer_secret:
        return False
    return hmac.compare_digest(header.encode(), x_signature(consumer_secret, body).encode())


def meta_signature(app_secret: str, body: bytes) -> str:
    return "sha256=" + _mac(app_secret, body).hex()


def verify_meta_signature(app_secret: str, body: bytes, header: str | None) -> bool:
    header = _ascii(header)
    if not header or not app_secret:
        return False
    # Meta sends lowercase hex; accept either case.
    return hmac.compare_digest(header.lower().encode(), meta_signature(app_secret, body).encode())


def generic_signature(secret: str, timestamp: str, body: bytes) -> str:
    return "v1=" + _mac(secret, timestamp.encode() + b"." + body).hex()


class ReplayGuard:
    """Remembers accepted (timestamp, signature) pairs for the tolerance window (bounded)."""

    def __init__(self, tolerance_seconds: float, max_entries: int = 100_000):
        self.tolerance = tolerance_seconds
        self.max_entries = max_entries
        self._seen: OrderedDict[str, float] = OrderedDict()

    def _expire(self, now: float) -> None:
        while self._seen:
            _key, at = next(iter(self._seen.items()))
            if now - at <= 2 * self.tolerance and len(self._seen) <= self.max_entries:
                break
            self._seen.popitem(last=False)

    def seen(self, signature: str, now: float) -> bool:
        self._expire(now)
        return signature in self._seen

    def remember(self, signature: str, now: float) -> None:
        self._seen[signature] = now
        self._seen.move_to_end(signature)
        self._expire(now)


def check_generic_signature(secret: str, body: bytes, timestamp: str | None, signature: str | None,
                            tolerance_seconds: float, guard: ReplayGuard | None = None,
                            now: float | None = None) -> str | None:
    """None when the request is authentic and fresh, else the reason class (missing/invalid/stale/replayed)."""
    if not timestamp or not signature or not secret:
        return "missing"
    timestamp, signature = _ascii(timestamp, 32), _ascii(signature, 4096)
    if timestamp is None or signature is None or not timestamp.isdigit():
        return "invalid"  # non-ASCII, non-printable, overlong, or not plain decimal digits
    ts = int(timestamp)
    now = time.time() if now is None else now
    # Check the MAC before the clock so a forged request learns nothing about our time.
    expected = generic_signature(secret, timestamp, body)
    candidates = [s.strip() for s in signature.split(",")]  # several v1= during secret rotation
    if not any(hmac.compare_digest(c.encode(), expected.encode()) for c in candidates):
        return "invalid"
    if abs(now - ts) > tolerance_seconds:
        return "stale"
    if guard is not None and guard.seen(expected, now):
        return "replayed"
    return None
